"""Out-of-fold and test predictions of a K-fold model, in a store that stays small at YouTube-8M scale.

A prediction store is a directory:
  part-00000.npz ...   ids [n] (bytes), classes [n, K] uint16, scores [n, K] float16, best first
                       (or, with full rows, scores [n, C] float16 and no classes)
  index.json           written last: num_videos, num_classes, top_k (None for full rows), parts

Scores are probabilities. At ~5M videos and top 100 a model's store is ~2 GB (400 bytes per video)
instead of 77 GB of float32 rows. Parts are written atomically and the index marks the store complete.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from yt8m_tf import models
from yt8m_tf import files
from yt8m_tf.files import atomic_save_npz
from yt8m_tf.metrics import top_k_per_video
from yt8m_tf.training.evaluation import predict_batches
from yt8m_tf.training.inputs import dataset_for


@dataclasses.dataclass
class PredictionChunk:
  ids: np.ndarray  # [n] bytes
  scores: np.ndarray  # [n, K] or [n, C] float16
  classes: Optional[np.ndarray]  # [n, K] uint16, None for full rows

  def dense(self, num_classes: int) -> np.ndarray:
    """[n, C] float32 scores; classes outside the top K get 0."""
    if self.classes is None:
      return self.scores.astype(np.float32)
    out = np.zeros((len(self.ids), num_classes), np.float32)
    np.put_along_axis(out, self.classes.astype(np.int64), self.scores.astype(np.float32), axis=1)
    return out


class PredictionWriter:
  """Accumulates (ids, probabilities) batches and writes parts of `part_size` videos."""

  def __init__(self, out_dir: str, num_classes: int, top_k: Optional[int] = 100, part_size: int = 100_000):
    if top_k is not None and not 0 < top_k <= num_classes:
      raise ValueError(f"top_k must be in (0, {num_classes}] or None (full rows), got {top_k}")
    if num_classes > np.iinfo(np.uint16).max:
      raise ValueError(f"{num_classes} classes do not fit uint16 class ids")
    self.out_dir = out_dir
    self.num_classes = num_classes
    self.top_k = top_k
    self.part_size = part_size
    self._pending: List[PredictionChunk] = []
    self._pending_videos = 0
    self._parts: List[str] = []
    self._num_videos = 0
    tf.io.gfile.makedirs(out_dir)

  def add(self, ids: Sequence[bytes], probabilities: np.ndarray) -> None:
    probabilities = np.asarray(probabilities)
    ids = np.asarray(ids, dtype=np.bytes_)  # fixed-width bytes: object arrays would need pickle to load
    if probabilities.shape != (len(ids), self.num_classes):
      raise ValueError(f"probabilities shape {probabilities.shape} != ({len(ids)}, {self.num_classes})")
    if self.top_k is None:
      chunk = PredictionChunk(ids, probabilities.astype(np.float16), None)
    else:
      classes, scores = top_k_per_video(probabilities, k=self.top_k)
      chunk = PredictionChunk(ids, scores.astype(np.float16), classes.astype(np.uint16))
    self._pending.append(chunk)
    self._pending_videos += len(ids)
    while self._pending_videos >= self.part_size:
      self._flush(self.part_size)

  def _flush(self, size: int) -> None:
    ids = np.concatenate([c.ids for c in self._pending])
    scores = np.concatenate([c.scores for c in self._pending])
    classes = None if self.top_k is None else np.concatenate([c.classes for c in self._pending])
    name = f"part-{len(self._parts):05d}.npz"
    arrays = {"ids": ids[:size], "scores": scores[:size]}
    if classes is not None:
      arrays["classes"] = classes[:size]
    atomic_save_npz(os.path.join(self.out_dir, name), **arrays)
    self._parts.append(name)
    self._num_videos += min(size, len(ids))
    rest = PredictionChunk(ids[size:], scores[size:], None if classes is None else classes[size:])
    self._pending = [rest] if len(rest.ids) else []
    self._pending_videos = len(rest.ids)

  def close(self) -> dict:
    if self._pending_videos:
      self._flush(self._pending_videos)
    index = {
      "num_videos": self._num_videos,
      "num_classes": self.num_classes,
      "top_k": self.top_k,
      "parts": self._parts,
    }
    files.write_index(self.out_dir, index)
    return index


def is_complete(store_dir: str) -> bool:
  return files.has_index(store_dir)


def read_index(store_dir: str) -> dict:
  return files.read_index(store_dir, "prediction store")


def read_predictions(store_dir: str) -> Iterator[PredictionChunk]:
  """The store's parts in order, one chunk per part."""
  for name in read_index(store_dir)["parts"]:
    arrays = files.load_npz(os.path.join(store_dir, name))
    yield PredictionChunk(arrays["ids"], arrays["scores"], arrays.get("classes"))


