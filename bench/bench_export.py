"""Export size and serving throughput of a full-size model, float32 and float16 storage (and mixed precision).

  python bench/bench_export.py [--model EnsembleModel] [--model_params '{}'] [--repeats 3] [--batch_size 1024]
      [--mixed_precision]

Builds the model with untrained weights (the sizes do not depend on training), prints its parameter count
and the size account against the 10**9-byte budget, exports it with each storage dtype (timing the
export), measures the bytes of variables/ and of the whole SavedModel on disk, and reloads each export to
time its `serving_default` signature on one in-memory batch. The in-process Keras `model.predict` on the
same batch is the baseline of the same run (and the model called in a tf.function, the export's forward
pass without predict's per-call overhead). Every timed call gets one warm-up call, then the calls
alternate, one of each per round, for --repeats rounds, and each row is the median of its calls: other
jobs on the machine then slow every row alike, so the ratios between rows hold even when the absolute
figures do not. Also prints the largest probability difference of each export against the float32 one.

--mixed_precision also exports the model rebuilt under this machine's mixed policy (mixed_bfloat16 on a
CPU, mixed_float16 where a GPU is visible; float32 weights, class scores float32; see
yt8m_tf/export/mixed_precision.py) with float32 storage, and prints its speed relative to the float32
export's.
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
flags.DEFINE_bool("mixed_precision", False, "Also export and time the model computing in mixed precision.")


def alternating_median_seconds(calls, repeats):
  """{name: median seconds} of `calls` ({name: call}), one warm-up call each, then `repeats` rounds of one
  call of each in turn."""
  for call in calls.values():
    call()  # warm-up: tracing, allocation
  times = {name: [] for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      start = time.perf_counter()
      call()
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(values) for name, values in times.items()}


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
  inputs = {k: tf.constant(v) for k, v in features.items()}
  # The same forward pass as the export's graph, without predict()'s per-call data pipeline.
  keras_graph = tf.function(lambda x: tf.sigmoid(model(x, training=False)))
  calls = {
    "keras model.predict (in process)": lambda: model.predict(
      features, batch_size=args.batch_size, verbose=0
    ),
    "keras model in a tf.function (in process)": lambda: keras_graph(inputs).numpy(),
  }

  variants = [("float32", dict(fp16=False)), ("float16", dict(fp16=True))]
  if args.mixed_precision:
    variants.append(("mixed", dict(fp16=False, mixed_precision=True, build=(args.model, dict(model_params)))))
  probabilities = {}
  for label, options in variants:
    print(f"\n== export, {label} ==")
    try:
      result = export.export_keras_model(
        model, out_dir, f"{args.model}_{label}", schema, size_budget_bytes=args.size_budget_bytes, **options
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
    serve = tf.saved_model.load(result.path).signatures[export.SERVING_SIGNATURE]
    probabilities[label] = serve(**inputs)["probabilities"].numpy()
    calls[f"SavedModel serving_default, {label}"] = lambda serve=serve: serve(**inputs)[
      "probabilities"
    ].numpy()

  for label in probabilities:
    if label != "float32" and "float32" in probabilities:
      diff = np.abs(probabilities[label] - probabilities["float32"])
      print(f"\n{label} vs float32 export: max abs probability diff {diff.max():.3g}, mean {diff.mean():.3g}")

  seconds = alternating_median_seconds(calls, args.repeats)
  print(
    f"\nthroughput at batch {args.batch_size} (median of {args.repeats} alternating rounds after a warm-up):"
  )
  for name, value in seconds.items():
    print(f"  {name:<42} {args.batch_size / value:>10,.0f} videos/s  ({value * 1000:.0f} ms/batch)")
  base, mixed = "SavedModel serving_default, float32", "SavedModel serving_default, mixed"
  if base in seconds and mixed in seconds:
    print(f"mixed precision vs float32 export: {seconds[base] / seconds[mixed]:.2f}x the speed")


if __name__ == "__main__":
  app.run(main)
