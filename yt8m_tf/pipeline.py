"""The end-to-end job as resumable stages in one work directory.

  data        benchmark data from real label sets (or your TFRecords: `train_data_pattern` etc.)
  l1          the L1 zoo, K-fold: OOF predictions of every training video, test predictions (fold mean);
              video-level members read the video-level records, frame-level members the frame-level
              records of the same videos (one fold per video id at both levels)
  candidates  stacker rows of the train (OOF) and test predictions
  stacker     K-fold TF-DF GBT on the same folds -> OOF probabilities -> soft-label store; with frame-level
              members also a second stacker over the video-level members only, to show what frames add
  distill     EnsembleModel students: one on hard labels (the baseline), `distill_students` on soft labels
  export      the soft-label students' mean as one SavedModel (fp32, and fp16 to measure the GAP change); the
              large ensemble (L1 fold models + stacker) as one SavedModel
  inference   the export over the test records -> Kaggle CSV, scored against the test labels
  report      GAP@20 on held-out labeled test videos for every level, sizes, wall time per stage

Each stage writes under `workdir/` and, when finished, a marker `workdir/stages/<stage>.json` with its
results, wall time and the settings it depends on; a finished stage is skipped, an interrupted one runs
again and resumes from what it left (training from its epoch backup, finished folds and stores
are kept; what a killed writer left half-written is removed).
`workdir/settings.json` records the whole config. A run with other settings is refused, naming each
changed setting, unless `redo_from` names a stage no later than the first one they change: that stage and
every stage after it are then removed and run again.
Train and validate partitions are merged into one K-fold training set, as in the seed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import time
from typing import Callable, Dict, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from yt8m_tf import data, models, progress, report, settings_record, stores
from yt8m_tf.configs.dataclass_flags import setting
from yt8m_tf.data import synthetic
from yt8m_tf.files import atomic_open, atomic_save_npy, console_to_file, load_npy, remove_temporary_siblings
from yt8m_tf.models import averaging
from yt8m_tf.stacking import candidates, stacker
from yt8m_tf.training import evaluation, experiment, zoo
from yt8m_tf.training.inputs import dataset_for

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "zoo")
PACKAGED_ZOO_PREFIX = "yt8m_tf/configs/zoo/"  # how settings.json names a zoo folder of the package
STAGES = ("data", "l1", "candidates", "stacker", "distill", "export", "inference")
# Seconds each stage took in the demo (22k videos, 2 CPU cores, 2026-11-30, seventh session, 869 s in all;
# the students' stage scaled from its two students then to the three of today): what the time left is
# scaled by.
STAGE_SHARES = {
  "data": 40,
  "l1": 438,
  "candidates": 6,
  "stacker": 48,
  "distill": 396,
  "export": 53,
  "inference": 20,
}
# What each stage writes (relative to the workdir): removed when the stage is redone.
STAGE_OUTPUTS = {
  "data": ("data",),
  "l1": ("l1",),
  "candidates": ("candidates",),
  "stacker": ("stacker",),
  "distill": ("distill",),
  "export": ("export",),
  "inference": ("submission.csv",),
}
REPORT_PAGE = "report.html"  # the report as a page: the ladder and the stage times drawn, every model's GAP
REPORT_PICTURE = "report.png"  # the ladder, the stage times and the exports' sizes as bars
REPORT_SUMMARIES = os.path.join("tensorboard", "report")  # the same for TensorBoard (next to the runs')
# Where TF-DF's C++ lines go while the large ensemble is exported and run (relative to the export dir).
TFDF_LOG = "tfdf.log"
# Students: hard labels, soft labels (the submitted one), and optionally transductive (soft + test videos).
DISTILL_VARIANTS = ("hard", "soft", "transductive")
STUDENT_NAMES = {
  "hard": "EnsembleModel, hard labels",
  "soft": "EnsembleModel, soft labels",
  "transductive": "EnsembleModel, transductive (+ test videos)",
}
# Student i of a variant trains with seed `seed + i * STUDENT_SEED_STRIDE`: far from the seeds of other
# runs (ladders use seeds 0, 1, 2), so no two students of two runs share their initialization and order.
STUDENT_SEED_STRIDE = 1000
# The stacker over the video-level members alone (runs when the zoo has frame-level members): its
# directories under candidates/ and stacker/, and the words that mark its report row.
VIDEO_MEMBERS_DIR = "video_members"
VIDEO_MEMBERS_ONLY = "video-level members only"
# The report row of the soft-label students' mean (when there are several), which the export serves.
SUBMITTED_STUDENTS = "(submitted)"
# The ladder of the report: the method's steps in order, each row found by (level, name test).
LADDER = (
  ("best L1 (by OOF GAP)", "L1", lambda name: "mean" not in name),
  ("mean of L1", "L1", lambda name: "mean" in name),
  ("stacker", "L2", lambda name: VIDEO_MEMBERS_ONLY not in name),
  ("student, hard labels", "distilled", lambda name: "hard" in name),
  ("student, soft labels", "distilled", lambda name: "soft" in name and SUBMITTED_STUDENTS not in name),
  ("submitted (CSV)", "export", lambda name: "CSV" in name),
)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """What the job runs. `preset(name)` gives the documented sets; flags override single fields."""

  workdir: str
  # 22k of the packaged 50k label sets, video level only, so that the whole job fits 15 minutes on 2 CPU
  # cores (30k took 1,100 s; BUILD_NOTES "Demo wall time").
  synthetic: synthetic.SyntheticConfig = synthetic.SyntheticConfig(num_videos=22_000, frame_level=False)
  label_sets: Optional[str] = setting(
    None, "CSV(.gz) of id,labels for the benchmark data; None: the sample packaged with yt8m_tf."
  )
  # Your own data instead of the synthetic benchmark (the data stage is then skipped):
  train_data_pattern: Optional[str] = setting(
    None, "Your labeled video-level TFRecords (skips benchmark data)."
  )
  test_data_pattern: Optional[str] = setting(
    None, "Your test video-level TFRecords (with train_data_pattern)."
  )
  frame_train_data_pattern: Optional[str] = setting(
    None, "Frame-level TFRecords of the same training videos, for frame-level L1 members (your own data)."
  )
  frame_test_data_pattern: Optional[str] = setting(
    None, "Frame-level TFRecords of the same test videos (with frame_train_data_pattern)."
  )
  test_labels: Optional[str] = setting(None, "CSV id,labels of the test videos, for held-out GAP (optional).")
  num_classes: int = setting(data.schema.NUM_CLASSES_2018, "Classes of your data.")
  # L1
  zoo_dir: str = setting(os.path.join(CONFIGS_DIR, "pipeline"), "Folder of L1 flagfiles.")
  l1_members: Tuple[str, ...] = setting(
    ("logistic", "resnet_like", "ensemble_model"), "Flagfile names of the zoo directory to train."
  )
  l1_overrides: Dict[str, object] = dataclasses.field(default_factory=dict)
  num_folds: int = setting(3, "K of the K-fold L1 and stacker training.")
  store_top_k: int = stores.STORE_TOP_K
  # Stacker
  stacker: stacker.StackerConfig = stacker.StackerConfig(
    num_trees=100, shrinkage=0.2, early_stopping_trees=15, max_train_videos=6000
  )
  # Distilled ensemble: 1/16 of the seed's widths. Beyond the seed, for a budget of a few hundred steps
  # (BUILD_NOTES "Distillation at small budgets" has the measurements): an output bias started at the
  # training folds' class prior, BN momentum 0.9 (0.999's moving statistics stay near their initial
  # values), no L2 normalization of the input.
  distill_params: Dict[str, object] = dataclasses.field(
    default_factory=lambda: {
      "width_scale": 1 / 16,
      "bn_momentum": 0.9,
      "output_bias": True,
      "input_normalization": "none",
    }
  )
  distill_output_bias_init: str = "prior"
  # The students are final models: they train on every training video (fold 0 is still what validation
  # watches, for the LR schedule); the L1 models' test scores are means of K fold models, each trained
  # on (K-1)/K of the videos.
  distill_fit_all_folds: bool = True
  distill_batch_size: int = 256
  # The submitted model is the mean of the logits of N soft-label students, alike but for the seed; the
  # hard-label baseline (and the transductive variant) train one, so "soft vs hard" compares one student
  # with one at the same budget. Two soft students beat one by +0.004 (demo) to +0.011 (a much noisier
  # variant) on held-out data (BUILD_NOTES "Two students, and w = 0.75"; "The submitted pair").
  distill_students: int = setting(
    2,
    "Soft-label students the submitted model averages (mean of logits, one graph); the hard-label baseline "
    "trains one. 1: the seed's single EnsembleModel.",
  )
  # 12 epochs, not 6: with twice the passes hard labels start to overfit and soft targets do not. On the
  # benchmark's validate split, which no model of that run saw (bench/selection_split.py; seeds 0, 1):
  # hard 0.7810 -> 0.7866, soft 0.7774 -> 0.7911 (BUILD_NOTES "Longer students").
  distill_epochs: int = 12
  # Per-step cosine decay from 0.01, as the `ensemble_model` L1 member (same architecture) chose on its
  # fold-0 validation; the students' own validation watches videos they train on.
  distill_learning_rate: float = 0.01
  distill_lr_schedule: str = "cosine"
  distill_loss: str = "bce"
  # Soft targets max(hard, w * teacher): every hard positive keeps 1, the teacher lifts the negatives it
  # scores (chosen over w * teacher + (1 - w) * hard on the demo's validate split: BUILD_NOTES "Choosing the
  # soft targets on a held-out split"). w = 0.75, not 0.5: on the validate splits of three benchmarks, which
  # no model of those runs saw (bench/selection_split.py; BUILD_NOTES "Two students, and w = 0.75"), 12-epoch
  # students scored 0.7902 vs 0.7904 (demo, 2 seeds), 0.6872 vs 0.6857 (a noisier variant), 0.6040 vs
  # 0.6001 (a much noisier one, 2 seeds).
  soft_label_weight: float = 0.75
  soft_label_missed_positives: str = "max"
  soft_label_temperature: float = 1.0
  # Transductive distillation: one more student also trains on the test videos with the teacher's test
  # scores as targets; reported on its own row, never the submitted model.
  transductive: bool = setting(
    False,
    "Also train a student on the test videos with the teacher's test scores (own report row; not submitted).",
  )
  max_steps: Optional[int] = setting(
    None, "Caps every training run (L1 and students) at this many steps: a smoke run of a preset."
  )
  size_budget_bytes: int = 10**9  # the submitted (distilled) model: the challenge's 1 GB
  # The L1 + stacker teacher graph is not a submission; the paper preset's (15 full L1 models) is ~3 GB.
  large_ensemble_budget_bytes: int = 10**9
  seed: int = setting(0, "Seed for data order and initialization.")

  def __post_init__(self):
    """Settings that make no sense are refused before any work, naming the setting (= the flag)."""
    at_least = {
      "num_folds": 2,
      "num_classes": 1,
      "store_top_k": 1,
      "distill_batch_size": 1,
      "distill_students": 1,
      "distill_epochs": 1,
    }
    for name, low in at_least.items():
      if getattr(self, name) < low:
        raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
    if self.max_steps is not None and self.max_steps < 1:
      raise ValueError(f"max_steps must be >= 1 or unset, got {self.max_steps}")
    if not self.l1_members:
      raise ValueError("l1_members must name at least one flagfile of the zoo directory")
    if not 0.0 <= self.soft_label_weight <= 1.0:
      raise ValueError(f"soft_label_weight must be in [0, 1], got {self.soft_label_weight}")
    if not self.distill_learning_rate > 0 or not self.soft_label_temperature > 0:
      raise ValueError("distill_learning_rate and soft_label_temperature must be > 0")
    if bool(self.train_data_pattern) != bool(self.test_data_pattern):
      raise ValueError("train_data_pattern and test_data_pattern go together (your own data)")
    if bool(self.frame_train_data_pattern) != bool(self.frame_test_data_pattern):
      raise ValueError("frame_train_data_pattern and frame_test_data_pattern go together")
    if self.frame_train_data_pattern and not self.train_data_pattern:
      raise ValueError("frame_train_data_pattern is for your own data: set train_data_pattern too")

  def settings(self) -> dict:
    """Every setting but the workdir, as JSON values: what `workdir/settings.json` records. A packaged zoo
    is recorded by its place in the package, so a reinstalled or moved package reads as the same."""
    values = dataclasses.asdict(self)
    del values["workdir"]
    zoo_dir = os.path.abspath(values["zoo_dir"])
    if zoo_dir.startswith(CONFIGS_DIR + os.sep):
      values["zoo_dir"] = PACKAGED_ZOO_PREFIX + os.path.relpath(zoo_dir, CONFIGS_DIR)
    return settings_record.as_json(values)


def load_config(workdir: str) -> PipelineConfig:
  """The config a workdir was made with, from its `settings.json` (tools that revisit a finished run)."""
  values = settings_record.read(workdir)
  if values is None:
    raise FileNotFoundError(f"{workdir} has no {settings_record.SETTINGS_FILE}: not a pipeline workdir")
  values["synthetic"] = synthetic.SyntheticConfig.from_json_dict(values["synthetic"])
  values["stacker"] = stacker.StackerConfig(**values["stacker"])
  values["l1_members"] = tuple(values["l1_members"])
  if values["zoo_dir"].startswith(PACKAGED_ZOO_PREFIX):
    values["zoo_dir"] = os.path.join(CONFIGS_DIR, values["zoo_dir"][len(PACKAGED_ZOO_PREFIX) :])
  return PipelineConfig(workdir=workdir, **values)


def _added_setting_defaults() -> dict:
  """What a setting that a workdir's record lacks (it was added later) reads as: its default, field by
  field within the nested configs (stacker, synthetic); free-form dicts only as a whole."""
  defaults = PipelineConfig(workdir="").settings()
  return {k: v for k, v in defaults.items() if k not in ("l1_overrides", "distill_params")}


# The first stage each setting feeds: a change invalidates that stage and every stage after it.
FIRST_STAGE_OF_SETTING = {
  **dict.fromkeys(
    (
      "synthetic",
      "label_sets",
      "train_data_pattern",
      "test_data_pattern",
      "frame_train_data_pattern",
      "frame_test_data_pattern",
      "test_labels",
      "num_classes",
    ),
    "data",
  ),
  **dict.fromkeys(
    ("zoo_dir", "l1_members", "l1_overrides", "num_folds", "store_top_k", "max_steps", "seed"), "l1"
  ),
  "stacker": "stacker",
  **dict.fromkeys(
    (
      "distill_params",
      "distill_output_bias_init",
      "distill_fit_all_folds",
      "distill_batch_size",
      "distill_students",
      "distill_epochs",
      "distill_learning_rate",
      "distill_lr_schedule",
      "distill_loss",
      "soft_label_weight",
      "soft_label_missed_positives",
      "soft_label_temperature",
      "transductive",
    ),
    "distill",
  ),
  **dict.fromkeys(("size_budget_bytes", "large_ensemble_budget_bytes"), "export"),
}


def first_stage_changed(changes: List[settings_record.Change]) -> Optional[str]:
  """The earliest stage that any of `changes` feeds (None: no change)."""
  stages = [FIRST_STAGE_OF_SETTING[change.name.split(".")[0]] for change in changes]
  return min(stages, key=STAGES.index, default=None)


PRESETS = ("demo", "demo_frames", "tiny", "paper")
FRAME_MEMBERS = ("frame_dbof",)  # the frame-level member(s) of the demo_frames and tiny presets


def preset(name: str, workdir: str, **overrides) -> PipelineConfig:
  if name == "demo":
    config = PipelineConfig(workdir=workdir)
  elif name == "demo_frames":  # the demo plus a frame-level member (DBoF) on frame-level benchmark records
    config = PipelineConfig(
      workdir=workdir,
      synthetic=dataclasses.replace(PipelineConfig.synthetic, frame_level=True),
      l1_members=PipelineConfig.l1_members + FRAME_MEMBERS,
    )
  elif name == "tiny":  # seconds per stage; used by the tests (a frame-level member included)
    config = PipelineConfig(
      workdir=workdir,
      synthetic=synthetic.SyntheticConfig(
        num_videos=900, num_classes=40, num_shards=(2, 1, 1), frame_level=True, max_frames=20
      ),
      l1_members=PipelineConfig.l1_members + FRAME_MEMBERS,
      l1_overrides={"epochs": 2, "batch_size": 64},
      num_folds=2,
      store_top_k=30,
      stacker=stacker.StackerConfig(num_trees=10, shrinkage=0.3, max_depth=4, early_stopping_trees=5),
      distill_params={
        "width_scale": 1 / 64,
        "bn_momentum": 0.9,
        "output_bias": True,
        "input_normalization": "none",
      },
      distill_batch_size=64,
      distill_students=2,
      distill_epochs=2,
    )
  elif name == "paper":  # the seed's sizes; for a GPU machine and the real data (set the patterns)
    config = PipelineConfig(
      workdir=workdir,
      zoo_dir=os.path.join(CONFIGS_DIR, "paper"),
      l1_members=("resnet_like", "resnet_like_mixup", "moe"),
      num_folds=5,
      stacker=stacker.StackerConfig(num_trees=3000, shrinkage=0.01, early_stopping_trees=30),
      # The seed's EnsembleModel (247,233,888 parameters) plus an output bias started at the class prior
      # (3,862 more); distill_params={} with distill_output_bias_init="model" is the seed's exactly.
      distill_params={"output_bias": True, "input_normalization": "l2"},
      distill_batch_size=1024,
      distill_students=1,  # the seed's one EnsembleModel: two would not fit the 1 GB in float32
      distill_epochs=10,
      distill_learning_rate=0.01,
      distill_loss="starter_ce",
      large_ensemble_budget_bytes=10**11,
    )
  else:
    raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
  return dataclasses.replace(config, **overrides)


class Pipeline:
  """Runs stages in order, skipping those already finished in `config.workdir`."""

  def __init__(self, config: PipelineConfig, log: Callable[[str], None] = print):
    self.config = config
    self.log = log
    self.stage_dir = os.path.join(config.workdir, "stages")
    self._labels: Dict[str, Optional[dict]] = {}
    self._schema: Optional[data.Schema] = None
    self._job_start = time.perf_counter()
    self._ran: Dict[str, float] = {}  # seconds of each stage this call ran (not those it skipped)

  # -- bookkeeping -------------------------------------------------------------------------------
  def _marker(self, stage: str) -> str:
    return os.path.join(self.stage_dir, f"{stage}.json")

  def result(self, stage: str) -> Optional[dict]:
    path = self._marker(stage)
    if not tf.io.gfile.exists(path):
      return None
    with tf.io.gfile.GFile(path) as f:
      return json.load(f)

  def stage_settings(self, stage: str) -> dict:
    """The settings `stage` depends on: those it reads and those of every stage before it."""
    last = STAGES.index(stage)
    return {
      name: value
      for name, value in self.config.settings().items()
      if STAGES.index(FIRST_STAGE_OF_SETTING[name]) <= last
    }

  def _started(self, stage: str) -> bool:
    outputs = [self.path(name) for name in STAGE_OUTPUTS[stage]]
    return tf.io.gfile.exists(self._marker(stage)) or any(tf.io.gfile.exists(p) for p in outputs)

  def prepare_workdir(self, redo_from: Optional[str] = None) -> None:
    """Checks this run's settings against those `workdir/settings.json` records (refusing a change that
    finished or started work depends on), removes the stages from `redo_from` on, and records the settings."""
    workdir = self.config.workdir
    if redo_from is not None and redo_from not in STAGES:
      raise ValueError(f"redo_from must be one of {', '.join(STAGES)}, got {redo_from!r}")
    recorded = settings_record.read(workdir)
    if recorded is not None:  # settings added since the record was made read as their defaults
      recorded = settings_record.with_defaults(recorded, _added_setting_defaults())
    if recorded is None and any(tf.io.gfile.exists(self._marker(stage)) for stage in STAGES):
      self.log(
        f"warning: {workdir} holds stages made before workdirs recorded their settings; they are taken as "
        "made with this run's settings (use a new workdir if they were not)"
      )
    changes = settings_record.changes(recorded, self.config.settings()) if recorded is not None else []
    first = first_stage_changed(changes)
    listed = "; ".join(f"{c} (stage {FIRST_STAGE_OF_SETTING[c.name.split('.')[0]]})" for c in changes)
    if redo_from is not None:
      if first is not None and STAGES.index(first) < STAGES.index(redo_from):
        raise settings_record.SettingsChanged(
          f"{workdir} was made with other settings ({listed}); they change stage {first}, before "
          f"redo_from={redo_from}: use redo_from={first} (or earlier) or a new workdir",
          changes,
        )
      for stage in STAGES[STAGES.index(redo_from) :]:
        self._forget(stage)
    elif first is not None:
      started = [stage for stage in STAGES[STAGES.index(first) :] if self._started(stage)]
      if started:
        raise settings_record.SettingsChanged(
          f"{workdir} was made with other settings ({listed}); stages {', '.join(started)} hold work "
          f"made with the old ones. Use a new workdir, or redo_from={first} to redo "
          f"{first} and the stages after it",
          changes,
        )
    settings_record.write(workdir, self.config.settings())

  def _forget(self, stage: str) -> None:
    for path in [self._marker(stage), self.path("report.json")] + [
      self.path(p) for p in STAGE_OUTPUTS[stage]
    ]:
      if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
      elif tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)

  def _remove_leftovers(self, stage: str) -> None:
    """What a killed writer of `stage` left half-written (temporary siblings of its outputs and of the
    files directly inside its output folders)."""
    for output in STAGE_OUTPUTS[stage]:
      path = self.path(output)
      remove_temporary_siblings(os.path.dirname(path))
      if tf.io.gfile.isdir(path):
        remove_temporary_siblings(path)
        for name in tf.io.gfile.listdir(path):
          remove_temporary_siblings(os.path.join(path, name.rstrip("/")))

  def run_stage(self, stage: str, body: Callable[[], dict]) -> dict:
    done = self.result(stage)
    settings = self.stage_settings(stage)
    if done is not None:
      defaults = {k: v for k, v in _added_setting_defaults().items() if k in settings}
      recorded = settings_record.with_defaults(done.get("settings", settings), defaults)
      changes = settings_record.changes(recorded, settings)
      if changes:  # only when settings.json was edited or removed by hand
        raise settings_record.SettingsChanged(
          f"{self._marker(stage)} was made with other settings "
          f"({'; '.join(map(str, changes))}); use a new workdir or redo_from={stage}",
          changes,
        )
      self.log(f"[{stage}] already done ({done['wall_seconds']:.1f} s), skipping")
      return done
    self.log(f"[{stage}] {self._stage_position(stage)} running")
    self._remove_leftovers(stage)
    start = time.perf_counter()
    outputs = body()
    done = {"stage": stage, "wall_seconds": time.perf_counter() - start, **outputs, "settings": settings}
    with atomic_open(self._marker(stage)) as f:
      json.dump(done, f, indent=1)
    self._ran[stage] = done["wall_seconds"]
    self.log(f"[{stage}] done in {done['wall_seconds']:.1f} s")
    return done

  def _stage_position(self, stage: str) -> str:
    """`stage i/N, 0:12:34 since start, about 0:05:00 left,` (of this call of the job). What is left is
    the time the stages run so far took, scaled by the shares of the demo's stage times (STAGE_SHARES)."""
    elapsed = time.perf_counter() - self._job_start
    number = STAGES.index(stage) + 1 if stage in STAGES else "?"
    position = f"stage {number}/{len(STAGES)}, {progress.format_seconds(elapsed)} since start,"
    ran = [name for name in STAGES[: STAGES.index(stage)] if name in self._ran]
    if ran:
      measured = sum(self._ran[name] for name in ran)
      share_done = sum(STAGE_SHARES[name] for name in ran)
      share_left = sum(STAGE_SHARES[name] for name in STAGES[STAGES.index(stage) :])
      position += f" about {progress.format_seconds(measured * share_left / share_done)} left,"
    return position

  def path(self, *parts: str) -> str:
    return os.path.join(self.config.workdir, *parts)

  # -- data --------------------------------------------------------------------------------------
  @property
  def uses_synthetic_data(self) -> bool:
    return self.config.train_data_pattern is None

  def train_pattern(self, level: str = models.VIDEO) -> str:
    """The training records of `level` (models.VIDEO or models.FRAME)."""
    if not self.uses_synthetic_data:
      return self.config.train_data_pattern if level == models.VIDEO else self.config.frame_train_data_pattern
    records = self.path("data", level)
    return f"{records}/train-*.tfrecord,{records}/validate-*.tfrecord"

  def test_pattern(self, level: str = models.VIDEO) -> Optional[str]:
    if not self.uses_synthetic_data:
      return self.config.test_data_pattern if level == models.VIDEO else self.config.frame_test_data_pattern
    return self.path("data", level, "test-*.tfrecord")

  def schema(self) -> data.Schema:
    """The data's layout: the class count comes from the data stage (benchmark data) or the config; frames
    are padded to the benchmark's longest video (not 300) when it has frame-level records."""
    if self._schema is None:
      num_classes, max_frames = self.config.num_classes, data.schema.MAX_FRAMES
      if self.uses_synthetic_data:
        num_classes = self.result("data")["num_classes"]
        if self.config.synthetic.frame_level:
          max_frames = self.config.synthetic.max_frames
      self._schema = data.Schema(num_classes=num_classes, max_frames=max_frames)
    return self._schema

  @functools.cached_property
  def member_levels(self) -> Dict[str, str]:
    """{L1 member: models.VIDEO or models.FRAME}, from the model each flagfile names (read once)."""
    zoo_dir = self.config.zoo_dir
    return {
      member: models.get(zoo.parse_flagfile(os.path.join(zoo_dir, f"{member}.flags"))["model"]).kind
      for member in self.config.l1_members
    }

  def members(self, level: str) -> List[str]:
    """The L1 members of `level`, in `l1_members` order."""
    return [member for member, kind in self.member_levels.items() if kind == level]

  def compares_video_members_only(self) -> bool:
    """A second stacker over the video-level members alone shows what the frame-level ones add."""
    return bool(self.members(models.FRAME)) and bool(self.members(models.VIDEO))

  def check_members(self) -> None:
    """Frame-level members need frame-level records of the same videos: refused before any work."""
    frame = self.members(models.FRAME)
    if not frame:
      return
    if self.uses_synthetic_data and not self.config.synthetic.frame_level:
      raise ValueError(
        f"L1 members {frame} are frame-level: the benchmark data needs frame-level records "
        "(synthetic.frame_level=True, as in --preset=demo_frames)"
      )
    if not self.uses_synthetic_data and not self.config.frame_train_data_pattern:
      raise ValueError(
        f"L1 members {frame} are frame-level: set frame_train_data_pattern and frame_test_data_pattern "
        "(frame-level records of the same videos)"
      )

  def labels(self, split: str) -> Optional[dict]:
    """id (bytes) -> positive classes of the training (`train`) or test videos (None: unknown)."""
    if split not in self._labels:
      if split == "train":
        self._labels[split] = stores.labels_by_id(self.train_pattern(), self.schema())
      else:
        path = self.path("data", "test_labels.csv") if self.uses_synthetic_data else self.config.test_labels
        self._labels[split] = stores.labels_from_csv(path) if path else None
    return self._labels[split]

  def stage_data(self) -> dict:
    if not self.uses_synthetic_data:
      return {"train_data_pattern": self.train_pattern(), "num_classes": self.config.num_classes}
    summary = synthetic.generate(
      self.config.synthetic,
      self.path("data"),
      label_sets_path=self.config.label_sets,
      progress=synthetic.progress_display("  [data]", log=self.log),
    )
    return {"num_classes": summary["counts"]["classes"], "videos": summary["counts"]["videos"]}

  # -- L1 ----------------------------------------------------------------------------------------
  def l1_dir(self, member: str) -> str:
    return self.path("l1", member)

  def store(self, member: str, split: str) -> str:
    return os.path.join(self.l1_dir(member), "predictions", "oof" if split == "train" else "test")

  def stage_l1(self) -> dict:
    """Video-level members on the video-level records, frame-level ones on the frame-level records; the
    folds come from the video ids, so every member's OOF predictions of a video come from the same fold."""
    config = self.config
    results = {}
    for level in (models.VIDEO, models.FRAME):
      if not self.members(level):
        continue
      results.update(
        zoo.run_zoo(
          config.zoo_dir,
          self.path("l1"),
          self.train_pattern(level),
          self.schema(),
          num_folds=config.num_folds,
          test_data_pattern=self.test_pattern(level),
          members=self.members(level),
          store_top_k=config.store_top_k,
          test_labels=self.labels("test"),
          train_labels=self.labels("train"),
          log=self.log,
          **{
            "seed": config.seed,
            **({"max_steps": config.max_steps} if config.max_steps else {}),
            **config.l1_overrides,
          },
        )
      )
    return {"members": {member: results[member] for member in config.l1_members}}

  # -- stacking ----------------------------------------------------------------------------------
  def stage_candidates(self) -> dict:
    train_labels = self.labels("train")
    prior = candidates.class_prior(train_labels, self.schema().num_classes)
    atomic_save_npy(self.path("l1", "class_prior.npy"), prior)
    sets = {"": self.config.l1_members}
    if self.compares_video_members_only():
      sets[VIDEO_MEMBERS_DIR] = self.members(models.VIDEO)
    result = {}
    for name, members in sets.items():
      indexes = candidates.build_candidate_splits(
        {split: {m: self.store(m, split) for m in members} for split in ("train", "test")},
        self._member_set_dir("candidates", name),
        prior,
        {"train": train_labels, "test": self.labels("test")},
        log=self.log,
      )
      keep = ("videos", "rows", "candidate_recall")
      counts = {split: {k: index[k] for k in keep if k in index} for split, index in indexes.items()}
      if name:
        result[name] = counts
      else:
        result.update(counts)
    return result

  def stage_stacker(self) -> dict:
    result = self._stacking("")
    if self.compares_video_members_only():
      self.log(f"[stacker] again over the {VIDEO_MEMBERS_ONLY}")
      result[VIDEO_MEMBERS_DIR] = {
        k: v for k, v in self._stacking(VIDEO_MEMBERS_DIR).items() if k != "soft_labels"
      }
    return result

  def _member_set_dir(self, stage_dir: str, name: str) -> str:
    """`stage_dir` for every member (name ""), or its subfolder for a subset (VIDEO_MEMBERS_DIR)."""
    return self.path(stage_dir, name) if name else self.path(stage_dir)

  def _stacking(self, name: str) -> dict:
    """The K-fold stacker over `candidates/<name>` into `stacker/<name>` ("": every member)."""
    candidate_dir = self._member_set_dir("candidates", name)
    report = stacker.run_stacking(
      os.path.join(candidate_dir, "train"),
      self._member_set_dir("stacker", name),
      self.config.num_folds,
      self.schema().num_classes,
      self.config.stacker,
      test_candidates=os.path.join(candidate_dir, "test"),
      log=self.log,
    )
    return {k: report[k] for k in ("oof", "test", "soft_labels") if k in report}

  # -- distillation ------------------------------------------------------------------------------
  def distill_config(self, variant: str, student: int = 0, **overrides) -> experiment.TrainConfig:
    """The TrainConfig of student `student` (0 .. distill_students - 1) of `variant`, one of
    DISTILL_VARIANTS."""
    config = self.config
    soft = variant in ("soft", "transductive")
    values = dict(
      model="EnsembleModel",
      model_params=dict(config.distill_params),
      train_dir=self.path("distill", variant, f"student_{student}"),
      train_data_pattern=self.train_pattern(),
      num_classes=self.schema().num_classes,
      num_folds=config.num_folds,
      fold=0,  # validation on fold 0, with hard labels
      fit_all_folds=config.distill_fit_all_folds,
      batch_size=config.distill_batch_size,
      epochs=config.distill_epochs,
      learning_rate=config.distill_learning_rate,
      lr_schedule=config.distill_lr_schedule,
      # A fixed schedule needs no per-epoch GAP, and with fit_all_folds it would watch training videos.
      validation_freq=1 if config.distill_lr_schedule == "plateau" else config.distill_epochs,
      loss=config.distill_loss,
      output_bias_init=config.distill_output_bias_init,
      soft_labels=self.path("stacker", stacker.SOFT_LABELS) if soft else None,
      soft_label_weight=config.soft_label_weight,
      soft_label_missed_positives=config.soft_label_missed_positives,
      soft_label_temperature=config.soft_label_temperature,
      max_steps=config.max_steps,
      seed=config.seed + student * STUDENT_SEED_STRIDE,
    )
    if variant == "transductive":
      values.update(
        transductive_data_pattern=self.test_pattern(),
        transductive_soft_labels=self.path("stacker", stacker.TEST_SOFT_LABELS),
      )
    values.update(overrides)
    return experiment.TrainConfig(**values)

  def distill_variants(self) -> Tuple[str, ...]:
    return DISTILL_VARIANTS if self.config.transductive else DISTILL_VARIANTS[:2]

  def train_student(self, config: experiment.TrainConfig) -> dict:
    """Trains (or resumes) one student; its best fold-0 validation GAP and, with test labels, its test GAP."""
    # A finished student is kept: after a kill in a later variant, only that one is trained again.
    history = experiment.read_history(config) if experiment.training_finished(config) else None
    history = history or experiment.run_training(config)
    entry = {"best_val_gap": max(e["val_gap"] for e in history if "val_gap" in e), "epochs": len(history)}
    if self.labels("test") is not None:
      model = models.load_model(os.path.join(config.train_dir, "best.keras"))
      entry["test_gap"] = self._test_gap([model])
      entry["params"] = int(model.count_params())
    return entry

  def _test_gap(self, scorers: List[keras.Model]) -> float:
    """Test GAP@20 of the mean logits of `scorers` from their float32 scores, as the exported model's CSV is
    scored. (Through a float16 prediction store, ties among rounded scores moved it: by 0.0020 on the tiny
    preset, by up to 0.0012 for one student on the ladders' 3,300 test videos.)"""
    model = scorers[0] if len(scorers) == 1 else averaging.average_logits(scorers, name="students")
    dataset = dataset_for(models.VIDEO, self.test_pattern(), 1024, schema=self.schema(), keep_ids=True)
    return evaluation.evaluate_top_k(model, dataset, labels=self.labels("test"))["gap@20"]

  def students_of(self, variant: str) -> int:
    """Students trained for `variant`: the submitted (soft) model averages `distill_students`; the
    hard-label baseline and the transductive variant are one student each."""
    return self.config.distill_students if variant == "soft" else 1

  def student_models(self, variant: str) -> List[keras.Model]:
    paths = [
      os.path.join(self.distill_config(variant, i).train_dir, "best.keras")
      for i in range(self.students_of(variant))
    ]
    for path in paths:
      if not tf.io.gfile.exists(path):  # e.g. a workdir whose students predate distill/<variant>/student_<i>
        raise FileNotFoundError(f"no trained student at {path}: run the job with --redo_from=distill")
    return [models.load_model(path) for path in paths]

  def stage_distill(self) -> dict:
    result = {}
    variants = self.distill_variants()
    total = sum(self.students_of(variant) for variant in variants)
    shown = progress.Progress(total, "[distill]", "students", 0.0, self.log, bar=False)
    done = 0
    for variant in variants:
      count = self.students_of(variant)
      students = []
      for student in range(count):
        shown.update(done, next=variant if count == 1 else f"{variant} {student + 1}/{count}")
        students.append(self.train_student(self.distill_config(variant, student)))
        done += 1
      entry = students[0] if count == 1 else {"students": students}
      if count > 1 and self.labels("test") is not None:
        # What the export serves: the mean of the students' logits.
        entry["test_gap"] = self._test_gap(self.student_models(variant))
        entry["params"] = sum(s["params"] for s in students)
      result[variant] = entry
      shown_values = (
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items() if k != "students"
      )
      self.log(f"[distill] {variant}: " + ", ".join(shown_values))
    return result

  # -- export and inference ----------------------------------------------------------------------
  def export_dir(self, name: str) -> str:
    return self.path("export", name, "1")

  def stage_export(self) -> dict:
    from yt8m_tf import export
    from yt8m_tf.export import large_ensemble

    schema = self.schema()
    budget = self.config.size_budget_bytes
    distilled = averaging.average_logits(self.student_models("soft"), name="students")
    result = {}
    jobs = [
      (
        "distilled",
        lambda: export.export_keras_model(
          distilled, self.path("export"), "distilled", schema, version=1, size_budget_bytes=budget
        ),
      ),
      (
        "distilled_fp16",
        lambda: export.export_keras_model(
          distilled,
          self.path("export"),
          "distilled_fp16",
          schema,
          fp16=True,
          version=1,
          size_budget_bytes=budget,
        ),
      ),
    ]

    def export_large():
      l1 = large_ensemble.l1_fold_models(
        {m: self.l1_dir(m) for m in self.config.l1_members}, self.config.num_folds
      )
      stackers = [self.path("stacker", f"fold_{k}", "model") for k in range(self.config.num_folds)]
      prior = load_npy(self.path("l1", "class_prior.npy"))
      return large_ensemble.export_large_ensemble(
        l1,
        stackers,
        prior,
        self.config.store_top_k,
        self.path("export"),
        "large_ensemble",
        schema,
        version=1,
        size_budget_bytes=self.config.large_ensemble_budget_bytes,
      )

    jobs.append(("large_ensemble", export_large))
    for name, job in jobs:
      path = self.export_dir(name)
      if not tf.io.gfile.exists(path):
        self.log(f"[export] {name}")
        with self._tfdf_log() if name == "large_ensemble" else contextlib.nullcontext():
          job()
      with tf.io.gfile.GFile(os.path.join(path, export.SIZE_REPORT)) as f:
        result[name] = json.load(f)
    return result

  def _tfdf_log(self):
    """TF-DF's C++ lines (engine built, CPU features) go to export/tfdf.log, not the console."""
    tf.io.gfile.makedirs(self.path("export"))
    return console_to_file(self.path("export", TFDF_LOG))

  def stage_inference(self) -> dict:
    from yt8m_tf import export

    csv_path = self.path("submission.csv")
    counts = export.run_inference(self.export_dir("distilled"), self.test_pattern(), csv_path)
    result = {"submission": csv_path, "videos": counts.num_videos, "seconds": round(counts.seconds, 1)}
    test_labels = self.labels("test")
    if test_labels is not None:
      str_labels = {k.decode(): v for k, v in test_labels.items()}
      result["test_gap"] = {
        "distilled (CSV)": export.submission_gap(export.read_submission(csv_path), str_labels)
      }
      for name in ("distilled_fp16", "large_ensemble"):
        predictions = {}
        frames = name == "large_ensemble" and bool(self.members(models.FRAME))
        records = self.test_pattern(models.FRAME if frames else models.VIDEO)
        with self._tfdf_log() if name == "large_ensemble" else contextlib.nullcontext():
          for ids, classes, scores in export.predict_records(self.export_dir(name), records):
            for video_id, c, s in zip(ids, classes, scores):
              predictions[video_id.decode()] = (c.astype(np.int64), s.astype(np.float64))
        result["test_gap"][name] = export.submission_gap(predictions, str_labels)
    return result

  # -- the job -----------------------------------------------------------------------------------
  def run(self, redo_from: Optional[str] = None) -> dict:
    """Every stage in order (see `prepare_workdir` for `redo_from`); returns the report."""
    self.check_members()
    self.prepare_workdir(redo_from)
    for stage in STAGES:
      self.run_stage(stage, getattr(self, f"stage_{stage}"))
    return self.report()

  def report(self) -> dict:
    stages = {name: self.result(name) for name in STAGES}
    rows: List[dict] = []
    for member, r in stages["l1"]["members"].items():
      rows.append(
        {
          "level": "L1",
          "name": f"{member} ({r['model']})",
          "oof_gap": r["oof_gap"],
          "test_gap": r.get("test_gap"),
        }
      )
    stack = stages["stacker"]
    test = stack.get("test", {})
    rows.append(
      {
        "level": "L1",
        "name": "mean of L1 models",
        "oof_gap": stack["oof"]["l1_mean"],
        "test_gap": test.get("l1_mean"),
      }
    )
    rows.append(
      {
        "level": "L2",
        "name": "TF-DF GBT stacker",
        "oof_gap": stack["oof"]["stacker"],
        "test_gap": test.get("stacker"),
      }
    )
    if VIDEO_MEMBERS_DIR in stack:  # what the frame-level members add: the stacker without them
      video_only = stack[VIDEO_MEMBERS_DIR]
      rows.append(
        {
          "level": "L2",
          "name": f"TF-DF GBT stacker, {VIDEO_MEMBERS_ONLY}",
          "oof_gap": video_only["oof"]["stacker"],
          "test_gap": video_only.get("test", {}).get("stacker"),
        }
      )
    for variant, d in stages["distill"].items():
      if variant not in DISTILL_VARIANTS:  # the marker's own keys (stage, wall_seconds)
        continue
      # One student per row, so that soft and hard compare at one student's budget; the soft students'
      # mean, which the export serves, has a row of its own.
      students = d.get("students", [d])
      row = {"level": "distilled", "oof_gap": None}
      rows.append(dict(row, name=STUDENT_NAMES[variant], test_gap=students[0].get("test_gap")))
      if len(students) > 1:
        name = f"{STUDENT_NAMES[variant]}, mean of {len(students)} {SUBMITTED_STUDENTS}"
        rows.append(dict(row, name=name, test_gap=d.get("test_gap")))
    inference = stages["inference"].get("test_gap", {})
    names = {
      "distilled (CSV)": "export: distilled fp32 (CSV)",
      "distilled_fp16": "export: distilled fp16",
      "large_ensemble": "export: L1 + stacker graph",
    }
    for key, label in names.items():
      if key in inference:
        rows.append({"level": "export", "name": label, "oof_gap": None, "test_gap": inference[key]})
    sizes = {
      name: {
        "params": s["total_params"],
        "stored_bytes": s["total_bytes"],
        "saved_model_bytes_on_disk": s["saved_model_bytes_on_disk"],
      }
      for name, s in stages["export"].items()
      if name not in ("stage", "settings") and isinstance(s, dict)
    }
    result = {
      "workdir": self.config.workdir,
      "gap@20": rows,
      "ladder": ladder(rows),
      "sizes": sizes,
      "wall_seconds": {name: round(s["wall_seconds"], 1) for name, s in stages.items()},
    }
    result["wall_seconds"]["total"] = round(sum(result["wall_seconds"].values()), 1)
    with atomic_open(self.path("report.json")) as f:
      json.dump(result, f, indent=1)
    with atomic_open(self.path(REPORT_PAGE)) as f:
      f.write(report.html_page(result))
    with atomic_open(self.path(REPORT_PICTURE), "wb") as f:
      f.write(report.png_image(result))
    report.write_summaries(result, self.path(REPORT_SUMMARIES), self.config.seed, format_report(result))
    return result


