"""Training and prediction throughput of the video-level models on another Keras 3 backend (GPU machines).

  KERAS_BACKEND=torch python bench/bench_keras_backend.py [--models=ResNetLike,EnsembleModel] \
      [--batch_size=512] [--steps=20] [--repeats=3] [--policies=float32,mixed_bfloat16,mixed_float16]

Why: the GPU machines lent to this project carry PyTorch and JAX but no TensorFlow, and TensorFlow's wheel
is too large to carry there; the video-level models are plain Keras 3 (keras.ops only), so the same model
code runs there on Keras' torch or JAX backend. This measures the models, not the TF pipeline (readers,
TF-DF, SavedModel). The package is loaded without its `__init__` files (they import the TF readers):
`yt8m_tf.data.schema`, `yt8m_tf.models.{layers,inputs,heads,registry}` and the video model modules only.

Per model and dtype policy: a fresh build, `compile` (Adam, binary cross-entropy on logits; Keras wraps
the optimizer for loss scaling under mixed_float16), one warm-up chunk, then the median of `--repeats`
chunks of `--steps` `train_on_batch` calls on random inputs and multi-hot labels already on the device's
side of Keras; prediction likewise with `predict_on_batch`. Each chunk ends by reading the loss / the
scores back to the host, so the device's queue is drained inside the timing.
"""

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
import types

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# The models the pipeline trains: (registry name, label, params).
MODELS = {
  "EnsembleModel": [
    (
      "EnsembleModel",
      "EnsembleModel, demo student (1/16 widths)",
      {"width_scale": 1 / 16, "bn_momentum": 0.9, "output_bias": True, "input_normalization": "none"},
    ),
    ("EnsembleModel", "EnsembleModel, paper size", {"output_bias": True, "input_normalization": "l2"}),
  ],
  "ResNetLike": [
    ("ResNetLike", "ResNetLike, inner 512 (demo)", {"inner_size": 512}),
    ("ResNetLike", "ResNetLike, inner 2048 (paper)", {"inner_size": 2048}),
  ],
}


def load_video_models():
  """yt8m_tf's model registry with the video-level models, without importing TensorFlow."""
  for package in ("yt8m_tf", "yt8m_tf.data", "yt8m_tf.models", "yt8m_tf.models.video"):
    module = types.ModuleType(package)
    module.__path__ = [os.path.join(ROOT, *package.split("."))]
    sys.modules[package] = module
  for name in ("data.schema", "models.layers", "models.inputs", "models.heads", "models.registry"):
    importlib.import_module("yt8m_tf." + name)
  for path in sorted(os.listdir(os.path.join(ROOT, "yt8m_tf", "models", "video"))):
    if path.endswith(".py") and path != "__init__.py":
      spec = importlib.util.spec_from_file_location(
        "yt8m_tf.models.video." + path[:-3], os.path.join(ROOT, "yt8m_tf", "models", "video", path)
      )
      module = importlib.util.module_from_spec(spec)
      sys.modules[spec.name] = module
      spec.loader.exec_module(module)
  return sys.modules["yt8m_tf.models.registry"]


def timed_chunks(step, steps, repeats):
  step()  # the first call builds (traces / compiles) the step
  for _ in range(steps):
    step()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps - 1):
      step()
    float(step())  # back to the host: the queued work is done
    times.append(time.perf_counter() - start)
  return statistics.median(times) / steps


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default="EnsembleModel,ResNetLike")
  parser.add_argument("--batch_size", type=int, default=512)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--policies", default="float32,mixed_bfloat16,mixed_float16")
  parser.add_argument("--json_out", default=None, help="Also write the figures here.")
  args = parser.parse_args()

  import keras
  import numpy as np

  registry = load_video_models()
  backend = keras.backend.backend()
  device = "cpu"
  if backend == "torch":
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
  elif backend == "jax":
    import jax

    device = str(jax.devices()[0])
  print(f"keras {keras.__version__}, backend {backend}, device {device}, batch {args.batch_size}", flush=True)

  rng = np.random.default_rng(0)
  batch = args.batch_size
  features = {
    "mean_rgb": rng.normal(size=(batch, 1024)).astype("float32"),
    "mean_audio": rng.normal(size=(batch, 128)).astype("float32"),
  }
  labels = np.zeros((batch, 3862), "float32")
  labels[np.arange(batch)[:, None], rng.integers(0, 3862, (batch, 3))] = 1.0
  results = []
  for key in args.models.split(","):
    for name, label, params in MODELS[key]:
      for policy in args.policies.split(","):
        keras.mixed_precision.set_dtype_policy(policy)
        model = registry.build(name, **params)
        model.compile(
          optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy(from_logits=True)
        )
        train = timed_chunks(lambda: model.train_on_batch(features, labels), args.steps, args.repeats)
        predict = timed_chunks(
          lambda: np.asarray(model.predict_on_batch(features)).ravel()[0], args.steps, args.repeats
        )
        row = {
          "model": label,
          "policy": policy,
          "params": model.count_params(),
          "train_examples_per_s": batch / train,
          "predict_examples_per_s": batch / predict,
        }
        results.append(row)
        print(
          f"{label:<40} {policy:<15} {row['params']:>12,} params  train {row['train_examples_per_s']:>10,.0f} "
          f"ex/s  predict {row['predict_examples_per_s']:>10,.0f} ex/s",
          flush=True,
        )
        keras.backend.clear_session()
  keras.mixed_precision.set_dtype_policy("float32")
  if args.json_out:
    with open(args.json_out, "w") as f:
      json.dump({"backend": backend, "device": device, "batch_size": batch, "results": results}, f, indent=1)


if __name__ == "__main__":
  main()
