"""The second level: TF-DF gradient boosted trees over candidate rows, K-fold on the L1 folds.

For fold k the GBT trains on the rows of the videos of the other folds; early stopping watches an inner
split of those videos (a salted hash of the id picks them), never fold k, whose predictions become the
OOF scores and soft labels (the seed stopped on the OOF fold itself, seed_method.md §9 item 2). Scores
are probabilities, not the seed's 0/1 `predict` decisions (§9 item 1). Test rows get the mean of the K
fold models' probabilities.

Layout of `out_dir`:
  fold_k/model/       the fold's TF-DF SavedModel (loads with `tf_keras.models.load_model`)
  fold_k/scores.npz   its OOF row scores (row positions in the train set) and its test row scores
  fold_k/info.json    written last: trees, rows, timing
  oof_scores.npy, test_scores.npy, soft_labels.npz, test_soft_labels.npz, report.json (written last)

Memory: no candidate set is ever loaded whole. By default (`local_trainer="ydf"`, ydf_local.py) YDF's
dataset of a fold's rows is filled column by column from the part files (one column and one part in
memory at a time; the `max_train_videos` subset is chosen from the ids before any row is read), its
features sorted within each node above a million training rows (presorted below: ~3x faster), and every
unfinished fold trains before any fold model is converted or scores rows (TF's state from those would
sit under the next training). OOF and test rows are scored part by part in batches; the report and soft
labels are built part by part from the score features only, the soft-label store without a sort of the
rows. Measured by bench/bench_stacker_memory.py: a training row costs ~1.6x its raw bytes at the peak
(at 1.9M and 5.8M rows a fold, sorted within nodes). The TF-DF Keras path (`local_trainer="tfdf_keras"`:
rows streamed through tf.data into TF-DF, which holds them twice while training starts, the per-feature
vectors it collects and YDF's dataset built from them) grows the same trees at ~2.7x.

With `engine="ydf_distributed"` a fold's GBT trains on YDF workers instead (distributed.py): the same
rows, streamed into CSV shards under `fold_k/ydf/` that the workers read, the same hyperparameters, but
no early stopping while training (the trees past the inner split's best are cut afterwards); the model
is converted to the same kind of TF-DF Keras SavedModel at `fold_k/model`.

`class_id` is numerical by default, as in the seed. As a categorical feature with 3,862 values TF-DF
1.12 trained 30-100x slower on this machine (48k rows, 37 trees: 1.5 s numerical, ~40-140 s
categorical), for the class prior already carries the per-class signal; `class_id_semantic` switches.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import json
import os
import time
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from yt8m_tf.configs.dataclass_flags import setting
from yt8m_tf.data import folds
from yt8m_tf.files import atomic_open, atomic_save_npy, atomic_save_npz, console_to_file, load_npz
from yt8m_tf.stores import candidates as candidate_store
from yt8m_tf.stores import soft_labels

SEMANTICS = ("numerical", "categorical")
ENGINES = (
  "tfdf",
  "ydf_distributed",
)  # in this process (local_trainer), or YDF's distributed GBT on workers (distributed.py)
# How engine "tfdf" trains: ydf's learner fed column by column (ydf_local.py), or TF-DF's Keras model fed by
# tf.data. The same trees; the first at ~half the peak memory (BUILD_NOTES.md).
LOCAL_TRAINERS = ("ydf", "tfdf_keras")
# YDF's sorting of numerical features: IN_NODE sorts a node's rows when it splits them; PRESORT keeps a
# sorted index of every feature (faster, ~30 bytes a row more). The same splits either way. BY_SIZE:
# PRESORT for a fold of at most PRESORT_MAX_ROWS training rows, IN_NODE above. At the demo's size (~200k
# rows a fold) IN_NODE took the stacker stage from 17 s to 49 s; at millions of rows memory is what binds.
SORTING_STRATEGIES = ("BY_SIZE", "IN_NODE", "PRESORT")
PRESORT_MAX_ROWS = 1_000_000
SOFT_LABELS = "soft_labels.npz"  # OOF probabilities of the training videos
TEST_SOFT_LABELS = "test_soft_labels.npz"  # fold-mean probabilities of the test videos
TRAINING_LOG = (
  "tfdf_training.log"  # in each fold's directory: what TF-DF (or ydf's manager) printed training it
)


@dataclasses.dataclass(frozen=True)
class StackerConfig:
  """GBT settings. The seed: 3000 trees at learning rate 0.01, 31 leaves, early stopping after 30."""

  num_trees: int = setting(300, "GBT trees at most (early stopping on an inner split).")
  shrinkage: float = setting(0.1, "GBT learning rate.")
  max_depth: int = setting(6, "Tree depth.")
  early_stopping_trees: int = setting(30, "Stop after this many trees without inner-split gain.")
  inner_split: int = setting(10, "1 in this many training videos validate early stopping.")
  class_id_semantic: str = setting("numerical", "How the GBT sees the class id.", choices=SEMANTICS)
  max_train_videos: Optional[int] = setting(None, "Per fold, train on a fixed subset of this many videos.")
  num_threads: Optional[int] = setting(None, "TF-DF threads; default: TF-DF's own.")
  seed: int = setting(0, "GBT seed.")
  engine: str = setting(
    "tfdf",
    "tfdf: in this process (see --local_trainer); ydf_distributed: YDF's distributed GBT on --workers "
    "(no early stopping while training: the trees past the inner split's best are cut afterwards).",
    choices=ENGINES,
  )
  workers: Tuple[str, ...] = setting(
    (), "host:port of each running YDF worker, at least 2 (engine ydf_distributed only)."
  )
  local_trainer: str = setting(
    "ydf",
    "Engine tfdf's trainer: ydf (ydf's GBT learner, fed column by column: the same trees as tfdf_keras at "
    "~half its peak memory; numerical class ids only) or tfdf_keras (TF-DF's Keras model fed by tf.data).",
    choices=LOCAL_TRAINERS,
  )
  sorting_strategy: str = setting(
    "BY_SIZE",
    "How YDF sorts numerical features (engine tfdf): IN_NODE (per node; least memory), PRESORT (a "
    "sorted index of every feature: ~3x faster, ~30 bytes a training row more) or BY_SIZE (PRESORT up "
    f"to {PRESORT_MAX_ROWS:,} training rows a fold, IN_NODE above). The same trees.",
    choices=SORTING_STRATEGIES,
  )

  def __post_init__(self):
    if self.class_id_semantic not in SEMANTICS:
      raise ValueError(f"class_id_semantic must be one of {SEMANTICS}, got {self.class_id_semantic!r}")
    if self.inner_split < 2:
      raise ValueError(f"inner_split must be >= 2, got {self.inner_split}")
    if self.engine not in ENGINES:
      raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
    if self.local_trainer not in LOCAL_TRAINERS:
      raise ValueError(f"local_trainer must be one of {LOCAL_TRAINERS}, got {self.local_trainer!r}")
    if self.sorting_strategy not in SORTING_STRATEGIES:
      raise ValueError(f"sorting_strategy must be one of {SORTING_STRATEGIES}, got {self.sorting_strategy!r}")
    if self.engine == "tfdf" and self.local_trainer == "ydf" and self.class_id_semantic != "numerical":
      raise ValueError(
        "local_trainer='ydf' takes class_id_semantic='numerical' only (TF-DF integerizes a categorical "
        "number its own way): use local_trainer='tfdf_keras' for categorical class ids"
      )
    workers = self.workers.split(",") if isinstance(self.workers, str) else self.workers
    object.__setattr__(self, "workers", tuple(w.strip() for w in workers if w.strip()))  # JSON gives lists
    if self.engine == "ydf_distributed":
      _check_distributed(self)
    elif self.workers:
      raise ValueError(f"workers are for engine='ydf_distributed' only, got engine={self.engine!r}")


def _check_distributed(config: StackerConfig) -> None:
  malformed = [w for w in config.workers if not _is_host_port(w)]
  if malformed:
    raise ValueError(f"workers must be host:port addresses, got {malformed}")
  # YDF's distributed GBT gives at least one worker to the inner split's evaluation: one alone cannot train.
  if len(config.workers) < 2:
    raise ValueError(
      f"engine='ydf_distributed' needs at least 2 workers (--workers=host1:port,host2:port), got "
      f"{list(config.workers)}"
    )
  if config.class_id_semantic != "numerical":
    raise ValueError(
      "engine='ydf_distributed' takes class_id_semantic='numerical' only: a categorical class id read from "
      "CSV shards would make the fold model take string class ids"
    )


def _is_host_port(address: str) -> bool:
  host, _, port = address.rpartition(":")
  return bool(host) and port.isdigit() and 0 < int(port) < 65536


def _tfdf():
  # Imported on use: TF-DF pulls in tf_keras and its custom ops, which nothing else needs.
  os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
  import tensorflow_decision_forests as tfdf

  return tfdf


def sorting_strategy(config: StackerConfig, fit_rows) -> str:
  """YDF's sorting_strategy for a fold of `fit_rows` training rows (None: not known before training, as on
  the TF-DF Keras path, which then presorts as it always did)."""
  if config.sorting_strategy != "BY_SIZE":
    return config.sorting_strategy
  return "PRESORT" if fit_rows is None or fit_rows <= PRESORT_MAX_ROWS else "IN_NODE"


def make_model(config: StackerConfig, feature_names):
  tfdf = _tfdf()
  usages = []
  for name in feature_names:
    if name == "class_id" and config.class_id_semantic == "categorical":
      usages.append(
        tfdf.keras.FeatureUsage(
          name, semantic=tfdf.keras.FeatureSemantic.CATEGORICAL, max_vocab_count=100_000
        )
      )
    else:
      usages.append(tfdf.keras.FeatureUsage(name, semantic=tfdf.keras.FeatureSemantic.NUMERICAL))
  kwargs = {} if config.num_threads is None else {"num_threads": config.num_threads}
  return tfdf.keras.GradientBoostedTreesModel(
    num_trees=config.num_trees,
    shrinkage=config.shrinkage,
    max_depth=config.max_depth,
    early_stopping="LOSS_INCREASE",
    early_stopping_num_trees_look_ahead=config.early_stopping_trees,
    features=usages,
    exclude_non_specified_features=True,
    check_dataset=False,  # its check wants a `batch` op; the rows come batched from a generator
    random_seed=config.seed,
    sorting_strategy=sorting_strategy(config, fit_rows=None),
    verbose=0,
    **kwargs,
  )


ROW_BATCH = 65536  # rows per tf.data batch and per prediction call


def _feature_signature(feature_names):
  return {name: tf.TensorSpec([None], tf.float32) for name in feature_names}


def _row_batches(candidate_dir: str, keep_videos: np.ndarray, feature_names, with_target: bool):
  """The rows of the videos where `keep_videos` [all videos of the set] is True, in the set's row order,
  in batches of ROW_BATCH: (features, target) or features. One part file is in memory at a time."""
  first_video = 0
  for part in candidate_store.read_candidates(candidate_dir, feature_names):
    keep = keep_videos[first_video : first_video + len(part.ids)]
    first_video += len(part.ids)
    rows = np.flatnonzero(keep[part.row_video])
    for start in range(0, len(rows), ROW_BATCH):
      batch = rows[start : start + ROW_BATCH]
      features = {name: part.features[name][batch].astype(np.float32, copy=False) for name in feature_names}
      yield (features, part.target[batch].astype(np.int64)) if with_target else features


def _rows_dataset(candidate_dir: str, keep_videos: np.ndarray, feature_names) -> tf.data.Dataset:
  """Labeled rows streamed from the part files: TF-DF copies them batch by batch into its own training
  format, and no other copy of the fold's rows exists (no numpy copy, no dataset constant)."""
  signature = (_feature_signature(feature_names), tf.TensorSpec([None], tf.int64))
  return tf.data.Dataset.from_generator(
    lambda: _row_batches(candidate_dir, keep_videos, feature_names, with_target=True),
    output_signature=signature,
  )


