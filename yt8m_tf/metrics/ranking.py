"""Hit@1, PERR and mean average precision, as defined by the YouTube-8M starter (eval_util.py).

All functions take `scores` and `labels` of shape [num_videos, num_classes]; a label is positive when
`> 0`. Results are float64.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from yt8m_tf.metrics.gap import (
  GAP_K,
  DEFAULT_CHUNK_ROWS,
  _as_score_matrix,
  _positive,
  _row_chunks,
  extract_top_k_pairs,
)

MAP_VARIANTS = ("2018", "2019")


def _checked(scores, labels):
  scores = _as_score_matrix(scores)
  labels = np.asarray(labels)
  if labels.shape != scores.shape:
    raise ValueError(f"labels shape {labels.shape} != scores shape {scores.shape}.")
  return scores, labels


def hit_at_one(scores, labels, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> float:
  """Fraction of videos whose top-scored class is positive.

  Ties for the top score go to the lowest class index (`np.argmax`, as in the starter). Videos without
  labels count as misses. 0.0 for zero videos.
  """
  scores, labels = _checked(scores, labels)
  num_videos = scores.shape[0]
  if num_videos == 0:
    return 0.0
  hits = 0
  for start, stop in _row_chunks(num_videos, chunk_rows):
    top_class = np.argmax(scores[start:stop], axis=1)
    hits += int(np.count_nonzero(_positive(labels[np.arange(start, stop), top_class])))
  return hits / num_videos


def perr(
  scores, labels, skip_videos_without_labels: bool = False, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> float:
  """Precision at equal recall rate, as the starter computes it.

  A video with n positive labels scores (number of its n top-scored classes that are positive AND have
  score > 0) / n; the result is the mean over videos.

  Videos without labels: the starter does NOT skip them. Its `argpartition(row, -0)[-0:]` selects every
  class, none is positive, so such a video scores 0 and still counts in the mean. That is the default here;
  `skip_videos_without_labels=True` averages over labelled videos only. 0.0 when nothing is averaged.

  The n top classes are chosen by `np.argpartition` like the starter, so a tie at the n-th score resolves
  as the starter's call does on the same numpy build.
  """
  scores, labels = _checked(scores, labels)
  num_videos, num_classes = scores.shape
  labels_per_video = np.zeros(num_videos, dtype=np.int64)
  for start, stop in _row_chunks(num_videos, chunk_rows):
    labels_per_video[start:stop] = np.count_nonzero(_positive(labels[start:stop]), axis=1)
  precision_sum = 0.0
  # One argpartition per distinct label count (a handful), over all videos with that count.
  for n in np.unique(labels_per_video[labels_per_video > 0]).tolist():
    videos = np.flatnonzero(labels_per_video == n)
    for start, stop in _row_chunks(videos.size, chunk_rows):
      rows = videos[start:stop]
      row_scores = scores[rows]
      top = np.argpartition(row_scores, num_classes - n, axis=1)[:, num_classes - n :]
      correct = _positive(labels[rows[:, None], top]) & (np.take_along_axis(row_scores, top, axis=1) > 0)
      precision_sum += np.count_nonzero(correct) / n
  averaged = np.count_nonzero(labels_per_video) if skip_videos_without_labels else num_videos
  return precision_sum / averaged if averaged else 0.0


def positives_per_class(labels, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> np.ndarray:
  """[C] int64 number of positive labels of each class."""
  labels = np.asarray(labels)
  if labels.ndim != 2:
    raise ValueError(f"labels must be [num_videos, num_classes], got shape {labels.shape}.")
  counts = np.zeros(labels.shape[1], dtype=np.int64)
  for start, stop in _row_chunks(labels.shape[0], chunk_rows):
    counts += np.count_nonzero(_positive(labels[start:stop]), axis=0)
  return counts


def per_class_average_precision(
  scores, labels, k: int = GAP_K, chunk_rows: int = DEFAULT_CHUNK_ROWS, num_threads: Optional[int] = None
):
  """Per-class AP over the top-k-filtered lists, as the starter's mAP calculator receives them.

  Every video contributes its `min(k, C)` top-scored (class, score, label) triplets (same selection as
  `gap_at_k`). Class c ranks its triplets by descending score (ties keep video order) and
  `AP_c = sum_i P(i) * rel(i) / M_c`, where `M_c` counts all positive labels of class c, including those
  outside every top-k list; `AP_c = 0` when `M_c == 0`.

  Returns:
    (average_precision [C] float64, num_positives [C] int64).
  """
  scores, labels = _checked(scores, labels)
  pairs = extract_top_k_pairs(scores, labels, k=k, chunk_rows=chunk_rows, num_threads=num_threads)
  num_positives = positives_per_class(labels, chunk_rows=chunk_rows)
  average_precision = average_precision_from_pairs(
    pairs.indices.reshape(-1), pairs.scores.reshape(-1), pairs.is_positive.reshape(-1), num_positives
  )
  return average_precision, num_positives


def average_precision_from_pairs(
  classes: np.ndarray, scores: np.ndarray, is_positive: np.ndarray, num_positives: np.ndarray
) -> np.ndarray:
  """[C] per-class AP from (class, score, is positive) triplets in video order (see
  `per_class_average_precision`); `num_positives` [C] counts every positive label of each class."""
  num_classes = len(num_positives)
  # Two stable sorts: by score descending, then by class, give (class, score desc, video order).
  by_score = np.argsort(-scores, kind="stable")
  order = by_score[np.argsort(classes[by_score], kind="stable")]
  sorted_classes = classes[order]
  sorted_positive = is_positive[order]

  pairs_per_class = np.bincount(sorted_classes, minlength=num_classes)
  class_start = np.cumsum(pairs_per_class) - pairs_per_class
  rank_in_class = np.arange(order.size) - class_start[sorted_classes] + 1
  positives_so_far = np.cumsum(sorted_positive)
  positives_before_class = np.concatenate([[0], positives_so_far])[class_start]
  hits_in_class = positives_so_far - positives_before_class[sorted_classes]

  precision_sums = np.bincount(
    sorted_classes[sorted_positive],
    weights=hits_in_class[sorted_positive] / rank_in_class[sorted_positive],
    minlength=num_classes,
  )
  average_precision = np.zeros(num_classes, dtype=np.float64)
  has_positives = num_positives > 0
  average_precision[has_positives] = precision_sums[has_positives] / num_positives[has_positives]
  return average_precision


def mean_average_precision(
  scores,
  labels,
  k: int = GAP_K,
  variant: str = "2018",
  chunk_rows: int = DEFAULT_CHUNK_ROWS,
  num_threads: Optional[int] = None,
) -> float:
  """Mean of `per_class_average_precision`.

  variant="2018": mean over all C classes, classes without positives counting as AP 0 (the starter during
    the 2018 competition).
  variant="2019": mean over classes with at least one positive label (starter's filter_empty_classes=True,
    since 2019-05); 0.0 when no class has one.
  """
  if variant not in MAP_VARIANTS:
    raise ValueError(f"variant must be one of {MAP_VARIANTS}, got {variant!r}.")
  average_precision, num_positives = per_class_average_precision(
    scores, labels, k=k, chunk_rows=chunk_rows, num_threads=num_threads
  )
  if variant == "2019":
    average_precision = average_precision[num_positives > 0]
  return float(np.mean(average_precision)) if average_precision.size else 0.0
