"""A run's resume state, `train_dir/backup/`: weights, optimizer (learning rate included), epochs done.

Written once per epoch, after every other callback of that epoch has run, so a resumed run starts with
what they left (a learning rate ReduceLROnPlateau has just lowered, say). A `tf.train.CheckpointManager`
writes it: the data files first, then the small `checkpoint` file that names them, replaced by a rename.
A kill at any moment thus leaves one whole epoch's state, never a mix. Keras' BackupAndRestore, used
before, writes the weights and then, separately, the epoch count: a kill between the two resumed epoch
N's weights labelled as epoch N-1, trained epoch N a second time, and drifted from the uninterrupted run.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class EpochBackup:
  """Saves and restores `model` (its optimizer included) with the number of epochs done, in `directory`."""

  def __init__(self, directory: str, model: keras.Model):
    self.directory = directory
    self._model = model
    self._epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
    self._checkpoint = tf.train.Checkpoint(
      model=model, optimizer=model.optimizer, epochs_done=self._epochs_done
    )
    self._manager = tf.train.CheckpointManager(self._checkpoint, directory, max_to_keep=1)

  def restore(self, directory: str | None = None) -> int:
    """Loads the latest state saved in `directory` (default: this backup's); returns its epochs done,
    0 where nothing was saved (the model is then left as it is)."""
    latest = tf.train.latest_checkpoint(directory or self.directory)
    if not latest:
      return 0
    optimizer = self._model.optimizer
    if not optimizer.built:  # its slots must exist to be filled; a checkpoint would defer them silently
      optimizer.build(self._model.trainable_variables)
    self._checkpoint.restore(latest).assert_existing_objects_matched()
    return int(self._epochs_done.numpy())

  def save(self, epochs_done: int) -> None:
    self._epochs_done.assign(epochs_done)
    self._manager.save(checkpoint_number=epochs_done)

  def remove(self) -> None:
    """Deletes the backup: a completed run needs none (as BackupAndRestore removes its own)."""
    if tf.io.gfile.exists(self.directory):
      tf.io.gfile.rmtree(self.directory)

  def callback(self) -> keras.callbacks.Callback:
    """Saves after each epoch that does not end the run; put it after every callback whose epoch-end work
    the state must include."""
    return _SaveEachEpoch(self)


class _SaveEachEpoch(keras.callbacks.Callback):
  def __init__(self, backup: EpochBackup):
    super().__init__()
    self._backup = backup

  def on_epoch_end(self, epoch, logs=None):
    # A run that has decided to stop is done: killed before it ends, it redoes its last epoch from the
    # backup before and decides again, rather than resume where only its callbacks' replay knows to stop.
    if not self.model.stop_training:
      self._backup.save(epoch + 1)
