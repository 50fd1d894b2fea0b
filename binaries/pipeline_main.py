"""The main job: data -> K-fold L1 zoo -> candidates -> TF-DF stacker -> soft labels -> distilled
EnsembleModel -> one SavedModel -> Kaggle CSV -> report, in one workdir.

  python -m binaries.pipeline_main --workdir=runs/demo                    # benchmark data, 2 CPU cores
  python -m binaries.pipeline_main --workdir=runs/frames --preset=demo_frames  # + a frame-level member
  python -m binaries.pipeline_main --workdir=runs/paper_smoke --preset=paper --max_steps=2   # wiring check
  python -m binaries.pipeline_main --workdir=runs/paper --preset=paper \\
      --train_data_pattern='gs://.../train*.tfrecord,gs://.../validate*.tfrecord' \\
      --test_data_pattern='gs://.../test*.tfrecord'                        # the seed's sizes, GPU

Finished stages are skipped when run again; an interrupted stage resumes. The workdir records its
settings (settings.json): other settings are refused, naming each change, unless --redo_from names the
first stage they change (that stage and those after it are then redone).
"""

import os

from absl import app, flags, logging

from binaries import run_main
from yt8m_tf import pipeline, settings_record
from yt8m_tf.configs import dataclass_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/demo", "Directory holding every stage's outputs and markers.")
flags.DEFINE_enum(
  "preset",
  "demo",
  list(pipeline.PRESETS),
  "Sizes: demo (under 15 min on 2 CPU cores), demo_frames (the demo plus a frame-level DBoF member on "
  "frame-level records), tiny (tests; has a frame-level member), paper (the seed's sizes; GPU, real data).",
)
# The PipelineConfig fields a command line may set; unset, they keep the preset's values.
_CONFIG_FLAGS = (
  "label_sets",
  "train_data_pattern",
  "test_data_pattern",
  "frame_train_data_pattern",
  "frame_test_data_pattern",
  "test_labels",
  "num_classes",
  "num_folds",
  "l1_members",
  "zoo_dir",
  "seed",
  "max_steps",
  "distill_students",
  "transductive",
)
dataclass_flags.define_flags(pipeline.PipelineConfig, include=_CONFIG_FLAGS, defaults_from="the preset's")
flags.adopt_module_key_flags(dataclass_flags)  # so that --help lists them
flags.DEFINE_enum(
  "redo_from",
  None,
  list(pipeline.STAGES),
  "Redo this stage and every stage after it (their outputs are removed first): how a workdir takes new "
  "settings. Without it, a run whose settings differ from those the workdir records is refused.",
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:  # TF's INFO lines (SavedModel saving, ...) would bury the stage lines
    logging.set_verbosity(logging.WARNING)
  overrides = dataclass_flags.values_from_flags(
    pipeline.PipelineConfig, FLAGS, include=_CONFIG_FLAGS, skip_unset=True
  )
  try:
    config = pipeline.preset(FLAGS.preset, FLAGS.workdir, **overrides)
  except ValueError as e:  # messages name the setting, which is the flag's name
    raise app.UsageError(str(e)) from None
  try:
    report = pipeline.Pipeline(config).run(redo_from=FLAGS.redo_from)
  except settings_record.SettingsChanged as e:  # the message alone: the flags' help would bury it
    raise SystemExit(f"error: {str(e).replace('redo_from=', '--redo_from=')}") from None
  print(pipeline.format_report(report))
  written = ["report.json", pipeline.REPORT_PAGE, pipeline.REPORT_PICTURE]
  print(f"report: {', '.join(os.path.join(FLAGS.workdir, name) for name in written)}")
  print(f"TensorBoard: tensorboard --logdir={FLAGS.workdir} (the report under {pipeline.REPORT_SUMMARIES})")


def run():
  run_main(main, __name__)


if __name__ == "__main__":
  run()
