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

`class_id` is numerical by default, as in the seed. As a categorical feature with 3,862 values TF-DF
1.12 trained 30-100x slower on this machine (48k rows, 37 trees: 1.5 s numerical, ~40-140 s
categorical), for the class prior already carries the per-class signal; `class_id_semantic` switches.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from yt8m_tf.configs.dataclass_flags import setting
from yt8m_tf.data import folds
from yt8m_tf.files import atomic_open, atomic_save_npy, atomic_save_npz, console_to_file, load_npz
from yt8m_tf.stores import candidates as candidate_store
from yt8m_tf.stores.soft_labels import SoftLabelStore

SEMANTICS = ("numerical", "categorical")
SOFT_LABELS = "soft_labels.npz"  # OOF probabilities of the training videos
TEST_SOFT_LABELS = "test_soft_labels.npz"  # fold-mean probabilities of the test videos
TRAINING_LOG = "tfdf_training.log"  # in each fold's directory: what TF-DF printed while training it


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

  def __post_init__(self):
    if self.class_id_semantic not in SEMANTICS:
      raise ValueError(f"class_id_semantic must be one of {SEMANTICS}, got {self.class_id_semantic!r}")
    if self.inner_split < 2:
      raise ValueError(f"inner_split must be >= 2, got {self.inner_split}")


def _tfdf():
  # Imported on use: TF-DF pulls in tf_keras and its custom ops, which nothing else needs.
  os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
  import tensorflow_decision_forests as tfdf

  return tfdf


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
    random_seed=config.seed,
    verbose=0,
    **kwargs,
  )


def _rows_dataset(chunk: candidate_store.CandidateChunk, batch_size: int = 65536, with_target: bool = True):
  features = {k: v.astype(np.float32) for k, v in chunk.features.items()}
  if with_target:
    return tf.data.Dataset.from_tensor_slices((features, chunk.target.astype(np.int64))).batch(batch_size)
  return tf.data.Dataset.from_tensor_slices(features).batch(batch_size)


def predict_rows(model, chunk: candidate_store.CandidateChunk, batch_size: int = 65536) -> np.ndarray:
  """[rows] probabilities. Calls the model in a tf.function: ~10x `predict` on CPU (stack_notes §6d)."""
  call = tf.function(lambda features: model(features, training=False))
  outputs = [np.asarray(call(batch)).reshape(-1) for batch in _rows_dataset(chunk, batch_size, False)]
  return np.concatenate(outputs) if outputs else np.zeros([0], np.float32)


def inner_split_mask(ids: np.ndarray, inner_split: int) -> np.ndarray:
  """True for the 1-in-`inner_split` videos that validate early stopping: a hash of the salted id, so
  the choice is independent of the fold assignment."""
  return folds.fold_of(np.char.add(ids.astype(np.bytes_), b"/inner"), inner_split) == 0


