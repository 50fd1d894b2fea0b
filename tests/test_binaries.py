"""The console scripts (`yt8m-*`, setup.cfg) show their binary's flags on --help."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
  "module, script, flag",
  [("pipeline_main", "yt8m-pipeline", "--workdir"), ("train_main", "yt8m-train", "--train_data_pattern")],
)
def test_console_script_help_lists_the_binarys_flags(module, script, flag):
  # What the installed script does: argv[0] is the script's path, then the binary's run().
  code = f"import sys; sys.argv = [{script!r}, '--help']; from binaries.{module} import run; run()"
  result = subprocess.run(
    [sys.executable, "-c", code],
    capture_output=True,
    text=True,
    cwd=ROOT,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT),
    timeout=120,
  )
  assert result.returncode == 1, result.stderr[-2000:]  # absl's --help exits with 1
  assert f"{flag}:" in result.stdout  # absl alone prints only "Try --helpfull" here
