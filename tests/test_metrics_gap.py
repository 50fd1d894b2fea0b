"""GAP@k and top-k extraction against straightforward per-video loop oracles."""

import random

import numpy as np
import pytest

from yt8m_tf.metrics import extract_top_k_pairs, gap_at_k, gap_from_pairs, top_k_per_video


# ---------------------------------------------------------------- oracles (plain Python loops)


def oracle_top_k(row, k):
  """Class ids of the k best scores; equal scores by ascending class id."""
  return sorted(range(len(row)), key=lambda c: (-row[c], c))[: min(k, len(row))]


def oracle_pairs(scores, labels, k):
  pairs = []
  for row, label_row in zip(scores.tolist(), labels.tolist()):
    for c in oracle_top_k(row, k):
      pairs.append((row[c], label_row[c] > 0))
  return pairs


def oracle_ap(ranked_flags, num_positives):
  if num_positives == 0:
    return 0.0
  hits, total = 0, 0.0
  for rank, positive in enumerate(ranked_flags, start=1):
    if positive:
      hits += 1
      total += hits / rank
  return total / num_positives


def oracle_gap(scores, labels, k, tie_key=None):
  """GAP with a stable sort (Python's sorted) on the pooled pairs.

  tie_key: None keeps input order among equal scores; "positives_last" and
  "positives_first" give the pessimistic and optimistic tie orders.
  """
  pairs = oracle_pairs(scores, labels, k)
  if tie_key is None:
    ranked = sorted(pairs, key=lambda p: -p[0])
  elif tie_key == "positives_last":
    ranked = sorted(pairs, key=lambda p: (-p[0], p[1]))
  else:
    ranked = sorted(pairs, key=lambda p: (-p[0], not p[1]))
  num_positives = sum(1 for row in labels.tolist() for v in row if v > 0)
  return oracle_ap([p[1] for p in ranked], num_positives)


def starter_like_gap(scores, labels, k):
  """Starter's procedure re-stated: argpartition per row, shuffle(seed 0), stable sort."""
  k = min(k, scores.shape[1])
  preds, acts = [], []
  for row, label_row in zip(scores, labels):
    for c in np.argpartition(row, -k)[-k:]:
      preds.append(row[c])
      acts.append(label_row[c])
  preds, acts = np.array(preds), np.array(acts)
  rng = random.Random(0)
  shuffled = rng.sample(range(len(preds)), len(preds))
  preds, acts = preds[shuffled], acts[shuffled]
  ranked = sorted(range(len(preds)), key=lambda i: preds[i], reverse=True)
  return oracle_ap([acts[i] > 0 for i in ranked], int(np.sum(labels > 0)))


def random_problem(rng, num_videos, num_classes, labels_per_video=3.0, decimals=None):
  scores = rng.random((num_videos, num_classes))
  labels = rng.random((num_videos, num_classes)) < labels_per_video / num_classes
  scores = np.where(labels, np.minimum(scores + 0.3, 1.0), scores)  # positives rank higher: GAP far from 0
  if decimals is not None:
    scores = np.round(scores, decimals)  # many ties
  return scores.astype(np.float32), labels


# ---------------------------------------------------------------- top-k


@pytest.mark.parametrize(
  "num_classes,k", [(3862, 20), (3862, 100), (1000, 150), (300, 20), (50, 5), (7, 20), (200, 70)]
)
def test_top_k_per_video_matches_sorted_oracle_with_ties(num_classes, k):
  rng = np.random.default_rng(num_classes + k)
  scores = np.round(rng.random((60, num_classes)), 2).astype(np.float32)
  scores[:5] = 0.0  # whole rows tied
  scores[5, :] = -np.inf
  scores[6, :10] = np.inf
  indices, values = top_k_per_video(scores, k=k, chunk_rows=17)
  expected = np.array([oracle_top_k(row, k) for row in scores.tolist()])
  np.testing.assert_array_equal(indices, expected)
  np.testing.assert_array_equal(values, np.take_along_axis(scores, expected, axis=1))
  assert indices.shape == (60, min(k, num_classes))


