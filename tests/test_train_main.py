"""train_main: flags and flagfiles, K-fold, config checks, resume after a kill."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from yt8m_tf import data, models
from yt8m_tf.data import synthetic
from yt8m_tf.training import experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 30


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("data"))
  synthetic.generate(
    synthetic.SyntheticConfig(
      num_videos=400, num_classes=NUM_CLASSES, min_frames=2, max_frames=5, mean_frames=3, num_shards=(2, 1, 1)
    ),
    out,
  )
  return out


def _env(**extra):
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT, **extra)


def _train_args(data_dir, train_dir, *extra):
  return [
    sys.executable,
    "-m",
    "binaries.train_main",
    "--model=Logistic",
    f"--train_data_pattern={data_dir}/video/train-*.tfrecord",
    f"--num_classes={NUM_CLASSES}",
    "--num_folds=3",
    "--fold=1",
    "--batch_size=32",
    "--learning_rate=0.05",
    f"--train_dir={train_dir}",
    *extra,
  ]


def _run(args, **kwargs):
  result = subprocess.run(args, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300, **kwargs)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def test_train_main_kfold_writes_config_history_and_best_model(tiny_data, tmp_path):
  train_dir = tmp_path / "run"
  flagfile = tmp_path / "logistic.flags"
  flagfile.write_text("--epochs=2\n--seed=3\n")
  result = _run(_train_args(tiny_data, train_dir, f"--flagfile={flagfile}"))
  assert "best val_gap" in result.stdout
  config = json.loads((train_dir / "config.json").read_text())
  assert config["fold"] == 1 and config["seed"] == 3 and config["epochs"] == 2
  history = json.loads((train_dir / "history.json").read_text())
  assert [e["epoch"] for e in history] == [1, 2] and history[-1]["val_gap"] > 0
  model = keras.models.load_model(train_dir / "best.keras")
  assert model.output_shape == (None, NUM_CLASSES)
  assert os.listdir(train_dir / "tensorboard")


def test_train_main_refuses_a_train_dir_made_with_other_settings(tiny_data, tmp_path):
  train_dir = tmp_path / "run"
  _run(_train_args(tiny_data, train_dir, "--epochs=1"))
  result = subprocess.run(
    _train_args(tiny_data, train_dir, "--epochs=1", "--learning_rate=0.1"),
    capture_output=True,
    text=True,
    env=_env(),
    cwd=ROOT,
    timeout=300,
  )
  assert result.returncode != 0 and "learning_rate: 0.05 -> 0.1" in result.stderr


def test_train_main_resumes_after_being_killed(tiny_data, tmp_path):
  train_dir = tmp_path / "run"
  args = _train_args(tiny_data, train_dir, "--epochs=40", "--steps_per_epoch=40")
  process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=ROOT)
  history_file = train_dir / "history.json"
  deadline = time.time() + 240
  while time.time() < deadline and not (
    history_file.exists() and len(json.loads(history_file.read_text())) >= 2
  ):
    time.sleep(0.2)
  process.send_signal(signal.SIGKILL)  # mid-epoch, no chance to clean up
  process.wait()
  done_before = len(json.loads(history_file.read_text()))
  assert 2 <= done_before < 40
  _run(_train_args(tiny_data, train_dir, f"--epochs={done_before + 2}", "--steps_per_epoch=40"))
  resumed = json.loads(history_file.read_text())
  assert [e["epoch"] for e in resumed] == list(range(1, done_before + 3))  # continued, not restarted
  # ...and continued the endless stream where the killed run was: the same losses as a run never stopped
  whole = tmp_path / "whole"
  _run(_train_args(tiny_data, whole, f"--epochs={done_before + 2}", "--steps_per_epoch=40"))
  expected = json.loads((whole / "history.json").read_text())
  assert [(e["loss"], e["val_gap"]) for e in resumed] == [(e["loss"], e["val_gap"]) for e in expected]
  assert not [n for n in os.listdir(train_dir) if ".tmp-" in n]


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(tiny_data, tmp_path):
  """SIGKILL in epoch 2, then resume: every epoch's loss and validation GAP equal those of a run never
  stopped (the resumed epoch 2 must see epoch 2's shuffle order, not epoch 1's)."""
  whole, killed = tmp_path / "whole", tmp_path / "killed"
  # Two patterns, three files, as the pipeline reads them: with two files creating an iterator per
  # finished epoch happened to give the same order as reading it; with three it did not.
  pattern = f"--train_data_pattern={tiny_data}/video/train-*.tfrecord,{tiny_data}/video/validate-*.tfrecord"
  _run(_train_args(tiny_data, whole, "--epochs=3", pattern))
  process = subprocess.Popen(
    _train_args(tiny_data, killed, "--epochs=3", pattern),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
    env=_env(),
    cwd=ROOT,
  )
  history_file = killed / "history.json"
  deadline = time.time() + 240
  while time.time() < deadline and not history_file.exists():
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)  # epoch 1 is done; its backup written or not yet
  process.wait()
  assert len(json.loads(history_file.read_text())) == 1
  _run(_train_args(tiny_data, killed, "--epochs=3", pattern))
  expected = json.loads((whole / "history.json").read_text())
  got = json.loads(history_file.read_text())
  assert [e["epoch"] for e in got] == [1, 2, 3]
  for a, b in zip(expected, got):
    assert (a["loss"], a["val_gap"]) == (b["loss"], b["val_gap"])


def test_train_main_with_mixup_and_a_ranking_loss(tiny_data, tmp_path):
  train_dir = tmp_path / "run"
  _run(
    _train_args(
      tiny_data, train_dir, "--epochs=1", "--mixup_alpha=0.4", "--loss=bce_soft_rank", "--model=MoE"
    )
  )
  config = json.loads((train_dir / "config.json").read_text())
  assert config["mixup_alpha"] == 0.4 and config["loss"] == "bce_soft_rank" and config["model"] == "MoE"
  history = json.loads((train_dir / "history.json").read_text())
  assert history[0]["val_gap"] > 0 and history[0]["loss"] > 0


def test_cluster_centroid_model_fits_kmeans_on_training_frames(tiny_data, tmp_path):
  import numpy as np

  train_dir = tmp_path / "run"
  args = _train_args(
    tiny_data,
    train_dir,
    "--epochs=1",
    "--model=ClusterCentroids",
    "--max_frames=5",
    '--model_params={"num_clusters": 6, "hidden_size": 16}',
  )
  args = [a.replace("/video/train-", "/frame/train-") for a in args]
  _run(args)
  cached = np.load(train_dir / "centroids.npz")
  assert cached["centroids"].shape == (6, 1152) and np.isfinite(cached["centroids"]).all()
  assert np.abs(cached["centroids"]).sum() > 0  # fitted on real frames, not left at the initializer
  model = models.load_model(str(train_dir / "best.keras"))
  saved = [w for w in model.weights if "centroids" in w.path]
  np.testing.assert_array_equal(saved[0].numpy(), cached["centroids"])


def test_output_bias_starts_at_the_training_folds_class_prior(tiny_data, tmp_path):
  """output_bias_init=prior: the logits bias is the log-odds of the class frequencies of the training
  folds only (the held-out fold's labels unseen), cached in train_dir; max_steps caps the run."""
  config = experiment.TrainConfig(
    model="EnsembleModel",
    model_params={"width_scale": 1 / 64, "output_bias": True, "bn_momentum": 0.9},
    train_dir=str(tmp_path / "run"),
    train_data_pattern=os.path.join(tiny_data, "video", "train-*.tfrecord"),
    num_classes=NUM_CLASSES,
    num_folds=3,
    fold=1,
    batch_size=8,
    epochs=5,
    max_steps=3,
    output_bias_init="prior",
    verbose=0,
  )
  model = experiment.build_model(config)
  counts, videos = np.zeros(NUM_CLASSES), 0
  for features, labels in data.video_dataset(
    config.train_data_pattern, 64, schema=data.Schema(num_classes=NUM_CLASSES)
  ):
    keep = data.fold_of(features["id"].numpy(), 3) != 1
    counts += labels.numpy()[keep].sum(axis=0)
    videos += keep.sum()
  prior = (counts + 0.5) / (videos + 1)
  np.testing.assert_allclose(model.get_layer("logits").bias.numpy(), np.log(prior / (1 - prior)), rtol=1e-5)
  assert experiment.training_label_counts(config)[1] == videos
  assert (tmp_path / "run" / experiment.TRAINING_LABELS_FILE).exists()  # the pass is cached
  # fit_all_folds reuses the process's one pass over every fold's labels: it adds the held-out fold.
  everything = dataclasses.replace(config, train_dir=str(tmp_path / "all"), fit_all_folds=True)
  all_counts, all_videos = experiment.training_label_counts(everything)
  fold_1, fold_1_videos = np.zeros(NUM_CLASSES), 0
  for features, labels in data.video_dataset(
    config.train_data_pattern, 64, schema=data.Schema(num_classes=NUM_CLASSES)
  ):
    held_out = data.fold_of(features["id"].numpy(), 3) == 1
    fold_1 += labels.numpy()[held_out].sum(axis=0)
    fold_1_videos += held_out.sum()
  assert fold_1_videos > 0 and all_videos == videos + fold_1_videos
  np.testing.assert_array_equal(all_counts, counts + fold_1)
  assert config.schedule == (1, 3)  # one epoch of 3 steps: max_steps caps the 5 epochs
  logs = experiment.run_training(config)
  assert len(logs) == 1
  with pytest.raises(ValueError, match="output layer has no bias"):
    experiment.build_model(dataclasses.replace(config, model_params={"width_scale": 1 / 64}))


def _in_process_config(tiny_data, tmp_path, **changes) -> experiment.TrainConfig:
  """Logistic on fold 0 of the tiny data, 3 epochs of batch 8, silent: for runs inside the test process."""
  values = dict(
    model="Logistic",
    train_dir=str(tmp_path / "run"),
    train_data_pattern=os.path.join(tiny_data, "video", "train-*.tfrecord"),
    num_classes=NUM_CLASSES,
    num_folds=3,
    fold=0,
    batch_size=8,
    epochs=3,
    verbose=0,
  )
  return experiment.TrainConfig(**{**values, **changes})


def test_cosine_schedule_decays_to_zero_over_the_planned_steps(tiny_data, tmp_path):
  """lr_schedule=cosine: the LR falls per step from learning_rate towards 0 over exactly the steps the run
  takes (whole batches of the training folds), and no plateau callback fights it."""
  config = _in_process_config(tiny_data, tmp_path, learning_rate=0.01, lr_schedule="cosine")
  steps = experiment.planned_steps(config)
  assert steps == 3 * (experiment.training_label_counts(config)[1] // 8)
  logs = experiment.run_training(config)
  rates = [e["learning_rate"] for e in logs]
  assert rates[0] < 0.01 and rates == sorted(rates, reverse=True)
  assert rates[-1] == pytest.approx(0.0, abs=1e-7)  # the last step is the planned last step
  # After epoch 1 a third of the steps are done; Keras counts one more optimizer iteration per epoch that
  # ends on exhausted data, so allow one step more.
  per_epoch = steps // 3
  done = [0.005 * (1 + np.cos(np.pi * n / steps)) for n in (per_epoch, per_epoch + 1)]
  assert done[1] - 1e-6 <= rates[0] <= done[0] + 1e-6
  with pytest.raises(ValueError, match="lr_schedule"):
    dataclasses.replace(config, lr_schedule="linear")


def test_validation_freq_validates_every_nth_epoch_and_the_last(tiny_data, tmp_path):
  """validation_freq=2 over 3 epochs: validation after epochs 2 and 3 only, best.keras from a validated
  epoch, a constant LR; a run dir made before the field existed (no validation_freq in its config.json)
  is the same run as validation_freq=1."""
  config = _in_process_config(
    tiny_data, tmp_path, learning_rate=0.05, lr_schedule="constant", validation_freq=2
  )
  logs = experiment.run_training(config)
  assert [("val_gap" in e) for e in logs] == [False, True, True]
  assert [e["learning_rate"] for e in logs] == pytest.approx([0.05] * 3)
  assert (tmp_path / "run" / "best.keras").exists()
  with pytest.raises(ValueError, match="lr_schedule=plateau"):
    dataclasses.replace(config, lr_schedule="plateau")
  old = dataclasses.replace(config, train_dir=str(tmp_path / "old"), validation_freq=1, epochs=1)
  os.makedirs(old.train_dir)
  written = {k: v for k, v in old.to_json().items() if k != "validation_freq"}
  (tmp_path / "old" / "config.json").write_text(json.dumps(written))
  experiment.check_or_write_config(old)
  with pytest.raises(ValueError, match="validation_freq: 1 -> 2"):
    experiment.check_or_write_config(dataclasses.replace(old, validation_freq=2))


def test_a_restarted_run_removes_what_a_killed_write_left(tiny_data, tmp_path):
  """A kill while best/last.keras was being written leaves a hidden temporary file; the restart removes it
  (and nothing else)."""
  train_dir = tmp_path / "run"
  train_dir.mkdir()
  leftover = train_dir / ".last.keras.tmp-0123abcd.keras"
  leftover.write_bytes(b"half a zip")
  keep = train_dir / "notes.txt"
  keep.write_text("mine")
  _run(_train_args(tiny_data, train_dir, "--epochs=1"))
  assert not leftover.exists() and keep.read_text() == "mine"
  assert (train_dir / "last.keras").exists()


@pytest.mark.parametrize(
  "change, named",
  [
    ({"num_folds": 1}, "num_folds must be >= 2"),
    ({"num_folds": 0}, "num_folds must be >= 2"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"batch_size": -5}, "batch_size must be >= 1"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"learning_rate": 0.0}, "learning_rate must be > 0"),
    ({"steps_per_epoch": 0}, "steps_per_epoch must be >= 1"),
    ({"soft_label_temperature": 0.0}, "soft_label_temperature must be > 0"),
    ({"model_params": "[1, 2]"}, "model_params must be a JSON object"),
  ],
)
def test_settings_that_make_no_sense_are_refused_naming_the_setting(tmp_path, change, named):
  base = dict(model="Logistic", train_dir=str(tmp_path), train_data_pattern="x", num_folds=3, fold=0)
  with pytest.raises(ValueError, match=named):
    experiment.TrainConfig(**{**base, **change})


