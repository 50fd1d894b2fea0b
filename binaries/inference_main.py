"""Scores test TFRecords with an exported SavedModel and writes the Kaggle submission CSV.

  python -m binaries.inference_main --model_dir=exports/ensemble \
      --input_data_pattern='data/video/test-*.tfrecord' --output_file=submission.csv

--model_dir is a SavedModel version directory or a model directory (its highest version is used). Only
the SavedModel is needed: the raw records go through its `from_examples` signature. The CSV appears only
once complete.
"""

from absl import app, flags, logging

from binaries import run_main
from yt8m_tf import metrics
from yt8m_tf.export import inference

FLAGS = flags.FLAGS
flags.DEFINE_string(
  "model_dir", None, "SavedModel version dir, or <export_base>/<model_name>.", required=True
)
flags.DEFINE_string("input_data_pattern", None, "Glob(s) of video-level test TFRecords.", required=True)
flags.DEFINE_string("output_file", None, "Submission CSV to write.", required=True)
flags.DEFINE_integer("batch_size", 1024, "Records per SavedModel call.")
flags.DEFINE_integer("top_k", metrics.GAP_K, "Label/score pairs per video (at most the export's top-k).")
flags.DEFINE_float("log_every_seconds", 30.0, "Seconds between progress log lines.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  counts = inference.run_inference(
    FLAGS.model_dir,
    FLAGS.input_data_pattern,
    FLAGS.output_file,
    batch_size=FLAGS.batch_size,
    top_k=FLAGS.top_k,
    log_every_seconds=FLAGS.log_every_seconds,
  )
  print(
    f"{counts.num_videos} videos from {counts.num_files} files in {counts.seconds:.1f} s "
    f"({counts.videos_per_second:.0f} videos/s) -> {FLAGS.output_file}"
  )


def run():
  run_main(main, __name__)


if __name__ == "__main__":
  run()
