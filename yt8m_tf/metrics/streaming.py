"""Streaming GAP@k over numpy batches, with memory proportional to videos * k (never videos * classes)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from yt8m_tf.metrics.gap import GAP_K, _check_k, _positive, extract_top_k_pairs, gap_from_pairs
from yt8m_tf.metrics.ranking import average_precision_from_pairs


class GapAccumulator:
  """Accumulates per-video top-k pairs batch by batch; `result()` is the exact GAP of all of them.

  Keeps only each video's top-k scores (`score_dtype`, float32 by default: 4 bytes) and positive flags
  (bool: 1 byte), in a list of chunks, plus a running count of positive labels. Adding the rows of a matrix
  in any split gives exactly `gap_at_k` of the whole matrix (the pairs keep the same order, so even ties
  rank identically) as long as the scores are exact in `score_dtype`; float64 scores stored as float32 can
  gain ties.
  """

  def __init__(self, k: int = GAP_K, score_dtype=np.float32):
    self.k = _check_k(k)
    self.score_dtype = np.dtype(score_dtype)
    self.reset()

  def reset(self) -> None:
    """Forgets everything added so far."""
    self._score_chunks = []
    self._positive_chunks = []
    self._num_positives = 0
    self._num_videos = 0

  @property
  def num_videos(self) -> int:
    """Videos added since the last reset."""
    return self._num_videos

  @property
  def num_positives(self) -> int:
    """Positive labels of those videos (the GAP denominator)."""
    return self._num_positives

  def add(self, scores, labels) -> None:
    """Adds a batch: [batch, num_classes] scores and labels (`> 0` is positive)."""
    pairs = extract_top_k_pairs(scores, labels, k=self.k)
    self._append(pairs.scores, pairs.is_positive, pairs.num_positives, pairs.scores.shape[0])

  def add_topk(self, top_scores, top_is_positive, num_positives: int, num_videos: Optional[int] = None):
    """Adds pairs the caller already selected (top-k lists, stacker candidates, ...).

    Args:
      top_scores: [batch, kept] scores, or any shape (flattened) when `num_videos` is given.
      top_is_positive: same shape; `> 0` / True marks a positive pair.
      num_positives: positive labels of these videos, including those without a pair.
      num_videos: videos in the batch; defaults to `top_scores.shape[0]` for 2-D input.
    """
    top_scores = np.asarray(top_scores)
    flags = _positive(np.asarray(top_is_positive))
    if top_scores.shape != flags.shape:
      raise ValueError(f"top_scores shape {top_scores.shape} != top_is_positive shape {flags.shape}.")
    if num_videos is None:
      if top_scores.ndim != 2:
        raise ValueError("num_videos is required unless top_scores is [batch, kept].")
      num_videos = top_scores.shape[0]
    if int(num_positives) < int(np.count_nonzero(flags)):
      raise ValueError(f"num_positives={num_positives} is smaller than the number of positive pairs.")
    self._append(top_scores, flags, int(num_positives), int(num_videos))

  def _append(self, scores, flags, num_positives: int, num_videos: int) -> None:
    self._score_chunks.append(np.asarray(scores, dtype=self.score_dtype).reshape(-1))
    self._positive_chunks.append(np.asarray(flags, dtype=bool).reshape(-1))
    self._num_positives += num_positives
    self._num_videos += num_videos

  def result(self) -> float:
    """Exact GAP of everything added since the last reset (0.0 without positive labels)."""
    if not self._score_chunks:
      return 0.0
    # Merge once, so that repeated calls do not concatenate again.
    self._score_chunks = [np.concatenate(self._score_chunks)]
    self._positive_chunks = [np.concatenate(self._positive_chunks)]
    return gap_from_pairs(self._score_chunks[0], self._positive_chunks[0], self._num_positives)


class TopKMetrics:
  """GAP@k, Hit@1, PERR and mAP from each video's top-k (classes, scores) and its positive classes, batch by
  batch: what an export or a submission gives (never [videos, classes] rows). Memory grows with videos * k.

  Equal to `gap_at_k`, `hit_at_one`, `perr` and `mean_average_precision` on the full rows whenever each
  video's top k holds its first n = (its positive count) classes, i.e. n <= k; a video with more positives
  than k scores PERR on its k classes only.
  """

  def __init__(self, num_classes: int, k: int = GAP_K):
    self.num_classes = int(num_classes)
    self.k = _check_k(k)
    self._gap = GapAccumulator(k=self.k)
    self._pairs = []  # (classes, scores, is_positive), flattened in video order
    self._positives_per_class = np.zeros(self.num_classes, np.int64)
    self._hits = 0
    self._perr_sum = 0.0
    self._videos = 0

  def add(self, top_classes, top_scores, positives) -> None:
    """top_classes, top_scores: [n, k'] best first (k' <= k keeps its own length); positives: n arrays of
    positive class ids."""
    top_classes = np.asarray(top_classes, np.int64)[:, : self.k]
    top_scores = np.asarray(top_scores, np.float32)[:, : self.k]
    if top_classes.shape != top_scores.shape or len(top_classes) != len(positives):
      raise ValueError(
        f"top_classes {top_classes.shape}, top_scores {top_scores.shape} and {len(positives)} label sets "
        "must describe the same videos"
      )
    counts = np.array([len(p) for p in positives], np.int64)
    is_positive = np.array([np.isin(c, p) for c, p in zip(top_classes, positives)], bool).reshape(
      top_classes.shape
    )
    self._gap.add_topk(top_scores, is_positive, int(counts.sum()), num_videos=len(counts))
    self._pairs.append((top_classes.reshape(-1), top_scores.reshape(-1), is_positive.reshape(-1)))
    if len(counts):
      self._positives_per_class += np.bincount(
        np.concatenate([np.asarray(p, np.int64) for p in positives]), minlength=self.num_classes
      )[: self.num_classes]
    self._hits += int(np.count_nonzero(is_positive[:, 0])) if is_positive.size else 0
    correct = is_positive & (top_scores > 0)
    first_n = np.arange(top_classes.shape[1])[None, :] < counts[:, None]
    labelled = counts > 0
    self._perr_sum += float(np.sum(np.count_nonzero(correct & first_n, axis=1)[labelled] / counts[labelled]))
    self._videos += len(counts)

  def result(self) -> dict:
    """gap@k, hit@1, perr (videos without labels count 0, as the starter), map (2018: over all classes),
    map_2019 (over classes with positives), videos."""
    videos = max(self._videos, 1)
    if self._pairs:
      classes, scores, is_positive = (np.concatenate(parts) for parts in zip(*self._pairs))
    else:
      classes, scores, is_positive = np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, bool)
    average_precision = average_precision_from_pairs(classes, scores, is_positive, self._positives_per_class)
    with_positives = average_precision[self._positives_per_class > 0]
    return {
      f"gap@{self.k}": self._gap.result(),
      "hit@1": self._hits / videos,
      "perr": self._perr_sum / videos,
      "map": float(np.mean(average_precision)),
      "map_2019": float(np.mean(with_positives)) if with_positives.size else 0.0,
      "videos": self._videos,
    }
