"""A work directory records the settings that made it; a run with other settings is refused.

Reusing finished work is only right when it was made with the settings of the run that reuses it. Each
kind of work directory (the pipeline's workdir, a zoo member, a stacking output) keeps a human-readable
JSON record of its settings; `check_and_record` compares a run's settings with it and, when they differ,
raises `SettingsChanged` listing each changed setting with its old and new value.
"""

from __future__ import annotations

import json
import os
from typing import List, Mapping, NamedTuple, Optional, Sequence

import tensorflow as tf

from yt8m_tf.files import atomic_open

SETTINGS_FILE = "settings.json"


class Change(NamedTuple):
  name: str  # dotted for nested settings: "stacker.num_trees"
  before: object
  after: object

  def __str__(self) -> str:
    return f"{self.name}: {self.before!r} -> {self.after!r}"


class SettingsChanged(ValueError):
  """A directory holds work made with other settings; `changes` lists them."""

  def __init__(self, message: str, changes: List[Change]):
    super().__init__(message)
    self.changes = changes


def as_json(settings: Mapping) -> dict:
  """`settings` as JSON will read them back (tuples become lists), so records compare equal to runs."""
  return json.loads(json.dumps(settings, sort_keys=True))


def changes(recorded: Mapping, current: Mapping, prefix: str = "") -> List[Change]:
  """Settings whose values differ, nested dicts compared key by key; a missing key reads as None."""
  found = []
  for key in sorted(set(recorded) | set(current)):
    before, after = recorded.get(key), current.get(key)
    if isinstance(before, dict) and isinstance(after, dict):
      found += changes(before, after, prefix=f"{prefix}{key}.")
    elif before != after:
      found.append(Change(prefix + key, before, after))
  return found


def read(directory: str) -> Optional[dict]:
  path = os.path.join(directory, SETTINGS_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def write(directory: str, settings: Mapping) -> None:
  tf.io.gfile.makedirs(directory)
  with atomic_open(os.path.join(directory, SETTINGS_FILE)) as f:
    json.dump(as_json(settings), f, indent=1, sort_keys=True)
    f.write("\n")


def with_defaults(recorded: Mapping, defaults: Mapping) -> dict:
  """`recorded` with each setting it lacks read as its value in `defaults`, nested dicts key by key: a
  setting added after the record was made had its default then."""
  filled = dict(recorded)
  for key, default in as_json(dict(defaults)).items():
    if key not in filled:
      filled[key] = default
    elif isinstance(filled[key], dict) and isinstance(default, dict):
      filled[key] = with_defaults(filled[key], default)
  return filled


def check_and_record(
  directory: str, settings: Mapping, remedy: str, defaults: Mapping = (), ignored: Sequence[str] = ()
) -> None:
  """Records `settings` in `directory` when it has none; refuses (SettingsChanged, naming every changed
  setting, then `remedy`: how to proceed) when it records others. A setting the record lacks reads as its
  value in `defaults`: a setting added after the record was made had that value then. `ignored` settings
  (how a run is shown, not what it computes) are neither recorded nor compared."""
  current = {k: v for k, v in as_json(settings).items() if k not in ignored}
  recorded = read(directory)
  if recorded is None:
    write(directory, current)
    return
  recorded = {k: v for k, v in with_defaults(recorded, defaults).items() if k not in ignored}
  found = changes(recorded, current)
  if found:
    listed = "; ".join(str(change) for change in found)
    raise SettingsChanged(f"{directory} holds work made with other settings ({listed}); {remedy}", found)
