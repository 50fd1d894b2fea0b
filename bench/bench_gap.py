"""GAP@20 speed: vectorized gap_at_k vs a per-video Python baseline, measured in the same run.

  python bench/bench_gap.py [--videos 100000] [--classes 3862] [--repeats 5] [--baseline_videos 5000]

Random float32 scores with ~3 random positive labels per video (positives get +0.5 so GAP is realistic).
The baseline is the starter's algorithm written plainly (per video argpartition top-k, a Python list of
(score, label) pairs, one global sort, a precision loop); a second, slower one also re-states the
starter's data flow (per-class lists, heap, shuffle). Both run on the first --baseline_videos videos only;
their full-size times are EXTRAPOLATED linearly (their global sort is O(n log n), so that slightly
flatters them). Everything else is MEASURED at full size. Also times GapAccumulator (numpy batches) and
the GapMetric Keras metric (compiled update_state per batch + one result(); and update+result after
every batch, as Keras does inside fit/evaluate, on a subset). Prints peak RSS (ru_maxrss).
"""

import heapq
import os
import random
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("videos", 100_000, "Videos of the full-size problem.")
flags.DEFINE_integer("classes", 3862, "Classes of the problem.")
flags.DEFINE_integer("k", 20, "k of GAP@k.")
flags.DEFINE_integer("repeats", 5, "Timed calls of each measurement (median).")
flags.DEFINE_integer("baseline_videos", 5000, "Videos the Python baselines run on (then extrapolated).")
flags.DEFINE_integer("baseline_repeats", 3, "Timed calls of each Python baseline (median).")
flags.DEFINE_integer("batch_size", 1024, "Videos per batch for GapAccumulator and GapMetric.")
flags.DEFINE_integer("keras_repeats", 3, "Timed calls of each GapMetric measurement (median).")
flags.DEFINE_integer(
  "keras_per_step_videos",
  20_000,
  "videos for the Keras update+result-every-batch timing (cost grows quadratically)",
)
flags.DEFINE_integer("seed", 0, "Seed of the random scores and labels.")


def make_problem(num_videos, num_classes, seed):
  """Dense float32 scores and bool labels; labels drawn sparsely (1-5 per video, mean 3)."""
  rng = np.random.default_rng(seed)
  scores = rng.random((num_videos, num_classes), dtype=np.float32)
  labels_per_video = rng.integers(1, 6, num_videos)
  rows = np.repeat(np.arange(num_videos), labels_per_video)
  cols = rng.integers(0, num_classes, rows.size)
  labels = np.zeros((num_videos, num_classes), dtype=bool)
  labels[rows, cols] = True
  scores[rows, cols] += np.float32(0.5)
  return scores, labels


def baseline_gap(scores, labels, k=20):
  """Per-video Python GAP (the starter's algorithm, plainly; ties in input order)."""
  k = min(k, scores.shape[1])
  pairs = []
  num_positives = 0
  for row, label_row in zip(scores, labels):
    for c in np.argpartition(row, -k)[-k:]:
      pairs.append((float(row[c]), bool(label_row[c])))
    num_positives += int(np.count_nonzero(label_row))
  pairs.sort(key=lambda pair: -pair[0])
  hits, total = 0, 0.0
  for rank, (_, positive) in enumerate(pairs, start=1):
    if positive:
      hits += 1
      total += hits / rank
  return total / num_positives if num_positives else 0.0


