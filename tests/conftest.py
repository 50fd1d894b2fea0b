"""Shared pytest set-up: quiet TF, TF-DF importable under capture, tiny record fixtures."""

import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TF-DF tries to import IPython for its banner when stdout is captured (as under pytest).
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from yt8m_tf import data  # noqa: E402

TINY_SCHEMA = data.Schema(num_classes=12, max_frames=10)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def generate_video_benchmark(out_dir: str, num_videos: int, num_classes: int) -> str:
  """The synthetic benchmark at test size: video level only, 2-4 frames per video, one shard per split."""
  from yt8m_tf.data import synthetic

  synthetic.generate(
    synthetic.SyntheticConfig(
      num_videos=num_videos,
      num_classes=num_classes,
      min_frames=2,
      max_frames=4,
      mean_frames=3,
      num_shards=(1, 1, 1),
      frame_level=False,
    ),
    str(out_dir),
  )
  return str(out_dir)


TWO_CPUS = """
import json
import numpy as np
import tensorflow as tf
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
"""


def run_with_two_cpus(tmp_path, body: str, timeout: int = 300) -> dict:
  """Runs `body` after TWO_CPUS (`strategy`: MirroredStrategy over 2 logical CPUs) in a fresh Python, since
  logical devices must be configured before TF starts; returns the `out` dict the body fills."""
  script = tmp_path / "two_cpus.py"
  script.write_text(TWO_CPUS + body + '\nprint("RESULT" + json.dumps(out))\n')
  python_path = os.pathsep.join(p for p in [REPO_ROOT, os.environ.get("PYTHONPATH")] if p)
  env = dict(os.environ, PYTHONPATH=python_path, TF_CPP_MIN_LOG_LEVEL="2")
  completed = subprocess.run(
    [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=timeout
  )
  lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT")]
  assert completed.returncode == 0 and lines, completed.stderr[-3000:]
  return json.loads(lines[-1][len("RESULT") :])


def randomize_weights(model, seed):
  """Non-trivial weights, BN statistics included (variances positive), so that every stored variable matters."""
  rng = np.random.default_rng(seed)
  weights = []
  for variable in model.weights:
    values = rng.normal(scale=0.2, size=variable.shape).astype(np.float32)
    weights.append(np.abs(values) + 0.5 if "variance" in variable.path else values)
  model.set_weights(weights)
  return model


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


def call_with_unknown_frames(model, features):
  """The model traced with the batch AND frame axes unknown (as shapes may arrive from tf.data), then run."""
  signature = {
    name: tf.TensorSpec([None, None, np.shape(v)[-1]] if np.ndim(v) == 3 else [None], np.asarray(v).dtype)
    for name, v in features.items()
  }
  traced = tf.function(lambda inputs: model(inputs, training=False), input_signature=[signature])
  return np.asarray(traced({name: tf.constant(v) for name, v in features.items()}))


@pytest.fixture
def tiny_schema():
  return TINY_SCHEMA
