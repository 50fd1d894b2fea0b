"""Reader throughput: yt8m_tf readers vs bare tf.io parsing, measured in the same run.

  python bench/bench_readers.py [--videos 20000] [--frame_videos 2000] [--repeats 5]

Writes random records to a temporary directory (page cache warm after the first pass), then times
full passes, dataset construction included, alternating bare and ours so that load from other processes
hits both alike. The baseline is the minimum a reader must do: TFRecordDataset -> batch -> parse_example
with fixed-length specs (video level), or per-record parse_single_sequence_example + decode_raw +
dequantize + pad (frame level), with no validation, names or label densification. Our readers add
per-record names, field validation, the file integrity check and multi-hot labels.
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

from yt8m_tf import data  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("videos", 20000, "Video-level records to write and read.")
flags.DEFINE_integer("frame_videos", 2000, "Frame-level records to write and read.")
flags.DEFINE_integer("batch_size", 256, "Video-level batch size.")
flags.DEFINE_integer("frame_batch_size", 32, "Frame-level batch size.")
flags.DEFINE_integer("repeats", 5, "Timed passes per reader, after one warm-up pass (median, range).")


def write_video_files(directory, num_videos, num_files, seed=0):
  rng = np.random.default_rng(seed)
  per_file = -(-num_videos // num_files)
  for f in range(num_files):
    n = min(per_file, num_videos - f * per_file)
    records = [
      data.video_example(
        f"v{f}_{i}",
        rng.choice(3862, rng.integers(1, 6), replace=False),
        {"mean_rgb": rng.normal(size=1024), "mean_audio": rng.normal(size=128)},
      )
      for i in range(n)
    ]
    data.write_records(os.path.join(directory, f"video-{f:03d}.tfrecord"), records)
  return os.path.join(directory, "video-*.tfrecord")


def write_frame_files(directory, num_videos, num_files, seed=0):
  rng = np.random.default_rng(seed)
  per_file = -(-num_videos // num_files)
  for f in range(num_files):
    n = min(per_file, num_videos - f * per_file)
    records = []
    for i in range(n):
      frames = rng.integers(60, 241)
      records.append(
        data.frame_example(
          f"f{f}_{i}",
          rng.choice(3862, 3, replace=False),
          {
            "rgb": rng.integers(0, 256, (frames, 1024), dtype=np.uint8),
            "audio": rng.integers(0, 256, (frames, 128), dtype=np.uint8),
          },
        )
      )
    data.write_records(os.path.join(directory, f"frame-{f:03d}.tfrecord"), records)
  return os.path.join(directory, "frame-*.tfrecord")


def bare_video(pattern, batch_size):
  spec = {
    "id": tf.io.FixedLenFeature([], tf.string),
    "labels": tf.io.VarLenFeature(tf.int64),
    "mean_rgb": tf.io.FixedLenFeature([1024], tf.float32),
    "mean_audio": tf.io.FixedLenFeature([128], tf.float32),
  }
  files = tf.data.Dataset.list_files(pattern, shuffle=False)
  return (
    files.interleave(tf.data.TFRecordDataset, cycle_length=8, num_parallel_calls=tf.data.AUTOTUNE)
    .batch(batch_size)
    .map(lambda s: tf.io.parse_example(s, spec), num_parallel_calls=tf.data.AUTOTUNE)
    .prefetch(tf.data.AUTOTUNE)
  )


def bare_frame(pattern, batch_size):
  context = {"id": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64)}
  sequence = {k: tf.io.FixedLenSequenceFeature([], tf.string) for k in ("rgb", "audio")}

  def parse(serialized):
    ctx, seq = tf.io.parse_single_sequence_example(serialized, context, sequence)
    out = {"id": ctx["id"]}
    for key, size in (("rgb", 1024), ("audio", 128)):
      values = data.dequantize(tf.io.decode_raw(seq[key][:300], tf.uint8, fixed_length=size))
      out[key] = tf.pad(values, [[0, 300 - tf.shape(values)[0]], [0, 0]])
    return out

  files = tf.data.Dataset.list_files(pattern, shuffle=False)
  return (
    files.interleave(tf.data.TFRecordDataset, cycle_length=8, num_parallel_calls=tf.data.AUTOTUNE)
    .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    .batch(batch_size)
    .prefetch(tf.data.AUTOTUNE)
  )


def _timed_pass(make_dataset, num_videos):
  """(videos/s over the whole pass, seconds to build the dataset and get its first batch)."""
  start = time.perf_counter()
  iterator = iter(make_dataset())
  next(iterator)
  first = time.perf_counter() - start
  for _ in iterator:
    pass
  return num_videos / (time.perf_counter() - start), first


def compare(name, make_baseline, make_ours, num_videos, repeats):
  """Times full passes (dataset construction included) of both readers, alternating, after one warm-up
  pass each (page cache, first tracing; reported as the cold start-up), and prints the medians."""
  cold = [_timed_pass(make, num_videos)[1] for make in (make_baseline, make_ours)]
  runs = {"baseline": [], "ours": []}
  for _ in range(repeats):
    runs["baseline"].append(_timed_pass(make_baseline, num_videos))
    runs["ours"].append(_timed_pass(make_ours, num_videos))
  rate = {k: [r[0] for r in v] for k, v in runs.items()}
  first = {k: statistics.median(r[1] for r in v) for k, v in runs.items()}
  median = {k: statistics.median(v) for k, v in rate.items()}
  print(
    f"{name}: ours {median['ours']:,.0f} videos/s (range {min(rate['ours']):,.0f}-{max(rate['ours']):,.0f}); "
    f"bare baseline {median['baseline']:,.0f} videos/s "
    f"(range {min(rate['baseline']):,.0f}-{max(rate['baseline']):,.0f}); "
    f"ratio ours/baseline {median['ours'] / median['baseline']:.2f}\n"
    f"  build + first batch: ours {first['ours']:.3f} s, bare {first['baseline']:.3f} s "
    f"(first time in the process: ours {cold[1]:.3f} s, bare {cold[0]:.3f} s)"
  )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  with tempfile.TemporaryDirectory() as tmp:
    video_pattern = write_video_files(tmp, FLAGS.videos, 8)
    frame_pattern = write_frame_files(tmp, FLAGS.frame_videos, 8)
    print(
      f"cpus={os.cpu_count()} repeats={FLAGS.repeats} (median, range; bare and ours alternate); tf {tf.__version__}"
    )
    bare = lambda: bare_video(video_pattern, FLAGS.batch_size)
    compare(
      f"video-level, batch {FLAGS.batch_size}, {FLAGS.videos} videos",
      bare,
      lambda: data.video_dataset(video_pattern, FLAGS.batch_size),
      FLAGS.videos,
      FLAGS.repeats,
    )
    compare(
      f"video-level with fold filter (4 of 5 folds kept), {FLAGS.videos} videos read",
      bare,
      lambda: data.video_dataset(video_pattern, FLAGS.batch_size, exclude_folds=[0]),
      FLAGS.videos,
      FLAGS.repeats,
    )
    compare(
      f"frame-level, batch {FLAGS.frame_batch_size}, {FLAGS.frame_videos} videos, 60-240 frames",
      lambda: bare_frame(frame_pattern, FLAGS.frame_batch_size),
      lambda: data.frame_dataset(frame_pattern, FLAGS.frame_batch_size),
      FLAGS.frame_videos,
      FLAGS.repeats,
    )


if __name__ == "__main__":
  app.run(main)
