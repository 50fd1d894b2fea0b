"""The second level: candidate rows from L1 prediction stores, then the K-fold TF-DF GBT stacker.

  python -m binaries.stack_main --output_dir=runs/stack --num_folds=5 --num_classes=3862 \
      --models=resnet:runs/zoo/resnet_like,moe:runs/zoo/moe \
      --train_data_pattern='data/video/train*.tfrecord' [--test_labels=test_labels.csv] \
      [--engine=ydf_distributed --workers=host1:port,host2:port]

With `--engine=ydf_distributed` each fold's GBT trains on running YDF workers (stacking/distributed.py;
BUILD_NOTES.md "The distributed stacker"); `output_dir` must then be on a filesystem the workers share.

Each model directory is a predict_main output (`<dir>/predictions/{oof,test}`). Writes
`output_dir/candidates/{train,test}`, `output_dir/stacker/` (fold models, OOF and test row scores,
report.json) and `output_dir/stacker/soft_labels.npz` for `train_main --soft_labels`. The flags are recorded in
`output_dir/settings.json`; a run with other values is refused, naming each change.
"""

import dataclasses
import json
import os

import tensorflow as tf
from absl import app, flags

from binaries import run_main
from yt8m_tf import data, settings_record, stores
from yt8m_tf.configs import dataclass_flags
from yt8m_tf.stacking import candidates, stacker
from yt8m_tf.training import experiment

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Where candidates and the stacker go.", required=True)
flags.DEFINE_list(
  "models", None, "name:model_dir pairs (model_dir holds predictions/oof and /test).", required=True
)
flags.DEFINE_string("train_data_pattern", None, "Labeled training TFRecords (video level).", required=True)
flags.DEFINE_string("test_labels", None, "CSV id,labels of the test videos, for a test GAP (optional).")
flags.DEFINE_integer("num_folds", 5, "K: the same folds as the L1 models.")
# What the labels need of the data's schema: train_main's flags of the same names.
_SCHEMA_FLAGS = ("num_classes", "id_key")
dataclass_flags.define_flags(experiment.TrainConfig, include=_SCHEMA_FLAGS)
# Every StackerConfig field is a flag of the same name, type, default and help.
dataclass_flags.define_flags(stacker.StackerConfig)
flags.adopt_module_key_flags(dataclass_flags)  # so that --help lists them

# Every flag the output depends on: recorded in output_dir/settings.json.
_SETTINGS = ("models", "train_data_pattern", "test_labels", "num_folds", *_SCHEMA_FLAGS)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  model_dirs = dict(pair.split(":", 1) for pair in FLAGS.models)
  config = stacker.StackerConfig(**dataclass_flags.values_from_flags(stacker.StackerConfig, FLAGS))
  settings = {**{name: getattr(FLAGS, name) for name in _SETTINGS}, **dataclasses.asdict(config)}
  try:  # candidates and fold models made with other settings are not reused
    settings_record.check_and_record(
      FLAGS.output_dir,
      settings,
      remedy="use a new --output_dir, or delete it to stack again",
      # Output dirs made before the flags existed. Those made before local_trainer and sorting_strategy
      # hold TF-DF Keras presorted models: the same trees as these defaults grow (BUILD_NOTES.md).
      defaults={
        "id_key": data.Schema.id_key,
        "engine": "tfdf",
        "local_trainer": "ydf",
        "sorting_strategy": "BY_SIZE",
      },
      ignored=("workers",),  # where the distributed engine runs, not what it computes
    )
  except settings_record.SettingsChanged as e:
    raise SystemExit(f"error: {e}") from None
  schema = data.Schema(num_classes=FLAGS.num_classes, id_key=FLAGS.id_key)
  train_labels = stores.labels_by_id(FLAGS.train_data_pattern, schema)
  test_labels = None
  if FLAGS.test_labels:
    test_labels = stores.labels_from_csv(FLAGS.test_labels)
  prior = candidates.class_prior(train_labels, FLAGS.num_classes)
  has_test = all(tf.io.gfile.exists(os.path.join(d, "predictions", "test")) for d in model_dirs.values())
  store_of_split = {"train": "oof", "test": "test"} if has_test else {"train": "oof"}
  candidates.build_candidate_splits(
    {
      split: {name: os.path.join(d, "predictions", store) for name, d in model_dirs.items()}
      for split, store in store_of_split.items()
    },
    os.path.join(FLAGS.output_dir, "candidates"),
    prior,
    {"train": train_labels, "test": test_labels},
  )
  report = stacker.run_stacking(
    os.path.join(FLAGS.output_dir, "candidates", "train"),
    os.path.join(FLAGS.output_dir, "stacker"),
    FLAGS.num_folds,
    FLAGS.num_classes,
    config,
    test_candidates=os.path.join(FLAGS.output_dir, "candidates", "test") if has_test else None,
  )
  print(json.dumps({k: report[k] for k in ("oof", "test") if k in report}, indent=1))


def run():
  run_main(main, __name__)


if __name__ == "__main__":
  run()
