"""Training and prediction throughput of L1 models, against a plain MLP baseline in the same run.

  python bench/bench_training.py [--models=ResNetLike,NeXtVLADModel] [--repeats=3] [--steps=5] \
      [--params='{"EnsembleModel": {"width_scale": 0.0625}}'] [--jit_compile]

Inputs are random tensors already in memory, so the figures measure the model, not the reader
(bench_readers.py measures that). The baseline is the 1152 -> 2048 -> 3862 MLP of stack_notes.md.
ResNetLike runs at its defaults (52.3M parameters, batch 512 as in most seed configs); NeXtVLAD at its
defaults (K=128, H=2048, 300 frames) with batch 256, as the issue asks. Median over `--repeats` timed
chunks of `--steps` steps each, after one warm-up chunk. "first step" is the wall time of the first `fit`
step of a fresh model: building (tracing) its training graph plus one step.
"""

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from yt8m_tf import models  # noqa: E402
from yt8m_tf.configs import dataclass_flags  # noqa: E402
from yt8m_tf.training import trainer  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["ResNetLike", "NeXtVLADModel"], "Registered models to time (comma-separated).")
flags.DEFINE_integer("repeats", 3, "Timed chunks, after one warm-up chunk (median).")
flags.DEFINE_integer("steps", 5, "Steps per chunk.")
flags.DEFINE_integer("max_frames", 300, "Frames of the frame-level inputs.")
flags.DEFINE_string("params", "{}", "JSON: model name -> builder params")
flags.DEFINE_bool("jit_compile", False, "XLA for the models (not the baseline)")

NUM_CLASSES = 3862


def mlp_baseline():
  inputs = {
    "mean_rgb": keras.Input((1024,), name="mean_rgb"),
    "mean_audio": keras.Input((128,), name="mean_audio"),
  }
  x = keras.layers.Concatenate()(list(inputs.values()))
  x = keras.layers.Dense(2048, activation="relu")(x)
  return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x), name="MLP_baseline")


def batch_for(model, batch_size, max_frames):
  rng = np.random.default_rng(0)
  kind = "frame" if "num_frames" in {t.name for t in model.inputs} else "video"
  if kind == "video":
    features = {
      "mean_rgb": rng.normal(size=(batch_size, 1024)),
      "mean_audio": rng.normal(size=(batch_size, 128)),
    }
  else:
    features = {
      "rgb": rng.normal(size=(batch_size, max_frames, 1024)),
      "audio": rng.normal(size=(batch_size, max_frames, 128)),
      "num_frames": rng.integers(max_frames // 2, max_frames + 1, batch_size).astype(np.int32),
    }
  features = {
    k: tf.constant(v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in features.items()
  }
  labels = tf.constant((rng.random((batch_size, NUM_CLASSES)) < 3 / NUM_CLASSES).astype(np.float32))
  return features, labels


def throughput(model, batch_size, steps, repeats, max_frames, jit_compile=False):
  features, labels = batch_for(model, batch_size, max_frames)
  trainer.compile_model(model, learning_rate=1e-3, jit_compile=jit_compile)
  dataset = tf.data.Dataset.from_tensors((features, labels)).repeat()
  start = time.perf_counter()
  model.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)
  first_step = time.perf_counter() - start
  model.fit(
    dataset, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False
  )  # warm-up: tracing, allocation
  train = []
  for _ in range(repeats):
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    train.append(steps * batch_size / (time.perf_counter() - start))
  infer = tf.function(lambda f: model(f, training=False))
  infer(features)
  predict = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      infer(features).numpy()
    predict.append(steps * batch_size / (time.perf_counter() - start))
  return statistics.median(train), statistics.median(predict), first_step


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    params = dataclass_flags.json_object("params", FLAGS.params)
  except ValueError as error:
    raise app.UsageError(str(error)) from None
  devices = [d.device_type for d in tf.config.list_logical_devices()]
  print(f"tf {tf.__version__}, keras {keras.__version__}, devices {devices}, cpus {os.cpu_count()}")
  baseline_batch = 256
  base_train, base_predict, _ = throughput(
    mlp_baseline(), baseline_batch, FLAGS.steps, FLAGS.repeats, FLAGS.max_frames
  )
  print(
    f"{'MLP baseline 1152-2048-3862':<34} batch {baseline_batch:4d}: train {base_train:8.1f} ex/s, "
    f"predict {base_predict:8.1f} ex/s"
  )
  for name in FLAGS.models:
    batch_size = 256 if models.get(name).kind == models.FRAME else 512
    keras.utils.set_random_seed(0)
    model = models.build(name, num_classes=NUM_CLASSES, **params.get(name, {}))
    train, predict, first_step = throughput(
      model, batch_size, FLAGS.steps, FLAGS.repeats, FLAGS.max_frames, FLAGS.jit_compile
    )
    print(
      f"{name + f' ({model.count_params() / 1e6:.1f}M params)':<34} batch {batch_size:4d}: "
      f"train {train:8.1f} ex/s ({train / base_train:.3f}x baseline), "
      f"predict {predict:8.1f} ex/s ({predict / base_predict:.3f}x baseline), first step {first_step:.1f} s"
    )


if __name__ == "__main__":
  app.run(main)