def predict_rows(model, candidate_dir: str, feature_names, keep_videos: Optional[np.ndarray] = None):
  """[rows] probabilities of the rows of the videos where `keep_videos` is True (default: all), in the
  set's row order, part by part. Calls the model in a tf.function: ~10x `predict` on CPU (stack_notes
  §6d); its signature takes any batch length, so it is traced once."""
  call = tf.function(
    lambda features: model(features, training=False),
    input_signature=[_feature_signature(feature_names)],
  )
  if keep_videos is None:
    keep_videos = np.ones(sum(len(ids) for ids in candidate_store.read_video_ids(candidate_dir)), bool)
  outputs = [
    np.asarray(call(batch)).reshape(-1)
    for batch in _row_batches(candidate_dir, keep_videos, feature_names, with_target=False)
  ]
  return np.concatenate(outputs) if outputs else np.zeros([0], np.float32)


def inner_split_mask(ids: np.ndarray, inner_split: int) -> np.ndarray:
  """True for the 1-in-`inner_split` videos that validate early stopping: a hash of the salted id, so
  the choice is independent of the fold assignment."""
  return folds.fold_of(np.char.add(ids.astype(np.bytes_), b"/inner"), inner_split) == 0


def training_videos(ids: np.ndarray, in_training_folds: np.ndarray, config: StackerConfig) -> np.ndarray:
  """[videos] mask of the videos a fold model trains on: those of the training folds, or, with
  `max_train_videos`, a fixed subset of them (the lowest hash buckets of the ids), chosen before any row
  is read."""
  if config.max_train_videos is None or in_training_folds.sum() <= config.max_train_videos:
    return in_training_folds
  buckets = folds.fold_of(np.char.add(ids[in_training_folds].astype(np.bytes_), b"/subset"), 1 << 20)
  chosen = in_training_folds.copy()
  chosen[in_training_folds] = buckets < np.sort(buckets)[config.max_train_videos - 1] + 1
  return chosen


