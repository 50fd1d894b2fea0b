"""Evaluates a model on labeled records: GAP@20, Hit@1, PERR and mAP, to JSON and TensorBoard.

  python -m binaries.eval_main --model=runs/zoo/resnet_like/fold_0 \
      --eval_data_pattern='data/video/validate-*.tfrecord'
  python -m binaries.eval_main --model=runs/demo/export/distilled --eval_data_pattern=... --output_dir=runs/eval

--model is a train_main run directory (its best.keras), a .keras file, or a SavedModel export (a version
directory, or a <model_name> directory: its highest version). Every figure comes from each video's top k
(`metrics.TopKMetrics`), so a model and its export score the same. Results go to <output_dir>/eval.json and
as TensorBoard scalars (default output_dir: <run directory>/eval). With --norun_once on a run directory it
waits for each new best.keras and evaluates it, until the run has taken all its epochs (the starter's
eval.py watching a train_dir).
"""

import json
import os
import time

import tensorflow as tf
from absl import app, flags

from binaries import run_main
from yt8m_tf import data, export, metrics, models
from yt8m_tf.files import atomic_open
from yt8m_tf.training import evaluation, experiment
from yt8m_tf.training.inputs import dataset_for

FLAGS = flags.FLAGS
flags.DEFINE_string(
  "model", None, "A train_main run directory, a .keras file or a SavedModel export.", required=True
)
flags.DEFINE_string("eval_data_pattern", None, "Glob(s) of labeled TFRecords.", required=True)
flags.DEFINE_string("output_dir", None, "eval.json and TensorBoard events; default: <run directory>/eval.")
flags.DEFINE_integer("top_k", metrics.GAP_K, "k of GAP@k (and of the top-k the other figures come from).")
flags.DEFINE_integer("batch_size", 1024, "Videos per batch.")
flags.DEFINE_bool("run_once", True, "Evaluate once; --norun_once watches a run directory until it finishes.")
flags.DEFINE_integer("watch_seconds", 60, "How often --norun_once looks for a new best.keras.")


def _is_run_dir(path: str) -> bool:
  return tf.io.gfile.exists(os.path.join(path, experiment.CONFIG_FILE))


def _export_dir(path: str):
  """The SavedModel version directory `path` names, or None if it names none."""
  try:
    return export.resolve_export_dir(path)
  except FileNotFoundError:
    return None


def evaluate_keras(path: str) -> dict:
  model = models.load_model(path)
  kind = models.FRAME if "num_frames" in {t.name for t in model.inputs} else models.VIDEO
  schema = data.Schema(num_classes=int(model.outputs[0].shape[-1]))
  dataset = dataset_for(kind, FLAGS.eval_data_pattern, FLAGS.batch_size, schema=schema)
  return evaluation.evaluate_top_k(model, dataset, k=FLAGS.top_k)


def report(result: dict, output_dir: str, step: int, source: str) -> None:
  print(f"{source} (step {step}): " + ", ".join(f"{k} {v:.4f}" for k, v in result.items() if k != "videos"))
  print(f"  on {result['videos']} videos of {FLAGS.eval_data_pattern}")
  if not output_dir:
    return
  tf.io.gfile.makedirs(output_dir)
  with atomic_open(os.path.join(output_dir, "eval.json")) as f:
    json.dump(
      {**result, "model": source, "step": step, "eval_data_pattern": FLAGS.eval_data_pattern}, f, indent=1
    )
  with tf.summary.create_file_writer(output_dir).as_default():
    for key, value in result.items():
      if key != "videos":
        tf.summary.scalar(f"eval/{key}", value, step=step)


def watch(run_dir: str, output_dir: str) -> None:
  """Evaluates best.keras whenever it changes, until the run's history holds all its epochs."""
  config = experiment.read_config(run_dir)
  best, seen = os.path.join(run_dir, "best.keras"), None
  while True:
    finished = experiment.training_finished(config)  # read before best.keras: its last version is then out
    stamp = tf.io.gfile.stat(best).mtime_nsec if tf.io.gfile.exists(best) else None
    if stamp is not None and stamp != seen:
      seen = stamp
      report(evaluate_keras(best), output_dir, len(experiment.read_history(config)), best)
    if finished:
      return
    time.sleep(FLAGS.watch_seconds)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  path = FLAGS.model.rstrip("/")
  run_dir = path if _is_run_dir(path) else None
  output_dir = FLAGS.output_dir or (os.path.join(run_dir, "eval") if run_dir else None)
  if not FLAGS.run_once:
    if not run_dir:
      raise app.UsageError("--norun_once watches a train_main run directory; --model is not one")
    return watch(run_dir, output_dir)
  if run_dir:
    step = len(experiment.read_history(experiment.read_config(run_dir)))
    return report(evaluate_keras(os.path.join(run_dir, "best.keras")), output_dir, step, path)
  if path.endswith(".keras"):
    return report(evaluate_keras(path), output_dir, 0, path)
  export_dir = _export_dir(path)
  if export_dir:
    result = export.evaluate_export(
      export_dir, FLAGS.eval_data_pattern, batch_size=FLAGS.batch_size, top_k=FLAGS.top_k
    )
    result = {k: v for k, v in result.items() if k not in ("gap", "num_videos")}
    return report(result, output_dir, 0, export_dir)
  raise app.UsageError(f"--model={path} is neither a run directory, a .keras file nor a SavedModel export")


def run():
  run_main(main, __name__)


if __name__ == "__main__":
  run()
