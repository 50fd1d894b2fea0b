"""The main job: data -> K-fold L1 zoo -> candidates -> TF-DF stacker -> soft labels -> distilled
EnsembleModel -> one SavedModel -> Kaggle CSV -> report, in one workdir.

  python -m binaries.pipeline_main --workdir=runs/demo                    # benchmark data, 2 CPU cores
  python -m binaries.pipeline_main --workdir=runs/paper_smoke --preset=paper --max_steps=2   # wiring check
  python -m binaries.pipeline_main --workdir=runs/paper --preset=paper \\
      --train_data_pattern='gs://.../train*.tfrecord,gs://.../validate*.tfrecord' \\
      --test_data_pattern='gs://.../test*.tfrecord'                        # the seed's sizes, GPU

Finished stages are skipped when run again; an interrupted stage resumes. The workdir records its
settings (settings.json): other settings are refused, naming each change, unless --redo_from names the
first stage they change (that stage and those after it are then redone).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")

from absl import app, flags, logging  # noqa: E402
from binaries import run_main  # noqa: E402

from yt8m_tf import pipeline, settings_record  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/demo", "Directory holding every stage's outputs and markers.")
flags.DEFINE_enum(
  "preset",
  "demo",
  ["demo", "tiny", "paper"],
  "Sizes: demo (under 15 min on 2 CPU cores), tiny (tests), paper (the seed's sizes; GPU, real data).",
)
flags.DEFINE_string(
  "label_sets", None, "CSV(.gz) of id,labels for the benchmark data; default: packaged sample."
)
flags.DEFINE_string("train_data_pattern", None, "Your labeled video-level TFRecords (skips benchmark data).")
flags.DEFINE_string("test_data_pattern", None, "Your test video-level TFRecords (with --train_data_pattern).")
flags.DEFINE_string("test_labels", None, "CSV id,labels of the test videos, for held-out GAP (optional).")
flags.DEFINE_integer("num_classes", None, "Classes of your data (default 3862).")
flags.DEFINE_integer("num_folds", None, "K of the K-fold L1 and stacker training (default: the preset's).")
flags.DEFINE_list("l1_members", None, "Flagfile names of the zoo directory to train (default: the preset's).")
flags.DEFINE_string("zoo_dir", None, "Folder of L1 flagfiles (default: the preset's).")
flags.DEFINE_integer("seed", None, "Seed for data order and initialization.")
flags.DEFINE_integer(
  "max_steps", None, "Caps every training run (L1 and students) at this many steps: a smoke run of a preset."
)
flags.DEFINE_enum(
  "redo_from",
  None,
  list(pipeline.STAGES),
  "Redo this stage and every stage after it (their outputs are removed first): how a workdir takes new "
  "settings. Without it, a run whose settings differ from those the workdir records is refused.",
)
flags.DEFINE_bool(
  "transductive",
  None,
  "Also train a student on the test videos with the teacher's test scores (own report row; not submitted).",
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:  # TF's INFO lines (SavedModel saving, ...) would bury the stage lines
    logging.set_verbosity(logging.WARNING)
  overrides = {
    name: getattr(FLAGS, name)
    for name in (
      "label_sets",
      "train_data_pattern",
      "test_data_pattern",
      "test_labels",
      "num_classes",
      "num_folds",
      "zoo_dir",
      "seed",
      "max_steps",
      "transductive",
    )
    if getattr(FLAGS, name) is not None
  }
  if FLAGS.l1_members:
    overrides["l1_members"] = tuple(FLAGS.l1_members)
  try:
    config = pipeline.preset(FLAGS.preset, FLAGS.workdir, **overrides)
  except ValueError as e:  # messages name the setting, which is the flag's name
    raise app.UsageError(str(e)) from None
  try:
    report = pipeline.Pipeline(config).run(redo_from=FLAGS.redo_from)
  except settings_record.SettingsChanged as e:  # the message alone: the flags' help would bury it
    raise SystemExit(f"error: {str(e).replace('redo_from=', '--redo_from=')}") from None
  print(pipeline.format_report(report))
  print(f"report: {os.path.join(FLAGS.workdir, 'report.json')}")


def run():
  run_main(main, __name__)


if __name__ == "__main__":
  run()
