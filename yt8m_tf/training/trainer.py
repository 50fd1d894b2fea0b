"""Training around Keras `fit`: best model by validation GAP, LR on plateau, TensorBoard, resume.

A `train_dir` holds everything a run made:
  best.keras        the model with the best validation GAP so far (written atomically)
  last.keras        the model after the last finished epoch
  backup/           BackupAndRestore state (a checkpoint under `distributed.fit`): a killed run started
                    again continues where it stopped; removed once training completes
  tensorboard/      loss, GAP and learning rate per epoch
  history.json      per-epoch logs, rewritten (atomically) after every epoch
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Dict, List, Optional, Tuple

import keras
import tensorflow as tf

from yt8m_tf.files import atomic_open, atomic_path, remove_temporary_siblings
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


def compile_model(
  model: keras.Model, learning_rate: float, loss=None, clip_norm: Optional[float] = 10.0, jit_compile="auto"
) -> keras.Model:
  """Adam + BCE-with-logits (mean), the seed's default L1 set-up (gradient global-norm clip 10).

  No metrics on training batches: validation GAP comes from `ValidationMetrics` once per epoch.
  """
  optimizer = keras.optimizers.Adam(learning_rate=learning_rate, global_clipnorm=clip_norm)
  model.compile(
    optimizer=optimizer,
    loss=loss or keras.losses.BinaryCrossentropy(from_logits=True),
    jit_compile=jit_compile,
  )
  return model


def epoch_callbacks(
  train_dir: str,
  validation_data: tf.data.Dataset,
  *,
  validation_steps: Optional[int] = None,
  lr_factor: float = 0.5,
  lr_patience: int = 0,
  early_stopping_patience: Optional[int] = None,
  verbose: int = 1,
  backup: bool = True,
) -> Tuple[List[keras.callbacks.Callback], _SaveHistory]:
  """A run's callbacks in the order they must run, and the one that keeps history.json.

  `ValidationMetrics` first: the others read its `val_gap`. `backup=False` leaves out BackupAndRestore, for
  a loop that checkpoints by itself (`distributed.fit`).
  """
  monitor = "val_gap"
  history = _SaveHistory(train_dir)
  callbacks = [
    ValidationMetrics(validation_data.take(validation_steps) if validation_steps else validation_data)
  ]
  if backup:
    callbacks.append(keras.callbacks.BackupAndRestore(os.path.join(train_dir, BACKUP_DIR)))
  if early_stopping_patience is not None:
    callbacks.append(
      keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=early_stopping_patience)
    )
  callbacks += [
    keras.callbacks.ReduceLROnPlateau(
      monitor=monitor, mode="max", factor=lr_factor, patience=lr_patience, min_lr=1e-7, verbose=verbose
    ),
    keras.callbacks.TensorBoard(os.path.join(train_dir, "tensorboard"), write_graph=False),
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
  epochs: int,
  steps_per_epoch: Optional[int] = None,
  validation_steps: Optional[int] = None,
  lr_factor: float = 0.5,
  lr_patience: int = 0,
  early_stopping_patience: Optional[int] = None,
  extra_callbacks=(),
  verbose: int = 1,
) -> List[Dict[str, float]]:
  """Trains a compiled model, keeping the best one by validation GAP. Returns per-epoch logs.

  With `steps_per_epoch`, an epoch is that many batches of a repeating dataset (the seed's
  pseudo-epochs). Validation runs on `validation_data` (first `validation_steps` batches, or all of it)
  after each epoch; `validation_data` may keep or drop the `id` feature.
  """
  tf.io.gfile.makedirs(train_dir)
  remove_temporary_siblings(train_dir)  # a killed run's half-written best/last.keras
  callbacks, history = epoch_callbacks(
    train_dir,
    validation_data,
    validation_steps=validation_steps,
    lr_factor=lr_factor,
    lr_patience=lr_patience,
    early_stopping_patience=early_stopping_patience,
    verbose=verbose,
  )
  with warnings.catch_warnings():
    if steps_per_epoch is None:
      # Keras warns when a dataset of unknown length ends an epoch, which is exactly what an epoch
      # without steps_per_epoch is: one pass over finite data.
      warnings.filterwarnings("ignore", message="Your input ran out of data")
    model.fit(
      train_data,
      epochs=epochs,
      steps_per_epoch=steps_per_epoch,
      shuffle=False,
      callbacks=callbacks + list(extra_callbacks),
      verbose=verbose,
    )
  return history.epochs
