"""Trains a zoo of L1 models K-fold (one flagfile per model), with OOF and test predictions.

  python -m binaries.zoo_main --zoo_dir=yt8m_tf/configs/zoo/demo --workdir=runs/zoo \
      --train_data_pattern='runs/demo/data/video/train-*.tfrecord' \
      --frame_train_data_pattern='runs/demo/data/frame/train-*.tfrecord' \
      --test_data_pattern='runs/demo/data/video/test-*.tfrecord' \
      --frame_test_data_pattern='runs/demo/data/frame/test-*.tfrecord' \
      --test_labels=runs/demo/data/test_labels.csv --num_folds=3 --max_frames=60

Frame-level members read `--frame_train_data_pattern` / `--frame_test_data_pattern`.
Prints each member's out-of-fold GAP@20 (and test GAP@20 with --test_labels) and writes them to
<workdir>/zoo_results.json. Finished folds and prediction stores are kept; a member trained with other
settings (recorded in <workdir>/<member>/settings.json) is refused, naming each changed setting.
"""

import json
import os

from absl import app, flags

from binaries import run_main
from yt8m_tf import files, models, settings_record, stores
from yt8m_tf.configs import dataclass_flags
from yt8m_tf.training import experiment, zoo

FLAGS = flags.FLAGS
flags.DEFINE_string("zoo_dir", None, "Folder of *.flags files, one per model.", required=True)
flags.DEFINE_string("workdir", None, "Where each member's folds and predictions go.", required=True)
flags.DEFINE_string("train_data_pattern", None, "Glob(s) of video-level training TFRecords.", required=True)
flags.DEFINE_string("test_data_pattern", None, "Glob(s) of video-level test TFRecords.")
flags.DEFINE_string("frame_train_data_pattern", None, "Glob(s) of frame-level training TFRecords.")
flags.DEFINE_string("frame_test_data_pattern", None, "Glob(s) of frame-level test TFRecords.")
flags.DEFINE_integer("num_folds", 5, "K of the K-fold split.")
# The data's schema (class count, frames, features, id key): train_main's flags of the same names.
dataclass_flags.define_flags(experiment.TrainConfig, include=experiment.SCHEMA_FIELDS)
flags.adopt_module_key_flags(dataclass_flags)  # so that --help lists them
flags.DEFINE_list("members", None, "Only these flagfile stems (default: all).")
flags.DEFINE_string("test_labels", None, "CSV `id,labels` of the test videos, for test GAP@20.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  test_labels = stores.labels_from_csv(FLAGS.test_labels) if FLAGS.test_labels else None
  schema_flags = dataclass_flags.values_from_flags(experiment.TrainConfig, include=experiment.SCHEMA_FIELDS)
  schema = experiment.schema_from_settings(**schema_flags)
  train_labels = {}  # per training pattern: read once, not once per member
  results = {}
  for name in FLAGS.members or zoo.member_names(FLAGS.zoo_dir):
    model = zoo.parse_flagfile(os.path.join(FLAGS.zoo_dir, f"{name}.flags"))["model"]
    frame = models.get(model).kind == models.FRAME
    if frame and not FLAGS.frame_train_data_pattern:
      raise app.UsageError(f"{name} is a frame-level model: pass --frame_train_data_pattern")
    pattern = FLAGS.frame_train_data_pattern if frame else FLAGS.train_data_pattern
    if pattern not in train_labels:
      train_labels[pattern] = stores.labels_by_id(pattern, schema, frame_level=frame)
    try:
      member_results = zoo.run_zoo(
        FLAGS.zoo_dir,
        FLAGS.workdir,
        pattern,
        schema,
        FLAGS.num_folds,
        FLAGS.frame_test_data_pattern if frame else FLAGS.test_data_pattern,
        members=[name],
        test_labels=test_labels,
        train_labels=train_labels[pattern],
      )
    except settings_record.SettingsChanged as e:  # a member trained with other settings
      raise SystemExit(f"error: {e}") from None
    results.update(member_results)
    with files.atomic_open(os.path.join(FLAGS.workdir, "zoo_results.json")) as f:
      json.dump(results, f, indent=1)
  print(f"\n{'member':<26} {'model':<22} {'OOF GAP@20':>10} {'test GAP@20':>11}")
  for name, result in results.items():
    test_gap = f"{result['test_gap']:.4f}" if "test_gap" in result else "-"
    print(f"{name:<26} {result['model']:<22} {result['oof_gap']:>10.4f} {test_gap:>11}")


def run():
  run_main(main, __name__)


if __name__ == "__main__":
  run()
