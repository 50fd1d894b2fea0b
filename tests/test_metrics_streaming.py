"""GapAccumulator and TopKMetrics (numpy streaming) against the one-shot metrics on full rows."""

import numpy as np
import pytest

from yt8m_tf.metrics import (
  GapAccumulator,
  TopKMetrics,
  extract_top_k_pairs,
  gap_at_k,
  hit_at_one,
  mean_average_precision,
  perr,
  top_k_per_video,
)


def random_problem(seed, num_videos=1000, num_classes=300, decimals=2):
  rng = np.random.default_rng(seed)
  labels = rng.random((num_videos, num_classes)) < 3 / num_classes
  scores = np.round(rng.random((num_videos, num_classes)) + 0.4 * labels, decimals)
  labels[::17] = False  # videos without positives
  return scores.astype(np.float32), labels


def test_uneven_batches_equal_one_shot_exactly_even_with_ties():
  scores, labels = random_problem(0)
  accumulator = GapAccumulator(k=20)
  bounds = [0, 1, 2, 130, 131, 500, 999, 1000]
  for start, stop in zip(bounds[:-1], bounds[1:]):
    accumulator.add(scores[start:stop], labels[start:stop])
  assert accumulator.num_videos == 1000
  assert accumulator.num_positives == int(labels.sum())
  expected = gap_at_k(scores, labels, k=20)
  assert accumulator.result() == expected
  assert accumulator.result() == expected  # result() is repeatable
  assert 0.3 < expected < 1.0


def test_memory_is_videos_times_k_in_float32_and_bool():
  scores, labels = random_problem(1, num_videos=300)
  accumulator = GapAccumulator(k=20)
  for start in range(0, 300, 64):
    accumulator.add(scores[start : start + 64].astype(np.float64), labels[start : start + 64])
  accumulator.result()  # merges chunks
  (stored_scores,) = accumulator._score_chunks
  (stored_flags,) = accumulator._positive_chunks
  assert stored_scores.dtype == np.float32 and stored_scores.size == 300 * 20
  assert stored_flags.dtype == np.bool_ and stored_flags.size == 300 * 20


def test_add_topk_and_mixing_with_add():
  scores, labels = random_problem(2)
  pairs = extract_top_k_pairs(scores[:400], labels[:400], k=20)
  accumulator = GapAccumulator(k=20)
  accumulator.add_topk(pairs.scores, pairs.is_positive.astype(np.int8), pairs.num_positives)
  accumulator.add(scores[400:], labels[400:])
  assert accumulator.num_videos == 1000
  assert accumulator.result() == gap_at_k(scores, labels, k=20)
  # Flat candidates (variable count per video) need num_videos.
  flat = GapAccumulator()
  flat.add_topk([0.9, 0.5, 0.1], [True, False, True], num_positives=4, num_videos=2)
  assert flat.num_videos == 2
  assert flat.result() == pytest.approx((1 + 2 / 3) / 4)
  with pytest.raises(ValueError, match="num_videos"):
    flat.add_topk([0.3], [True], num_positives=1)
  with pytest.raises(ValueError, match="smaller than"):
    flat.add_topk([[0.3, 0.2]], [[True, True]], num_positives=1)


def test_reset_and_empty():
  scores, labels = random_problem(3, num_videos=50)
  accumulator = GapAccumulator(k=5)
  assert accumulator.result() == 0.0
  accumulator.add(scores, labels)
  assert accumulator.result() > 0.0
  accumulator.reset()
  assert accumulator.num_videos == 0 and accumulator.result() == 0.0
  accumulator.add(scores[:10], np.zeros_like(labels[:10]))
  assert accumulator.result() == 0.0
  accumulator.reset()
  accumulator.add(scores[:25], labels[:25])
  assert accumulator.result() == gap_at_k(scores[:25], labels[:25], k=5)


def test_top_k_metrics_from_batches_equal_the_full_row_metrics():
  """TopKMetrics sees only each video's top 20 (what an export gives) in uneven batches; with at most 20
  positives per video it equals every full-row metric, ties included (no ties here: distinct scores)."""
  rng = np.random.default_rng(5)
  labels = rng.random((600, 300)) < 3 / 300
  labels[::23] = False  # videos without labels count as PERR 0 and Hit@1 misses
  scores = (rng.random((600, 300)) + 0.5 * labels).astype(np.float32)
  classes, top = top_k_per_video(scores, k=20)
  result_of = TopKMetrics(num_classes=300, k=20)
  bounds = [0, 1, 77, 78, 400, 600]
  for start, stop in zip(bounds[:-1], bounds[1:]):
    positives = [np.flatnonzero(row) for row in labels[start:stop]]
    result_of.add(classes[start:stop], top[start:stop], positives)
  result = result_of.result()
  assert result["videos"] == 600
  assert result["gap@20"] == pytest.approx(gap_at_k(scores, labels, k=20), abs=1e-12)
  assert result["hit@1"] == pytest.approx(hit_at_one(scores, labels), abs=1e-12)
  assert result["perr"] == pytest.approx(perr(scores, labels), abs=1e-12)
  assert result["map"] == pytest.approx(mean_average_precision(scores, labels, k=20), abs=1e-12)
  assert result["map_2019"] == pytest.approx(
    mean_average_precision(scores, labels, k=20, variant="2019"), abs=1e-12
  )
  with pytest.raises(ValueError, match="same videos"):
    result_of.add(classes[:3], top[:3], [np.array([1])])
