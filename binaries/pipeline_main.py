"""The main job: benchmark data -> video-level baseline -> evaluation -> report, in one workdir.

  python -m binaries.pipeline_main --workdir=runs/demo [--preset=demo]

Finished stages are skipped when run again; an interrupted stage resumes.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")

from absl import app, flags  # noqa: E402

from yt8m_tf import pipeline  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/demo", "Directory holding every stage's outputs and markers.")
flags.DEFINE_enum("preset", "demo", ["demo", "tiny"], "Sizes: demo (~minutes on 2 CPU cores), tiny (tests).")
flags.DEFINE_string("label_sets", None, "CSV(.gz) of id,labels; default: the sample packaged with yt8m_tf.")
flags.DEFINE_string("baseline_model", None, "Registered video-level model for the baseline stage.")
flags.DEFINE_integer("epochs", None, "Baseline training epochs (default: the preset's).")
flags.DEFINE_integer("seed", None, "Seed for data order and initialization (default: the preset's).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  overrides = {
    name: value
    for name, value in (
      ("label_sets", FLAGS.label_sets),
      ("baseline_model", FLAGS.baseline_model),
      ("epochs", FLAGS.epochs),
      ("seed", FLAGS.seed),
    )
    if value is not None
  }
  config = pipeline.preset(FLAGS.preset, FLAGS.workdir, **overrides)
  report = pipeline.Pipeline(config).run()
  print(pipeline.format_report(report))
  print(f"report: {os.path.join(FLAGS.workdir, 'report.json')}")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