def train_fold(
  candidate_dir: str,
  ids: np.ndarray,
  train_videos: np.ndarray,
  config: StackerConfig,
  feature_names,
  fold_dir: Optional[str] = None,
):
  """A GBT fitted on the rows of `train_videos` (of the training folds) of the set in `candidate_dir`,
  whose ids are `ids`; early-stopped on an inner split of those videos. The ydf_distributed engine keeps
  its shards and working files under `fold_dir` (required there; see distributed.train_fold)."""
  if config.engine == "ydf_distributed":
    from yt8m_tf.stacking import distributed  # ydf's distributed learner, imported on use

    if fold_dir is None:
      raise ValueError("engine='ydf_distributed' needs a fold_dir for its shards and working directory")
    return distributed.train_fold(candidate_dir, ids, train_videos, config, feature_names, fold_dir)
  if config.local_trainer == "ydf":
    from yt8m_tf.stacking import ydf_local  # ydf's learner, imported on use

    if fold_dir is None:
      raise ValueError("local_trainer='ydf' needs a fold_dir for the model's conversion")
    return ydf_local.train_fold(candidate_dir, ids, train_videos, config, feature_names, fold_dir)
  inner = inner_split_mask(ids, config.inner_split)
  fit_videos, valid_videos = train_videos & ~inner, train_videos & inner
  model = make_model(config, feature_names)
  model.fit(
    _rows_dataset(candidate_dir, fit_videos, feature_names),
    validation_data=_rows_dataset(candidate_dir, valid_videos, feature_names),
    verbose=0,
  )
  info = {
    "fit_videos": int(fit_videos.sum()),
    "fit_rows": int(model.num_training_examples),
    "inner_videos": int(valid_videos.sum()),
    "trees": int(model.make_inspector().num_trees()),
  }
  return model, info


