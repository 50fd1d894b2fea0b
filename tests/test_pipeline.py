"""The main job on the tiny preset: every stage runs, the report is complete, finished stages skip."""

import json
import os
import subprocess
import sys

from yt8m_tf import pipeline


def test_pipeline_runs_reports_and_skips_finished_stages(tmp_path):
  workdir = str(tmp_path / "work")
  logs = []
  config = pipeline.preset("tiny", workdir)
  report = pipeline.Pipeline(config, log=logs.append).run()
  gap = report["models"]["Logistic"]["gap@20"]
  assert 0.0 < gap <= 1.0
  assert report["models"]["Logistic"]["videos"] > 0
  assert set(report["wall_seconds"]) == {"data", "baseline", "evaluate"}
  with open(os.path.join(workdir, "report.json")) as f:
    assert json.load(f)["models"]["Logistic"]["gap@20"] == gap
  assert "[data] running" in logs

  # A second run redoes nothing; removing a stage's marker reruns only that stage.
  logs.clear()
  pipeline.Pipeline(config, log=logs.append).run()
  assert sum("already done" in line for line in logs) == 3
  os.remove(os.path.join(workdir, "stages", "evaluate.json"))
  logs.clear()
  again = pipeline.Pipeline(config, log=logs.append).run()
  assert "[evaluate] running" in logs and "[baseline] running" not in logs
  assert again["models"]["Logistic"]["gap@20"] == gap


def test_pipeline_binary_prints_the_report(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "binaries.pipeline_main",
      f"--workdir={tmp_path / 'w'}",
      "--preset=tiny",
      "--epochs=1",
    ],
    capture_output=True,
    text=True,
    env=env,
    timeout=300,
    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert "GAP@20" in result.stdout and "Logistic" in result.stdout
  assert os.path.exists(tmp_path / "w" / "report.json")
