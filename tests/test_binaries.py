"""The console scripts (`yt8m-*`, setup.cfg) show their binary's flags on --help."""

import os
import re
import subprocess
import sys

import pytest
from conftest import generate_video_benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


CONSOLE_SCRIPTS = [
  ("pipeline_main", "yt8m-pipeline", "--workdir"),
  ("train_main", "yt8m-train", "--train_data_pattern"),
  ("synth_main", "yt8m-synth", "--out_dir"),
  ("predict_main", "yt8m-predict", "--test_data_pattern"),
  ("zoo_main", "yt8m-zoo", "--zoo_dir"),
  ("export_main", "yt8m-export", "--model_path"),
  ("inference_main", "yt8m-inference", "--input_data_pattern"),
  ("eval_main", "yt8m-eval", "--eval_data_pattern"),
  ("stack_main", "yt8m-stack", "--output_dir"),
]


def test_every_console_script_is_checked_below():
  with open(os.path.join(ROOT, "setup.cfg")) as f:
    declared = set(re.findall(r"^\s*(yt8m-[a-z]+) = binaries\.([a-z_]+):run$", f.read(), re.M))
  assert declared == {(script, module) for module, script, _ in CONSOLE_SCRIPTS}


@pytest.mark.parametrize(
  "module, script, flag",
  CONSOLE_SCRIPTS,
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


def test_binaries_start_tensorflow_without_its_start_up_noise():
  """TF 2.19 logs duplicate CUDA registrations while it loads, and cuInit errors on a machine without a
  GPU; the binaries hide them (a genuine Python error still shows)."""
  env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "YT8M_"))}
  code = "import binaries, tensorflow as tf; print(tf.reduce_sum(tf.ones(3)).numpy())"
  result = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
  )
  assert result.returncode == 0 and result.stdout.strip() == "3.0", result.stderr[-2000:]
  for noise in ("Unable to register", "cuInit", "computation placer", "absl::InitializeLog"):
    assert noise not in result.stderr
  failing = subprocess.run(
    [sys.executable, "-c", "import binaries; import tensorflow as tf; tf.no_such_op()"],
    capture_output=True,
    text=True,
    cwd=ROOT,
    env=env,
    timeout=120,
  )
  assert failing.returncode == 1 and "AttributeError" in failing.stderr and "no_such_op" in failing.stderr


def test_eval_main_scores_a_run_and_its_export_alike(tmp_path):
  """yt8m-eval on a train_main run directory and on its SavedModel export: the same GAP@20 (from each
  video's top 20), equal to the trainer's own evaluation; eval.json and TensorBoard events written."""
  import json

  import numpy as np

  from yt8m_tf import data, export, models
  from yt8m_tf.training import evaluation, experiment
  from yt8m_tf.training.inputs import dataset_for

  data_dir = generate_video_benchmark(tmp_path / "data", num_videos=300, num_classes=30)
  run_dir = str(tmp_path / "run")
  config = experiment.TrainConfig(
    model="Logistic",
    train_dir=run_dir,
    train_data_pattern=f"{data_dir}/video/train-*.tfrecord",
    num_classes=30,
    num_folds=3,
    fold=0,
    batch_size=16,
    epochs=2,
    learning_rate=0.05,
    verbose=0,
  )
  experiment.run_training(config)
  model = models.load_model(f"{run_dir}/best.keras")
  export.export_keras_model(model, str(tmp_path / "serving"), "logistic", data.Schema(num_classes=30))
  pattern = f"{data_dir}/video/validate-*.tfrecord"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
  results = {}
  for name, target, extra in [
    ("run", run_dir, []),
    ("export", str(tmp_path / "serving" / "logistic"), [f"--output_dir={tmp_path / 'export_eval'}"]),
  ]:
    done = subprocess.run(
      [
        sys.executable,
        "-m",
        "binaries.eval_main",
        f"--model={target}",
        f"--eval_data_pattern={pattern}",
        *extra,
      ],
      capture_output=True,
      text=True,
      cwd=ROOT,
      env=env,
      timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "gap@20" in done.stdout
    out_dir = os.path.join(run_dir, "eval") if name == "run" else str(tmp_path / "export_eval")
    with open(os.path.join(out_dir, "eval.json")) as f:
      results[name] = json.load(f)
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(out_dir))
  run, exported = results["run"], results["export"]
  assert run["step"] == 2 and run["videos"] == exported["videos"] > 0
  for key in ("gap@20", "hit@1", "perr", "map", "map_2019"):
    assert run[key] == pytest.approx(exported[key], abs=1e-6), key
  schema = data.Schema(num_classes=30)
  expected = evaluation.evaluate(model, dataset_for(models.VIDEO, pattern, 64, schema=schema))
  assert run["gap@20"] == pytest.approx(expected["gap@20"], abs=1e-9) and 0 < run["gap@20"] < 1
  assert np.isclose(run["hit@1"], expected["hit@1"]) and np.isclose(run["perr"], expected["perr"])