def predict_to_store(
  fold_models: Sequence[keras.Model],
  dataset: tf.data.Dataset,
  out_dir: str,
  num_classes: int,
  top_k: Optional[int] = 100,
) -> dict:
  """Writes the predictions of the mean logits of `fold_models` on `dataset` (which keeps `id`).

  One model: its out-of-fold predictions. K models: the test predictions averaged over folds (the
  seed averaged logits, not probabilities).
  """

  @tf.function(reduce_retracing=True)
  def mean_probabilities(features):
    logits = tf.add_n([model(features, training=False) for model in fold_models]) / len(fold_models)
    return tf.sigmoid(logits)

  writer = PredictionWriter(out_dir, num_classes, top_k)
  for features, _ in dataset:
    ids = features["id"].numpy()
    inputs = {k: v for k, v in features.items() if k != "id"}
    writer.add(ids, mean_probabilities(inputs).numpy())
  return writer.close()


def fold_dirs(model_dir: str, num_folds: int) -> List[str]:
  return [os.path.join(model_dir, f"fold_{k}") for k in range(num_folds)]


def predict_kfold(
  model_dir: str,
  num_folds: int,
  test_data_pattern: Optional[str] = None,
  out_dir: Optional[str] = None,
  top_k: Optional[int] = 100,
  batch_size: int = 512,
  log=print,
) -> dict:
  """OOF predictions (each fold's best model on its held-out fold) into `out_dir/oof`, and test
  predictions (mean logits of the K best models) into `out_dir/test`. Finished stores are kept.

  `model_dir/fold_k/` are train_main runs made with `--fold=k --num_folds=num_folds`.
  """
  from yt8m_tf.training import experiment  # local: experiment imports this module's siblings

  out_dir = out_dir or os.path.join(model_dir, "predictions")
  configs = []
  for k, directory in enumerate(fold_dirs(model_dir, num_folds)):
    config = experiment.read_config(directory)
    if config.fold != k or config.num_folds != num_folds:
      raise ValueError(
        f"{directory} was trained with fold={config.fold}, num_folds={config.num_folds}; "
        f"expected fold={k}, num_folds={num_folds}"
      )
    configs.append(config)
  first = configs[0]
  if any(
    (c.model, c.train_data_pattern, c.num_classes)
    != (first.model, first.train_data_pattern, first.num_classes)
    for c in configs
  ):
    raise ValueError(f"the folds under {model_dir} differ in model, data or classes")

  def load(k):
    return models.load_model(os.path.join(fold_dirs(model_dir, num_folds)[k], "best.keras"))

  if top_k is not None:
    top_k = min(top_k, first.num_classes)
  results = {}
  oof_dir = os.path.join(out_dir, "oof")
  if not is_complete(oof_dir):
    writer = PredictionWriter(oof_dir, first.num_classes, top_k)
    for k in range(num_folds):
      model = load(k)
      dataset = dataset_for(
        first.kind,
        first.train_data_pattern,
        batch_size,
        schema=first.schema,
        keep_ids=True,
        num_folds=num_folds,
        folds=[k],
      )
      for ids, probabilities, _ in predict_batches(model, dataset):
        writer.add(ids, probabilities)
      log(f"  oof: fold {k} done")
    writer.close()
  results["oof"] = read_index(oof_dir)
  if test_data_pattern:
    test_dir = os.path.join(out_dir, "test")
    if not is_complete(test_dir):
      dataset = dataset_for(first.kind, test_data_pattern, batch_size, schema=first.schema, keep_ids=True)
      predict_to_store([load(k) for k in range(num_folds)], dataset, test_dir, first.num_classes, top_k)
    results["test"] = read_index(test_dir)
  return results
