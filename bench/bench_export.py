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

import argparse
import json
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

from yt8m_tf import data, export, models  # noqa: E402


def median_seconds(call, repeats):
  call()  # warm-up: tracing, allocation
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model", default="EnsembleModel")
  parser.add_argument("--model_params", default="{}", help="JSON object of builder parameters.")
  parser.add_argument("--num_classes", type=int, default=3862)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--batch_size", type=int, default=1024)
  parser.add_argument("--size_budget_bytes", type=int, default=export.DEFAULT_BUDGET_BYTES)
  parser.add_argument("--out_dir", default=None, help="Export base; default a temporary directory, removed.")
  args = parser.parse_args()

  out_dir = args.out_dir or tempfile.mkdtemp(prefix="bench_export_")
  try:
    run(args, out_dir)
  finally:
    if args.out_dir is None:
      shutil.rmtree(out_dir, ignore_errors=True)


def run(args, out_dir):
  schema = data.Schema(num_classes=args.num_classes)
  start = time.perf_counter()
  model = models.build(args.model, num_classes=args.num_classes, **json.loads(args.model_params))
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
  main()