def test_top_k_per_video_isolated_crowded_rows():
  # A few rows with thousands of tied candidates among many normal rows: they take the full-sort path.
  rng = np.random.default_rng(11)
  scores = rng.random((300, 3862)).astype(np.float32)
  scores[7] = 0.0
  scores[8] = np.round(scores[8], 1)
  scores[9, :300] = 2.0
  indices, values = top_k_per_video(scores, k=20)
  expected = np.array([oracle_top_k(row, 20) for row in scores.tolist()])
  np.testing.assert_array_equal(indices, expected)
  np.testing.assert_array_equal(values, np.take_along_axis(scores, expected, axis=1))


def test_top_k_per_video_selects_same_classes_as_argpartition_without_ties():
  rng = np.random.default_rng(3)
  scores = rng.random((40, 3862)).astype(np.float32)
  indices, _ = top_k_per_video(scores, k=20)
  for row, top in zip(scores, indices):
    assert set(top) == set(np.argpartition(row, -20)[-20:])


def test_top_k_per_video_rejects_nan_and_bad_k():
  scores = np.random.default_rng(0).random((4, 3862)).astype(np.float32)
  scores[2, 100] = np.nan
  for k in (20, 100):  # the grouped path and the large-k partition path
    with pytest.raises(ValueError, match="NaN"):
      top_k_per_video(scores, k=k)
  with pytest.raises(ValueError, match="k must be"):
    top_k_per_video(scores, k=0)
  with pytest.raises(ValueError, match="scores must be"):
    top_k_per_video(scores[0], k=3)


# ---------------------------------------------------------------- GAP values


def test_gap_hand_example_counts_positives_outside_top_k():
  # k=2. Video 0 keeps (0.9,+) and (0.8,-); its positive class 2 (0.1) is
  # outside its top-2. Video 1 keeps (0.7,-) and (0.6,+).
  # Global ranking: 0.9+ 0.8- 0.7- 0.6+ ; M = 3 positive labels in total.
  # GAP = (1/1 + 2/4) / 3 = 0.5. (Dividing by the 2 positives in the lists
  # would give 0.75.)
  scores = np.array([[0.9, 0.8, 0.1, 0.0], [0.2, 0.7, 0.6, 0.3]], np.float32)
  labels = np.array([[1, 0, 1, 0], [0, 0, 1, 0]])
  assert gap_at_k(scores, labels, k=2) == pytest.approx(0.5, abs=1e-15)
  # With k=4 everything is kept: 0.9+ 0.8- 0.7- 0.6+ 0.3- 0.2- 0.1+ 0.0-
  # GAP = (1 + 2/4 + 3/7) / 3.
  assert gap_at_k(scores, labels, k=4) == pytest.approx((1 + 0.5 + 3 / 7) / 3, abs=1e-15)


def test_gap_matches_loop_oracle_without_ties():
  rng = np.random.default_rng(0)
  scores, labels = random_problem(rng, 300, 400)
  scores = scores.astype(np.float64) + rng.random(scores.shape) * 1e-9  # no ties
  value = gap_at_k(scores, labels, k=20)
  assert value == pytest.approx(oracle_gap(scores, labels, 20), abs=1e-12)
  assert value == pytest.approx(starter_like_gap(scores, labels, 20), abs=1e-12)
  assert 0.2 < value < 1.0


@pytest.mark.parametrize("decimals", [1, 2])
def test_gap_with_ties_equals_same_tie_order_oracle_and_lies_within_tie_bounds(decimals):
  rng = np.random.default_rng(decimals)
  scores, labels = random_problem(rng, 200, 60, decimals=decimals)
  value = gap_at_k(scores, labels, k=20)
  # Same tie rule (class id within a video, then video order): exact.
  assert value == pytest.approx(oracle_gap(scores, labels, 20), abs=1e-12)
  pessimistic = oracle_gap(scores, labels, 20, tie_key="positives_last")
  optimistic = oracle_gap(scores, labels, 20, tie_key="positives_first")
  assert pessimistic < optimistic  # ties do straddle positives/negatives here
  assert pessimistic - 1e-12 <= value <= optimistic + 1e-12
  # The starter's shuffled tie order lands in the same interval.
  assert pessimistic - 1e-12 <= starter_like_gap(scores, labels, 20) <= optimistic + 1e-12


