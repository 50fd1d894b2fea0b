"""Trains one L1 model (one fold of a K-fold run, or train/eval splits) into --train_dir.

  python -m binaries.train_main --model=ResNetLike --model_params='{"inner_size": 1024}' \
      --train_data_pattern='data/video/train-*.tfrecord' --num_folds=5 --fold=0 \
      --train_dir=runs/zoo/resnet/fold_0

Every setting is a flag, so `--flagfile=zoo/resnet.flags` describes a model and a folder of flagfiles
describes a zoo. Killed and started again with the same flags, a run continues from its last epoch.
"""

import os

import tensorflow as tf
from absl import app, flags

from binaries import run_main
from yt8m_tf import data, export, models
from yt8m_tf.configs import dataclass_flags
from yt8m_tf.training import experiment, trainer

FLAGS = flags.FLAGS
# Every TrainConfig field is a flag of the same name, type, default and help.
dataclass_flags.define_flags(experiment.TrainConfig)
flags.adopt_module_key_flags(dataclass_flags)  # so that --help lists them
flags.DEFINE_bool("frame_features", None, "Frame-level data; must agree with the model's kind if given.")
flags.DEFINE_integer(
  "export_model_steps",
  None,
  "Every N training steps, also export the model being trained as a SavedModel (serving signatures, TF "
  "Serving layout) to <train_dir>/export/step_<N>/1, as the starter's flag; video-level models.",
  lower_bound=1,
)
flags.DEFINE_bool(
  "start_new_model", False, "Delete --train_dir's earlier run (checkpoints, config, logs) and start afresh."
)
# The starter's names for the same settings (README "Coming from the starter code").
for _starter, _ours in (
  ("base_learning_rate", "learning_rate"),
  ("num_epochs", "epochs"),
  ("clip_gradient_norm", "clip_norm"),
  ("label_loss", "loss"),
):
  flags.DEFINE_alias(_starter, _ours)


class ExportEverySteps(trainer.StepCallback):
  """Exports the model being trained every `steps` steps (counted over the whole run, resumes included)."""

  def __init__(self, train_dir: str, steps: int, schema: data.Schema):
    super().__init__()
    self.export_base, self.steps, self.schema = os.path.join(train_dir, "export"), steps, schema

  def on_step_end(self, step, batch, logs):
    if step % self.steps == 0:
      export.export_keras_model(self.model, self.export_base, f"step_{step}", self.schema, version=1)


def config_from_flags() -> experiment.TrainConfig:
  kind = models.get(FLAGS.model).kind
  if FLAGS.frame_features is not None and FLAGS.frame_features != (kind == models.FRAME):
    raise app.UsageError(f"--frame_features={FLAGS.frame_features} but {FLAGS.model} is a {kind}-level model")
  try:  # messages name the field, which is the flag's name
    return experiment.TrainConfig(**dataclass_flags.values_from_flags(experiment.TrainConfig, FLAGS))
  except ValueError as e:
    raise app.UsageError(str(e)) from None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = config_from_flags()
  if FLAGS.start_new_model and tf.io.gfile.exists(config.train_dir):
    tf.io.gfile.rmtree(config.train_dir)
  callbacks = []
  if FLAGS.export_model_steps:
    if config.kind != models.VIDEO:
      raise app.UsageError(f"--export_model_steps exports video-level models; {config.model} is frame-level")
    callbacks.append(ExportEverySteps(config.train_dir, FLAGS.export_model_steps, config.schema))
  history = experiment.run_training(config, extra_callbacks=callbacks)
  best = max(history, key=lambda e: e.get("val_gap", float("-inf")))
  print(
    f"best val_gap {best['val_gap']:.5f} at epoch {best['epoch']} (of {len(history)}); "
    f"model: {os.path.join(FLAGS.train_dir, 'best.keras')}"
  )


def run():
  run_main(main, __name__)


if __name__ == "__main__":
  run()
