"""A stacker fold's GBT trained by ydf in this process (StackerConfig.local_trainer="ydf", the default).

TF-DF's Keras GradientBoostedTreesModel wraps YDF's GBT learner; ydf 0.15's GradientBoostedTreesLearner is
that learner without the Keras layer. Given the same rows in the same order and the same hyperparameters
(`stacker.make_model`'s: num_trees, shrinkage, max_depth, LOSS_INCREASE early stopping on the inner split,
the seed, numerical features whose missing values take the mean over all fit rows), it grows the same
trees: tests/test_stacking.py compares it with the TF-DF Keras path (early stopping included), and
bench/bench_stacker_memory.py's 30k- and 90k-video sets (0.96M and 2.9M rows, 3 folds of 20 trees) gave
the same OOF and test scores to the last bit, and the same soft-label stores.

What differs is memory. TF-DF's `fit` gathers every row into per-feature vectors, then builds YDF's
dataset from them while still holding them, and its learner presorts each feature. Here YDF's dataset is
filled one column at a time, through the mapping that ydf's own in-memory path reads (`_Columns`: a
column is read from the part files when ydf asks for it, so only YDF's float32 copy of the rows and one
column exist), and above a million training rows the features are sorted within each node
(`StackerConfig.sorting_strategy`, BY_SIZE by default: the same splits as a presorted index, which costs
~30 bytes a row more but runs ~3x faster, so smaller folds keep it; BUILD_NOTES.md has the figures). The trained model is converted (`to_keras`) into the same kind of TF-DF Keras SavedModel that
the TF-DF path saves at `fold_k/model`, under `fold_k/ydf/` (removed once that is saved).

Not supported: `class_id_semantic="categorical"` (TF-DF integerizes a categorical number with its own
offset, which the converted model would not reproduce): StackerConfig asks for local_trainer="tfdf_keras".
"""

from __future__ import annotations

import collections.abc
import os
import time
import uuid
from typing import Sequence

import numpy as np
import tensorflow as tf

from yt8m_tf.stacking import stacker
from yt8m_tf.stores import candidates as candidate_store

LABEL = "stacker_target"  # the label column; no candidate feature has this name
CLASSES = ["0", "1"]  # the label's values: the model's probability is that of "1"
FOLD_FILES = "ydf"  # under the fold directory: the saved ydf model and its Keras conversion


def train_fold(
  candidate_dir: str,
  ids: np.ndarray,
  train_videos: np.ndarray,
  config: stacker.StackerConfig,
  feature_names: Sequence[str],
  fold_dir: str,
):
  """`stacker.train_fold` with ydf's learner: (the fold's TF-DF Keras model, info). The model is loaded
  from `fold_dir/ydf/keras`, which must stay until the model has been saved elsewhere."""
  model, info = fit_fold(candidate_dir, ids, train_videos, config, feature_names)
  return to_keras(model, os.path.join(fold_dir, FOLD_FILES)), info


def fit_fold(
  candidate_dir: str,
  ids: np.ndarray,
  train_videos: np.ndarray,
  config: stacker.StackerConfig,
  feature_names: Sequence[str],
):
  """(The fold's ydf GBT, info): trained on the rows of `train_videos`, early-stopped on their inner
  split, as `stacker.train_fold`; no TF work (`to_keras` makes the fold model of it)."""
  import ydf

  inner = stacker.inner_split_mask(ids, config.inner_split)
  fit_videos, valid_videos = train_videos & ~inner, train_videos & inner
  start = time.time()
  fit = _dataset(candidate_dir, fit_videos, feature_names)
  if not _num_rows(fit):
    raise ValueError("the fold has no training rows")
  valid = _dataset(candidate_dir, valid_videos, feature_names, fit.data_spec())
  fit_rows, valid_rows = _num_rows(fit), _num_rows(valid)
  if not valid_rows:
    valid = None  # nothing to stop early on (tiny sets): every tree is kept
  read_seconds = time.time() - start
  sorting = stacker.sorting_strategy(config, fit_rows)
  kwargs = {} if config.num_threads is None else {"num_threads": config.num_threads}
  learner = ydf.GradientBoostedTreesLearner(
    label=LABEL,
    num_trees=config.num_trees,
    shrinkage=config.shrinkage,
    max_depth=config.max_depth,
    early_stopping="LOSS_INCREASE" if valid is not None else "NONE",
    early_stopping_num_trees_look_ahead=config.early_stopping_trees,
    random_seed=config.seed,
    sorting_strategy=sorting,
    **kwargs,
  )
  start = time.time()
  with _cc_log_on_stderr():
    model = learner.train(fit, valid=valid, verbose=1)
  train_seconds = time.time() - start
  del fit, valid  # YDF's copies of the rows
  info = {
    "engine": config.engine,
    "local_trainer": config.local_trainer,
    "fit_videos": int(fit_videos.sum()),
    "fit_rows": int(fit_rows),
    "inner_videos": int(valid_videos.sum()),
    "inner_rows": int(valid_rows),
    "sorting_strategy": sorting,
    "trees": int(model.num_trees()),
    "read_seconds": round(read_seconds, 1),
    "train_seconds": round(train_seconds, 1),
  }
  return model, info


