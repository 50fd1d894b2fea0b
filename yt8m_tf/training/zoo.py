"""An L1 zoo: a folder of flagfiles, one per model, trained K-fold with OOF and test predictions.

A flagfile holds train_main flags (`--model=ResNetLike`, `--model_params={"inner_size": 1024}`,
`--mixup_alpha=0.4`, ...). Data, folds and directories come from the zoo run, so one flagfile serves
any dataset. Each model lands in `<workdir>/<flagfile stem>/fold_k/` and
`<workdir>/<flagfile stem>/predictions/{oof,test}`; finished folds and stores are not redone.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from yt8m_tf import data, models, progress, settings_record
from yt8m_tf.configs import dataclass_flags
from yt8m_tf.stores import labels as labels_lib
from yt8m_tf.stores import predictions
from yt8m_tf.stores.predictions import STORE_TOP_K
from yt8m_tf.training import experiment, prediction

# Flags a zoo run sets for every member (the data's schema among them); a flagfile may not override them.
_RUN_FIELDS = {"train_dir", "train_data_pattern", "eval_data_pattern", "fold", "num_folds"}
_RUN_FIELDS.update(experiment.SCHEMA_FIELDS)


def parse_flagfile(path: str) -> Dict[str, object]:
  """`--name=value` lines (absl syntax; `#` comments, `--flag`/`--noflag` booleans) -> TrainConfig fields."""
  fields = {f.name: f for f in dataclasses.fields(experiment.TrainConfig)}
  values: Dict[str, object] = {}
  with tf.io.gfile.GFile(path) as f:
    lines = f.read().splitlines()
  for number, line in enumerate(lines, 1):
    line = line.strip()
    if not line or line.startswith("#"):
      continue
    if not line.startswith("--"):
      raise ValueError(f"{path}:{number}: expected --name=value, got {line!r}")
    name, has_value, raw = line[2:].partition("=")
    if not has_value:  # absl boolean forms
      name, raw = (name[2:], "false") if name.startswith("no") and name[2:] in fields else (name, "true")
    if name not in fields or name in _RUN_FIELDS:
      hint = "set by the zoo run" if name in _RUN_FIELDS else "not a train_main flag"
      raise ValueError(f"{path}:{number}: --{name} is {hint}")
    try:
      values[name] = dataclass_flags.parse_value(experiment.TrainConfig, name, raw)
    except ValueError as error:
      raise ValueError(f"{path}:{number}: --{name}: {error}") from None
  if "model" not in values:
    raise ValueError(f"{path}: no --model")
  return values


def member_names(zoo_dir: str) -> List[str]:
  names = sorted(
    os.path.basename(p)[: -len(".flags")] for p in tf.io.gfile.glob(os.path.join(zoo_dir, "*.flags"))
  )
  if not names:
    raise FileNotFoundError(f"no *.flags files in {zoo_dir}")
  return names


def member_config(
  zoo_dir: str,
  name: str,
  workdir: str,
  fold: int,
  num_folds: int,
  train_data_pattern: str,
  schema: data.Schema,
  **overrides,
) -> experiment.TrainConfig:
  values = parse_flagfile(os.path.join(zoo_dir, f"{name}.flags"))
  values.update(overrides)
  return experiment.TrainConfig(
    train_dir=os.path.join(workdir, name, f"fold_{fold}"),
    train_data_pattern=train_data_pattern,
    fold=fold,
    num_folds=num_folds,
    **experiment.schema_settings(schema),
    **values,
  )


def run_zoo(
  zoo_dir: str,
  workdir: str,
  train_data_pattern: str,
  schema: data.Schema,
  num_folds: int = 5,
  test_data_pattern: Optional[str] = None,
  members: Optional[List[str]] = None,
  store_top_k: int = STORE_TOP_K,
  test_labels: Optional[Dict[bytes, np.ndarray]] = None,
  train_labels: Optional[Dict[bytes, np.ndarray]] = None,
  log=print,
  **overrides,
) -> Dict[str, dict]:
  """Trains every member K-fold, predicts OOF and test, and returns {name: {"oof_gap", ...}}.

  With `test_labels` (id -> positive classes) each result also has the test GAP@20 of the mean of
  the K fold models. `train_labels` (the same for the training videos) saves reading them from
  `train_data_pattern`, e.g. when several calls share the training data. `seconds` is the time this call
  spent on the member (folds already finished are not redone, so a resumed member shows only the rest).
  `schema` describes the data (features, class count, frames); every member trains on it.
  """
  labels = train_labels
  results = {}
  names = members or member_names(zoo_dir)

  def fold_config(name: str, fold: int) -> experiment.TrainConfig:
    return member_config(zoo_dir, name, workdir, fold, num_folds, train_data_pattern, schema, **overrides)

  runs_left = [
    (name, fold)
    for name in names
    for fold in range(num_folds)
    if not experiment.training_finished(fold_config(name, fold))
  ]
  shown = progress.Progress(len(runs_left), "[zoo]", "training runs", 0.0, log, bar=False)
  for name in names:
    start = time.perf_counter()
    first = fold_config(name, 0)
    settings = {k: v for k, v in first.to_json().items() if k not in ("train_dir", "fold")}
    settings_record.check_and_record(
      os.path.join(workdir, name),
      {**settings, "test_data_pattern": test_data_pattern, "store_top_k": store_top_k},
      remedy=f"use a new work directory, or delete {os.path.join(workdir, name)} to train {name} again",
      defaults=experiment.field_defaults(),
      ignored=experiment.DISPLAY_SETTINGS,
    )
    for fold in range(num_folds):
      if (name, fold) not in runs_left:
        continue
      config = fold_config(name, fold)
      shown.update(runs_left.index((name, fold)), next=f"{name} fold {fold} ({config.model})")
      experiment.run_training(config)
    if runs_left and runs_left[-1][0] == name:
      shown.update(len(runs_left))
    log(f"[zoo] {name}: predicting")
    indexes = prediction.predict_kfold(
      os.path.join(workdir, name), num_folds, test_data_pattern, store_top_k=store_top_k, log=lambda *_: None
    )
    if labels is None:
      labels = labels_lib.labels_by_id(train_data_pattern, schema, frame_level=first.kind == models.FRAME)
    oof_dir = os.path.join(workdir, name, "predictions", "oof")
    results[name] = {
      "model": first.model,
      "oof_gap": predictions.store_gap(oof_dir, labels),
      "oof_videos": indexes["oof"]["num_videos"],
    }
    if test_labels is not None and test_data_pattern:
      results[name]["test_gap"] = predictions.store_gap(
        os.path.join(workdir, name, "predictions", "test"), test_labels
      )
    results[name]["seconds"] = time.perf_counter() - start
    log(f"[zoo] {name}: OOF GAP@20 {results[name]['oof_gap']:.4f}")
  return results
