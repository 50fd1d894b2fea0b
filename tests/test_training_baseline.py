"""The fit loop around Keras on tiny learnable data: GAP improves, best model saved, resume works."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY_SCHEMA, write_video_file
from yt8m_tf import metrics, models, training
from yt8m_tf.training import evaluation, trainer


def _learnable_videos(num, seed):
  """Labels determined by the features, so a logistic model can learn them."""
  rng = np.random.default_rng(seed)
  centers = np.random.default_rng(99).normal(size=(TINY_SCHEMA.num_classes, 1152)).astype(np.float32)
  labels = [np.sort(rng.choice(TINY_SCHEMA.num_classes, 2, replace=False)) for _ in range(num)]
  features = np.stack([centers[l].sum(0) for l in labels]) + 0.5 * rng.normal(size=(num, 1152))
  ids = [f"s{seed}v{i}" for i in range(num)]
  return ids, labels, features[:, :1024].astype(np.float32), features[:, 1024:].astype(np.float32)


@pytest.fixture(scope="module")
def tiny_splits(tmp_path_factory):
  root = tmp_path_factory.mktemp("splits")
  write_video_file(root / "train.tfrecord", *_learnable_videos(256, seed=1))
  write_video_file(root / "validate.tfrecord", *_learnable_videos(96, seed=2))
  return str(root / "train.tfrecord"), str(root / "validate.tfrecord")


def _logistic_and_data(tiny_splits, learning_rate=0.05, batch_size=32):
  """A compiled Logistic model, an endless shuffled training set (`batch_size`) and the validation set
  (batch 32)."""
  train_file, val_file = tiny_splits
  keras.utils.set_random_seed(0)
  model = models.build("Logistic", num_classes=TINY_SCHEMA.num_classes)
  training.compile_model(model, learning_rate=learning_rate)
  train_ds = training.dataset_for(
    "video", train_file, batch_size, schema=TINY_SCHEMA, shuffle=True, seed=0, num_epochs=None
  )
  return model, train_ds, training.dataset_for("video", val_file, 32, schema=TINY_SCHEMA)


def test_fit_learns_saves_best_model_and_resumes(tiny_splits, tmp_path):
  _, val_file = tiny_splits
  model, train_ds, val_ds = _logistic_and_data(tiny_splits)
  train_dir = str(tmp_path / "run")
  history = training.fit(model, train_ds, val_ds, train_dir=train_dir, epochs=3, steps_per_epoch=8, verbose=0)
  assert [e["epoch"] for e in history] == [1, 2, 3]
  assert history[-1]["val_gap"] > 0.8 and history[-1]["loss"] < history[0]["loss"]
  assert {"learning_rate", "val_loss"} <= set(history[0])

  best = keras.models.load_model(os.path.join(train_dir, training.BEST_MODEL))
  eval_ds = training.dataset_for("video", val_file, 32, schema=TINY_SCHEMA, keep_ids=True)
  result = training.evaluate(best, eval_ds)
  assert result["videos"] == 96
  assert result["gap@20"] == pytest.approx(max(e["val_gap"] for e in history), abs=1e-4)

  # Asking for 5 epochs in the same train_dir continues from epoch 4, not from scratch.
  training.fit(model, train_ds, val_ds, train_dir=train_dir, epochs=5, steps_per_epoch=8, verbose=0)
  with open(os.path.join(train_dir, "history.json")) as f:
    assert [e["epoch"] for e in json.load(f)] == [1, 2, 3, 4, 5]
  assert not [n for n in os.listdir(train_dir) if ".tmp-" in n]


def test_evaluate_equals_gap_of_full_predictions(tiny_splits):
  _, val_file = tiny_splits
  model = models.build("MoE", num_classes=TINY_SCHEMA.num_classes, num_mixtures=2)
  eval_ds = training.dataset_for("video", val_file, 40, schema=TINY_SCHEMA, keep_ids=True)
  ids, scores, labels = zip(*training.predict_batches(model, eval_ds))
  expected = metrics.gap_at_k(np.concatenate(scores), np.concatenate(labels))
  assert training.evaluate(model, eval_ds)["gap@20"] == pytest.approx(expected, abs=1e-9)
  assert len(np.concatenate(ids)) == 96


def test_evaluate_top_k_takes_labels_by_id_as_the_reference_does(tiny_splits):
  """Labels given apart, by video id (a test set's records carry none): the reference GAP of the float32
  scores; a video's labels swapped for another's change it."""
  _, val_file = tiny_splits
  keras.utils.set_random_seed(2)
  model = models.build("MoE", num_classes=TINY_SCHEMA.num_classes, num_mixtures=2)
  eval_ds = training.dataset_for("video", val_file, 40, schema=TINY_SCHEMA, keep_ids=True)
  ids, scores, labels = (np.concatenate(parts) for parts in zip(*training.predict_batches(model, eval_ds)))
  by_id = {video_id: np.flatnonzero(row) for video_id, row in zip(ids, labels)}
  expected = metrics.gap_at_k(scores, labels)
  by_id_gap = evaluation.evaluate_top_k(model, eval_ds, labels=by_id)["gap@20"]
  assert by_id_gap == pytest.approx(expected, abs=1e-9)
  in_order = [by_id[v] for v in ids]
  shifted = dict(zip(ids, in_order[-1:] + in_order[:-1]))
  assert evaluation.evaluate_top_k(model, eval_ds, labels=shifted)["gap@20"] != pytest.approx(
    expected, abs=1e-3
  )


def test_evaluate_equals_the_numpy_metrics(tiny_splits):
  """The in-graph summary gives what the reference metrics give on the full score matrix."""
  _, val_file = tiny_splits
  keras.utils.set_random_seed(1)
  model = models.build("MoE", num_classes=TINY_SCHEMA.num_classes, num_mixtures=2)
  eval_ds = training.dataset_for("video", val_file, 40, schema=TINY_SCHEMA)
  _, scores, labels = zip(*training.predict_batches(model, eval_ds))
  scores, labels = np.concatenate(scores), np.concatenate(labels)
  result = training.evaluate(model, eval_ds, k=5)
  assert result["gap@5"] == pytest.approx(metrics.gap_at_k(scores, labels, k=5), abs=1e-9)
  assert result["perr"] == pytest.approx(metrics.perr(scores, labels), abs=1e-6)
  assert result["hit@1"] == pytest.approx(metrics.hit_at_one(scores, labels), abs=1e-9)
  clipped = np.clip(scores.astype(np.float64), 1e-12, 1 - 1e-12)
  bce = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log1p(-clipped), axis=1).mean()
  assert result["loss"] == pytest.approx(bce, rel=1e-4)


class _Kill(keras.callbacks.Callback):
  """Stops the run like a kill at the beginning or the end (after the callbacks before it) of one epoch."""

  def __init__(self, epoch, at="end"):
    super().__init__()
    self.epoch, self.at = epoch, at

  def on_epoch_begin(self, epoch, logs=None):
    if self.at == "begin" and epoch == self.epoch:
      raise KeyboardInterrupt("killed")

  def on_epoch_end(self, epoch, logs=None):
    if self.at == "end" and epoch == self.epoch:
      raise KeyboardInterrupt("killed")


class _SetLearningRate(keras.callbacks.Callback):
  """A callback that changes the learning rate at an epoch's end, as ReduceLROnPlateau does."""

  def __init__(self, epoch, value):
    super().__init__()
    self.epoch, self.value = epoch, value

  def on_epoch_end(self, epoch, logs=None):
    if epoch == self.epoch:
      self.model.optimizer.learning_rate.assign(self.value)


def _fit_logistic(tiny_splits, train_dir, learning_rate, batch_size, callbacks, **schedule):
  """`_logistic_and_data` fitted at a constant LR with `callbacks`; returns its history."""
  model, train_ds, val_ds = _logistic_and_data(tiny_splits, learning_rate, batch_size)
  return training.fit(
    model,
    train_ds,
    val_ds,
    train_dir=train_dir,
    extra_callbacks=callbacks,
    lr_on_plateau=False,
    verbose=0,
    **schedule,
  )


@pytest.mark.parametrize("kill", ["after epoch 2's end", "in epoch 3's end, before its backup"])
def test_a_resumed_run_continues_from_one_whole_epoch_state(tiny_splits, kill, tmp_path):
  """The backup is one unit saved after every other callback: after a kill between epochs the run resumes
  with the learning rate a callback set at epoch 2's end; after a kill inside epoch 3's end (history.json
  and last.keras written, a half-written checkpoint left) it redoes epoch 3 from epoch 2's state. Either
  way every epoch's loss, GAP and learning rate equal those of a run never stopped."""

  def run(train_dir, extra=()):
    callbacks = [_SetLearningRate(1, 0.0123), *extra]
    return _fit_logistic(tiny_splits, train_dir, 0.05, 32, callbacks, epochs=4, steps_per_epoch=4)

  whole = run(str(tmp_path / "whole"))
  train_dir = str(tmp_path / "killed")
  killer = _Kill(2, at="begin" if kill.startswith("after") else "end")
  with pytest.raises(KeyboardInterrupt):
    run(train_dir, [killer])
  backup_dir = os.path.join(train_dir, trainer.BACKUP_DIR)
  assert tf.train.latest_checkpoint(backup_dir).endswith("ckpt-2")
  if kill.startswith("in"):
    assert len(json.loads(open(os.path.join(train_dir, "history.json")).read())) == 3
    for name in ("ckpt-3.index", "ckpt-3.data-00000-of-00001"):  # what a writer killed midway leaves
      with open(os.path.join(backup_dir, name), "wb") as f:
        f.write(b"\0" * 10)
  resumed = run(train_dir)
  assert [e["epoch"] for e in resumed] == [1, 2, 3, 4]
  assert resumed[2]["learning_rate"] == pytest.approx(0.0123)
  assert [(e["loss"], e["val_gap"], e["learning_rate"]) for e in resumed] == [
    (e["loss"], e["val_gap"], e["learning_rate"]) for e in whole
  ]
  assert not os.path.exists(backup_dir)  # removed once complete


def test_a_resumed_run_equals_the_uninterrupted_one(tiny_splits, tmp_path):
  """Killed after epoch 1 and resumed: same data order (shuffle = f(seed, epoch)), same weights."""
  train_file, val_file = tiny_splits

  def run(train_dir, kill_after=None):
    keras.utils.set_random_seed(0)
    model = training.compile_model(models.build("Logistic", num_classes=TINY_SCHEMA.num_classes), 0.05)
    train_ds = training.dataset_for("video", train_file, 16, schema=TINY_SCHEMA, shuffle=True, seed=0)
    val_ds = training.dataset_for("video", val_file, 32, schema=TINY_SCHEMA)
    extra = [] if kill_after is None else [_Kill(kill_after)]
    training.fit(model, train_ds, val_ds, train_dir=train_dir, epochs=3, extra_callbacks=extra, verbose=0)
    return model

  whole = run(str(tmp_path / "whole"))
  with pytest.raises(KeyboardInterrupt):
    run(str(tmp_path / "resumed"), kill_after=0)
  resumed = run(str(tmp_path / "resumed"))
  for a, b in zip(whole.weights, resumed.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def _tensorboard_scalars(log_dir, tag):
  from tensorboard.backend.event_processing import event_accumulator

  accumulator = event_accumulator.EventAccumulator(log_dir, size_guidance={event_accumulator.TENSORS: 0})
  accumulator.Reload()
  return {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in accumulator.Tensors(tag)}


def test_tensorboard_gets_the_training_loss_per_step(tiny_splits, tmp_path):
  """Every `tensorboard_steps` steps: that batch's own loss and the epoch's running mean; the step losses
  of an epoch average to the epoch's loss in history.json."""
  model, train_ds, val_ds = _logistic_and_data(tiny_splits)
  train_dir = str(tmp_path / "run")
  history = training.fit(
    model, train_ds, val_ds, train_dir=train_dir, epochs=2, steps_per_epoch=8, verbose=0, tensorboard_steps=1
  )
  log_dir = os.path.join(train_dir, "tensorboard", "train")
  step_loss, so_far = _tensorboard_scalars(log_dir, "step_loss"), _tensorboard_scalars(log_dir, "loss_so_far")
  assert sorted(step_loss) == sorted(so_far) == list(range(1, 17))
  for epoch, first in ((0, 1), (1, 9)):
    losses = [step_loss[step] for step in range(first, first + 8)]
    assert np.mean(losses) == pytest.approx(history[epoch]["loss"], rel=1e-4)
    assert so_far[first + 7] == pytest.approx(history[epoch]["loss"], rel=1e-5)
    assert np.std(losses) > 0  # each step's own loss, not the running mean
  # Every 4 steps: only those are written, counted on from the model's 16 steps so far.
  training.fit(
    model,
    train_ds,
    val_ds,
    train_dir=str(tmp_path / "run4"),
    epochs=1,
    steps_per_epoch=8,
    verbose=0,
    tensorboard_steps=4,
  )
  assert sorted(_tensorboard_scalars(str(tmp_path / "run4" / "tensorboard" / "train"), "step_loss")) == [
    20,
    24,
  ]


def test_early_stopping_resumes_with_its_count_of_epochs_without_improvement(tiny_splits, tmp_path):
  """Killed after an epoch that did not improve validation GAP, the resumed run still stops where the
  uninterrupted one stops (with the count restarted at 0 it would train on)."""

  def run(train_dir, extra=()):
    schedule = dict(epochs=30, steps_per_epoch=2, early_stopping_patience=2)
    return _fit_logistic(tiny_splits, train_dir, 0.2, 16, list(extra), **schedule)

  whole = run(str(tmp_path / "whole"))
  assert len(whole) < 30  # it stopped early
  gaps = [e["val_gap"] for e in whole]
  # The first epoch that did not improve on the best so far, and not the one it stopped at.
  first_flat = next(i for i in range(1, len(gaps)) if gaps[i] <= max(gaps[:i]))
  assert first_flat < len(whole) - 1
  train_dir = str(tmp_path / "killed")
  with pytest.raises(KeyboardInterrupt):
    run(train_dir, [_Kill(first_flat + 1, at="begin")])
  resumed = run(train_dir)
  assert [(e["epoch"], e["loss"], e["val_gap"]) for e in resumed] == [
    (e["epoch"], e["loss"], e["val_gap"]) for e in whole
  ]
