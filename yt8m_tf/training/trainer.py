"""Training around Keras `fit`: best model by validation GAP, LR on plateau, TensorBoard, resume.

A `train_dir` holds everything a run made:
  best.keras        the model with the best validation GAP so far (written atomically)
  last.keras        the model after the last finished epoch
  backup/           the resume state (`backup.EpochBackup`): a killed run started again continues
                    where it stopped; removed once training completes
  tensorboard/      loss, GAP and learning rate per epoch
  history.json      per-epoch logs, rewritten (atomically) after every epoch
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from typing import Dict, List, Optional, Tuple

import keras
import tensorflow as tf

from yt8m_tf.files import atomic_open, atomic_path, remove_temporary_siblings
from yt8m_tf.training.backup import EpochBackup
from yt8m_tf.training.evaluation import ValidationMetrics

BEST_MODEL = "best.keras"
LAST_MODEL = "last.keras"
BACKUP_DIR = "backup"


def save_model_atomically(model: keras.Model, path: str) -> None:
  with atomic_path(path, suffix=".keras") as tmp:
    model.save(tmp)


class _SaveHistory(keras.callbacks.Callback):
  """Keeps history.json and last.keras current after each epoch (both written atomically)."""

  def __init__(self, train_dir: str):
    super().__init__()
    self.train_dir = train_dir
    self.path = os.path.join(train_dir, "history.json")
    self.epochs: List[Dict[str, float]] = []
    if tf.io.gfile.exists(self.path):  # a resumed run appends to what the first part logged
      with tf.io.gfile.GFile(self.path) as f:
        self.epochs = json.load(f)

  def on_epoch_end(self, epoch, logs=None):
    record = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
    self.epochs = [e for e in self.epochs if e["epoch"] < epoch + 1] + [record]
    with atomic_open(self.path) as f:
      json.dump(self.epochs, f, indent=1)
    save_model_atomically(self.model, os.path.join(self.train_dir, LAST_MODEL))


class _BestModelCheckpoint(keras.callbacks.Callback):
  """Saves best.keras when the monitored metric improves; the best value survives a resume.

  Not keras.callbacks.ModelCheckpoint: that writes in place, so a run killed mid-save would leave a
  half-written best.keras; this one writes a temporary file and renames it.
  """

  def __init__(self, train_dir: str, monitor: str, history: _SaveHistory):
    super().__init__()
    self.path = os.path.join(train_dir, BEST_MODEL)
    self.monitor = monitor
    previous = [e[monitor] for e in history.epochs if monitor in e]
    self.best = max(previous) if previous else float("-inf")

  def on_epoch_end(self, epoch, logs=None):
    value = (logs or {}).get(self.monitor)
    if value is None or value <= self.best:
      return
    self.best = float(value)
    save_model_atomically(self.model, self.path)

  def on_train_end(self, logs=None):
    # A run stopped before any validated epoch (the data ran out, --validation_freq): its last weights stand.
    if not tf.io.gfile.exists(self.path):
      save_model_atomically(self.model, self.path)


def _replay_epochs(callback: keras.callbacks.Callback, history: "_SaveHistory", resumed_at: int) -> None:
  """Feeds `callback.on_epoch_end` the monitored value of every epoch history.json holds up to
  `resumed_at` (the epochs the restored backup had done): its state is then what it was when the killed
  run saved that backup."""
  for record in history.epochs:
    if record["epoch"] <= resumed_at and callback.monitor in record:
      callback.on_epoch_end(record["epoch"] - 1, {callback.monitor: record[callback.monitor]})


class _ResumableReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):
  """ReduceLROnPlateau whose plateau state (best value, epochs waited, cooldown) survives a resume.

  The LR itself comes back with the optimizer's variables; the state is replayed without touching the LR.
  """

  def __init__(self, history: "_SaveHistory", resumed_at: int = 0, **kwargs):
    super().__init__(**kwargs)
    self._history = history
    self._resumed_at = resumed_at
    self._replaying = False

  def on_train_begin(self, logs=None):
    super().on_train_begin(logs)
    self._replaying = True
    try:
      _replay_epochs(self, self._history, self._resumed_at)
    finally:
      self._replaying = False

  def _reduce_optimizer_lr(self, optimizer, epoch, name=""):
    return False if self._replaying else super()._reduce_optimizer_lr(optimizer, epoch, name)


class _ResumableEarlyStopping(keras.callbacks.EarlyStopping):
  """EarlyStopping whose count of epochs without improvement survives a resume (replayed as above), so a
  resumed run stops at the epoch the uninterrupted one stops at."""

  def __init__(self, history: "_SaveHistory", resumed_at: int = 0, **kwargs):
    super().__init__(**kwargs)
    self._history = history
    self._resumed_at = resumed_at

  def on_train_begin(self, logs=None):
    super().on_train_begin(logs)
    _replay_epochs(self, self._history, self._resumed_at)


class _LogLearningRate(keras.callbacks.Callback):
  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class StepCallback(keras.callbacks.Callback):
  """Calls `on_step_end(step, batch, logs)` after every training step, `step` counting the run's steps in
  all (read from the optimizer at the start, so a resumed run counts on from where it stopped)."""

  def on_train_begin(self, logs=None):
    # The backup is restored before training begins: this is the restored step.
    self.step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

  def on_train_batch_end(self, batch, logs=None):
    self.step += 1
    self.on_step_end(self.step, batch, logs)

  def on_step_end(self, step: int, batch: int, logs) -> None:
    raise NotImplementedError


class _StepLoss(StepCallback):
  """The training loss every `every_steps` steps to TensorBoard, as `step_loss` (that batch's own loss) and
  `loss_so_far` (the epoch's running mean, what the progress bar shows). Keras' batch logs hold the running
  mean; with equal batches the step's own loss follows from two consecutive means."""

  def __init__(self, log_dir: str, every_steps: int):
    super().__init__()
    self._log_dir, self._every = log_dir, every_steps
    self._writer = None

  def on_train_begin(self, logs=None):
    super().on_train_begin(logs)
    self._previous: Optional[Tuple[int, float]] = None

  def on_step_end(self, step, batch, logs):
    if not logs or "loss" not in logs or (step + 1) % self._every > 1:
      return  # only the step to write and the one before it are read: a read waits for the step to finish
    mean = float(logs["loss"])
    previous, self._previous = self._previous, (batch, mean)
    if step % self._every:
      return
    if self._writer is None:
      self._writer = tf.summary.create_file_writer(self._log_dir)
    with self._writer.as_default(step=step):
      tf.summary.scalar("loss_so_far", mean)
      if batch == 0:
        tf.summary.scalar("step_loss", mean)
      elif previous is not None and previous[0] == batch - 1:
        tf.summary.scalar("step_loss", (batch + 1) * mean - batch * previous[1])

  def on_train_end(self, logs=None):
    if self._writer is not None:
      self._writer.close()


def _continue_data_order(
  train_data: tf.data.Dataset, finished_epochs: int, steps_per_epoch: Optional[int]
) -> tf.data.Dataset:
  """`train_data` as a resumed run must read it to see what the uninterrupted run would have seen.

  Epochs (no `steps_per_epoch`): each epoch iterates `train_data` anew, and every new iterator draws the
  next shuffle order from the dataset's seeds; a restarted process would start again at epoch 1's order.
  Reading through one iterator per finished epoch moves the seeds to where the killed run was. Only
  reading does: part of the shuffle state advances as the data is read, so merely creating the iterators
  gives other orders (measured: a run killed mid-epoch 2 then drifted by 0.006 GAP).
  Pseudo-epochs (`steps_per_epoch`): Keras reads one endless stream across epochs, so the resumed run
  skips the batches the finished epochs took from it.
  Either way the cost is one read of the finished epochs' data, at resume only; an order computed from
  (seed, epoch) would avoid it.
  """
  if steps_per_epoch:
    return train_data.skip(finished_epochs * steps_per_epoch) if finished_epochs else train_data
  for _ in range(finished_epochs):
    for _ in train_data:
      pass
  return train_data


def make_optimizer(name: str, learning_rate, clip_norm: Optional[float] = 10.0) -> keras.optimizers.Optimizer:
  """An optimizer by `TrainConfig.optimizer` name, clipping the gradients' global norm at `clip_norm`."""
  if name == "momentum":
    return keras.optimizers.SGD(learning_rate, momentum=0.9, global_clipnorm=clip_norm)
  classes = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
    "adagrad": keras.optimizers.Adagrad,
  }
  if name not in classes:
    raise ValueError(f"unknown optimizer {name!r}; known: {sorted(classes) + ['momentum']}")
  return classes[name](learning_rate, global_clipnorm=clip_norm)


def compile_model(
  model: keras.Model,
  learning_rate,
  loss=None,
  clip_norm: Optional[float] = 10.0,
  jit_compile="auto",
  optimizer: str = "adam",
) -> keras.Model:
  """Adam + BCE-with-logits (mean), the seed's default L1 set-up (gradient global-norm clip 10), or another
  `optimizer` (`make_optimizer`); `learning_rate` is a float or a keras LearningRateSchedule.

  No metrics on training batches: validation GAP comes from `ValidationMetrics` once per epoch.
  """
  optimizer = make_optimizer(optimizer, learning_rate, clip_norm)
  model.compile(
    optimizer=optimizer,
    loss=loss or keras.losses.BinaryCrossentropy(from_logits=True),
    jit_compile=jit_compile,
  )
  if model.built:
    # Created here, the optimizer's slots make tf.function trace the train step once; left to the first step they
    # are created inside the trace and TF traces it a second time (EnsembleModel at 1/16: ~17 s -> ~7 s).
    model.optimizer.build(model.trainable_variables)  # Keras may have wrapped it (float16 loss scaling)
  return model


@dataclasses.dataclass(frozen=True)
class FitSchedule:
  """How a run trains and what it watches: the settings `fit` and `distributed.fit` take as keywords.

  With `steps_per_epoch`, an epoch is that many batches of a repeating dataset (the seed's pseudo-epochs).
  Validation runs on the first `validation_steps` batches (or all) after every `validation_freq`-th epoch
  and the last one. `lr_on_plateau` halves (`lr_factor`) the learning rate when validation GAP stops
  rising for `lr_patience` epochs; otherwise the optimizer's schedule sets it. `tensorboard_steps` > 0 also
  writes the training loss every that many steps.
  """

  epochs: int
  steps_per_epoch: Optional[int] = None
  validation_steps: Optional[int] = None
  validation_freq: int = 1
  lr_on_plateau: bool = True
  lr_factor: float = 0.5
  lr_patience: int = 0
  early_stopping_patience: Optional[int] = None
  verbose: int = 1
  tensorboard_steps: int = 0


def epoch_callbacks(
  train_dir: str, validation_data: tf.data.Dataset, schedule: FitSchedule, resumed_at: int = 0
) -> Tuple[List[keras.callbacks.Callback], _SaveHistory]:
  """A run's callbacks in the order they must run, and the one that keeps history.json.

  `ValidationMetrics` first: the others read its `val_gap`. `resumed_at`: the epochs a restored backup had
  done. The backup itself is not among them: the loop saves it after all of them (`backup.EpochBackup`).
  """
  monitor = "val_gap"
  history = _SaveHistory(train_dir)
  validation_steps = schedule.validation_steps
  callbacks = [
    ValidationMetrics(
      validation_data.take(validation_steps) if validation_steps else validation_data,
      every=schedule.validation_freq,
    )
  ]
  if schedule.early_stopping_patience is not None:
    callbacks.append(
      _ResumableEarlyStopping(
        history, resumed_at, monitor=monitor, mode="max", patience=schedule.early_stopping_patience
      )
    )
  if schedule.lr_on_plateau:
    callbacks.append(
      _ResumableReduceLROnPlateau(
        history,
        resumed_at,
        monitor=monitor,
        mode="max",
        factor=schedule.lr_factor,
        patience=schedule.lr_patience,
        min_lr=1e-7,
        verbose=schedule.verbose,
      )
    )
  else:  # a per-step schedule sets the LR; log where it stands, as ReduceLROnPlateau does
    callbacks.append(_LogLearningRate())
  callbacks += [
    keras.callbacks.TensorBoard(os.path.join(train_dir, "tensorboard"), write_graph=False),
  ]
  if schedule.tensorboard_steps > 0:
    callbacks.append(_StepLoss(os.path.join(train_dir, "tensorboard", "train"), schedule.tensorboard_steps))
  callbacks += [
    _BestModelCheckpoint(train_dir, monitor, history),
    history,  # last: it records what the others added to the logs (val_gap, learning_rate)
  ]
  return callbacks, history


def fit(
  model: keras.Model,
  train_data: tf.data.Dataset,
  validation_data: tf.data.Dataset,
  *,
  train_dir: str,
  extra_callbacks=(),
  **schedule,
) -> List[Dict[str, float]]:
  """Trains a compiled model, keeping the best one by validation GAP. Returns per-epoch logs.

  `schedule`: the fields of `FitSchedule` (`epochs` at least). `validation_data` may keep or drop the `id`
  feature.
  """
  schedule = FitSchedule(**schedule)
  steps_per_epoch, verbose = schedule.steps_per_epoch, schedule.verbose
  tf.io.gfile.makedirs(train_dir)
  remove_temporary_siblings(train_dir)  # a killed run's half-written best/last.keras
  backup = EpochBackup(os.path.join(train_dir, BACKUP_DIR), model)
  epochs_done = backup.restore()
  callbacks, history = epoch_callbacks(train_dir, validation_data, schedule, resumed_at=epochs_done)
  train_data = _continue_data_order(train_data, epochs_done, steps_per_epoch)
  with warnings.catch_warnings():
    if steps_per_epoch is None:
      # Keras warns when a dataset of unknown length ends an epoch, which is exactly what an epoch
      # without steps_per_epoch is: one pass over finite data.
      warnings.filterwarnings("ignore", message="Your input ran out of data")
    model.fit(
      train_data,
      epochs=schedule.epochs,
      initial_epoch=epochs_done,
      steps_per_epoch=steps_per_epoch,
      shuffle=False,
      callbacks=callbacks + list(extra_callbacks) + [backup.callback()],  # the backup last: see EpochBackup
      verbose=verbose,
    )
  backup.remove()
  return history.epochs
