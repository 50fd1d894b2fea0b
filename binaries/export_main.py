"""Exports a trained video-level model as a TF Serving SavedModel, after checking its size budget.

  python -m binaries.export_main --train_dir=runs/distill/EnsembleModel --export_base=exports \
      --model_name=ensemble --fp16

Reads `--model_path` (a .keras file) or `<train_dir>/best.keras`, prints the per-component size account
(refusing, before writing anything, above --size_budget_bytes) and writes
`<export_base>/<model_name>/<version>/` with the `serving_default` and `from_examples` signatures.

--mixed_precision exports a float32-trained model to compute in bfloat16 (a CPU) or float16 (where a GPU
is visible; --mixed_precision_policy picks for another serving machine), with the class scores, inputs,
outputs and stored weights in float32 (so the size is that of the float32 export). The model is rebuilt
from the run's config (model and model_params in `<train_dir>/config.json`, or next to --model_path). A
model trained with --mixed_precision computes that way without the flag.
"""

import os
import sys
from typing import Optional, Tuple

import tensorflow as tf
from absl import app, flags, logging

from binaries import run_main
from yt8m_tf import data, export, metrics, models
from yt8m_tf.export import mixed_precision as mixed
from yt8m_tf.training import experiment

FLAGS = flags.FLAGS
flags.DEFINE_string("model_path", None, "A .keras model file (e.g. train_dir/best.keras).")
flags.DEFINE_string("train_dir", None, "A train_main run directory: exports its best.keras.")
flags.DEFINE_string("export_base", None, "Root of the TF Serving model directories.", required=True)
flags.DEFINE_string("model_name", None, "Served model name; default: the run's model name.")
flags.DEFINE_integer("version", None, "Version number; default: the next free one.")
flags.DEFINE_bool("fp16", False, "Store the weights as float16 (the computation is unchanged).")
flags.DEFINE_bool(
  "mixed_precision",
  False,
  "Compute in bfloat16 (CPU) or float16 (GPU) with float32 weights, inputs, outputs and class scores; "
  "rebuilds the model from its run's config.",
)
flags.DEFINE_enum(
  "mixed_precision_policy",
  None,
  list(export.MIXED_POLICIES),
  "With --mixed_precision: the Keras policy; default this machine's (as training picks it).",
)
flags.DEFINE_integer("size_budget_bytes", export.DEFAULT_BUDGET_BYTES, "Refuse exports storing more bytes.")
flags.DEFINE_integer("top_k", metrics.GAP_K, "Top classes returned per video.")
flags.DEFINE_integer("num_classes", None, "Class count; default: the model's output size.")
flags.DEFINE_list(
  "feature_names",
  ["rgb", "audio"],
  "Feature names; video-level keys are mean_<name>. Default with --train_dir: the run's.",
)
flags.DEFINE_list("feature_sizes", ["1024", "128"], "Feature sizes, in the order of --feature_names.")
flags.DEFINE_string("id_key", "id", "Video id key of the records (video_id for the 2017 data).")
_FEATURE_FLAGS = ("feature_names", "feature_sizes", "id_key")  # default with --train_dir: the run's


def _model_path_and_run_config() -> Tuple[str, Optional[experiment.TrainConfig]]:
  if bool(FLAGS.model_path) == bool(FLAGS.train_dir):
    raise app.UsageError("give exactly one of --model_path and --train_dir")
  if FLAGS.model_path:
    return FLAGS.model_path, None
  has_config = tf.io.gfile.exists(os.path.join(FLAGS.train_dir, experiment.CONFIG_FILE))
  config = experiment.read_config(FLAGS.train_dir) if has_config else None
  return os.path.join(FLAGS.train_dir, "best.keras"), config


def _build(model_path: str, config: Optional[experiment.TrainConfig]):
  """(registry name, params) of the model, for a rebuild under a mixed policy: from the run's config."""
  if config is None:
    run_dir = os.path.dirname(model_path)
    if not tf.io.gfile.exists(os.path.join(run_dir, experiment.CONFIG_FILE)):
      raise app.UsageError(
        f"--mixed_precision rebuilds the model from its run's {experiment.CONFIG_FILE}, not found next to "
        f"{model_path}: give --train_dir"
      )
    config = experiment.read_config(run_dir)
  return config.model, dict(config.model_params)


def _schema(config: Optional[experiment.TrainConfig], num_classes: int) -> data.Schema:
  """The features the run read (its config), unless the feature flags say otherwise."""
  if config is not None and not any(FLAGS[name].present for name in _FEATURE_FLAGS):
    return config.schema.with_num_classes(num_classes)
  return data.Schema(
    id_key=FLAGS.id_key,
    feature_names=tuple(name.removeprefix("mean_") for name in FLAGS.feature_names),
    feature_sizes=tuple(int(s) for s in FLAGS.feature_sizes),
    num_classes=num_classes,
  )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # TF's INFO lines while saving would bury the size account
  model_path, config = _model_path_and_run_config()
  model = models.load_model(model_path)
  num_classes = FLAGS.num_classes or (config.num_classes if config else int(model.outputs[0].shape[-1]))
  schema = _schema(config, num_classes)
  model_name = FLAGS.model_name or (config.model if config else model.name)
  if FLAGS.mixed_precision_policy and not FLAGS.mixed_precision:
    raise app.UsageError("--mixed_precision_policy needs --mixed_precision")
  policy = mixed.resolve_policy(FLAGS.mixed_precision_policy or True) if FLAGS.mixed_precision else None
  # A model trained with --mixed_precision under that policy is exported as it is, no config needed.
  rebuild = policy is not None and export.compute_policy(model) != policy
  build = _build(model_path, config) if rebuild else None
  print(f"exporting {model_path} ({model.count_params():,} parameters) as {model_name}")
  try:
    result = export.export_keras_model(
      model,
      FLAGS.export_base,
      model_name,
      schema,
      fp16=FLAGS.fp16,
      mixed_precision=policy or False,
      build=build,
      version=FLAGS.version,
      top_k=FLAGS.top_k,
      size_budget_bytes=FLAGS.size_budget_bytes,
    )
  except (export.ModelTooLargeError, FileExistsError) as error:
    sys.exit(f"error: {error}")
  print(result.summary())


def run():
  run_main(main, __name__)


if __name__ == "__main__":
  run()
