"""GapAccumulator (numpy streaming) against one-shot gap_at_k."""

import numpy as np
import pytest

from yt8m_tf.metrics import GapAccumulator, extract_top_k_pairs, gap_at_k


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
