"""Soft-label lookup speed: soft_targets.target_transform in tf.data against a no-lookup baseline.

  python bench/bench_soft_labels.py [--videos 200000] [--candidates 30] [--classes 3862] [--batch 1024]
                                    [--repeats 5] [--score_dtype float32]

A random store (every video has --candidates distinct classes) is built from rows grouped by video, as
the stacker writes them, then saved and loaded. Both pipelines read the same batches of shuffled ids
with all-zero hard labels [B, classes]; the baseline maps them unchanged, the soft one through
`target_transform(0.5)`, both with num_parallel_calls=AUTOTUNE as in training. One pass over all videos
is timed per repeat (after one warm-up pass); the figures are medians. Also times `store.lookup`
(numpy) per batch, and the one-off costs: from_rows, save, load, building the hash table.
"""

import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from yt8m_tf.stores.soft_labels import SoftLabelStore  # noqa: E402
from yt8m_tf.training import soft_targets  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("videos", 200_000, "Videos in the store.")
flags.DEFINE_integer("candidates", 30, "Distinct classes (scores) per video in the store.")
flags.DEFINE_integer("classes", 3862, "Classes of the labels.")
flags.DEFINE_integer("batch", 1024, "Videos per batch.")
flags.DEFINE_integer("repeats", 5, "Timed passes, after one warm-up pass (median).")
flags.DEFINE_enum("score_dtype", "float32", ["float32", "float16"], "Storage dtype of the store's scores.")
flags.DEFINE_integer("seed", 0, "Seed of the random store and of the id order.")


def make_rows(num_videos, candidates, num_classes, seed):
  """Rows grouped by video; candidate k of a video lies in the k-th of `candidates` equal class bands,
  so a video's classes are distinct without a per-video draw."""
  rng = np.random.default_rng(seed)
  ids = np.char.add("vid", np.arange(num_videos).astype(np.str_)).astype(np.bytes_)
  band = num_classes // candidates
  classes = np.arange(candidates) * band + rng.integers(0, band, (num_videos, candidates))
  scores = rng.random((num_videos, candidates), dtype=np.float32)
  return np.repeat(ids, candidates), classes.ravel(), scores.ravel(), ids


def timed(function):
  start = time.perf_counter()
  result = function()
  return time.perf_counter() - start, result


def pass_time(dataset):
  def run():
    for _ in dataset:
      pass

  return timed(run)[0]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")

  video_ids, class_ids, scores, ids = make_rows(FLAGS.videos, FLAGS.candidates, FLAGS.classes, FLAGS.seed)
  build_s, store = timed(
    lambda: SoftLabelStore.from_rows(
      video_ids, class_ids, scores, FLAGS.classes, score_dtype=FLAGS.score_dtype
    )
  )
  with tempfile.TemporaryDirectory() as directory:
    path = os.path.join(directory, "soft.npz")
    save_s, _ = timed(lambda: store.save(path))
    size_mb = os.path.getsize(path) / 2**20
    load_s, store = timed(lambda: SoftLabelStore.load(path))
  table_s, transform = timed(lambda: soft_targets.target_transform(store, 0.5))
  print(
    f"store: {len(store)} videos x {FLAGS.candidates} candidates = {store.nnz} scores ({FLAGS.score_dtype}), "
    f"{FLAGS.classes} classes, file {size_mb:.1f} MiB"
  )
  print(
    f"one-off: from_rows {build_s:.2f}s  save {save_s:.2f}s  load {load_s:.2f}s  "
    f"hash table + tensors {table_s:.2f}s"
  )

  shuffled = np.random.default_rng(FLAGS.seed + 1).permutation(ids)
  num_classes = FLAGS.classes

  def with_hard_labels(batch_ids):
    return {"id": batch_ids}, tf.zeros([tf.shape(batch_ids)[0], num_classes])

  batches = tf.data.Dataset.from_tensor_slices(shuffled).batch(FLAGS.batch).map(with_hard_labels)
  pipelines = {
    "baseline (hard labels, no lookup)": batches.map(
      lambda f, l: (f, l), num_parallel_calls=tf.data.AUTOTUNE
    ),
    "target_transform(0.5)": batches.map(transform, num_parallel_calls=tf.data.AUTOTUNE),
  }
  medians = {}
  for name, dataset in pipelines.items():
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    pass_time(dataset)  # warm-up: tracing, thread pools
    medians[name] = statistics.median(pass_time(dataset) for _ in range(FLAGS.repeats))

  batch_ids = np.array_split(shuffled, max(1, len(shuffled) // FLAGS.batch))

  def numpy_pass():
    for chunk in batch_ids:
      store.lookup(chunk)

  medians["store.lookup (numpy, per batch)"] = statistics.median(
    timed(numpy_pass)[0] for _ in range(FLAGS.repeats)
  )
  num_batches = -(-len(shuffled) // FLAGS.batch)
  print(f"batch {FLAGS.batch}, {num_batches} batches a pass, median of {FLAGS.repeats} passes:")
  for name, seconds in medians.items():
    print(f"  {name:34s} {seconds:7.3f}s  {len(shuffled) / seconds:12,.0f} videos/s")
  baseline = medians["baseline (hard labels, no lookup)"]
  extra = medians["target_transform(0.5)"] - baseline
  print(f"soft-label lookup adds {extra:.3f}s a pass = {1e3 * extra / num_batches:.2f} ms a batch")


if __name__ == "__main__":
  app.run(main)