def run_stacking(
  train_candidates: str,
  out_dir: str,
  num_folds: int,
  num_classes: int,
  config: StackerConfig = StackerConfig(),
  test_candidates: Optional[str] = None,
  log=print,
) -> dict:
  """K-fold GBT over the train candidate rows; OOF and test scores, the soft-label store, GAP report.

  Finished folds are kept (an interrupted run resumes at the first unfinished fold). Memory: the ids of
  the videos, TF-DF's copies of one fold's training rows, one part file and the scores; rows are read from
  the part files fold by fold, streamed into TF-DF.
  """
  with _large_blocks_returned_when_freed():
    return _run_stacking(train_candidates, out_dir, num_folds, num_classes, config, test_candidates, log)


def _run_stacking(train_candidates, out_dir, num_folds, num_classes, config, test_candidates, log):
  report_path = os.path.join(out_dir, "report.json")
  if tf.io.gfile.exists(report_path):
    with tf.io.gfile.GFile(report_path) as f:
      return json.load(f)
  index = candidate_store.read_index(train_candidates)
  if not index["labeled"]:
    raise ValueError(f"{train_candidates}: the stacker trains on labeled candidates")
  feature_names = index["features"]
  ids = np.concatenate(candidate_store.read_video_ids(train_candidates))
  video_fold = folds.fold_of(ids, num_folds)
  num_test_rows = candidate_store.read_index(test_candidates)["rows"] if test_candidates else 0
  test_scores = np.zeros(num_test_rows, np.float64)
  fold_scores, fold_infos = [], []
  fitted = _fit_folds_first(train_candidates, ids, video_fold, config, feature_names, out_dir, num_folds)
  for k in range(num_folds):
    fold_dir = os.path.join(out_dir, f"fold_{k}")
    info_path = os.path.join(fold_dir, "info.json")
    if not tf.io.gfile.exists(info_path):
      start = time.time()
      tf.io.gfile.makedirs(fold_dir)
      held_out = video_fold == k
      with console_to_file(os.path.join(fold_dir, TRAINING_LOG)):  # YDF's training log, hundreds of lines
        if k in fitted:  # trained above (local_trainer="ydf"): converted here, then it scores
          from yt8m_tf.stacking import ydf_local

          gbt, info, fit_seconds = fitted.pop(k)
          start -= fit_seconds
          model = ydf_local.to_keras(gbt, os.path.join(fold_dir, ydf_local.FOLD_FILES))
          del gbt
        else:
          train_videos = training_videos(ids, ~held_out, config)
          model, info = train_fold(train_candidates, ids, train_videos, config, feature_names, fold_dir)
        scores = {"oof": predict_rows(model, train_candidates, feature_names, held_out)}
        if test_candidates:
          scores["test"] = predict_rows(model, test_candidates, feature_names)
        _save_model(model, os.path.join(fold_dir, "model"))
        del model
        _forget_fold_models()
        if config.engine == "ydf_distributed" or config.local_trainer == "ydf":
          from yt8m_tf.stacking import ydf_local

          ydf_local.remove_fold_files(fold_dir)  # the converted model that `model` was loaded from
      atomic_save_npz(os.path.join(fold_dir, "scores.npz"), **scores)
      info.update(
        fold=k,
        seconds=round(time.time() - start, 1),
        oof_gap=_oof_gap(train_candidates, held_out, scores["oof"]),
      )
      with atomic_open(info_path) as f:
        json.dump(info, f, indent=1)
      log(
        f"[stacker] fold {k}: {info['trees']} trees, OOF GAP@20 {info['oof_gap']:.4f} ({info['seconds']} s)"
      )
    with tf.io.gfile.GFile(info_path) as f:
      fold_infos.append(json.load(f))
    scores = load_npz(os.path.join(fold_dir, "scores.npz"))
    fold_scores.append(scores["oof"])
    if test_candidates:
      test_scores += scores["test"] / num_folds
  oof_scores = _scatter_oof(train_candidates, video_fold, fold_scores)
  del fold_scores
  atomic_save_npy(os.path.join(out_dir, "oof_scores.npy"), oof_scores)
  oof_gaps, store = _gaps_and_soft_labels(train_candidates, oof_scores, index["models"], num_classes)
  store.save(os.path.join(out_dir, SOFT_LABELS))
  report = {
    "folds": fold_infos,
    "config": dataclasses.asdict(config),
    "oof": oof_gaps,
    "soft_labels": {"videos": len(store), "entries": store.nnz},
  }
  del store
  if test_candidates:
    atomic_save_npy(os.path.join(out_dir, "test_scores.npy"), test_scores.astype(np.float32))
    # The teacher's test-set scores, the targets of transductive distillation (TrainConfig.transductive_*).
    test_index = candidate_store.read_index(test_candidates)
    test_gaps, test_store = _gaps_and_soft_labels(
      test_candidates, test_scores, index["models"], num_classes, labeled=test_index["labeled"]
    )
    test_store.save(os.path.join(out_dir, TEST_SOFT_LABELS))
    if test_gaps is not None:
      report["test"] = test_gaps
  with atomic_open(report_path) as f:
    json.dump(report, f, indent=1)
  return report


