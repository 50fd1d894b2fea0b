"""Out-of-fold and test predictions of a K-fold model trained by train_main.

  python -m binaries.predict_main --model_dir=runs/zoo/ResNetLike --num_folds=5 \
      --test_data_pattern='data/video/test-*.tfrecord'

Reads `model_dir/fold_k/best.keras`; writes `model_dir/predictions/{oof,test}` (top-K classes with
float16 scores per video, or full float16 rows with --store_top_k=0), which the stacker reads.
"""

from absl import app, flags

from binaries import run_main
from yt8m_tf import stores
from yt8m_tf.training import prediction

FLAGS = flags.FLAGS
flags.DEFINE_string(
  "model_dir", None, "Directory holding fold_0 ... fold_{K-1} train_main runs.", required=True
)
flags.DEFINE_integer("num_folds", 5, "K of the K-fold run.")
flags.DEFINE_string("test_data_pattern", None, "Glob(s) of test TFRecords; omitted: OOF only.")
flags.DEFINE_string("output_dir", None, "Default: <model_dir>/predictions.")
flags.DEFINE_integer("store_top_k", stores.STORE_TOP_K, "Classes kept per video; 0 keeps full float16 rows.")
flags.DEFINE_integer("batch_size", 512, "Prediction batch size.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  results = prediction.predict_kfold(
    FLAGS.model_dir,
    FLAGS.num_folds,
    FLAGS.test_data_pattern,
    FLAGS.output_dir,
    FLAGS.store_top_k or None,
    FLAGS.batch_size,
  )
  for name, index in results.items():
    print(f"{name}: {index['num_videos']} videos, store_top_k={index['top_k']}, {len(index['parts'])} parts")


def run():
  run_main(main, __name__)


if __name__ == "__main__":
  run()