def test_train_main_refuses_bad_json_and_an_empty_training_set_before_any_work(tmp_path):
  empty = tmp_path / "empty.tfrecord"
  empty.write_bytes(b"")
  args = _train_args(str(tmp_path), tmp_path / "run")
  args = [a.replace(f"{tmp_path}/video/train-*.tfrecord", str(empty)) for a in args]
  result = subprocess.run(
    args + ["--model_params={bad"], capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300
  )
  assert result.returncode != 0 and "--model_params='{bad' is not valid JSON" in result.stderr
  result = subprocess.run(
    args + ["--batch_size=0"], capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300
  )
  assert result.returncode != 0 and "batch_size must be >= 1, got 0" in result.stderr
  result = subprocess.run(args, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
  assert result.returncode != 0 and "no training videos" in result.stderr
  assert not (tmp_path / "run" / "best.keras").exists()


def test_the_starters_flags_and_model_names_work(tiny_data, tmp_path):
  """`--base_learning_rate`, `--num_epochs`, `--clip_gradient_norm`, `--label_loss`, `--optimizer` with the
  starter's class names, its exponential schedule, `LogisticModel`, `--export_model_steps`,
  `--frame_features` and `--start_new_model`."""
  train_dir = tmp_path / "run"
  starter = [
    "--model=LogisticModel",
    "--base_learning_rate=0.02",
    "--num_epochs=1",
    "--clip_gradient_norm=5",
    "--label_loss=CrossEntropyLoss",
    "--optimizer=MomentumOptimizer",
    "--lr_schedule=exponential",
    "--learning_rate_decay=0.5",
    "--learning_rate_decay_examples=64",
  ]
  _run(_train_args(tiny_data, train_dir, *starter, "--export_model_steps=2", "--noframe_features"))
  # --export_model_steps: a servable SavedModel every 2 steps of the run's 4-7.
  steps = sorted(int(name[len("step_") :]) for name in os.listdir(train_dir / "export"))
  assert len(steps) >= 2 and steps == list(range(2, 2 * len(steps) + 1, 2))
  assert (train_dir / "export" / f"step_{steps[-1]}" / "1" / "saved_model.pb").exists()
  config = json.loads((train_dir / "config.json").read_text())
  assert (config["model"], config["learning_rate"], config["epochs"], config["clip_norm"]) == (
    "Logistic",
    0.02,
    1,
    5.0,
  )
  assert (config["optimizer"], config["loss"], config["lr_schedule"]) == (
    "momentum",
    "CrossEntropyLoss",
    "exponential",
  )
  # --frame_features must agree with the model's kind.
  wrong_kind = subprocess.run(_train_args(tiny_data, tmp_path / "frames", *starter, "--frame_features"), env=_env(),
                              cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
  assert (
    wrong_kind.returncode != 0
    and "--frame_features=True but LogisticModel is a video-level model" in wrong_kind.stderr
  )
  # Other settings in the same train_dir: refused, unless --start_new_model starts afresh.
  assert subprocess.run(_train_args(tiny_data, train_dir, *starter, "--base_learning_rate=0.03"), env=_env(),
                        cwd=ROOT, capture_output=True, timeout=300).returncode != 0  # fmt: skip
  _run(_train_args(tiny_data, train_dir, *starter, "--base_learning_rate=0.03", "--start_new_model"))
  assert json.loads((train_dir / "config.json").read_text())["learning_rate"] == 0.03


def test_the_starters_feature_flags_train_an_rgb_only_model_on_2017_records(tmp_path):
  """`--feature_names=mean_rgb --feature_sizes=1024` (the starter's spelling) and `--id_key=video_id`: records
  with only mean_rgb and the 2017 id key train a Logistic model whose one input is mean_rgb."""
  schema = data.Schema(
    id_key="video_id", feature_names=("rgb",), feature_sizes=(1024,), num_classes=NUM_CLASSES
  )
  rng = np.random.default_rng(0)
  records = [
    data.video_example(f"v{i}", [i % NUM_CLASSES], {"mean_rgb": rng.normal(size=1024)}, schema)
    for i in range(96)
  ]
  data.write_records(str(tmp_path / "train2017.tfrecord"), records)
  train_dir = tmp_path / "run"
  features = ["--feature_names=mean_rgb", "--feature_sizes=1024", "--id_key=video_id"]
  args = _train_args(tmp_path, train_dir, "--model=LogisticModel", "--num_epochs=1", *features)
  args = [a.replace("video/train-*.tfrecord", "train2017.tfrecord") for a in args]
  _run(args)
  config = json.loads((train_dir / "config.json").read_text())
  assert (config["feature_names"], config["feature_sizes"], config["id_key"]) == (["rgb"], [1024], "video_id")
  model = models.load_model(str(train_dir / "best.keras"))
  assert [(i.name, tuple(i.shape)) for i in model.inputs] == [("mean_rgb", (None, 1024))]
  # export_main on the run serves the features the run read (its config), no feature flags needed.
  exported = tmp_path / "exports"
  _run(
    [sys.executable, "-m", "binaries.export_main", f"--train_dir={train_dir}", f"--export_base={exported}"]
  )
  serving = tf.saved_model.load(str(exported / "Logistic" / "1")).signatures["serving_default"]
  assert list(serving.structured_input_signature[1]) == ["mean_rgb"]
  # A model that reads rgb and audio by name is refused before any work, naming the models that can.
  refused = subprocess.run(
    [a.replace("LogisticModel", "ResNetLike") for a in args] + ["--start_new_model"],
    capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300,
  )  # fmt: skip
  assert refused.returncode != 0 and "reads rgb and audio by name" in refused.stderr
  assert "Logistic" in refused.stderr.split("reads rgb and audio by name")[1]
  # zoo_main takes the same flags: its members train (K-fold) on the rgb-only 2017 records.
  zoo_dir = tmp_path / "zoo"
  zoo_dir.mkdir()
  (zoo_dir / "logistic.flags").write_text("--model=Logistic\n--epochs=1\n--batch_size=16\n--verbose=0\n")
  zoo_args = [f"--zoo_dir={zoo_dir}", f"--workdir={tmp_path / 'zoo_work'}", "--num_folds=2"]
  data_args = [f"--train_data_pattern={tmp_path / 'train2017.tfrecord'}", f"--num_classes={NUM_CLASSES}"]
  _run([sys.executable, "-m", "binaries.zoo_main", *zoo_args, *data_args, *features])
  results = json.loads((tmp_path / "zoo_work" / "zoo_results.json").read_text())
  assert 0 < results["logistic"]["oof_gap"] <= 1 and results["logistic"]["oof_videos"] == 96
  fold_config = json.loads((tmp_path / "zoo_work" / "logistic" / "fold_1" / "config.json").read_text())
  assert (fold_config["feature_names"], fold_config["id_key"]) == (["rgb"], "video_id")


def test_exponential_schedule_is_the_starters_staircase(tiny_data, tmp_path):
  config = _in_process_config(
    tiny_data, tmp_path, learning_rate=0.1, lr_schedule="exponential", learning_rate_decay=0.5,
    learning_rate_decay_examples=20,
  )  # fmt: skip
  schedule = experiment.learning_rate(config)
  # batch 8: 20 examples are 2.5 steps; the LR halves after every whole 20 examples seen
  for step, expected in ((0, 0.1), (2, 0.1), (3, 0.05), (4, 0.05), (5, 0.025)):
    examples_seen = step * config.batch_size
    assert float(schedule(step)) == pytest.approx(0.1 * 0.5 ** (examples_seen // 20)), step
    assert float(schedule(step)) == pytest.approx(expected), step
  with pytest.raises(ValueError, match="learning_rate_decay"):
    dataclasses.replace(config, learning_rate_decay=0.0)
  with pytest.raises(ValueError, match="optimizer"):
    dataclasses.replace(config, optimizer="lbfgs")


def test_a_run_made_before_the_feature_fields_existed_resumes(tiny_data, tmp_path):
  """config.json without fields added later (feature_names, feature_sizes, id_key, tensorboard_steps) reads
  as their defaults, so the run resumes; another value of one of them is refused."""
  config = _in_process_config(tiny_data, tmp_path)
  os.makedirs(config.train_dir)
  old = {k: v for k, v in config.to_json().items() if k not in ("feature_names", "feature_sizes", "id_key")}
  with open(os.path.join(config.train_dir, experiment.CONFIG_FILE), "w") as f:
    json.dump({k: v for k, v in old.items() if k != "tensorboard_steps"}, f)
  experiment.check_or_write_config(config)  # no error: the missing fields had their defaults
  with pytest.raises(ValueError, match=r"feature_sizes: \[1024, 128\] -> \[1024, 64\]"):
    experiment.check_or_write_config(
      dataclasses.replace(config, feature_names=("rgb", "audio"), feature_sizes=(1024, 64))
    )


def test_mixed_precision_trains_in_bfloat16_and_keeps_the_class_scores_float32(tiny_data, tmp_path):
  """`mixed_precision` on a CPU: the layers compute in bfloat16 on float32 weights, the logits stay float32,
  the saved best.keras computes the same way, and the global policy is left as it was."""
  config = _in_process_config(tiny_data, tmp_path, model="MoE", epochs=2, mixed_precision=True)
  history = experiment.run_training(config)
  assert len(history) == 2 and np.isfinite([epoch["loss"] for epoch in history]).all()
  assert keras.config.dtype_policy().name == "float32"
  model = models.load_model(os.path.join(config.train_dir, "best.keras"))
  assert model.get_layer("concat_features").dtype_policy.name == "mixed_bfloat16"
  assert model.get_layer("moe").dtype_policy.name == "float32" and model.output.dtype == "float32"
  assert all(w.dtype == "float32" for w in model.weights)
  assert json.loads((tmp_path / "run" / "config.json").read_text())["mixed_precision"] is True
