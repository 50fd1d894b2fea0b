"""Measures synthetic-data generation: videos/s, peak RSS and output bytes per 1k videos.

  .venv/bin/python bench/bench_synthetic.py --num_videos=5000 [--num_classes=N] [--label_sets=PATH]

Each mode (video-level only; video + frame level) runs in its own child process so that its peak RSS
(ru_maxrss) is its own. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from absl import app, flags

flags.DEFINE_integer("num_videos", 5000, "Videos to generate.")
flags.DEFINE_integer("num_classes", None, "Class subset (default: all).")
flags.DEFINE_string(
  "label_sets", None, "Label CSV (default: the packaged sample; use the full file for >50k)."
)
flags.DEFINE_integer("chunk_size", 256, "Videos per chunk.")
flags.DEFINE_string("child_out_dir", None, "Internal: run one generation into this directory.")
flags.DEFINE_bool("child_frame_level", True, "Internal: frame_level of the child run.")
FLAGS = flags.FLAGS


def _directory_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def _child() -> None:
  from yt8m_tf.data.synthetic import SyntheticConfig, generate

  config = SyntheticConfig(
    num_videos=FLAGS.num_videos, num_classes=FLAGS.num_classes, frame_level=FLAGS.child_frame_level
  )
  started = time.time()
  summary = generate(
    config, FLAGS.child_out_dir, label_sets_path=FLAGS.label_sets, chunk_size=FLAGS.chunk_size
  )
  seconds = time.time() - started
  print(
    json.dumps(
      {
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "frames": sum(summary["counts"]["frames"].values()),
      }
    )
  )


def main(argv):
  del argv
  if FLAGS.child_out_dir:
    _child()
    return
  for frame_level in (False, True):
    with tempfile.TemporaryDirectory() as out_dir:
      command = [
        sys.executable,
        __file__,
        f"--child_out_dir={out_dir}",
        f"--num_videos={FLAGS.num_videos}",
        f"--child_frame_level={frame_level}",
        f"--chunk_size={FLAGS.chunk_size}",
      ]
      if FLAGS.num_classes:
        command.append(f"--num_classes={FLAGS.num_classes}")
      if FLAGS.label_sets:
        command.append(f"--label_sets={FLAGS.label_sets}")
      output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
      result = json.loads(output.strip().splitlines()[-1])
      per_1k = {
        level: _directory_bytes(os.path.join(out_dir, level)) * 1000 / FLAGS.num_videos / 2**20
        for level in ("video", "frame")
        if os.path.isdir(os.path.join(out_dir, level))
      }
      mode = "video+frame" if frame_level else "video only"
      print(
        f"{mode:12s} {FLAGS.num_videos} videos ({result['frames']} frames) in {result['seconds']:.1f} s: "
        f"{FLAGS.num_videos / result['seconds']:.0f} videos/s, peak RSS {result['peak_rss_mb']:.0f} MB, "
        + ", ".join(f"{level}/ {mb:.1f} MB per 1k videos" for level, mb in per_1k.items()),
        flush=True,
      )


if __name__ == "__main__":
  app.run(main)
