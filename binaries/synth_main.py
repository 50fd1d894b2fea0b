"""Generates the synthetic YouTube-8M dataset: real label sets, features from a latent model.

  yt8m-synth --out_dir=/tmp/yt8m_synth                       # the default (calibrated) dataset
  yt8m-synth --out_dir=... --num_videos=2000 --num_classes=100 --noframe_level
  yt8m-synth --out_dir=... --label_sets=../shared/data/yt8m2018_labels/video_labels.csv.gz

See yt8m_tf/data/synthetic.py for the model and the meaning of each knob.
"""

from __future__ import annotations

import json
import time

from absl import app, flags
from binaries import run_main  # noqa: E402

from yt8m_tf.data.synthetic import Progress, SyntheticConfig, generate

_DEFAULTS = SyntheticConfig()

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", None, "Output directory (local or gs://).", required=True)
flags.DEFINE_string(
  "label_sets", None, "id,labels CSV(.gz) of real label sets; default: the packaged 50k sample."
)
flags.DEFINE_string("vocabulary", None, "vocabulary.csv(.gz); default: the packaged 3862-class vocabulary.")
flags.DEFINE_bool("overwrite", False, "Regenerate even if out_dir holds a dataset made by another config.")
flags.DEFINE_integer("chunk_size", 256, "Videos synthesized at once (memory vs speed; output is the same).")

flags.DEFINE_integer("seed", _DEFAULTS.seed, "Random seed: same seed and knobs, same bytes.")
flags.DEFINE_integer("num_videos", None, "Videos to use (a seeded sample); default: all of the label file.")
flags.DEFINE_integer("num_classes", None, "Keep the N most frequent classes; default: all 3862.")
flags.DEFINE_list(
  "split_fractions", [str(f) for f in _DEFAULTS.split_fractions], "train,validate,test fractions."
)
flags.DEFINE_list("num_shards", [str(n) for n in _DEFAULTS.num_shards], "Shards of train,validate,test.")
flags.DEFINE_bool("frame_level", _DEFAULTS.frame_level, "Also write frame-level SequenceExamples.")
flags.DEFINE_integer("min_frames", _DEFAULTS.min_frames, "Fewest frames per video.")
flags.DEFINE_integer("max_frames", _DEFAULTS.max_frames, "Most frames per video (<= 300).")
flags.DEFINE_float("mean_frames", _DEFAULTS.mean_frames, "Typical frames per video (log-normal centre).")
flags.DEFINE_float("frames_spread", _DEFAULTS.frames_spread, "Log-normal spread of the frame count.")
flags.DEFINE_integer("min_shots", _DEFAULTS.min_shots, "Fewest shots per video.")
flags.DEFINE_integer("max_shots", _DEFAULTS.max_shots, "Most shots per video.")
flags.DEFINE_integer("latent_dim", _DEFAULTS.latent_dim, "Dimension of the latent class space.")
flags.DEFINE_integer(
  "cooccurrence_rank", _DEFAULTS.cooccurrence_rank, "Rank of the co-occurrence factorization."
)
flags.DEFINE_float(
  "cooccurrence_weight", _DEFAULTS.cooccurrence_weight, "Weight of co-occurrence in embeddings."
)
flags.DEFINE_float("vertical_weight", _DEFAULTS.vertical_weight, "Weight of the vertical in embeddings.")
flags.DEFINE_float("own_weight", _DEFAULTS.own_weight, "Weight of the class's own random direction.")
flags.DEFINE_float(
  "class_strength_spread", _DEFAULTS.class_strength_spread, "Log-std of per-class visibility."
)
flags.DEFINE_float("salience_spread", _DEFAULTS.salience_spread, "Log-std of per-video label salience.")
flags.DEFINE_float("shot_visibility", _DEFAULTS.shot_visibility, "P(a label is visible in a shot).")
flags.DEFINE_float(
  "brief_label_fraction", _DEFAULTS.brief_label_fraction, "Labels visible in a few frames only."
)
flags.DEFINE_integer("brief_max_frames", _DEFAULTS.brief_max_frames, "Longest window of a brief label.")
flags.DEFINE_float("brief_boost", _DEFAULTS.brief_boost, "Salience multiplier of brief labels.")
flags.DEFINE_integer("num_styles", _DEFAULTS.num_styles, "Visual styles (1: none).")
flags.DEFINE_float(
  "style_dependence", _DEFAULTS.style_dependence, "Share of appearance that depends on style."
)
flags.DEFINE_float("style_strength", _DEFAULTS.style_strength, "How visible the style itself is.")
flags.DEFINE_list(
  "audio_verticals", list(_DEFAULTS.audio_verticals), "Vertical1 names whose classes are audible."
)
flags.DEFINE_float("difficulty", _DEFAULTS.difficulty, "Multiplies every feature noise std.")
flags.DEFINE_float("video_noise", _DEFAULTS.video_noise, "Per-video latent nuisance std.")
flags.DEFINE_float("shot_noise", _DEFAULTS.shot_noise, "Per-shot latent nuisance std.")
flags.DEFINE_float("audio_video_noise", _DEFAULTS.audio_video_noise, "Per-video audio nuisance std.")
flags.DEFINE_float("frame_noise", _DEFAULTS.frame_noise, "Per-frame feature noise std.")
flags.DEFINE_float("feature_peak_std", _DEFAULTS.feature_peak_std, "Std of the first feature dim per frame.")
flags.DEFINE_float("label_drop_rate", _DEFAULTS.label_drop_rate, "P(a true label is not recorded).")
flags.DEFINE_float("label_add_rate", _DEFAULTS.label_add_rate, "P(a true label adds a related false one).")
flags.DEFINE_integer("neighbours_per_class", _DEFAULTS.neighbours_per_class, "Candidates for added labels.")

_CONFIG_FLAGS = (
  "seed",
  "num_videos",
  "num_classes",
  "frame_level",
  "min_frames",
  "max_frames",
  "mean_frames",
  "frames_spread",
  "min_shots",
  "max_shots",
  "latent_dim",
  "cooccurrence_rank",
  "cooccurrence_weight",
  "vertical_weight",
  "own_weight",
  "class_strength_spread",
  "salience_spread",
  "shot_visibility",
  "brief_label_fraction",
  "brief_max_frames",
  "brief_boost",
  "num_styles",
  "style_dependence",
  "style_strength",
  "difficulty",
  "video_noise",
  "shot_noise",
  "audio_video_noise",
  "frame_noise",
  "feature_peak_std",
  "label_drop_rate",
  "label_add_rate",
  "neighbours_per_class",
)


def config_from_flags() -> SyntheticConfig:
  values = {name: FLAGS[name].value for name in _CONFIG_FLAGS}
  return SyntheticConfig(
    split_fractions=tuple(float(f) for f in FLAGS.split_fractions),
    num_shards=tuple(int(n) for n in FLAGS.num_shards),
    audio_verticals=tuple(FLAGS.audio_verticals),
    **values,
  )


class _ProgressPrinter:
  """Prints a progress line at most every `interval` seconds, and always the last one."""

  def __init__(self, interval: float = 5.0):
    self._interval = interval
    self._last = float("-inf")

  def __call__(self, progress: Progress) -> None:
    if (
      progress.videos_done < progress.videos_total and progress.elapsed_seconds - self._last < self._interval
    ):
      return
    self._last = progress.elapsed_seconds
    print(
      f"[synth] {progress.split:8s} {progress.videos_done}/{progress.videos_total} videos, "
      f"{progress.frames_done} frames, {progress.videos_per_second:.0f} videos/s",
      flush=True,
    )


def main(argv):
  del argv
  config = config_from_flags()
  started = time.time()
  summary = generate(
    config,
    FLAGS.out_dir,
    label_sets_path=FLAGS.label_sets,
    vocabulary_path=FLAGS.vocabulary,
    progress=_ProgressPrinter(),
    chunk_size=FLAGS.chunk_size,
    overwrite=FLAGS.overwrite,
  )
  print(f"[synth] done in {time.time() - started:.1f} s: {FLAGS.out_dir}")
  print(json.dumps(summary["counts"], indent=2, sort_keys=True))


def run():
  run_main(main, __name__)


if __name__ == "__main__":
  app.run(main)
