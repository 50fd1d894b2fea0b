"""Shared pytest set-up: quiet TF, TF-DF importable under capture, tiny record fixtures."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TF-DF tries to import IPython for its banner when stdout is captured (as under pytest).
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from yt8m_tf import data  # noqa: E402

TINY_SCHEMA = data.Schema(num_classes=12, max_frames=10)


def make_videos(num, seed=0, schema=TINY_SCHEMA, prefix="vid", max_labels=3):
  """Random video-level content: ids, label lists, mean_rgb, mean_audio."""
  rng = np.random.default_rng(seed)
  ids = [f"{prefix}{i:04d}" for i in range(num)]
  labels = [
    np.sort(rng.choice(schema.num_classes, rng.integers(1, max_labels + 1), replace=False))
    for _ in range(num)
  ]
  rgb = rng.normal(size=(num, schema.feature_sizes[0])).astype(np.float32)
  audio = rng.normal(size=(num, schema.feature_sizes[1])).astype(np.float32)
  return ids, labels, rgb, audio


def write_video_file(path, ids, labels, rgb, audio, schema=TINY_SCHEMA):
  records = [
    data.video_example(i, l, {"mean_rgb": r, "mean_audio": a}, schema)
    for i, l, r, a in zip(ids, labels, rgb, audio)
  ]
  data.write_records(str(path), records)
  return records


def make_frames(num, seed=0, schema=TINY_SCHEMA, min_frames=1, max_frames=14):
  rng = np.random.default_rng(seed)
  counts = rng.integers(min_frames, max_frames + 1, num)
  return [
    {
      name: rng.integers(0, 256, (n, size), dtype=np.uint8)
      for name, size in zip(schema.feature_names, schema.feature_sizes)
    }
    for n in counts
  ]


@pytest.fixture
def tiny_schema():
  return TINY_SCHEMA