def _fit_folds_first(train_candidates, ids, video_fold, config, feature_names, out_dir, num_folds) -> dict:
  """With local_trainer='ydf': {fold: (its ydf GBT, info, seconds)} of every unfinished fold, trained
  before any fold model is converted or scores rows. Those TF steps leave ~25 MB of TF's state resident
  for good (measured at 1.9M rows: the next fold's training peaked at 195 MiB instead of 157); trained
  first, no training runs on top of it. The GBTs are small (trees only); an interrupted run trains its
  unfinished folds again. Other trainers: {} (each fold trains, converts and scores in turn)."""
  if config.engine != "tfdf" or config.local_trainer != "ydf":
    return {}
  from yt8m_tf.stacking import ydf_local

  fitted = {}
  for k in range(num_folds):
    fold_dir = os.path.join(out_dir, f"fold_{k}")
    if tf.io.gfile.exists(os.path.join(fold_dir, "info.json")):
      continue
    start = time.time()
    tf.io.gfile.makedirs(fold_dir)
    with console_to_file(os.path.join(fold_dir, TRAINING_LOG)):
      train_videos = training_videos(ids, video_fold != k, config)
      gbt, info = ydf_local.fit_fold(train_candidates, ids, train_videos, config, feature_names)
    fitted[k] = gbt, info, time.time() - start
  return fitted


