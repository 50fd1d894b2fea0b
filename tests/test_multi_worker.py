"""Multi-worker training: two train_main workers on localhost (MultiWorkerMirroredStrategy via TF_CONFIG)
finish with identical weights, equal to one device's; the custom loop resumes from its checkpoint."""

import json
import os
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY_SCHEMA, make_videos, write_video_file
from yt8m_tf import models
from yt8m_tf.training import distributed, experiment, trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
  root = tmp_path_factory.mktemp("videos")
  write_video_file(root / "train.tfrecord", *make_videos(96, seed=1))
  write_video_file(root / "validate.tfrecord", *make_videos(32, seed=2, prefix="val"))
  return str(root / "train.tfrecord"), str(root / "validate.tfrecord")


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


# Clipping is active at this norm, so the comparison with one device also checks that gradients are summed
# over workers before they are clipped.
_SETTINGS = dict(
  model="Logistic",
  num_classes=TINY_SCHEMA.num_classes,
  batch_size=16,
  epochs=2,
  steps_per_epoch=4,
  learning_rate=0.05,
  clip_norm=0.01,
  verbose=0,
)


def _start_workers(train_file, val_file, train_dir, log_dir):
  cluster = [f"localhost:{port}" for port in _free_ports(2)]
  flags = [f"--{k}={v}" for k, v in _SETTINGS.items()] + [
    f"--train_data_pattern={train_file}",
    f"--eval_data_pattern={val_file}",
    f"--train_dir={train_dir}",
    "--distribution_strategy=multi_worker",
  ]
  processes = []
  for index in range(2):
    tf_config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
    env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    log = open(os.path.join(log_dir, f"worker{index}.log"), "w")
    processes.append(
      (
        subprocess.Popen(
          [sys.executable, "-m", "binaries.train_main", *flags], stdout=log, stderr=log, env=env, cwd=ROOT
        ),
        log,
      )
    )
  return processes


def _wait(processes, log_dir):
  """Waits for all workers; a failed one gets its peers killed (they would wait for it forever)."""
  deadline = time.monotonic() + WORKER_TIMEOUT_S
  try:
    while time.monotonic() < deadline and any(p.poll() is None for p, _ in processes):
      if any(p.poll() not in (None, 0) for p, _ in processes):
        break
      time.sleep(0.2)
  finally:
    for p, log in processes:
      if p.poll() is None:
        p.kill()
        p.wait()
      log.close()
  for index, (p, _) in enumerate(processes):
    if p.returncode != 0:
      with open(os.path.join(log_dir, f"worker{index}.log")) as f:
        pytest.fail(f"worker {index} exited with {p.returncode} (-9: killed):\n{f.read()[-3000:]}")


def _weights(path):
  return models.load_model(str(path)).get_weights()


def test_two_workers_finish_with_identical_weights_equal_to_one_device(tiny_files, tmp_path):
  train_file, val_file = tiny_files
  train_dir = tmp_path / "run"
  _wait(_start_workers(train_file, val_file, train_dir, tmp_path), tmp_path)

  chief_files, worker_dir = set(os.listdir(train_dir)), train_dir / "workers" / "1"
  assert {"best.keras", "last.keras", "history.json", "config.json", "tensorboard"} <= chief_files
  assert {"best.keras", "last.keras", "history.json"} <= set(os.listdir(worker_dir))
  assert "config.json" not in os.listdir(worker_dir)  # only the chief owns the run's settings
  assert "backup" not in chief_files and "backup" not in os.listdir(worker_dir)  # removed after finishing
  history = json.loads((train_dir / "history.json").read_text())
  assert [e["epoch"] for e in history] == [1, 2]
  assert all(np.isfinite(e["val_gap"]) and np.isfinite(e["loss"]) for e in history)
  assert json.loads((worker_dir / "history.json").read_text()) == history  # the chief's logs, everywhere

  chief, worker = _weights(train_dir / "last.keras"), _weights(worker_dir / "last.keras")
  assert all(np.array_equal(a, b) for a, b in zip(chief, worker))

  # The same run on one device (Keras fit) sees the same global batches: the same weights up to rounding.
  single = experiment.TrainConfig(
    train_dir=str(tmp_path / "single"), train_data_pattern=train_file, eval_data_pattern=val_file, **_SETTINGS
  )
  experiment.run_training(single)
  for a, b in zip(chief, _weights(tmp_path / "single" / "last.keras")):
    np.testing.assert_allclose(a, b, atol=1e-5)


class _Killed(Exception):
  pass


class _KillAtEpochEnd(keras.callbacks.Callback):
  """Interrupts training at the end of an epoch (1-based), after history.json but before its checkpoint."""

  def __init__(self, epoch):
    super().__init__()
    self.epoch = epoch

  def on_epoch_end(self, epoch, logs=None):
    if epoch + 1 == self.epoch:
      raise _Killed


class _SetLearningRate(keras.callbacks.Callback):
  def __init__(self, epoch, value):
    super().__init__()
    self.epoch, self.value = epoch, value

  def on_epoch_end(self, epoch, logs=None):
    if epoch + 1 == self.epoch:
      self.model.optimizer.learning_rate = self.value


def test_custom_loop_resumes_model_optimizer_and_epoch_from_its_checkpoint(tiny_files, tmp_path):
  train_file, val_file = tiny_files
  config = experiment.TrainConfig(
    train_dir=str(tmp_path / "run"), train_data_pattern=train_file, eval_data_pattern=val_file, **_SETTINGS
  )
  strategy = tf.distribute.get_strategy()  # the loop takes any strategy; one device keeps this test quick

  def run(epochs, extra_callbacks=()):
    keras.utils.set_random_seed(0)
    model = experiment.build_model(config)
    trainer.compile_model(model, config.learning_rate, clip_norm=config.clip_norm)
    history = distributed.fit(
      model,
      experiment.training_dataset(config),
      experiment.validation_dataset(config),
      strategy=strategy,
      train_dir=config.train_dir,
      epochs=epochs,
      steps_per_epoch=config.steps_per_epoch,
      lr_patience=0,
      extra_callbacks=extra_callbacks,
      verbose=0,
    )
    return model, history

  with pytest.raises(_Killed):
    run(5, [_SetLearningRate(2, 0.0123), _KillAtEpochEnd(3)])
  assert os.listdir(tmp_path / "run" / distributed.BACKUP_DIR)  # holds epochs 1-2
  interrupted = json.loads((tmp_path / "run" / "history.json").read_text())
  assert [e["epoch"] for e in interrupted] == [1, 2, 3]

  model, history = run(4)
  assert [e["epoch"] for e in history] == [1, 2, 3, 4]  # epoch 3 again, then 4: continued, not restarted
  assert history[:2] == interrupted[:2]
  assert int(model.optimizer.iterations.numpy()) == 4 * config.steps_per_epoch  # optimizer state came back
  # The learning rate set after epoch 2 came back too (BackupAndRestore would have saved it before the change).
  assert history[2]["learning_rate"] == pytest.approx(0.0123)
  assert not (tmp_path / "run" / distributed.BACKUP_DIR).exists()  # removed once training completed