def to_keras(model, root: str):
  """The ydf GBT `model` as a TF-DF Keras model (`tfdf.keras.yggdrasil_model_to_keras_model`), loaded
  from `root/keras`, which must stay until it has been saved elsewhere; the ydf copy is removed.

  Its files get a prefix of their own, as TF-DF's own models' do: unprefixed, every fold model's assets
  have the same names, and a SavedModel holding several of them (the large-ensemble export) keeps one
  fold's files for all (measured: its test GAP 0.9329 against the stacker's 0.9350)."""
  import tf_keras
  import ydf

  ydf_dir, keras_dir = os.path.join(root, "ydf_model"), os.path.join(root, "keras")
  for leftover in (ydf_dir, keras_dir):  # of an interrupted conversion (or fold)
    remove(leftover)
  prefix = uuid.uuid4().hex[:16]  # TF-DF's form: 16 hex digits
  model.save(ydf_dir, advanced_options=ydf.ModelIOOptions(file_prefix=prefix))
  stacker._tfdf().keras.yggdrasil_model_to_keras_model(ydf_dir, keras_dir, file_prefix=prefix, verbose=0)
  keras_model = tf_keras.models.load_model(keras_dir)
  remove(ydf_dir)
  return keras_model


def _cc_log_on_stderr():
  """YDF's C++ training log, on file descriptor 2 (the fold's log file under run_stacking, as TF-DF's
  was). ydf's verbose=2 does that only where sys.stdout was the terminal when ydf was imported; elsewhere
  (a test runner's capture, a notebook) it pipes the log into Python's streams (wurlitzer), past
  `files.console_to_file`, or fails where those streams are fds 1 and 2 themselves."""
  from ydf.utils import log

  return log._show_cc_logs()


def remove_fold_files(fold_dir: str) -> None:
  """Removes what `train_fold` left in `fold_dir` (the converted model), once the fold's model is saved."""
  remove(os.path.join(fold_dir, FOLD_FILES))


def remove(path: str) -> None:
  if tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path) if tf.io.gfile.isdir(path) else tf.io.gfile.remove(path)


class _Columns(collections.abc.Mapping):
  """The rows of the videos where `keep_videos` is True, in the set's row order, as a mapping from column
  name to values that reads a column from the part files each time it is asked for (ydf asks once per
  column and copies it before the next): the float32 features and the label as b"0"/b"1"."""

  def __init__(self, candidate_dir: str, keep_videos: np.ndarray, feature_names: Sequence[str]):
    self.candidate_dir, self.keep_videos = candidate_dir, keep_videos
    # YDF breaks ties between equally good splits by column order: TF-DF's columns come in name order
    # (the order of a tf.data dict's keys), so these do too, and the same trees grow.
    self.names = [*sorted(feature_names), LABEL]

  def __iter__(self):
    return iter(self.names)

  def __len__(self):
    return len(self.names)

  def __contains__(self, name):  # Mapping's own would read the column
    return name in self.names

  def __getitem__(self, name):
    if name not in self.names:
      raise KeyError(name)
    is_label = name == LABEL
    labels = np.array([value.encode() for value in CLASSES])
    pieces, first_video = [], 0
    for part in candidate_store.read_candidates(self.candidate_dir, [] if is_label else [name]):
      keep = self.keep_videos[first_video : first_video + len(part.ids)][part.row_video]
      first_video += len(part.ids)
      if is_label:
        pieces.append(labels[part.target[keep].astype(np.intp)])
      else:
        pieces.append(part.features[name][keep].astype(np.float32, copy=False))
    if not pieces:
      return np.zeros(0, labels.dtype if is_label else np.float32)
    return np.concatenate(pieces)


def _dataset(candidate_dir, keep_videos, feature_names, data_spec=None):
  """YDF's dataset of the rows of `keep_videos`, column by column (`_Columns`), made by ydf 0.15's own
  in-memory path: with `data_spec` (the fit rows'), as ydf makes a validation dataset; else with the data
  spec inference that `learner.train` applies to a dict of columns (statistics over every row, as TF-DF
  computes them)."""
  import ydf
  from ydf.dataset import dataset as ydf_dataset

  columns = _Columns(candidate_dir, keep_videos, feature_names)
  inference_args = None
  if data_spec is None:
    guide = ydf.GradientBoostedTreesLearner(
      label=LABEL,
      label_classes=CLASSES,
      features=[(name, ydf.Semantic.NUMERICAL) for name in columns.names[:-1]],  # in the columns' order
      max_num_scanned_rows_to_compute_statistics=-1,
    )
    inference_args = guide._build_data_spec_args()
  return ydf_dataset.create_vertical_dataset_from_dict_of_values(
    columns, {}, None, inference_args=inference_args, data_spec=data_spec, label=LABEL
  )


def _num_rows(dataset) -> int:
  return int(dataset._dataset.nrow())
