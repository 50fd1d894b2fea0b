"""A stacker fold's GBT on YDF's distributed gradient boosted trees (StackerConfig.engine="ydf_distributed").

`ydf.DistributedGradientBoostedTreesLearner` (ydf 0.15.0) trains on YDF workers (`ydf.start_worker(port)`,
e.g. `python -m ydf.learner.worker_main --port=PORT` on each machine) and reads its rows from typed sharded
paths that every worker opens itself, never from memory. So the fold's rows (those the tfdf engine would
train on: `stacker._row_batches` over the same fit and inner-split videos, the same float32 features and
0/1 target) are streamed part by part into CSV shards under the fold directory, then the learner indexes
them into a dataset cache in its working directory, also under the fold directory:

  fold_k/ydf/shards/   fit-NNNNN.csv, valid-NNNNN.csv; index.json written last (complete shards)
  fold_k/ydf/work/     the learner's working directory: dataset cache and checkpoints
  fold_k/ydf/keras/    the trained model converted to a TF-DF Keras SavedModel (`ydf_local.to_keras`)

Both must be on a filesystem that the manager and every worker read at the same path (NFS, or a bucket
that ydf's file layer reads). An interrupted fold resumes: complete shards of the same inputs are reused
and the learner resumes from its last checkpoint in `work/`; other inputs start over. Shards and `work/`
(a full copy of the rows) are removed once the model is converted; `stacker.run_stacking` removes the
rest after saving `fold_k/model`.

Against the tfdf engine: num_trees, shrinkage, max_depth, the seed, numerical features and the missing
value imputation (means over all fit rows, as TF-DF computes them) are the same. What differs:
- No early stopping. YDF 0.15's distributed GBT trains all `num_trees` trees (its source: "TODO: Early
  stopping"); with validation data it only evaluates the loss after each tree, on evaluation workers
  (max(1, 10% of the workers)) that then do not train, hence at least 2 workers. The closest honest
  thing: the inner split is that validation data, and afterwards the trees that TF-DF's LOSS_INCREASE
  early stopping would not have kept are removed (`early_stopped_trees`, the same rule on the same
  losses). The model is what early stopping would keep, but every tree up to `num_trees` is trained.
- `class_id_semantic="categorical"` is refused (StackerConfig): the converted model would take the
  class id as a string.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import socket
import time
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from yt8m_tf import files
from yt8m_tf.stacking import stacker, ydf_local

LABEL = ydf_local.LABEL  # the target's CSV column; no candidate feature has this name
CLASSES = ydf_local.CLASSES  # the label's values in the CSV: the model's probability is that of "1"
SHARD_ROWS = 1 << 20  # rows of one CSV shard at most (~100 MB at 12 features)
# TF-DF GradientBoostedTreesModel's early_stopping_initial_iteration, which the tfdf engine leaves as is:
# no tree before this (0-based) iteration can be the best.
EARLY_STOPPING_INITIAL_ITERATION = 10
FOLD_FILES = ydf_local.FOLD_FILES  # under the fold directory
WORKER_WAIT_S = 120.0  # for workers still starting (a cluster coming up) before a fold is given up


def train_fold(
  candidate_dir: str,
  ids: np.ndarray,
  train_videos: np.ndarray,
  config: stacker.StackerConfig,
  feature_names: Sequence[str],
  fold_dir: str,
):
  """`stacker.train_fold` on `config.workers`: (the fold's TF-DF Keras model, info). The model is loaded
  from `fold_dir/ydf/keras`, which must stay until the model has been saved elsewhere."""
  inner = stacker.inner_split_mask(ids, config.inner_split)
  fit_videos, valid_videos = train_videos & ~inner, train_videos & inner
  root = os.path.join(fold_dir, FOLD_FILES)
  shards_dir, work_dir = os.path.join(root, "shards"), os.path.join(root, "work")
  start = time.time()
  inputs = _fold_inputs(candidate_dir, config, feature_names, fit_videos, valid_videos)
  manifest = files.read_index(shards_dir, "shards") if files.has_index(shards_dir) else None
  if manifest is None or manifest["inputs"] != inputs:
    # Shards of other inputs (or half written), and the learner's cache and checkpoints of them.
    ydf_local.remove(root)
    manifest = _write_shards(
      candidate_dir, fit_videos, valid_videos, feature_names, shards_dir, config, inputs
    )
  shard_seconds = time.time() - start

  start = time.time()
  model = _train(config, feature_names, shards_dir, manifest, work_dir)
  train_seconds = time.time() - start
  if model.num_trees_per_iteration() != 1:
    raise ValueError(f"expected a binary GBT (one tree an iteration), got {model.num_trees_per_iteration()}")
  trained = model.num_trees()
  losses = [entry.evaluation.loss for entry in model.training_logs()] if manifest["valid"] else []
  kept = early_stopped_trees(losses, config.early_stopping_trees) if losses else trained
  for tree in range(trained - 1, kept - 1, -1):
    model.remove_tree(tree)
  keras_model = ydf_local.to_keras(model, root)  # the same conversion as the local ydf trainer's
  for done in (shards_dir, work_dir):
    ydf_local.remove(done)
  info = {
    "engine": config.engine,
    "workers": len(config.workers),
    "fit_videos": int(fit_videos.sum()),
    "fit_rows": manifest["fit_rows"],
    "inner_videos": int(valid_videos.sum()),
    "inner_rows": manifest["valid_rows"],
    "trees": kept,
    "trained_trees": trained,
    "shard_seconds": round(shard_seconds, 1),
    "train_seconds": round(train_seconds, 1),
  }
  return keras_model, info


def early_stopped_trees(
  valid_losses: Sequence[float],
  look_ahead: int,
  initial_iteration: int = EARLY_STOPPING_INITIAL_ITERATION,
) -> int:
  """How many trees YDF's LOSS_INCREASE early stopping (as the tfdf engine runs it) keeps, given the
  validation loss after each tree of a binary GBT: training stops once `look_ahead` trees passed without
  a new lowest loss (counted from `initial_iteration`), and the model is cut to the lowest loss's trees;
  a model stopped before `initial_iteration` + 1 trees is kept whole."""
  best_trees, best_loss, trained = -1, math.inf, 0
  for iteration, loss in enumerate(valid_losses):
    trained = iteration + 1
    if iteration < initial_iteration:
      continue
    if best_trees == -1 or loss < best_loss:
      best_trees, best_loss = trained, loss
    if trained - best_trees >= look_ahead:
      break
  return trained if trained < initial_iteration + 1 else best_trees


def _fold_inputs(candidate_dir, config, feature_names, fit_videos, valid_videos) -> dict:
  """What the shards and the learner's checkpoints are made of: reused only for the same. The worker
  addresses are left out (a fold may resume on replaced machines), their number is not (it shapes the
  shards)."""
  settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("workers", "num_threads")}
  videos = hashlib.sha256(np.packbits(fit_videos).tobytes() + np.packbits(valid_videos).tobytes())
  inputs = {
    "candidates": candidate_dir,
    "features": list(feature_names),
    "config": settings,
    "workers": len(config.workers),
    "videos": videos.hexdigest(),
  }
  return json.loads(json.dumps(inputs))  # as the index reads back


def _write_shards(candidate_dir, fit_videos, valid_videos, feature_names, shards_dir, config, inputs) -> dict:
  """Streams the fit and inner-split rows into CSV shards (one part file and one batch in memory at a
  time); the index, written last, lists them."""
  manifest = {"inputs": inputs}
  for split, videos in (("fit", fit_videos), ("valid", valid_videos)):
    writer = _ShardWriter(shards_dir, split, list(feature_names), width=len(config.workers))
    for features, target in stacker._row_batches(candidate_dir, videos, feature_names, with_target=True):
      writer.add(features, target)
    manifest[split], manifest[f"{split}_rows"] = writer.close(), writer.rows
  files.write_index(shards_dir, manifest)
  return manifest


class _ShardWriter:
  """Rows written across `width` CSV files at once (one per worker: the learner indexes shards in
  parallel, and splits the validation shards among its evaluation workers), each set closed at
  SHARD_ROWS rows a file for the next. Missing values (NaN) are written as `nan`, which YDF reads as
  missing, as TF-DF does NaN; `%.9g` gives back every float32 exactly."""

  def __init__(self, directory: str, prefix: str, feature_names: List[str], width: int):
    self.directory, self.prefix, self.width = directory, prefix, width
    self.feature_names = feature_names
    self.header = ",".join([*feature_names, LABEL]) + "\n"
    self.format = ["%.9g"] * len(feature_names) + ["%d"]
    self.rows = 0
    self._names: List[str] = []
    self._open: List[tf.io.gfile.GFile] = []
    self._rows_per_file: Dict[str, int] = {}
    self._rows_this_set = 0

  def add(self, features: Dict[str, np.ndarray], target: np.ndarray) -> None:
    if not self._open or self._rows_this_set >= SHARD_ROWS:
      self._close_set()
      self._open_set()
    matrix = np.column_stack([*(features[name].astype(np.float64) for name in self.feature_names), target])
    names = self._names[-self.width :]
    for name, handle, chunk in zip(names, self._open, np.array_split(matrix, self.width)):
      if len(chunk):
        text = io.StringIO()
        np.savetxt(text, chunk, fmt=self.format, delimiter=",")
        handle.write(text.getvalue())  # one write a batch: a GFile write per line is slow
        self._rows_per_file[name] += len(chunk)
    self.rows += len(matrix)
    self._rows_this_set += -(-len(matrix) // self.width)

  def close(self) -> List[str]:
    """The names of the shards that hold rows (header-only files are removed)."""
    self._close_set()
    for name in [n for n in self._names if not self._rows_per_file[n]]:
      tf.io.gfile.remove(os.path.join(self.directory, name))
    return [n for n in self._names if self._rows_per_file[n]]

  def _open_set(self) -> None:
    tf.io.gfile.makedirs(self.directory)
    for _ in range(self.width):
      name = f"{self.prefix}-{len(self._names):05d}.csv"
      handle = tf.io.gfile.GFile(os.path.join(self.directory, name), "w")
      handle.write(self.header)
      self._names.append(name)
      self._open.append(handle)
      self._rows_per_file[name] = 0
    self._rows_this_set = 0

  def _close_set(self) -> None:
    for handle in self._open:
      handle.close()
    self._open = []


def _train(config, feature_names, shards_dir, manifest, work_dir):
  """The ydf GBT trained on the workers from the shards, resuming from a checkpoint in `work_dir`."""
  import ydf

  def typed_path(names):
    return "csv:" + ",".join(os.path.join(shards_dir, name) for name in names)

  if not manifest["fit"]:
    raise ValueError("the fold has no training rows")
  _wait_for_workers(config.workers, WORKER_WAIT_S)
  kwargs = {} if config.num_threads is None else {"num_threads": config.num_threads}
  learner = ydf.DistributedGradientBoostedTreesLearner(
    label=LABEL,
    label_classes=CLASSES,
    features=[(name, ydf.Semantic.NUMERICAL) for name in feature_names],
    num_trees=config.num_trees,
    shrinkage=config.shrinkage,
    max_depth=config.max_depth,
    random_seed=config.seed,
    # Missing values are replaced by the feature's mean: over every fit row, as TF-DF computes it
    # (the default would scan the first 100k rows only).
    max_num_scanned_rows_to_compute_statistics=-1,
    workers=list(config.workers),
    working_dir=work_dir,
    resume_training=True,  # an interrupted fold goes on from its last checkpoint
    **kwargs,
  )
  valid = typed_path(manifest["valid"]) if manifest["valid"] else None
  # verbose=2: the manager's C++ log goes to stderr, i.e. to the fold's log file under run_stacking.
  return learner.train(typed_path(manifest["fit"]), valid=valid, verbose=2)


def _wait_for_workers(workers: Sequence[str], timeout_s: float) -> None:
  """Returns once every worker accepts connections; a ConnectionError naming those that did not within
  `timeout_s`. Without it, ydf's manager waits for an unreachable worker without end (no error in 90 s
  here, with no worker at the addresses)."""
  deadline = time.monotonic() + timeout_s
  waiting = list(workers)
  while waiting:
    for address in list(waiting):
      host, _, port = address.rpartition(":")
      try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
          waiting.remove(address)
      except OSError:
        pass
    if waiting and time.monotonic() > deadline:
      raise ConnectionError(f"no YDF worker answers at {waiting} (waited {timeout_s:.0f} s)")
    if waiting:
      time.sleep(0.5)
