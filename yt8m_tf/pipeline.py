"""The end-to-end job as resumable stages in one work directory.

Each stage writes its outputs under `workdir/` and, when it finishes, a marker
`workdir/stages/<stage>.json` with its results and wall time. A stage whose marker exists is not run
again; an interrupted stage runs again and resumes from what it left (training continues from its
BackupAndRestore state, data generation keeps finished shards).

Stages so far: `data` (benchmark data from real label sets), `baseline` (a video-level model trained
on the train split, early-stopped on validate), `evaluate` (GAP@20 and friends on held-out labeled
data), and the report.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable, Dict, List, Optional

import tensorflow as tf

from yt8m_tf import data, models, training
from yt8m_tf.data import synthetic
from yt8m_tf.files import atomic_open
from yt8m_tf.training import experiment


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """What the job runs. `preset(name)` gives the documented sets; flags override single fields."""

  workdir: str
  synthetic: synthetic.SyntheticConfig = synthetic.SyntheticConfig()
  label_sets: Optional[str] = None  # None: the label sets packaged with yt8m_tf
  baseline_model: str = "Logistic"
  baseline_params: Dict[str, object] = dataclasses.field(default_factory=dict)
  batch_size: int = 256
  epochs: int = 12
  learning_rate: float = 0.05  # calibrated: 0.01 (the starter's) is still far from converged at 12 epochs
  seed: int = 0


def preset(name: str, workdir: str, **overrides) -> PipelineConfig:
  if name == "demo":
    config = PipelineConfig(workdir=workdir)
  elif name == "tiny":  # a few seconds per stage; used by the tests
    tiny_data = synthetic.SyntheticConfig(
      num_videos=600, num_classes=40, min_frames=2, max_frames=6, mean_frames=4, num_shards=(2, 1, 1)
    )
    config = PipelineConfig(workdir=workdir, synthetic=tiny_data, batch_size=64, epochs=2, learning_rate=0.05)
  else:
    raise ValueError(f"unknown preset {name!r}; known: demo, tiny")
  return dataclasses.replace(config, **overrides)


class Pipeline:
  """Runs stages in order, skipping those already finished in `config.workdir`."""

  def __init__(self, config: PipelineConfig, log: Callable[[str], None] = print):
    self.config = config
    self.log = log
    self.stage_dir = os.path.join(config.workdir, "stages")

  # -- bookkeeping -------------------------------------------------------------------------------
  def _marker(self, stage: str) -> str:
    return os.path.join(self.stage_dir, f"{stage}.json")

  def result(self, stage: str) -> Optional[dict]:
    path = self._marker(stage)
    if not tf.io.gfile.exists(path):
      return None
    with tf.io.gfile.GFile(path) as f:
      return json.load(f)

  def run_stage(self, stage: str, body: Callable[[], dict]) -> dict:
    done = self.result(stage)
    if done is not None:
      self.log(f"[{stage}] already done ({done['wall_seconds']:.1f} s), skipping")
      return done
    self.log(f"[{stage}] running")
    start = time.perf_counter()
    outputs = body()
    done = {"stage": stage, "wall_seconds": time.perf_counter() - start, **outputs}
    with atomic_open(self._marker(stage)) as f:
      json.dump(done, f, indent=1)
    self.log(f"[{stage}] done in {done['wall_seconds']:.1f} s")
    return done

  # -- paths -------------------------------------------------------------------------------------
  @property
  def data_dir(self) -> str:
    return os.path.join(self.config.workdir, "data")

  def pattern(self, level: str, split: str) -> str:
    return os.path.join(self.data_dir, level, f"{split}-*.tfrecord")

  def schema(self) -> data.Schema:
    summary = synthetic.load_summary(self.data_dir)
    # Frame tensors are padded to the longest synthetic video, not 300: 5x less work at demo scale.
    return data.Schema(num_classes=summary["counts"]["classes"], max_frames=self.config.synthetic.max_frames)

  # -- stages ------------------------------------------------------------------------------------
  def stage_data(self) -> dict:
    summary = synthetic.generate(
      self.config.synthetic,
      self.data_dir,
      label_sets_path=self.config.label_sets,
      progress=self._log_progress,
    )
    return {
      "data_dir": self.data_dir,
      "num_classes": summary["counts"]["classes"],
      "videos": summary["counts"]["videos"],
    }

  def _log_progress(self, progress: synthetic.Progress) -> None:
    if progress.videos_done == progress.videos_total or progress.videos_done % 5000 < 256:
      self.log(
        f"  {progress.split}: {progress.videos_done}/{progress.videos_total} videos, "
        f"{progress.videos_per_second:.0f} videos/s"
      )

  def stage_baseline(self) -> dict:
    config = self.config
    schema = self.schema()
    name = config.baseline_model
    kind = models.get(name).kind
    train_videos = self.result("data")["videos"]["train"]
    train_config = experiment.TrainConfig(
      model=name,
      model_params=dict(config.baseline_params),
      train_dir=os.path.join(config.workdir, "l1", name),
      train_data_pattern=self.pattern(kind, "train"),
      eval_data_pattern=self.pattern(kind, "validate"),
      num_classes=schema.num_classes,
      max_frames=schema.max_frames,
      batch_size=config.batch_size,
      epochs=config.epochs,
      steps_per_epoch=max(1, train_videos // config.batch_size),
      learning_rate=config.learning_rate,
      seed=config.seed,
    )
    history = experiment.run_training(train_config)
    return {
      "model": name,
      "train_dir": train_config.train_dir,
      "epochs": len(history),
      "best_val_gap": max(e["val_gap"] for e in history),
    }

  def stage_evaluate(self) -> dict:
    baseline = self.result("baseline")
    schema = self.schema()
    kind = models.get(baseline["model"]).kind
    model = models.load_model(os.path.join(baseline["train_dir"], training.BEST_MODEL))
    dataset = training.dataset_for(
      kind, self.pattern(kind, "validate"), self.config.batch_size, schema=schema, keep_ids=True
    )
    results = {"validate": training.evaluate(model, dataset)}
    return {"model": baseline["model"], "metrics": results}

  def run(self) -> dict:
    stages: List[tuple] = [
      ("data", self.stage_data),
      ("baseline", self.stage_baseline),
      ("evaluate", self.stage_evaluate),
    ]
    for stage, body in stages:
      self.run_stage(stage, body)
    return self.report()

  def report(self) -> dict:
    stages = {name: self.result(name) for name in ("data", "baseline", "evaluate")}
    metrics = stages["evaluate"]["metrics"]["validate"]
    report = {
      "workdir": self.config.workdir,
      "models": {stages["evaluate"]["model"]: metrics},
      "wall_seconds": {name: round(s["wall_seconds"], 1) for name, s in stages.items()},
    }
    with atomic_open(os.path.join(self.config.workdir, "report.json")) as f:
      json.dump(report, f, indent=1)
    return report


def format_report(report: dict) -> str:
  lines = ["", "model                      GAP@20   Hit@1    PERR   videos (validate split)"]
  for name, m in report["models"].items():
    lines.append(f"{name:<25} {m['gap@20']:7.4f} {m['hit@1']:7.4f} {m['perr']:7.4f} {m['videos']:8d}")
  lines.append("")
  lines.append("wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in report["wall_seconds"].items()))
  return "\n".join(lines)