def _oof_gap(candidate_dir: str, held_out: np.ndarray, oof_scores: np.ndarray) -> float:
  """GAP@20 of the fold's OOF row scores over its held-out videos, part by part."""
  gap, first_video, first_row = candidate_store.RowsGap(), 0, 0
  for part in candidate_store.read_candidates(candidate_dir, features=()):
    keep = held_out[first_video : first_video + len(part.ids)]
    first_video += len(part.ids)
    held_out_part = part.select_videos(keep)
    gap.add(held_out_part, oof_scores[first_row : first_row + len(held_out_part.class_id)])
    first_row += len(held_out_part.class_id)
  return gap.result()


def _scatter_oof(candidate_dir: str, video_fold: np.ndarray, fold_scores) -> np.ndarray:
  """[rows] OOF scores in the set's row order from each fold's scores (its held-out rows, in order)."""
  pieces, first_video, fold_cursor = [], 0, np.zeros(len(fold_scores), np.int64)
  for part in candidate_store.read_candidates(candidate_dir, features=()):
    row_fold = video_fold[first_video : first_video + len(part.ids)][part.row_video]
    first_video += len(part.ids)
    part_scores = np.full(len(row_fold), np.nan, np.float32)
    for k, scores in enumerate(fold_scores):
      in_fold = row_fold == k
      count = int(in_fold.sum())
      part_scores[in_fold] = scores[fold_cursor[k] : fold_cursor[k] + count]
      fold_cursor[k] += count
    pieces.append(part_scores)
  return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def _gaps_and_soft_labels(
  candidate_dir: str, row_scores, model_names, num_classes: int, labeled: bool = True
):
  """(GAP@20 of the stacker's row scores next to each L1 model and the L1 mean on the same rows, or None
  for unlabeled rows; the soft-label store of the row scores), part by part: of the features, only the
  L1 scores are read. Every model's top-20 is among the candidates, so a model's row GAP is its GAP@20.
  The GAPs are final (their top-20 lists freed) before the store is assembled."""
  score_features = [f"score_{name}" for name in model_names] + ["mean_score"]
  gaps = {
    name: candidate_store.RowsGap() for name in ["stacker", *[f"l1/{m}" for m in model_names], "l1_mean"]
  }
  store = soft_labels.VideoGroupedStoreBuilder(num_classes)
  first_row = 0
  for part in candidate_store.read_candidates(candidate_dir, score_features if labeled else ()):
    part_scores = row_scores[first_row : first_row + len(part.class_id)]
    first_row += len(part.class_id)
    store.add(part.ids, part.row_video, part.class_id, part_scores)
    if labeled:
      gaps["stacker"].add(part, part_scores)
      for name in model_names:
        gaps[f"l1/{name}"].add(part, part.features[f"score_{name}"])
      gaps["l1_mean"].add(part, part.features["mean_score"])
  results = {name: gap.result() for name, gap in gaps.items()} if labeled else None
  del gaps
  return results, store.build()