def starter_style_gap(scores, labels, k=20):
  """The starter's data flow re-stated: per-class triplet lists, a heap of all pairs, a seed-0 shuffle,
  an index sort, a precision loop (the heavier path eval.py actually runs)."""
  k = min(k, scores.shape[1])
  per_class_scores = [[] for _ in range(scores.shape[1])]
  per_class_labels = [[] for _ in range(scores.shape[1])]
  for row, label_row in zip(scores, labels):
    for c in np.argpartition(row, -k)[-k:]:
      per_class_scores[c].append(row[c])
      per_class_labels[c].append(label_row[c])
  num_positives = sum(np.sum(labels[:, c]) for c in range(labels.shape[1]))
  heap = []
  for class_scores, class_labels in zip(per_class_scores, per_class_labels):
    for score, label in zip(class_scores, class_labels):
      heapq.heappush(heap, (score, label))
  pair_scores = np.array([pair[0] for pair in heap])
  pair_labels = np.array([pair[1] for pair in heap])
  shuffled = random.Random(0).sample(range(len(heap)), len(heap))
  pair_scores, pair_labels = pair_scores[shuffled], pair_labels[shuffled]
  order = sorted(range(len(pair_scores)), key=lambda i: pair_scores[i], reverse=True)
  hits, total = 0, 0.0
  for rank, i in enumerate(order, start=1):
    if pair_labels[i] > 0:
      hits += 1
      total += hits / rank
  return total / num_positives if num_positives else 0.0


def timed(function, repeats):
  """(median seconds, last result) over `repeats` calls."""
  times, result = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    result = function()
    times.append(time.perf_counter() - start)
  return statistics.median(times), result


