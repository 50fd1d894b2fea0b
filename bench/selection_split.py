"""A clean split for choosing settings: the demo job trained on the benchmark's train split only and
scored on its validate split, which no model of that run sees. The test split is never read.

  python bench/selection_split.py --data=runs/demo/data --workdir=runs/selection
  python bench/sweep_train.py --workdir=runs/selection --base=soft --seeds=0,1,2 --variant=...

In the selection workdir every "test" figure is a validate-split figure: settings are chosen on it.
Why a split of its own: the students train on every training video, so their fold-0 validation watches
videos they train on, and soft targets for folds 1..K-1 come from L1 and stacker models that learned fold
0's labels, so a soft student's fold-0 validation is inflated (0.787 vs 0.767 on unseen videos, measured).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app, flags  # noqa: E402

from yt8m_tf import data, pipeline, stores  # noqa: E402
from yt8m_tf.data import labels as labels_lib  # noqa: E402
from yt8m_tf.data import synthetic  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "A benchmark data folder (a demo workdir's data/).", required=True)
flags.DEFINE_string("workdir", None, "The selection run's workdir.", required=True)
flags.DEFINE_string("preset", "demo", "Pipeline preset.")
flags.DEFINE_integer("seed", 0, "Training seed.")


def main(argv):
  del argv
  video = os.path.join(FLAGS.data, "video")
  held_out = os.path.join(video, "validate-*.tfrecord")
  os.makedirs(FLAGS.workdir, exist_ok=True)
  num_classes = synthetic.load_summary(FLAGS.data)["counts"]["classes"]
  labels_csv = os.path.join(FLAGS.workdir, "validate_labels.csv")
  if not os.path.exists(labels_csv):
    schema = data.Schema(num_classes=num_classes)
    by_id = stores.labels_by_id(held_out, schema)
    sets = labels_lib.LabelSets.from_lists([i.decode() for i in by_id], list(by_id.values()))
    labels_lib.write_label_sets(labels_csv, sets)
  config = pipeline.preset(
    FLAGS.preset,
    FLAGS.workdir,
    train_data_pattern=os.path.join(video, "train-*.tfrecord"),
    test_data_pattern=held_out,
    test_labels=labels_csv,
    num_classes=num_classes,
    seed=FLAGS.seed,
  )
  report = pipeline.Pipeline(config).run()
  print(pipeline.format_report(report).replace("test GAP@20", "val GAP@20"))


if __name__ == "__main__":
  app.run(main)