def test_gap_with_k_larger_than_num_classes_uses_all_classes():
  rng = np.random.default_rng(5)
  scores, labels = random_problem(rng, 50, 7)
  value = gap_at_k(scores, labels, k=50)
  assert value == pytest.approx(oracle_gap(scores, labels, 7), abs=1e-12)
  assert value == gap_at_k(scores, labels, k=7)
  assert extract_top_k_pairs(scores, labels, k=50).scores.shape == (50, 7)


def test_gap_all_zero_labels_is_zero_and_videos_without_positives_rank_as_negatives():
  rng = np.random.default_rng(6)
  scores, labels = random_problem(rng, 80, 30)
  assert gap_at_k(scores, np.zeros_like(labels), k=20) == 0.0
  # Videos without positives add only negative pairs: GAP can only drop.
  labels_some_empty = labels.copy()
  labels_some_empty[:40] = False
  with_empty = gap_at_k(scores, labels_some_empty, k=20)
  without_empty_rows = gap_at_k(scores[40:], labels[40:], k=20)
  assert with_empty == pytest.approx(oracle_gap(scores, labels_some_empty, 20), abs=1e-12)
  assert with_empty < without_empty_rows


def test_gap_same_for_bool_int_float32_float64_labels():
  rng = np.random.default_rng(7)
  scores, labels = random_problem(rng, 500, 100)
  values = {
    dtype: gap_at_k(scores, labels.astype(dtype), k=20)
    for dtype in (bool, np.int8, np.int64, np.float32, np.float64)
  }
  assert len(set(values.values())) == 1, values
  # Soft/weighted labels: anything > 0 is positive, <= 0 is negative.
  soft = np.where(labels, 0.25, -0.5).astype(np.float32)
  assert gap_at_k(scores, soft, k=20) == values[bool]


def test_gap_depends_only_on_order_logits_vs_probabilities():
  rng = np.random.default_rng(8)
  logits = rng.normal(size=(300, 50))
  labels = rng.random((300, 50)) < 0.1
  probabilities = 1.0 / (1.0 + np.exp(-logits))
  assert gap_at_k(logits, labels) == pytest.approx(gap_at_k(probabilities, labels), abs=1e-15)


def test_gap_independent_of_chunking_threads_and_accepts_integer_scores():
  rng = np.random.default_rng(9)
  scores, labels = random_problem(rng, 301, 500, decimals=2)
  reference = gap_at_k(scores, labels, k=20, num_threads=1)
  assert gap_at_k(scores, labels, k=20, chunk_rows=13, num_threads=1) == reference
  assert gap_at_k(scores, labels, k=20, chunk_rows=13, num_threads=4) == reference
  serial = top_k_per_video(scores, k=20, chunk_rows=10, num_threads=1)
  threaded = top_k_per_video(scores, k=20, chunk_rows=10, num_threads=3)
  np.testing.assert_array_equal(serial[0], threaded[0])
  integer_scores = (scores * 100).astype(np.int32)
  assert gap_at_k(integer_scores, labels, k=20) == pytest.approx(reference, abs=1e-12)


def test_gap_perfect_ranking_is_one():
  labels = np.zeros((10, 30), bool)
  labels[np.arange(10), np.arange(10)] = True
  scores = labels.astype(np.float32) + 0.01  # every positive above every negative
  assert gap_at_k(scores, labels, k=20) == 1.0


# ---------------------------------------------------------------- gap_from_pairs


def test_gap_from_pairs_equals_gap_at_k_and_validates():
  rng = np.random.default_rng(10)
  scores, labels = random_problem(rng, 120, 80, decimals=2)
  pairs = extract_top_k_pairs(scores, labels, k=20)
  assert pairs.num_positives == int(labels.sum())
  flat = gap_from_pairs(pairs.scores.ravel(), pairs.is_positive.ravel(), pairs.num_positives)
  assert flat == gap_at_k(scores, labels, k=20)
  # Flags may be ints; num_positives may exceed the positives among pairs.
  assert gap_from_pairs([0.9, 0.5, 0.1], [1, 0, 1], 4) == pytest.approx((1 + 2 / 3) / 4)
  assert gap_from_pairs([], [], 0) == 0.0
  assert gap_from_pairs([0.3], [0], 5) == 0.0
  with pytest.raises(ValueError, match="smaller than"):
    gap_from_pairs([0.9, 0.5], [1, 1], 1)
  with pytest.raises(ValueError):
    gap_from_pairs([0.9, 0.5], [1], 1)
