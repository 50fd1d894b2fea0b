"""The main job's results as TensorBoard summaries, next to each training run's own: the ladder as a curve
over its steps, every model's GAP@20 and the time per stage as scalars at the run's seed (runs of other
seeds into the same log directory line up), and the report table as text."""

from __future__ import annotations

import tensorflow as tf


def write_summaries(report: dict, log_dir: str, seed: int, table: str) -> None:
  """Writes into `log_dir`, replacing what an earlier call wrote there."""
  if tf.io.gfile.isdir(log_dir):
    tf.io.gfile.rmtree(log_dir)  # report() runs again on every call of the job: no doubled points
  writer = tf.summary.create_file_writer(log_dir)
  with writer.as_default():
    for number, step in enumerate(report.get("ladder", [])):
      if step["test_gap"] is not None:
        tf.summary.scalar("ladder/test_gap", step["test_gap"], step=number, description=step["step"])
    for row in report.get("gap@20", []):
      for split in ("oof", "test"):
        if row[f"{split}_gap"] is not None:
          tf.summary.scalar(f"{split}_gap/{row['level']}: {row['name']}", row[f"{split}_gap"], step=seed)
    for stage, seconds in report.get("wall_seconds", {}).items():
      tf.summary.scalar(f"wall_seconds/{stage}", seconds, step=seed)
    tf.summary.text("report", f"```\n{table}\n```", step=seed)
  writer.close()
