"""Prediction stores: a model's out-of-fold or test probabilities, small at YouTube-8M scale.

A prediction store is a directory:
  part-00000.npz ...   ids [n] (bytes), classes [n, K] uint16, scores [n, K] float16, best first
                       (or, with full rows, scores [n, C] float16 and no classes)
  index.json           written last: num_videos, num_classes, top_k (K, the store's top-k; None for full
                       rows), parts

Scores are probabilities. At ~5M videos and K = 100 a model's store is ~2 GB (400 bytes per video)
instead of 77 GB of float32 rows. Parts are written atomically and the index marks the store complete.
Training writes stores (`training.prediction`); the stacker and the reports read them.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from yt8m_tf import files, metrics
from yt8m_tf.files import atomic_save_npz
from yt8m_tf.metrics import top_k_per_video

# Classes a store keeps per video: the stacker's candidates are each model's top 20, and the L1 + stacker
# export ranks within them; 100 leaves room for the candidate union and costs 400 bytes a video.
STORE_TOP_K = 100


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

  def __init__(
    self, out_dir: str, num_classes: int, store_top_k: Optional[int] = STORE_TOP_K, part_size: int = 100_000
  ):
    if store_top_k is not None and not 0 < store_top_k <= num_classes:
      raise ValueError(f"store_top_k must be in (0, {num_classes}] or None (full rows), got {store_top_k}")
    if num_classes > np.iinfo(np.uint16).max:
      raise ValueError(f"{num_classes} classes do not fit uint16 class ids")
    self.out_dir = out_dir
    self.num_classes = num_classes
    self.store_top_k = store_top_k
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
    if self.store_top_k is None:
      chunk = PredictionChunk(ids, probabilities.astype(np.float16), None)
    else:
      classes, scores = top_k_per_video(probabilities, k=self.store_top_k)
      chunk = PredictionChunk(ids, scores.astype(np.float16), classes.astype(np.uint16))
    self._pending.append(chunk)
    self._pending_videos += len(ids)
    while self._pending_videos >= self.part_size:
      self._flush(self.part_size)

  def _flush(self, size: int) -> None:
    ids = np.concatenate([c.ids for c in self._pending])
    scores = np.concatenate([c.scores for c in self._pending])
    classes = None if self.store_top_k is None else np.concatenate([c.classes for c in self._pending])
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
      "top_k": self.store_top_k,  # the stored key keeps its name: older stores read as they are
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


def read_video_ids(store_dir: str) -> np.ndarray:
  """The store's video ids, in order; no prediction is read."""
  ids = []
  for name in read_index(store_dir)["parts"]:
    with files.open_npz(os.path.join(store_dir, name)) as archive:
      ids.append(archive["ids"])
  return np.concatenate(ids) if ids else np.zeros([0], np.bytes_)


def store_gap(store_dir: str, labels: Dict[bytes, np.ndarray], k: int = metrics.GAP_K) -> float:
  """GAP@k of a prediction store against `labels`; positives outside the stored top-K still count."""
  accumulator = metrics.GapAccumulator(k=k)
  for chunk in read_predictions(store_dir):
    scores = chunk.scores.astype(np.float32)
    classes = (
      chunk.classes
      if chunk.classes is not None
      else np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    )
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top_scores = np.take_along_axis(scores, order, axis=1)
    top_classes = np.take_along_axis(classes, order, axis=1).astype(np.int64)
    truth = [labels[v] for v in chunk.ids]
    is_positive = np.array([np.isin(c, t) for c, t in zip(top_classes, truth)], bool)
    accumulator.add_topk(top_scores, is_positive, int(sum(len(t) for t in truth)), num_videos=len(truth))
  return accumulator.result()
