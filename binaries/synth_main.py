"""Generates the synthetic YouTube-8M dataset: real label sets, features from a latent model.

  yt8m-synth --out_dir=/tmp/yt8m_synth                       # the default (calibrated) dataset
  yt8m-synth --out_dir=... --num_videos=2000 --num_classes=100 --noframe_level
  yt8m-synth --out_dir=... --label_sets=../shared/data/yt8m2018_labels/video_labels.csv.gz

See yt8m_tf/data/synthetic.py for the model and the meaning of each knob.
"""

from __future__ import annotations

import json
import time

from absl import flags

from binaries import run_main
from yt8m_tf.configs import dataclass_flags
from yt8m_tf.data.synthetic import SyntheticConfig, generate, progress_display

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", None, "Output directory (local or gs://).", required=True)
flags.DEFINE_string(
  "label_sets", None, "id,labels CSV(.gz) of real label sets; default: the packaged 50k sample."
)
flags.DEFINE_string("vocabulary", None, "vocabulary.csv(.gz); default: the packaged 2018 vocabulary.")
flags.DEFINE_bool("overwrite", False, "Regenerate even if out_dir holds a dataset made by another config.")
flags.DEFINE_integer("chunk_size", 256, "Videos synthesized at once (memory vs speed; output is the same).")

# Every SyntheticConfig field is a flag of the same name, type, default and help.
dataclass_flags.define_flags(SyntheticConfig)
flags.adopt_module_key_flags(dataclass_flags)  # so that --help lists them


def config_from_flags() -> SyntheticConfig:
  return SyntheticConfig(**dataclass_flags.values_from_flags(SyntheticConfig, FLAGS))


def main(argv):
  del argv
  config = config_from_flags()
  started = time.time()
  summary = generate(
    config,
    FLAGS.out_dir,
    label_sets_path=FLAGS.label_sets,
    vocabulary_path=FLAGS.vocabulary,
    progress=progress_display("[synth]", interval_seconds=5.0),
    chunk_size=FLAGS.chunk_size,
    overwrite=FLAGS.overwrite,
  )
  print(f"[synth] done in {time.time() - started:.1f} s: {FLAGS.out_dir}")
  print(json.dumps(summary["counts"], indent=2, sort_keys=True))


def run():
  run_main(main, __name__)


if __name__ == "__main__":
  run()
