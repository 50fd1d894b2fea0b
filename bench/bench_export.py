"""Export size and serving throughput of a full-size model, float32 and float16 storage.

  python bench/bench_export.py [--model EnsembleModel] [--model_params '{}'] [--repeats 3] [--batch_size 1024]

Builds the model with untrained weights (the sizes do not depend on training), prints its parameter count
and the size account against the 10**9-byte budget, exports it with each storage dtype (timing the
export), measures the bytes of variables/ and of the whole SavedModel on disk, and reloads each export to
time its `serving_default` signature on one in-memory batch: the median of --repeats calls after a
warm-up call. The in-process Keras `model.predict` on the same batch is the baseline of the same run (and
the model called in a tf.function, the export's forward pass without predict's per-call overhead).
Also prints the largest probability difference of the float16 export against the float32 one.
"""

import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from yt8m_tf import data, export, models  # noqa: E402
from yt8m_tf.configs import dataclass_flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "EnsembleModel", "Registered model name.")
flags.DEFINE_string("model_params", "{}", "JSON object of builder parameters.")
flags.DEFINE_integer("num_classes", 3862, "Classes of the model's output.")
flags.DEFINE_integer("repeats", 3, "Timed calls after the warm-up call (median).")
flags.DEFINE_integer("batch_size", 1024, "Videos in the one in-memory batch.")
flags.DEFINE_integer("size_budget_bytes", export.DEFAULT_BUDGET_BYTES, "Refuse exports storing more bytes.")
flags.DEFINE_string("out_dir", None, "Export base; default a temporary directory, removed.")


def median_seconds(call, repeats):
  call()  # warm-up: tracing, allocation
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:  # TF's INFO lines while saving would bury the figures
    logging.set_verbosity(logging.WARNING)
  try:
    model_params = dataclass_flags.json_object("model_params", FLAGS.model_params)
  except ValueError as error:
    raise app.UsageError(str(error)) from None

  out_dir = FLAGS.out_dir or tempfile.mkdtemp(prefix="bench_export_")
  try:
    run(FLAGS, model_params, out_dir)
  finally:
    if FLAGS.out_dir is None:
      shutil.rmtree(out_dir, ignore_errors=True)


def run(args, model_params, out_dir):
  schema = data.Schema(num_classes=args.num_classes)
  start = time.perf_counter()
  model = models.build(args.model, num_classes=args.num_classes, **model_params)
  print(f"{args.model}: {model.count_params():,} parameters (built in {time.perf_counter() - start:.1f} s)")
  print(
    f"threads: {os.cpu_count()} CPUs, devices {[d.device_type for d in tf.config.list_physical_devices()]}"
  )

  rng = np.random.default_rng(0)
  features = {
    name: rng.normal(size=(args.batch_size, size)).astype(np.float32)
    for name, size in zip(schema.video_feature_names, schema.feature_sizes)
  }
  keras_seconds = median_seconds(
    lambda: model.predict(features, batch_size=args.batch_size, verbose=0), args.repeats
  )
  inputs = {k: tf.constant(v) for k, v in features.items()}
  # The same forward pass as the export's graph, without predict()'s per-call data pipeline.
  keras_graph = tf.function(lambda x: tf.sigmoid(model(x, training=False)))
  graph_seconds = median_seconds(lambda: keras_graph(inputs).numpy(), args.repeats)
  rows = [
    ("keras model.predict (in process)", keras_seconds),
    ("keras model in a tf.function (in process)", graph_seconds),
  ]

  probabilities = {}
  for fp16 in (False, True):
    storage = "float16" if fp16 else "float32"
    print(f"\n== export, {storage} storage ==")
    try:
      result = export.export_keras_model(
        model, out_dir, f"{args.model}_{storage}", schema, fp16=fp16, size_budget_bytes=args.size_budget_bytes
      )
    except export.ModelTooLargeError as error:
      print(error)
      continue
    print(result.summary())
    print(
      f"variables/ on disk vs budget: {result.variables_bytes:,} / {result.account.budget_bytes:,} bytes "
      f"({result.variables_bytes / result.account.budget_bytes:.2%}); whole SavedModel "
      f"{result.saved_model_bytes:,} bytes; export took {result.seconds:.1f} s"
    )
    loaded = tf.saved_model.load(result.path)
    serve = loaded.signatures[export.SERVING_SIGNATURE]
    probabilities[storage] = serve(**inputs)["probabilities"].numpy()
    seconds = median_seconds(lambda: serve(**inputs)["probabilities"].numpy(), args.repeats)
    rows.append((f"SavedModel serving_default, {storage}", seconds))

  if len(probabilities) == 2:
    diff = np.abs(probabilities["float16"] - probabilities["float32"])
    print(f"\nfloat16 vs float32 export: max abs probability diff {diff.max():.3g}, mean {diff.mean():.3g}")

  print(f"\nthroughput at batch {args.batch_size} (median of {args.repeats} after a warm-up):")
  for name, seconds in rows:
    print(f"  {name:<42} {args.batch_size / seconds:>10,.0f} videos/s  ({seconds * 1000:.0f} ms/batch)")


if __name__ == "__main__":
  app.run(main)
