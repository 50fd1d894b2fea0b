"""Trains a zoo of L1 models K-fold (one flagfile per model), with OOF and test predictions.

  python -m binaries.zoo_main --zoo_dir=yt8m_tf/configs/zoo/demo --workdir=runs/zoo \
      --train_data_pattern='runs/demo/data/video/train-*.tfrecord,runs/demo/data/video/validate-*.tfrecord' \
      --frame_train_data_pattern=runs/demo/data/frame/train-*.tfrecord --num_classes=3862 --num_folds=3

Frame-level members read `--frame_train_data_pattern` / `--frame_test_data_pattern`.
Prints each member's out-of-fold GAP@20. Finished folds and prediction stores are kept.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")

from absl import app, flags  # noqa: E402

from yt8m_tf import models  # noqa: E402
from yt8m_tf.training import zoo  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("zoo_dir", None, "Folder of *.flags files, one per model.", required=True)
flags.DEFINE_string("workdir", None, "Where each member's folds and predictions go.", required=True)
flags.DEFINE_string("train_data_pattern", None, "Glob(s) of video-level training TFRecords.", required=True)
flags.DEFINE_string("test_data_pattern", None, "Glob(s) of video-level test TFRecords.")
flags.DEFINE_string("frame_train_data_pattern", None, "Glob(s) of frame-level training TFRecords.")
flags.DEFINE_string("frame_test_data_pattern", None, "Glob(s) of frame-level test TFRecords.")
flags.DEFINE_integer("num_classes", 3862, "Number of classes.")
flags.DEFINE_integer("num_folds", 5, "K of the K-fold split.")
flags.DEFINE_integer("max_frames", 300, "Frames per video (frame-level members).")
flags.DEFINE_list("members", None, "Only these flagfile stems (default: all).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  results = {}
  for name in FLAGS.members or zoo.member_names(FLAGS.zoo_dir):
    model = zoo.parse_flagfile(os.path.join(FLAGS.zoo_dir, f"{name}.flags"))["model"]
    frame = models.get(model).kind == models.FRAME
    if frame and not FLAGS.frame_train_data_pattern:
      raise app.UsageError(f"{name} is a frame-level model: pass --frame_train_data_pattern")
    results.update(
      zoo.run_zoo(
        FLAGS.zoo_dir,
        FLAGS.workdir,
        FLAGS.frame_train_data_pattern if frame else FLAGS.train_data_pattern,
        FLAGS.num_classes,
        FLAGS.num_folds,
        FLAGS.frame_test_data_pattern if frame else FLAGS.test_data_pattern,
        FLAGS.max_frames,
        members=[name],
      )
    )
  print("\nmember                     model                  OOF GAP@20")
  for name, result in results.items():
    print(f"{name:<26} {result['model']:<22} {result['oof_gap']:.4f}")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
