"""Hit@1, PERR and mAP on hand-computed examples and against loop oracles."""

import numpy as np
import pytest

from yt8m_tf.metrics import (
  hit_at_one,
  mean_average_precision,
  per_class_average_precision,
  perr,
  positives_per_class,
)


# ---------------------------------------------------------------- oracles (plain Python loops)


def oracle_hit_at_one(scores, labels):
  hits = 0
  for row, label_row in zip(scores.tolist(), labels.tolist()):
    best = max(range(len(row)), key=lambda c: (row[c], -c))  # first maximum
    hits += label_row[best] > 0
  return hits / len(scores)


def oracle_perr(scores, labels, skip_videos_without_labels=False):
  total, counted = 0.0, 0
  for row, label_row in zip(scores.tolist(), labels.tolist()):
    n = sum(1 for v in label_row if v > 0)
    if n == 0:
      counted += 0 if skip_videos_without_labels else 1
      continue
    top = sorted(range(len(row)), key=lambda c: -row[c])[:n]
    total += sum(1 for c in top if label_row[c] > 0 and row[c] > 0) / n
    counted += 1
  return total / counted


def oracle_class_aps(scores, labels, k):
  num_classes = scores.shape[1]
  per_class = [[] for _ in range(num_classes)]
  for row, label_row in zip(scores.tolist(), labels.tolist()):
    for c in sorted(range(num_classes), key=lambda c: (-row[c], c))[:k]:
      per_class[c].append((row[c], label_row[c] > 0))
  aps = []
  for c in range(num_classes):
    num_positives = sum(1 for label_row in labels.tolist() if label_row[c] > 0)
    ranked = sorted(per_class[c], key=lambda p: -p[0])
    hits, total = 0, 0.0
    for rank, (_, positive) in enumerate(ranked, start=1):
      if positive:
        hits += 1
        total += hits / rank
    aps.append(total / num_positives if num_positives else 0.0)
  return np.array(aps)


def random_problem(seed, num_videos=150, num_classes=40):
  rng = np.random.default_rng(seed)
  scores = rng.normal(size=(num_videos, num_classes))  # about half <= 0; no ties
  labels = rng.random((num_videos, num_classes)) < 2.5 / num_classes
  scores = np.where(labels, scores + 1.0, scores)
  labels[:10] = False  # some videos without labels
  labels[:, :3] = False  # some classes without positives
  return scores, labels


# ---------------------------------------------------------------- Hit@1


def test_hit_at_one_hand_example():
  scores = np.array([[0.1, 0.9, 0.3], [0.8, 0.1, 0.1], [0.5, 0.5, 0.2], [0.2, 0.1, 0.0]], np.float32)
  labels = np.array([[0, 1, 0], [0, 0, 1], [0, 1, 0], [0, 0, 0]])
  # Video 0 hits; video 1 misses; video 2 ties -> class 0 -> miss; video 3 has no label -> miss, still
  # counted: 1/4.
  assert hit_at_one(scores, labels) == 0.25


def test_hit_at_one_matches_oracle():
  scores, labels = random_problem(0)
  value = hit_at_one(scores, labels, chunk_rows=16)
  assert value == pytest.approx(oracle_hit_at_one(scores, labels))
  assert value > 0.1


# ---------------------------------------------------------------- PERR


def test_perr_hand_example():
  scores = np.array(
    [
      [0.1, 0.9, 0.3, 0.5],  # labels {1,2}: top-2 = {1,3} -> 1/2
      [0.0, -0.5, -0.2, -1],  # labels {0}: top-1 = {0} but its score is 0, not > 0 -> 0
      [0.2, 0.3, 0.4, 0.5],  # all 4 classes are labels, all scores > 0 -> 1
      [0.9, 0.1, 0.2, 0.3],  # no label -> 0, and the starter still counts the video
    ]
  )
  labels = np.array([[0, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], bool)
  assert perr(scores, labels) == pytest.approx((0.5 + 0 + 1 + 0) / 4)
  assert perr(scores, labels, skip_videos_without_labels=True) == pytest.approx(1.5 / 3)
  assert perr(scores, np.zeros_like(labels), skip_videos_without_labels=True) == 0.0
  assert perr(scores, np.zeros_like(labels)) == 0.0


@pytest.mark.parametrize("skip", [False, True])
def test_perr_matches_oracle(skip):
  scores, labels = random_problem(1)
  value = perr(scores, labels.astype(np.float32), skip_videos_without_labels=skip, chunk_rows=7)
  assert value == pytest.approx(oracle_perr(scores, labels, skip), abs=1e-12)
  assert 0.1 < value < 1.0


# ---------------------------------------------------------------- mAP


def test_map_hand_example_2018_vs_2019():
  # k=2. Top-2 pairs: v0 -> c0 0.9+, c1 0.8- ; v1 -> c1 0.6+, c2 0.5- ;
  # v2 -> c0 0.7-, c2 0.2-. Positives: c0 in v0,v1 (v1's is outside its
  # top-2), c1 in v1,v2 (v2's outside), c2 none.
  # AP_0 = (1/1)/2 = 0.5 ; AP_1 = (1/2)/2 = 0.25 ; AP_2 = 0.
  scores = np.array([[0.9, 0.8, 0.1], [0.3, 0.6, 0.5], [0.7, 0.1, 0.2]])
  labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0]])
  aps, num_positives = per_class_average_precision(scores, labels, k=2)
  np.testing.assert_allclose(aps, [0.5, 0.25, 0.0], atol=1e-15)
  np.testing.assert_array_equal(num_positives, [2, 2, 0])
  assert mean_average_precision(scores, labels, k=2, variant="2018") == pytest.approx(0.75 / 3)
  assert mean_average_precision(scores, labels, k=2, variant="2019") == pytest.approx(0.75 / 2)


def test_map_matches_oracle_and_variants_differ_on_empty_classes():
  scores, labels = random_problem(2)
  aps, num_positives = per_class_average_precision(scores, labels, k=20)
  expected = oracle_class_aps(scores, labels, 20)
  np.testing.assert_allclose(aps, expected, atol=1e-12)
  np.testing.assert_array_equal(num_positives, labels.sum(axis=0))
  map_2018 = mean_average_precision(scores, labels, k=20, variant="2018")
  map_2019 = mean_average_precision(scores, labels, k=20, variant="2019")
  assert map_2018 == pytest.approx(expected.mean(), abs=1e-12)
  assert map_2019 == pytest.approx(expected[labels.sum(axis=0) > 0].mean(), abs=1e-12)
  assert map_2019 > map_2018  # 3 empty classes pull the 2018 mean down


def test_map_with_ties_matches_same_tie_order_oracle():
  rng = np.random.default_rng(3)
  scores = np.round(rng.random((120, 25)), 1)
  labels = rng.random((120, 25)) < 0.12
  aps, _ = per_class_average_precision(scores, labels, k=5)
  np.testing.assert_allclose(aps, oracle_class_aps(scores, labels, 5), atol=1e-12)


def test_map_edge_cases():
  scores = np.random.default_rng(4).random((5, 6))
  zero_labels = np.zeros((5, 6))
  assert mean_average_precision(scores, zero_labels, variant="2018") == 0.0
  assert mean_average_precision(scores, zero_labels, variant="2019") == 0.0
  with pytest.raises(ValueError, match="variant"):
    mean_average_precision(scores, zero_labels, variant="2020")
  np.testing.assert_array_equal(positives_per_class(np.eye(4)[[0, 0, 3]]), [2, 0, 0, 1])