def report(label, seconds, num_videos, note="measured"):
  print(f"{label:<52s} {seconds:9.3f} s  {num_videos / seconds:12,.0f} videos/s  [{note}]")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")

  import tensorflow as tf

  from yt8m_tf.metrics import GapAccumulator, GapMetric, gap_at_k, top_k_per_video

  n, k, batch = FLAGS.videos, FLAGS.k, FLAGS.batch_size
  print(
    f"numpy {np.__version__}, tensorflow {tf.__version__}, {os.cpu_count()} CPUs, load average "
    f"{os.getloadavg()[0]:.2f}; {n:,} videos x {FLAGS.classes} classes float32, k={k}; "
    f"times are medians of repeats"
  )
  start = time.perf_counter()
  scores, labels = make_problem(n, FLAGS.classes, FLAGS.seed)
  print(
    f"data generation {time.perf_counter() - start:.1f} s; {labels.sum() / n:.2f} labels/video; "
    f"scores {scores.nbytes / 2**20:,.0f} MiB, labels {labels.nbytes / 2**20:,.0f} MiB"
  )

  # gap_at_k at full size.
  rss_before_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  gap_seconds, gap_value = timed(lambda: gap_at_k(scores, labels, k=k), FLAGS.repeats)
  rss_after_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  report(f"gap_at_k, {n:,} videos", gap_seconds, n)
  print(f"  peak RSS before / after the gap_at_k calls: {rss_before_mib:,.0f} / {rss_after_mib:,.0f} MiB")

  # A prediction store keeps each video's top 100 (store_top_k): vs the full stable sort it replaced.
  store_k, m_store = 100, min(n, 20_000)
  sort_seconds, by_sort = timed(
    lambda: np.argsort(-scores[:m_store], axis=1, kind="stable")[:, :store_k], FLAGS.repeats
  )
  top_seconds, (by_top_k, _) = timed(lambda: top_k_per_video(scores[:m_store], k=store_k), FLAGS.repeats)
  report(f"full stable sort, top {store_k}, {m_store:,} videos", sort_seconds, m_store)
  report(f"top_k_per_video, top {store_k}, {m_store:,} videos", top_seconds, m_store)
  print(
    f"  speedup {sort_seconds / top_seconds:,.1f}x; same classes in the same order: "
    f"{bool(np.array_equal(by_sort, by_top_k))}"
  )

  # Baseline on a subset (measured), then extrapolated to n.
  m = min(FLAGS.baseline_videos, n)
  base_seconds, base_value = timed(lambda: baseline_gap(scores[:m], labels[:m], k), FLAGS.baseline_repeats)
  report(f"baseline (per-video Python), {m:,} videos", base_seconds, m)
  subset_seconds, subset_value = timed(lambda: gap_at_k(scores[:m], labels[:m], k=k), FLAGS.repeats)
  report(f"gap_at_k, the same {m:,} videos", subset_seconds, m)
  base_full = base_seconds * n / m
  report(f"baseline, {n:,} videos", base_full, n, "EXTRAPOLATED from the subset")
  print(f"speedup on the {m:,}-video subset (both measured): {base_seconds / subset_seconds:,.1f}x")
  print(f"speedup at {n:,} videos (baseline extrapolated): {base_full / gap_seconds:,.1f}x")
  print(
    f"GAP: gap_at_k {gap_value:.6f} ({n:,} videos); on the subset gap_at_k {subset_value:.10f} vs "
    f"baseline {base_value:.10f} (|diff| {abs(subset_value - base_value):.1e})"
  )

  starter_seconds, starter_value = timed(
    lambda: starter_style_gap(scores[:m], labels[:m], k), FLAGS.baseline_repeats
  )
  report(f"starter-style data flow, {m:,} videos", starter_seconds, m)
  print(
    f"  vs gap_at_k on the subset (both measured): {starter_seconds / subset_seconds:,.1f}x; "
    f"extrapolated to {n:,} videos: {starter_seconds * n / m:,.1f} s; GAP {starter_value:.10f}"
  )

  # GapAccumulator in batches.
  def accumulate():
    accumulator = GapAccumulator(k=k)
    for s in range(0, n, batch):
      accumulator.add(scores[s : s + batch], labels[s : s + batch])
    return accumulator.result()

  acc_seconds, acc_value = timed(accumulate, FLAGS.repeats)
  report(f"GapAccumulator, batches of {batch}, add + result", acc_seconds, n)
  print(f"  GapAccumulator GAP {acc_value:.6f} (|diff| to gap_at_k {abs(acc_value - gap_value):.1e})")

  # Keras metric: compiled update_state per batch, then one result().
  metric = GapMetric(k=k, max_videos=n)
  update = tf.function(metric.update_state)
  result = tf.function(metric.result)
  for size in {batch, n % batch} - {0}:  # trace every batch shape outside the timing
    update(labels[:size], scores[:size])
    metric.reset_state()
  result()

  def keras_updates_then_result():
    metric.reset_state()
    for s in range(0, n, batch):
      update(labels[s : s + batch], scores[s : s + batch])
    return float(result())

  keras_seconds, keras_value = timed(keras_updates_then_result, FLAGS.keras_repeats)
  report(f"GapMetric, update_state x{-(-n // batch)} + one result", keras_seconds, n)
  result_seconds, _ = timed(lambda: float(result()), FLAGS.keras_repeats)
  print(
    f"  of which one result() over {n * k:,} pairs: {result_seconds:.3f} s; GapMetric GAP "
    f"{keras_value:.6f} (|diff| to gap_at_k {abs(keras_value - gap_value):.1e})"
  )

  # As inside fit/evaluate: result() after every batch, so the cost grows with the pairs stored.
  p = min(FLAGS.keras_per_step_videos, n)
  per_step_metric = GapMetric(k=k, max_videos=p)

  @tf.function
  def step(y_true, y_pred):
    per_step_metric.update_state(y_true, y_pred)
    return per_step_metric.result()

  for size in {min(batch, p), p % batch} - {0}:
    step(labels[:size], scores[:size])
    per_step_metric.reset_state()

  def keras_per_step():
    per_step_metric.reset_state()
    for s in range(0, p, batch):
      value = step(labels[s : min(s + batch, p)], scores[s : min(s + batch, p)])
    return float(value)

  per_step_seconds, _ = timed(keras_per_step, FLAGS.keras_repeats)
  report(f"GapMetric, update+result every batch, {p:,} videos", per_step_seconds, p)

  peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(f"peak RSS at the end (ru_maxrss, whole process incl. the input matrices): {peak_mib:,.0f} MiB")


if __name__ == "__main__":
  app.run(main)
