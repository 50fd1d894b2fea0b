"""Trains one L1 model (one fold of a K-fold run, or train/eval splits) into --train_dir.

  python -m binaries.train_main --model=ResNetLike --model_params='{"inner_size": 1024}' \
      --train_data_pattern='data/video/train-*.tfrecord' --num_folds=5 --fold=0 \
      --train_dir=runs/zoo/resnet/fold_0

Every setting is a flag, so `--flagfile=zoo/resnet.flags` describes a model and a folder of flagfiles
describes a zoo. Killed and started again with the same flags, a run continues from its last epoch.
"""

import dataclasses
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")

from absl import app, flags  # noqa: E402
from binaries import run_main  # noqa: E402

from yt8m_tf import models  # noqa: E402
from yt8m_tf.training import experiment  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Registered model name.", required=True)
flags.DEFINE_string("model_params", "{}", "JSON object of builder parameters.")
flags.DEFINE_string("train_dir", None, "Directory for checkpoints, logs and config.", required=True)
flags.DEFINE_string("train_data_pattern", None, "Glob(s) of training TFRecords.", required=True)
flags.DEFINE_string("eval_data_pattern", None, "Glob(s) of validation TFRecords (without --fold).")
flags.DEFINE_bool("frame_features", None, "Frame-level data; must agree with the model's kind if given.")
flags.DEFINE_integer("num_classes", 3862, "Number of classes.")
flags.DEFINE_integer("max_frames", 300, "Frames per video after padding/truncation (frame-level).")
flags.DEFINE_integer("num_folds", 5, "K of the K-fold split (folds come from the video id).")
flags.DEFINE_integer("fold", None, "Validate on this fold and train on the others.")
flags.DEFINE_integer("batch_size", 512, "Global batch size.")
flags.DEFINE_integer("epochs", 30, "Epochs (pseudo-epochs with --steps_per_epoch).")
flags.DEFINE_integer("steps_per_epoch", None, "Batches per pseudo-epoch; default: one pass over the data.")
flags.DEFINE_integer("validation_steps", None, "Validation batches per epoch; default: all.")
flags.DEFINE_integer(
  "validation_freq", 1, "Validate after every N-th epoch and the last one (not with --lr_schedule=plateau)."
)
flags.DEFINE_float("learning_rate", 1e-3, "Adam's (initial) learning rate.")
flags.DEFINE_enum(
  "lr_schedule",
  "plateau",
  list(experiment.LR_SCHEDULES),
  "plateau: times --lr_factor when validation GAP stops improving; cosine: per-step decay to 0 over the run; "
  "constant: --learning_rate throughout.",
)
flags.DEFINE_float("lr_factor", 0.5, "ReduceLROnPlateau factor.")
flags.DEFINE_integer("lr_patience", 0, "ReduceLROnPlateau patience, in epochs.")
flags.DEFINE_integer("early_stopping_patience", None, "Stop after this many epochs without improvement.")
flags.DEFINE_float("clip_norm", 10.0, "Gradient global-norm clip.")
flags.DEFINE_string("loss", "bce", "Loss name (yt8m_tf.training.losses).")
flags.DEFINE_float("mixup_alpha", 0.0, "Mixup Beta(alpha, alpha); 0 disables (the seed used 0.4).")
flags.DEFINE_string("frame_sampler", None, "Training-time frame subsampler name (frame-level).")
flags.DEFINE_string("frame_sampler_params", "{}", "JSON object of sampler parameters.")
flags.DEFINE_string("soft_labels", None, "Soft-label store made by the stacking stage.")
flags.DEFINE_float("soft_label_weight", 1.0, "Targets are w * soft + (1 - w) * hard.")
flags.DEFINE_enum(
  "soft_label_missed_positives",
  "mixed",
  ["mixed", "hard", "max"],
  "Target of a hard positive the teacher did not score: 1 - w (mixed, the seed) or 1 (hard); max: targets "
  "max(hard, w * soft) (positives keep 1, the teacher lifts negatives).",
)
flags.DEFINE_float("soft_label_temperature", 1.0, "Teacher probabilities p -> sigmoid(logit(p) / T).")
flags.DEFINE_string(
  "transductive_data_pattern", None, "Unlabeled videos (e.g. test) trained on the teacher's scores."
)
flags.DEFINE_string("transductive_soft_labels", None, "Soft-label store of --transductive_data_pattern.")
flags.DEFINE_enum(
  "output_bias_init",
  "model",
  ["model", "prior"],
  "Output bias: the model's own init, or the log-odds of the training folds' class frequencies.",
)
flags.DEFINE_integer("max_steps", None, "Caps the run's training steps in all (smoke runs).")
flags.DEFINE_bool(
  "fit_all_folds", False, "Train on every fold, --fold included (validation then watches seen videos)."
)
flags.DEFINE_enum(
  "distribution_strategy",
  "default",
  list(experiment.STRATEGIES),
  "default | mirrored (local GPUs) | multi_worker (TF_CONFIG cluster).",
)
flags.DEFINE_integer("seed", 0, "Seed for data order and initialization.")
flags.DEFINE_integer("verbose", 2, "Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch.")


def config_from_flags() -> experiment.TrainConfig:
  kind = models.get(FLAGS.model).kind
  if FLAGS.frame_features is not None and FLAGS.frame_features != (kind == models.FRAME):
    raise app.UsageError(f"--frame_features={FLAGS.frame_features} but {FLAGS.model} is a {kind}-level model")
  # Every TrainConfig field with a flag of the same name comes from that flag.
  values = {
    f.name: FLAGS[f.name].value for f in dataclasses.fields(experiment.TrainConfig) if f.name in FLAGS
  }
  for name in experiment.JSON_FIELDS:
    try:
      values[name] = json.loads(values[name])
    except json.JSONDecodeError as e:
      raise app.UsageError(f"--{name}={values[name]!r} is not valid JSON: {e}") from None
  try:
    return experiment.TrainConfig(**values)
  except ValueError as e:  # messages name the field, which is the flag's name
    raise app.UsageError(str(e)) from None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  history = experiment.run_training(config_from_flags())
  best = max(history, key=lambda e: e.get("val_gap", float("-inf")))
  print(
    f"best val_gap {best['val_gap']:.5f} at epoch {best['epoch']} (of {len(history)}); "
    f"model: {os.path.join(FLAGS.train_dir, 'best.keras')}"
  )


def run():
  run_main(main, __name__)


if __name__ == "__main__":
  run()
