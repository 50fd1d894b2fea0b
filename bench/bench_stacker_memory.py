"""Peak memory of the stacker (stacking.stacker.run_stacking) against the raw bytes of the rows it trains on.

  python bench/bench_stacker_memory.py [--videos 30000,90000] [--num_folds 3] [--num_trees 20]
      [--stacker_file /tmp/old_stacker.py]

For each size, synthetic train and test candidate sets (part files and index, written with
`stores.candidates.write_part` and `files.write_index`; 3 L1 models, ~32 rows a video, float16-like
scores, NaN where a model misses a class) go to --workdir. Then a fresh subprocess per size imports
everything (TensorFlow, TF-DF, ydf, the stacker), takes its resident memory as the baseline, and runs the whole
K-fold stacker with a test set: fold training, OOF and test scores, soft labels and report. Its peak is
the kernel's high-water mark (VmHWM, reset through /proc/self/clear_refs after the imports), so nothing
between two samples is missed; where that reset is refused it samples VmRSS every 5 ms instead.

Printed per size: the peak above the baseline (whole run; inside the fold trainings; building the soft
labels and GAP report; elsewhere: scoring, saving), the raw bytes of
the rows the largest fold trains on (the part files' bytes of a row: row_video, class_id, features,
target, times its fit rows plus its early-stopping rows: everything TF-DF loads), their ratio, and the
peak per candidate row of the whole train set. --stacker_file measures another version of
`yt8m_tf/stacking/stacker.py` (e.g. `git show HEAD:yt8m_tf/stacking/stacker.py > /tmp/old_stacker.py`)
against the same data; --local_trainer and --sorting_strategy set those StackerConfig fields.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("videos", ["30000", "90000"], "Train videos of each size (test sets get a quarter).")
flags.DEFINE_integer("num_models", 3, "L1 models (2 features each).")
flags.DEFINE_integer("num_classes", 3862, "Classes.")
flags.DEFINE_integer("part_videos", 20_000, "Videos per part file.")
flags.DEFINE_integer("num_folds", 3, "K of the K-fold stacker.")
flags.DEFINE_integer("num_trees", 20, "GBT trees at most.")
flags.DEFINE_integer("max_depth", 6, "GBT tree depth.")
flags.DEFINE_integer("num_threads", 2, "TF-DF threads.")
flags.DEFINE_integer("max_train_videos", None, "The stacker's cap on a fold's training videos.")
flags.DEFINE_string("local_trainer", None, "StackerConfig.local_trainer (default: the config's).")
flags.DEFINE_string("sorting_strategy", None, "StackerConfig.sorting_strategy (default: the config's).")
flags.DEFINE_string("workdir", None, "Where the candidate sets and stacker outputs go (default: a temp dir).")
flags.DEFINE_string("stacker_file", None, "Measure this stacker.py instead of yt8m_tf.stacking.stacker.")
flags.DEFINE_integer("seed", 0, "Seed of the synthetic rows.")
# Internal: the measuring subprocess.
flags.DEFINE_string("measure", None, "JSON arguments of one measurement (set by the parent run).")

MEASURED_MARK = "MEASURED "


# -- synthetic candidate sets -----------------------------------------------------------------------------


def synthetic_part(rng, first_video, num_videos, model_names, prior, labeled=True):
  """A CandidateChunk shaped like the builder's: rows by video then rising class id, per-model score and
  rank (NaN outside the model's top-K), mean/max score, num_models, prior; targets from a latent quality."""
  from yt8m_tf.stacking import candidates
  from yt8m_tf.stores.candidates import CandidateChunk

  rows_per_video = rng.integers(20, 45, num_videos)
  row_video = np.repeat(np.arange(num_videos, dtype=np.int32), rows_per_video)
  num_rows = len(row_video)
  video_start = np.repeat(np.cumsum(rows_per_video) - rows_per_video, rows_per_video)
  gaps = rng.integers(1, len(prior) // 45, num_rows)  # rising, unique classes within a video
  cumulative = np.cumsum(gaps)
  class_id = (cumulative - cumulative[video_start] + gaps[video_start] - 1).astype(np.int32)
  quality = rng.normal(size=num_rows).astype(np.float32)
  target = (quality + rng.normal(scale=0.7, size=num_rows) > 1.6).astype(np.int8)
  features = {"class_id": class_id.astype(np.float32)}
  present_scores = []
  for m, name in enumerate(model_names):
    logit = quality * (1.5 - 0.3 * m) + rng.normal(size=num_rows) - 1.0
    score = (1 / (1 + np.exp(-logit))).astype(np.float16).astype(np.float32)
    rank = np.clip(np.floor((1 - score) * 100) + rng.integers(0, 5, num_rows), 1, 100).astype(np.float32)
    missing = rng.random(num_rows) < 0.3
    score[missing], rank[missing] = np.nan, np.nan
    features[f"score_{name}"], features[f"rank_{name}"] = score, rank
    present_scores.append(np.nan_to_num(score))
  stacked = np.stack(present_scores, axis=1)
  features["mean_score"] = stacked.mean(axis=1).astype(np.float32)
  features["max_score"] = stacked.max(axis=1)
  features["num_models"] = (stacked > 0).sum(axis=1).astype(np.float32)
  features["prior"] = prior[class_id]
  assert list(features) == candidates.feature_names(model_names)
  num_positives = np.bincount(row_video, weights=target, minlength=num_videos).astype(np.int32)
  num_positives += rng.integers(0, 2, num_videos).astype(np.int32)  # positives that are no candidate
  return CandidateChunk(
    ids=np.array([f"v{i:08d}".encode() for i in range(first_video, first_video + num_videos)]),
    num_positives=num_positives if labeled else np.full(num_videos, -1, np.int32),
    row_video=row_video,
    class_id=class_id,
    features=features,
    target=target if labeled else None,
  )


def write_synthetic_set(out_dir, first_video, num_videos, part_videos, model_names, prior, rng):
  """A labeled candidate set of `num_videos` videos in parts of `part_videos`; returns its index."""
  from yt8m_tf import files
  from yt8m_tf.stacking import candidates
  from yt8m_tf.stores import candidates as candidate_store

  os.makedirs(out_dir, exist_ok=True)
  parts, rows, positive_rows, positives = [], 0, 0, 0
  for start in range(0, num_videos, part_videos):
    chunk = synthetic_part(rng, first_video + start, min(part_videos, num_videos - start), model_names, prior)
    name = f"part-{len(parts):05d}.npz"
    candidate_store.write_part(os.path.join(out_dir, name), chunk)
    parts.append(name)
    rows += len(chunk.class_id)
    positive_rows += int(chunk.target.sum())
    positives += int(chunk.num_positives.sum())
  index = {
    "models": list(model_names),
    "stores": {name: "synthetic" for name in model_names},
    "features": candidates.feature_names(model_names),
    "top_n": candidates.TOP_N,
    "labeled": True,
    "parts": parts,
    "videos": num_videos,
    "rows": rows,
    "positive_rows": positive_rows,
    "positives": positives,
    "candidate_recall": positive_rows / max(positives, 1),
  }
  files.write_index(out_dir, index)
  return index


def trained_rows(candidate_dir, num_folds, config):
  """(raw bytes of one row, per fold: rows TF-DF loads (fit + early stopping), fit rows only)."""
  from yt8m_tf.data import folds
  from yt8m_tf.stacking import stacker
  from yt8m_tf.stores import candidates as candidate_store

  chunk = candidate_store.load_candidates(candidate_dir)
  row_bytes = (
    chunk.row_video.itemsize
    + chunk.class_id.itemsize
    + chunk.target.itemsize
    + sum(v.itemsize for v in chunk.features.values())
  )
  video_fold = folds.fold_of(chunk.ids, num_folds)
  inner = stacker.inner_split_mask(chunk.ids, config.inner_split)
  rows_per_video = np.bincount(chunk.row_video, minlength=len(chunk.ids))
  per_fold = []
  for k in range(num_folds):
    train_videos = stacker.training_videos(chunk.ids, video_fold != k, config)
    per_fold.append(
      (int(rows_per_video[train_videos].sum()), int(rows_per_video[train_videos & ~inner].sum()))
    )
  return row_bytes, per_fold


# -- the measuring subprocess -----------------------------------------------------------------------------


class PeakMemory:
  """Peak resident memory between marks: the kernel's VmHWM (reset at each mark) or, where a reset is
  refused, the highest VmRSS sampled every 5 ms by a thread."""

  def __init__(self):
    self.sampled_peak = 0
    self.use_hwm = self._reset_hwm()
    if not self.use_hwm:
      self._stop = threading.Event()
      threading.Thread(target=self._sample, daemon=True).start()

  @staticmethod
  def status_bytes(field):
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) * 1024
    raise KeyError(field)

  @staticmethod
  def _reset_hwm():
    try:
      with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
      return True
    except OSError:
      return False

  def _sample(self):
    while not self._stop.is_set():
      self.sampled_peak = max(self.sampled_peak, self.status_bytes("VmRSS"))
      time.sleep(0.005)

  def mark(self):
    """The peak since the last mark; starts the next segment."""
    if self.use_hwm:
      peak = self.status_bytes("VmHWM")
      self._reset_hwm()
      return peak
    peak, self.sampled_peak = max(self.sampled_peak, self.status_bytes("VmRSS")), 0
    return peak


def measure(arguments):
  """Runs the stacker once in this (fresh) process; prints its peaks as one JSON line."""
  import importlib.util

  import tensorflow as tf
  import tensorflow_decision_forests  # noqa: F401  (imported before the baseline, as the stacker will)
  import tf_keras  # noqa: F401

  before_ydf = PeakMemory.status_bytes("VmRSS")
  import ydf  # noqa: F401  (likewise: the local trainer and the conversion import it)

  ydf_import = PeakMemory.status_bytes("VmRSS") - before_ydf

  from yt8m_tf.stacking import stacker

  if arguments["stacker_file"]:
    spec = importlib.util.spec_from_file_location("stacker_under_test", arguments["stacker_file"])
    stacker = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = stacker  # its dataclasses look their module up
    spec.loader.exec_module(stacker)
  config = stacker.StackerConfig(**arguments["config"])
  tf.constant(0)  # the eager context, before the baseline
  baseline = PeakMemory.status_bytes("VmRSS")
  peaks = PeakMemory()
  fold_peaks = []
  train_fold = stacker.train_fold

  def measured_train_fold(*args, **kwargs):
    outside = peaks.mark()
    result = train_fold(*args, **kwargs)
    fold_peaks.append(peaks.mark())
    outside_peaks.append(outside)
    return result

  outside_peaks, soft_label_peaks = [], []
  stacker.train_fold = measured_train_fold
  gaps_and_soft_labels = getattr(stacker, "_gaps_and_soft_labels", None)

  def measured_gaps_and_soft_labels(*args, **kwargs):
    outside_peaks.append(peaks.mark())
    result = gaps_and_soft_labels(*args, **kwargs)
    soft_label_peaks.append(peaks.mark())
    return result

  if gaps_and_soft_labels is not None:
    stacker._gaps_and_soft_labels = measured_gaps_and_soft_labels
  if config.engine == "tfdf" and getattr(config, "local_trainer", None) == "ydf":
    # This trainer fits every fold first (stacker._fit_folds_first): its fold training is ydf_local.fit_fold.
    from yt8m_tf.stacking import ydf_local

    train_fold = ydf_local.fit_fold
    ydf_local.fit_fold = measured_train_fold
  start = time.time()
  report = stacker.run_stacking(
    arguments["train"],
    arguments["out"],
    arguments["num_folds"],
    arguments["num_classes"],
    config,
    test_candidates=arguments["test"],
    log=lambda *_: None,
  )
  outside_peaks.append(peaks.mark())
  result = {
    "baseline": baseline,
    "ydf_import": ydf_import,
    "peak": max(fold_peaks + outside_peaks + soft_label_peaks),
    "fold_peak": max(fold_peaks),
    "outside_peak": max(outside_peaks),
    "soft_label_peak": max(soft_label_peaks, default=0),
    "seconds": time.time() - start,
    "oof_gap": report["oof"]["stacker"],
    "hwm": peaks.use_hwm,
  }
  print(MEASURED_MARK + json.dumps(result), flush=True)


# -- the parent run -----------------------------------------------------------------------------------------


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if FLAGS.measure:
    measure(json.loads(FLAGS.measure))
    return

  from yt8m_tf.stacking import stacker
  from yt8m_tf.stores import candidates as candidate_store

  workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="bench_stacker_memory_")
  model_names = [f"m{i}" for i in range(FLAGS.num_models)]
  # Only the settings given: an older stacker (--stacker_file) may not know the newer fields.
  chosen = {
    "num_trees": FLAGS.num_trees,
    "max_depth": FLAGS.max_depth,
    "num_threads": FLAGS.num_threads,
    "max_train_videos": FLAGS.max_train_videos,
    **{
      name: getattr(FLAGS, name)
      for name in ("local_trainer", "sorting_strategy")
      if getattr(FLAGS, name) is not None
    },
  }
  config = stacker.StackerConfig(**chosen)
  label = FLAGS.stacker_file or "yt8m_tf/stacking/stacker.py"
  settings = ", ".join(
    f"{k}={getattr(config, k)}" for k in ("local_trainer", "sorting_strategy") if k in chosen
  )
  print(
    f"stacker: {label} {settings}; {FLAGS.num_folds} folds, {FLAGS.num_trees} trees of depth {FLAGS.max_depth}, "
    f"{FLAGS.num_models} L1 models, parts of {FLAGS.part_videos:,} videos; {os.cpu_count()} CPUs, "
    f"load average {os.getloadavg()[0]:.2f}; workdir {workdir}"
  )
  for size in [int(v) for v in FLAGS.videos]:
    rng = np.random.default_rng(FLAGS.seed + size)
    prior = (rng.random(FLAGS.num_classes) ** 3 * 0.05).astype(np.float32)
    size_dir = os.path.join(workdir, f"videos_{size}")
    train_dir, test_dir = os.path.join(size_dir, "train"), os.path.join(size_dir, "test")
    if not candidate_store.is_complete(train_dir):
      write_synthetic_set(train_dir, 0, size, FLAGS.part_videos, model_names, prior, rng)
    if not candidate_store.is_complete(test_dir):
      write_synthetic_set(test_dir, size, size // 4, FLAGS.part_videos, model_names, prior, rng)
    train_rows = candidate_store.read_index(train_dir)["rows"]
    test_rows = candidate_store.read_index(test_dir)["rows"]
    row_bytes, per_fold = trained_rows(train_dir, FLAGS.num_folds, config)
    loaded_rows, fit_rows = max(per_fold)
    out_dir = tempfile.mkdtemp(prefix="stacker_", dir=size_dir)
    arguments = {
      "train": train_dir,
      "test": test_dir,
      "out": out_dir,
      "num_folds": FLAGS.num_folds,
      "num_classes": FLAGS.num_classes,
      "config": chosen,
      "stacker_file": FLAGS.stacker_file,
    }
    child = subprocess.run(
      [sys.executable, os.path.abspath(__file__), "--measure", json.dumps(arguments)],
      capture_output=True,
      text=True,
    )
    lines = [line for line in child.stdout.splitlines() if line.startswith(MEASURED_MARK)]
    if child.returncode or not lines:
      print(child.stdout[-3000:], child.stderr[-3000:], file=sys.stderr)
      raise SystemExit(f"the measuring subprocess failed (exit {child.returncode})")
    result = json.loads(lines[0][len(MEASURED_MARK) :])
    peak = result["peak"] - result["baseline"]
    fold_peak = result["fold_peak"] - result["baseline"]
    raw = loaded_rows * row_bytes
    mib = 2**20
    print(
      f"\n{size:,} train videos: {train_rows:,} train rows, {test_rows:,} test rows, {row_bytes} raw bytes "
      f"a row; the largest fold trains on {loaded_rows:,} rows ({fit_rows:,} fit + "
      f"{loaded_rows - fit_rows:,} early-stopping), raw {raw / mib:,.1f} MiB"
    )
    print(
      f"  baseline (after imports; ydf's took {result['ydf_import'] / mib:,.0f} MiB) "
      f"{result['baseline'] / mib:,.0f} MiB; peak above it: whole run {peak / mib:,.1f} MiB, inside fold "
      f"training {fold_peak / mib:,.1f} MiB, soft labels and report "
      f"{max(result['soft_label_peak'] - result['baseline'], 0) / mib:,.1f} MiB, elsewhere (scoring, "
      f"saving) {(result['outside_peak'] - result['baseline']) / mib:,.1f} MiB "
      f"[{'VmHWM' if result['hwm'] else 'sampled VmRSS'}]"
    )
    print(
      f"  peak / raw bytes of the trained rows: {peak / raw:.2f}x (fit rows only: "
      f"{peak / (fit_rows * row_bytes):.2f}x); peak per train candidate row: {peak / train_rows:.0f} "
      f"bytes; {result['seconds']:.0f} s; OOF GAP@20 {result['oof_gap']:.4f}"
    )


if __name__ == "__main__":
  app.run(main)