def _forget_fold_models():
  """Frees what a finished fold's model leaves behind (tf_keras's global graph state, traced functions):
  without it a process grew ~45 MB a fold at 1.9M rows."""
  import tf_keras

  tf_keras.backend.clear_session()
  gc.collect()
  _return_free_memory()


def _return_free_memory():
  """glibc's malloc_trim: the free pages of every heap (TF's threads allocate in heaps of their own) go
  back to the system. Without it ~40 MB that a fold's scoring freed stayed resident into the next fold's
  training (measured at 1.9M rows: its peak 195 vs 157 MiB). A no-op off glibc."""
  try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  except (OSError, AttributeError):
    pass


_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter (malloc.h)


@contextlib.contextmanager
def _large_blocks_returned_when_freed(threshold: int = 1 << 20, restored: int = 32 << 20):
  """glibc serves blocks below its adaptive mmap threshold (which climbs to 32 MiB once such a block was
  freed) from heaps that keep freed memory; TF-DF's growing per-feature vectors and the part arrays
  leave hundreds of MB of it, resident as if live (measured: a fold's peak 434 MiB vs 271 MiB at 1.9M
  rows). Inside, blocks of `threshold` bytes and more are mapped, so freeing one unmaps it (and a
  growing vector moves by mremap, without a copy). Afterwards the threshold is `restored`: where the
  adaptive one ends up anyway. A no-op off glibc."""
  try:
    libc = ctypes.CDLL("libc.so.6")
    mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
  except (OSError, AttributeError):
    yield
    return
  mallopt(_M_MMAP_THRESHOLD, threshold)
  try:
    yield
  finally:
    mallopt(_M_MMAP_THRESHOLD, restored)
    malloc_trim(0)


def _save_model(model, path):
  """Saves a TF-DF model directory under a temporary name, then renames it."""
  tmp = path + ".tmp"
  for leftover in (tmp, path):  # from an interrupted run: the fold is redone as a whole
    if tf.io.gfile.exists(leftover):
      tf.io.gfile.rmtree(leftover)
  model.save(tmp)
  tf.io.gfile.rename(tmp, path)
