"""Kill the main job with SIGKILL at several points, resume it, and compare its report with a run that
was never stopped.

  python bench/kill_resume.py --workdir=/tmp/kill_resume [--preset=tiny] [--kills=l1:20,stacker:3,distill:15]

Each kill point `stage:seconds` waits for the job's "[stage] ... running" line, lets it run that many more
seconds, then sends SIGKILL; the next attempt resumes the same workdir. After the last kill the job runs
to the end. Every GAP figure of report.json (OOF and test, every row) must equal the uninterrupted run's
to 1e-6; the script prints each row side by side and exits 1 on a difference. Too slow for the test suite
(a tiny run takes minutes on 2 cores, and this makes 2 runs plus the kills).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "/tmp/kill_resume", "Holds the uninterrupted and the killed runs.")
flags.DEFINE_string("preset", "tiny", "Pipeline preset.")
flags.DEFINE_list("kills", ["l1:20", "stacker:3", "distill:15", "export:5"], "stage:seconds kill points.")
TOLERANCE = 1e-6


def _command(workdir):
  return [sys.executable, "-m", "binaries.pipeline_main", f"--workdir={workdir}", f"--preset={FLAGS.preset}"]


def _env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TFDF_DISABLE_WELCOME_MESSAGE="1", PYTHONUNBUFFERED="1")


def run_to_end(workdir):
  subprocess.run(_command(workdir), check=True, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL)
  with open(os.path.join(workdir, "report.json")) as f:
    return json.load(f)


def run_and_kill(workdir, stage, seconds) -> str:
  """Runs the job until `seconds` after its "[stage] ... running" line, then SIGKILLs it; says what happened."""
  job = subprocess.Popen(
    _command(workdir), cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
  )
  started = threading.Event()

  def watch():
    for line in job.stdout:
      if line.startswith(f"[{stage}] ") and line.rstrip().endswith(" running"):
        started.set()

  threading.Thread(target=watch, daemon=True).start()
  while not started.is_set() and job.poll() is None:
    time.sleep(0.2)
  if not started.is_set():
    return f"{stage} never started (finished before?)"
  time.sleep(seconds)
  if job.poll() is not None:
    return f"finished before the kill {seconds} s into {stage}"
  job.send_signal(signal.SIGKILL)
  job.wait()
  return f"killed {seconds} s into {stage}"


def main(argv):
  del argv
  shutil.rmtree(FLAGS.workdir, ignore_errors=True)
  start = time.perf_counter()
  reference = run_to_end(os.path.join(FLAGS.workdir, "uninterrupted"))
  print(f"uninterrupted run: {time.perf_counter() - start:.0f} s", flush=True)
  killed_dir = os.path.join(FLAGS.workdir, "killed")
  for point in FLAGS.kills:
    stage, seconds = point.split(":")
    print(run_and_kill(killed_dir, stage, float(seconds)), flush=True)
  resumed = run_to_end(killed_dir)
  worst = 0.0
  print(f"{'level':<10} {'model':<42} {'uninterrupted':>26} {'killed + resumed':>26}")
  for a, b in zip(reference["gap@20"], resumed["gap@20"]):
    assert (a["level"], a["name"]) == (b["level"], b["name"]), (a, b)
    for key in ("oof_gap", "test_gap"):
      if (a[key] is None) != (b[key] is None):
        worst = float("inf")
      elif a[key] is not None:
        worst = max(worst, abs(a[key] - b[key]))
    show = lambda row: " ".join(
      "     -     " if row[k] is None else f"{row[k]:.9f}" for k in ("oof_gap", "test_gap")
    )
    print(f"{a['level']:<10} {a['name']:<42} {show(a):>26} {show(b):>26}")
  same = len(reference["gap@20"]) == len(resumed["gap@20"]) and worst <= TOLERANCE
  print(f"largest difference {worst:.2e}: {'SAME' if same else 'DIFFERENT'} (tolerance {TOLERANCE})")
  sys.exit(0 if same else 1)


if __name__ == "__main__":
  app.run(main)
