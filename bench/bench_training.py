"""Training and prediction throughput of L1 models, against a plain MLP baseline in the same run.

  python bench/bench_training.py [--models=ResNetLike,NeXtVLADModel] [--repeats=3] [--steps=5] \
      [--params='{"EnsembleModel": {"width_scale": 0.0625}}'] [--jit_compile] [--mixed_precision] [--torch]

Inputs are random tensors already in memory, so the figures measure the model, not the reader
(bench_readers.py measures that). The baseline is the 1152 -> 2048 -> 3862 MLP of stack_notes.md.
ResNetLike runs at its defaults (52.3M parameters, batch 512 as in most seed configs); NeXtVLAD at its
defaults (K=128, H=2048, 300 frames) with batch 256, as the issue asks. Median over `--repeats` timed
chunks of `--steps` steps each, after one warm-up chunk. "first step" is the wall time of the first `fit`
step of a fresh model: building (tracing) its training graph plus one step. With `--mixed_precision` each
model is also timed built under `experiment.mixed_precision_policy()` (bfloat16 on CPU, float16 on GPU), the
two builds alternating chunk by chunk, and the speed-ups are printed. With `--torch`, ResNetLike is also timed
as the PyTorch net of torch_reference.py (same graph, parameters, batch, data, loss, Adam and clipping; eager,
float32, torch.set_num_threads(cpus)), alternating chunk by chunk with the Keras builds, and the Keras/PyTorch
throughput ratios are printed. PyTorch is a bench-only dependency (`pip install torch==2.13.0`), imported only
with `--torch`.
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
from yt8m_tf.training import experiment, trainer  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["ResNetLike", "NeXtVLADModel"], "Registered models to time (comma-separated).")
flags.DEFINE_integer("repeats", 3, "Timed chunks, after one warm-up chunk (median).")
flags.DEFINE_integer("steps", 5, "Steps per chunk.")
flags.DEFINE_integer("max_frames", 300, "Frames of the frame-level inputs.")
flags.DEFINE_string("params", "{}", "JSON: model name -> builder params")
flags.DEFINE_bool("jit_compile", False, "XLA for the models (not the baseline)")
flags.DEFINE_bool(
  "mixed_precision", False, "Also time each model in mixed precision (alternating with float32)."
)
flags.DEFINE_bool(
  "torch", False, "Also time ResNetLike's PyTorch twin (bench/torch_reference.py), alternating with Keras."
)

NUM_CLASSES = 3862
# The models torch_reference.py reproduces.
TORCH_REFERENCES = ("ResNetLike",)
TORCH_INSTALL = "pip install torch==2.13.0"


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


class Throughput:
  """Examples/s of `steps` training steps, then `steps` predictions, per `chunk()`; subclasses run them."""

  def __init__(self, batch_size):
    self.batch_size = batch_size
    self.train, self.predict = [], []

  def run_training(self, steps):
    raise NotImplementedError

  def run_prediction(self):
    raise NotImplementedError

  def chunk(self, steps, record=True):
    start = time.perf_counter()
    self.run_training(steps)
    train = steps * self.batch_size / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(steps):
      self.run_prediction()
    predict = steps * self.batch_size / (time.perf_counter() - start)
    if record:
      self.train.append(train)
      self.predict.append(predict)

  def medians(self):
    return statistics.median(self.train), statistics.median(self.predict)


class Timed(Throughput):
  """One compiled Keras model and its fixed batch."""

  def __init__(self, model, batch_size, max_frames, jit_compile=False):
    super().__init__(batch_size)
    self.model = model
    self.features, self.labels = batch_for(model, batch_size, max_frames)
    trainer.compile_model(model, learning_rate=1e-3, jit_compile=jit_compile)
    self.dataset = tf.data.Dataset.from_tensors((self.features, self.labels)).repeat()
    start = time.perf_counter()
    model.fit(self.dataset, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)
    self.first_step = time.perf_counter() - start
    self.infer = tf.function(lambda f: model(f, training=False))

  def run_training(self, steps):
    self.model.fit(self.dataset, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)

  def run_prediction(self):
    self.infer(self.features).numpy()


def import_torch_reference():
  """bench/torch_reference.py, imported here only so that the benchmark runs without PyTorch."""
  # PyTorch's OpenMP threads spin at barriers by default; with other jobs (or TF's own threads) on the cores, a
  # spinning thread starves the one it waits for: ResNetLike at inner_size 64 measured 10x slower on 2 shared
  # cores, 2 threads (400 vs 4000-5000 ex/s), and no slower than 1 thread once passive. Read when libgomp
  # loads, hence before the import; an explicit OMP_WAIT_POLICY wins.
  os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  try:
    import torch_reference
  except ModuleNotFoundError as error:
    if error.name != "torch":
      raise
    sys.exit(
      f"--torch needs PyTorch, which is not installed: {TORCH_INSTALL} "
      f"(in this repository: .venv/bin/{TORCH_INSTALL})"
    )
  torch_reference.torch.set_num_threads(os.cpu_count())
  return torch_reference


class TorchTimed(Throughput):
  """The PyTorch twin of a Keras ResNetLike run, on that run's batch (same random features and labels)."""

  def __init__(self, torch_reference, keras_run, head_params):
    super().__init__(keras_run.batch_size)
    torch = torch_reference.torch
    torch.manual_seed(0)
    self.model = torch_reference.build(NUM_CLASSES, **head_params)
    self.trainer = torch_reference.Trainer(self.model, learning_rate=1e-3)
    self.mean_rgb, self.mean_audio, self.labels = (
      torch.tensor(t.numpy())
      for t in (keras_run.features["mean_rgb"], keras_run.features["mean_audio"], keras_run.labels)
    )
    start = time.perf_counter()
    self.run_training(1)
    self.first_step = time.perf_counter() - start

  def run_training(self, steps):
    for _ in range(steps):
      self.trainer.train_step(self.mean_rgb, self.mean_audio, self.labels)

  def run_prediction(self):
    self.trainer.predict(self.mean_rgb, self.mean_audio)