def train_fold(train: candidate_store.CandidateChunk, config: StackerConfig, feature_names):
  """A GBT fitted on `train` (all its videos are training folds), early-stopped on an inner split."""
  if config.max_train_videos is not None and len(train.ids) > config.max_train_videos:
    # The lowest hash buckets: a fixed, id-determined subset.
    buckets = folds.fold_of(np.char.add(train.ids.astype(np.bytes_), b"/subset"), 1 << 20)
    keep = buckets < np.sort(buckets)[config.max_train_videos - 1] + 1
    train = train.select_videos(keep)
  inner = inner_split_mask(train.ids, config.inner_split)
  fit_rows, valid_rows = train.select_videos(~inner), train.select_videos(inner)
  model = make_model(config, feature_names)
  model.fit(_rows_dataset(fit_rows), validation_data=_rows_dataset(valid_rows), verbose=0)
  info = {
    "fit_videos": int(len(fit_rows.ids)),
    "fit_rows": int(len(fit_rows.class_id)),
    "inner_videos": int(len(valid_rows.ids)),
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

  Finished folds are kept (an interrupted run resumes at the first unfinished fold).
  """
  report_path = os.path.join(out_dir, "report.json")
  if tf.io.gfile.exists(report_path):
    with tf.io.gfile.GFile(report_path) as f:
      return json.load(f)
  index = candidate_store.read_index(train_candidates)
  if not index["labeled"]:
    raise ValueError(f"{train_candidates}: the stacker trains on labeled candidates")
  train = candidate_store.load_candidates(train_candidates)
  test = candidate_store.load_candidates(test_candidates) if test_candidates else None
  feature_names = index["features"]
  video_fold = folds.fold_of(train.ids, num_folds)
  row_fold = video_fold[train.row_video]
  oof_scores = np.full(len(train.class_id), np.nan, np.float32)
  test_scores = np.zeros(0 if test is None else len(test.class_id), np.float64)
  fold_infos = []
  for k in range(num_folds):
    fold_dir = os.path.join(out_dir, f"fold_{k}")
    info_path = os.path.join(fold_dir, "info.json")
    if not tf.io.gfile.exists(info_path):
      start = time.time()
      tf.io.gfile.makedirs(fold_dir)
      held_out = train.select_videos(video_fold == k)
      with console_to_file(os.path.join(fold_dir, TRAINING_LOG)):  # YDF's training log, hundreds of lines
        model, info = train_fold(train.select_videos(video_fold != k), config, feature_names)
        scores = {"oof": predict_rows(model, held_out)}
        if test is not None:
          scores["test"] = predict_rows(model, test)
        _save_model(model, os.path.join(fold_dir, "model"))
      atomic_save_npz(os.path.join(fold_dir, "scores.npz"), **scores)
      info.update(
        fold=k,
        seconds=round(time.time() - start, 1),
        oof_gap=candidate_store.rows_gap(held_out, scores["oof"]),
      )
      with atomic_open(info_path) as f:
        json.dump(info, f, indent=1)
      log(
        f"[stacker] fold {k}: {info['trees']} trees, OOF GAP@20 {info['oof_gap']:.4f} ({info['seconds']} s)"
      )
    with tf.io.gfile.GFile(info_path) as f:
      fold_infos.append(json.load(f))
    scores = load_npz(os.path.join(fold_dir, "scores.npz"))
    oof_scores[row_fold == k] = scores["oof"]
    if test is not None:
      test_scores += scores["test"] / num_folds
  atomic_save_npy(os.path.join(out_dir, "oof_scores.npy"), oof_scores)
  store = SoftLabelStore.from_rows(
    train.ids[train.row_video], train.class_id, oof_scores, num_classes, all_video_ids=train.ids
  )
  store.save(os.path.join(out_dir, SOFT_LABELS))
  report = {
    "folds": fold_infos,
    "config": dataclasses.asdict(config),
    "oof": compare_gap(train, oof_scores, index["models"]),
    "soft_labels": {"videos": len(store), "entries": store.nnz},
  }
  if test is not None:
    atomic_save_npy(os.path.join(out_dir, "test_scores.npy"), test_scores.astype(np.float32))
    # The teacher's test-set scores, the targets of transductive distillation (TrainConfig.transductive_*).
    SoftLabelStore.from_rows(
      test.ids[test.row_video], test.class_id, test_scores, num_classes, all_video_ids=test.ids
    ).save(os.path.join(out_dir, TEST_SOFT_LABELS))
    if test.target is not None:
      report["test"] = compare_gap(test, test_scores, index["models"])
  with atomic_open(report_path) as f:
    json.dump(report, f, indent=1)
  return report


def compare_gap(chunk: candidate_store.CandidateChunk, stacker_scores, model_names) -> Dict[str, float]:
  """GAP@20 of the stacker next to each L1 model and the L1 mean, all on the same candidate rows (every
  model's top-20 is among the candidates, so a model's row GAP is its own GAP@20)."""
  result = {"stacker": candidate_store.rows_gap(chunk, stacker_scores)}
  for name in model_names:
    result[f"l1/{name}"] = candidate_store.rows_gap(chunk, chunk.features[f"score_{name}"])
  result["l1_mean"] = candidate_store.rows_gap(chunk, chunk.features["mean_score"])
  return result


def _save_model(model, path):
  """Saves a TF-DF model directory under a temporary name, then renames it."""
  tmp = path + ".tmp"
  for leftover in (tmp, path):  # from an interrupted run: the fold is redone as a whole
    if tf.io.gfile.exists(leftover):
      tf.io.gfile.rmtree(leftover)
  model.save(tmp)
  tf.io.gfile.rename(tmp, path)
