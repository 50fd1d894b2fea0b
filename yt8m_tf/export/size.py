"""Size accounting of an export: what each component stores, checked against a budget before writing.

The 2018 Kaggle rule capped the model at 1 GB; the seed's distilled EnsembleModel (247,233,888 float32
parameters, 0.989 GB) was sized to just fit. The budget here is in bytes of saved variables (10**9 by
default), counted per component as parameters x bytes per stored value (4 for float32, 2 for float16), so an
over-size export is refused before anything is written. After writing, `directory_bytes` measures what
actually landed on disk (the variables/ directory and the whole SavedModel) for the report.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, List, Sequence

import numpy as np
import tensorflow as tf

DEFAULT_BUDGET_BYTES = 10**9


class ModelTooLargeError(ValueError):
  """The export's components would store more bytes than the budget allows; nothing was written."""


@dataclasses.dataclass(frozen=True)
class ComponentSize:
  """One stored part of an export: a Keras model's weights, a tree model's files, ...

  num_params: stored values (0 for parts measured only in bytes, e.g. a TF-DF model's asset files).
  stored_bytes: bytes the part adds to the export (variables as stored, or asset files).
  storage: how the values are stored, e.g. "float32", "float16", "assets".
  """

  name: str
  num_params: int
  stored_bytes: int
  storage: str

  @classmethod
  def from_variables(cls, name: str, variables: Iterable, storage_dtype=None) -> "ComponentSize":
    """Size of `variables` saved as `storage_dtype` (default: each variable's own dtype)."""
    num_params = stored_bytes = 0
    dtypes = set()
    for variable in variables:
      dtype = tf.as_dtype(storage_dtype or variable.dtype)
      count = int(np.prod(variable.shape))
      num_params += count
      stored_bytes += count * dtype.size
      dtypes.add(dtype.name)
    return cls(name, num_params, stored_bytes, "+".join(sorted(dtypes)) or "empty")

  @classmethod
  def from_directory(cls, name: str, path: str) -> "ComponentSize":
    """A part stored as files, e.g. a TF-DF model's assets: its bytes on disk."""
    return cls(name, 0, directory_bytes(path), "assets")


@dataclasses.dataclass(frozen=True)
class SizeAccount:
  """Per-component sizes, their total and the budget they were checked against."""

  components: List[ComponentSize]
  budget_bytes: int

  @property
  def total_params(self) -> int:
    return sum(c.num_params for c in self.components)

  @property
  def total_bytes(self) -> int:
    return sum(c.stored_bytes for c in self.components)

  @property
  def within_budget(self) -> bool:
    return self.total_bytes <= self.budget_bytes

  def table(self) -> str:
    """A fixed-width text table, one line per component plus the total and the budget."""
    name_width = max([len(c.name) for c in self.components] + [len("total")])
    lines = [f"{'component':<{name_width}}  {'params':>13}  {'storage':<9}  {'bytes':>15}"]
    for c in self.components:
      lines.append(f"{c.name:<{name_width}}  {c.num_params:>13,}  {c.storage:<9}  {c.stored_bytes:>15,}")
    lines.append(f"{'total':<{name_width}}  {self.total_params:>13,}  {'':<9}  {self.total_bytes:>15,}")
    share = self.total_bytes / self.budget_bytes if self.budget_bytes else float("inf")
    lines.append(f"budget {self.budget_bytes:,} bytes: {share:.1%} used")
    return "\n".join(lines)

  def to_json(self) -> dict:
    return {
      "components": [dataclasses.asdict(c) for c in self.components],
      "total_params": self.total_params,
      "total_bytes": self.total_bytes,
      "budget_bytes": self.budget_bytes,
    }


def check_budget(
  components: Sequence[ComponentSize], budget_bytes: int = DEFAULT_BUDGET_BYTES
) -> SizeAccount:
  """The account of `components`; raises ModelTooLargeError (naming every component) above the budget."""
  names = [c.name for c in components]
  if len(set(names)) != len(names):
    raise ValueError(f"component names must be unique, got {names}")
  account = SizeAccount(list(components), int(budget_bytes))
  if not account.within_budget:
    raise ModelTooLargeError(
      f"export refused: {account.total_bytes:,} bytes of stored parameters exceed the budget of "
      f"{account.budget_bytes:,} bytes by {account.total_bytes - account.budget_bytes:,}\n{account.table()}"
    )
  return account


def directory_bytes(path: str) -> int:
  """Total size of the files under `path` (recursive; local or gs://)."""
  total = 0
  for root, _, files in tf.io.gfile.walk(path):
    for name in files:
      total += tf.io.gfile.stat(os.path.join(root, name)).length
  return total