def check_weight_counts(keras_model, torch_run, torch_reference):
  """Prints both nets' weight counts and stops if they differ: then the two would not be the same network."""
  keras_counts = keras_model.count_params(), sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights)
  torch_counts = torch_reference.weight_counts(torch_run.model)
  print(
    f"{'':<34} weights: Keras {keras_counts[0]:,} ({keras_counts[1]:,} trainable), "
    f"PyTorch {torch_counts[0]:,} ({torch_counts[1]:,} trainable)"
  )
  if keras_counts != torch_counts:
    raise RuntimeError(
      f"the PyTorch reference does not match the Keras model: {torch_counts} != {keras_counts}"
    )


def time_alternating(runs, steps, repeats):
  """A warm-up chunk each (tracing, allocation), then `repeats` timed chunks taken in turn."""
  for run in runs:
    run.chunk(steps, record=False)
  for _ in range(repeats):
    for run in runs:
      run.chunk(steps)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    params = dataclass_flags.json_object("params", FLAGS.params)
  except ValueError as error:
    raise app.UsageError(str(error)) from None
  # Imported before any timing, so that a missing PyTorch stops the run at once.
  torch_reference = import_torch_reference() if FLAGS.torch else None
  devices = [d.device_type for d in tf.config.list_logical_devices()]
  print(f"tf {tf.__version__}, keras {keras.__version__}, devices {devices}, cpus {os.cpu_count()}")
  if torch_reference:
    torch = torch_reference.torch
    print(
      f"torch {torch.__version__}, threads {torch.get_num_threads()}, OMP_WAIT_POLICY {os.environ['OMP_WAIT_POLICY']}"
    )
  baseline_batch = 256
  baseline = Timed(mlp_baseline(), baseline_batch, FLAGS.max_frames)
  time_alternating([baseline], FLAGS.steps, FLAGS.repeats)
  base_train, base_predict = baseline.medians()
  print(
    f"{'MLP baseline 1152-2048-3862':<34} batch {baseline_batch:4d}: train {base_train:8.1f} ex/s, "
    f"predict {base_predict:8.1f} ex/s"
  )
  policies = [None, experiment.mixed_precision_policy()] if FLAGS.mixed_precision else [None]
  for name in FLAGS.models:
    batch_size = 256 if models.get(name).kind == models.FRAME else 512
    runs = []
    for policy in policies:
      keras.utils.set_random_seed(0)
      with experiment.dtype_policy(policy):
        model = models.build(name, num_classes=NUM_CLASSES, **params.get(name, {}))
      runs.append(Timed(model, batch_size, FLAGS.max_frames, FLAGS.jit_compile))
    torch_run = None
    if torch_reference and name in TORCH_REFERENCES:
      torch_run = TorchTimed(torch_reference, runs[0], params.get(name, {}))
      check_weight_counts(runs[0].model, torch_run, torch_reference)
    elif torch_reference:
      print(f"{'':<34} no PyTorch reference for {name} (only {', '.join(TORCH_REFERENCES)})")
    time_alternating(runs + ([torch_run] if torch_run else []), FLAGS.steps, FLAGS.repeats)
    for policy, run in zip(policies, runs):
      train, predict = run.medians()
      label = f"{name}{f' {policy}' if policy else ''} ({run.model.count_params() / 1e6:.1f}M params)"
      print(
        f"{label:<34} batch {batch_size:4d}: "
        f"train {train:8.1f} ex/s ({train / base_train:.3f}x baseline), "
        f"predict {predict:8.1f} ex/s ({predict / base_predict:.3f}x baseline), first step {run.first_step:.1f} s"
      )
    if len(runs) == 2:
      (train32, predict32), (train_mixed, predict_mixed) = runs[0].medians(), runs[1].medians()
      print(
        f"{'':<34} {policies[1]} speed-up: train {train_mixed / train32:.2f}x, predict {predict_mixed / predict32:.2f}x"
      )
    if torch_run:
      train, predict = torch_run.medians()
      label = f"{name} PyTorch ({torch_reference.weight_counts(torch_run.model)[0] / 1e6:.1f}M params)"
      print(
        f"{label:<34} batch {batch_size:4d}: "
        f"train {train:8.1f} ex/s ({train / base_train:.3f}x baseline), "
        f"predict {predict:8.1f} ex/s ({predict / base_predict:.3f}x baseline), first step {torch_run.first_step:.1f} s"
      )
      # Against the float32 Keras build, which is what PyTorch runs.
      keras_train, keras_predict = runs[0].medians()
      print(
        f"{'':<34} Keras/PyTorch: train {keras_train / train:.2f}x, predict {keras_predict / predict:.2f}x"
      )


if __name__ == "__main__":
  app.run(main)