def ladder(rows: List[dict]) -> List[dict]:
  """The method's steps (LADDER) with their test GAP and the change from the step before; the best L1
  model is chosen by OOF GAP, never by test GAP."""
  steps = []
  for step, level, matches in LADDER:
    found = [r for r in rows if r["level"] == level and matches(r["name"])]
    if not found:
      continue
    row = max(found, key=lambda r: r["oof_gap"] if r["oof_gap"] is not None else float("-inf"))
    steps.append({"step": step, "name": row["name"], "test_gap": row["test_gap"]})
  for before, step in zip([None] + steps, steps):
    known = before is not None and before["test_gap"] is not None and step["test_gap"] is not None
    step["delta"] = step["test_gap"] - before["test_gap"] if known else None
  return steps


def format_report(report: dict) -> str:
  def gap(value):
    return "     -" if value is None else f"{value:.4f}"

  width = max([44] + [len(row["name"]) for row in report["gap@20"]])
  lines = ["", f"{'level':<10} {'model':<{width}} {'OOF GAP@20':>10} {'test GAP@20':>11}"]
  for row in report["gap@20"]:
    lines.append(
      f"{row['level']:<10} {row['name']:<{width}} {gap(row['oof_gap']):>10} {gap(row['test_gap']):>11}"
    )
  lines += ["", f"{'the method, step by step':<40} {'test GAP@20':>11} {'change':>8}"]
  for step in report.get("ladder", []):
    delta = "" if step["delta"] is None else f"{step['delta']:+.4f}"
    lines.append(f"{step['step']:<40} {gap(step['test_gap']):>11} {delta:>8}")
  by_step = {step["step"]: step["test_gap"] for step in report.get("ladder", [])}
  first, last = LADDER[0][0], LADDER[-1][0]
  if by_step.get(first) is not None and by_step.get(last) is not None:
    lines.append(f"{'submitted - best L1':<40} {'':>11} {by_step[last] - by_step[first]:>+8.4f}")
  lines.append("")
  for name, s in report["sizes"].items():
    lines.append(
      f"export {name}: {s['params']:,} parameters, {s['stored_bytes'] / 1e6:.1f} MB of weights, "
      f"{s['saved_model_bytes_on_disk'] / 1e6:.1f} MB SavedModel"
    )
  lines.append("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in report["wall_seconds"].items()))
  return "\n".join(lines)
