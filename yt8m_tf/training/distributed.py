"""Multi-worker training: a tf.distribute custom training loop driving the callbacks of `trainer.fit`.

Keras 3.15's `fit` fails under MultiWorkerMirroredStrategy with 2+ workers (keras-team/keras#20585: before
training it `strategy.reduce`s a nested input batch). `experiment.run_training` uses this loop instead of
`fit` for that strategy; what a run does and writes stays the same:

* A step is `strategy.run` of: forward pass (training=True), `model.compute_loss` (the compiled loss plus
  regularization; Keras scales each replica's share by 1/replicas), gradients; then one all-reduce sums the
  loss and the gradients over all replicas, and `optimizer.apply` gets the sums. The optimizer thus clips
  (`global_clipnorm`) the gradient of the whole global batch, as on one device. (Keras' own replica path
  clips each replica's share and sums afterwards; that second sum is switched off here.) The batch-level
  rank losses divide themselves by the number of replicas (`losses._BatchLoss`), so they sum the same way.
* An epoch is `steps_per_epoch` batches of one stream kept across epochs, or one pass over finite data.
  `train_data` yields global batches; `experimental_distribute_dataset` gives each replica its part.
* Callbacks are `trainer.epoch_callbacks` (validation GAP, LR on plateau, early stopping, TensorBoard,
  best.keras, last.keras, history.json) in a `keras.callbacks.CallbackList`, called where `fit` calls them.
  Every worker takes the chief's epoch logs, so learning-rate and stopping decisions agree.
* Resume: `backup.EpochBackup` as in `trainer.fit`, saved by every worker after each epoch's callbacks
  into its own directory, restored by every worker from the chief's, removed once training completes.

The chief writes into the run's train_dir; the other workers write the same files into
`train_dir/workers/<task index>` (scratch locations, so they never overwrite the chief's).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Dict, List

import keras
import tensorflow as tf

from yt8m_tf.files import remove_temporary_siblings
from yt8m_tf.training import trainer
from yt8m_tf.training.backup import EpochBackup
from yt8m_tf.training.trainer import BACKUP_DIR

WORKERS_DIR = "workers"


def uses_custom_loop(strategy: tf.distribute.Strategy) -> bool:
  """Whether `run_training` trains with this module's loop (MultiWorkerMirroredStrategy) or Keras `fit`."""
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """The task that owns train_dir: task `chief`, or worker 0 of a cluster without one (or no cluster)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  if resolver.task_type in ("chief", None):
    return True
  return (
    resolver.task_type == "worker"
    and resolver.task_id == 0
    and "chief" not in resolver.cluster_spec().as_dict()
  )


def worker_dir(train_dir: str, strategy: tf.distribute.Strategy) -> str:
  """Where this task writes: train_dir for the chief, train_dir/workers/<task index> for the others."""
  if is_chief(strategy):
    return train_dir
  return os.path.join(train_dir, WORKERS_DIR, str(strategy.cluster_resolver.task_id))


@contextlib.contextmanager
def _optimizer_skips_gradient_sum(optimizer: keras.optimizers.Optimizer):
  """While `optimizer.apply` is traced inside, its cross-replica sum of gradients passes them through.

  Keras' TF optimizer sums gradients over replicas inside `apply` after clipping each replica's share; the
  train step hands it gradients that are already summed. The override lives on the instance and only during
  tracing, so saving or another use of the optimizer is unaffected.
  """
  if not callable(getattr(optimizer, "_all_reduce_sum_gradients", None)):
    raise RuntimeError(
      f"{type(optimizer).__name__} has no _all_reduce_sum_gradients: this Keras version sums gradients "
      "elsewhere, and the multi-worker train step needs updating"
    )
  optimizer._all_reduce_sum_gradients = list  # pylint: disable=protected-access
  try:
    yield
  finally:
    del optimizer._all_reduce_sum_gradients  # pylint: disable=protected-access


def make_train_step(model: keras.Model, strategy: tf.distribute.Strategy):
  """(distributed batch) -> loss of the global batch, after one optimizer step on it (see module doc)."""
  optimizer = model.optimizer
  variables = model.trainable_variables
  if not optimizer.built:  # its variables must exist before tracing (and before restoring a checkpoint)
    with strategy.scope():
      optimizer.build(variables)

  def loss_and_gradients(features, labels):
    with tf.GradientTape() as tape:
      logits = model(features, training=True)
      loss = model.compute_loss(x=features, y=labels, y_pred=logits, training=True)
      scaled_loss = optimizer.scale_loss(loss)
    return loss, tape.gradient(scaled_loss, variables)

  if model.jit_compile:
    loss_and_gradients = tf.function(loss_and_gradients, jit_compile=True)

  def replica_step(features, labels):
    loss, gradients = loss_and_gradients(features, labels)
    present = [i for i, g in enumerate(gradients) if g is not None]
    # One collective for the loss and all gradients; the loss shares (1/replicas each) sum to the global one.
    summed = tf.distribute.get_replica_context().all_reduce(
      tf.distribute.ReduceOp.SUM, [loss] + [gradients[i] for i in present]
    )
    optimizer.apply(summed[1:], [variables[i] for i in present])
    return summed[0]

  @tf.function
  def train_step(batch):
    features, labels = batch
    # Around strategy.run, not inside: with several local devices the replicas trace in parallel threads.
    with _optimizer_skips_gradient_sum(optimizer):
      losses = strategy.run(replica_step, args=(features, labels))
    return strategy.experimental_local_results(losses)[0]  # the same sum on every replica

  return train_step


def _from_first_replica(values):
  context = tf.distribute.get_replica_context()
  mine = tf.where(context.replica_id_in_sync_group == 0, values, tf.zeros_like(values))
  return context.all_reduce(tf.distribute.ReduceOp.SUM, mine)


def _replicas_differing_from_first(value):
  differs = tf.cast(tf.not_equal(value, _from_first_replica(value)), tf.float64)
  return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, differs)


def _check_workers_resume_alike(strategy: tf.distribute.Strategy, epochs_done: int) -> None:
  """Fails on every worker if they restored different epochs: they would then step different weights in
  lockstep. That happens when train_dir is not on a file system all workers share."""
  count = tf.function(lambda v: strategy.run(_replicas_differing_from_first, args=(v,)))
  differing = strategy.experimental_local_results(count(tf.constant(float(epochs_done), tf.float64)))[0]
  if differing > 0:
    raise RuntimeError(
      f"workers restored different training states (this one: {epochs_done} epochs done); the train_dir must "
      "be on a file system that all workers share"
    )


class _ChiefLogs(keras.callbacks.Callback):
  """Replaces every worker's epoch logs by the chief's (replica 0 lives on the chief).

  Workers validate on identical weights, but a differing float in `val_gap` would make one worker lower its
  learning rate or stop while another goes on (and then waits forever in a collective). Put it right after
  the callbacks that fill the logs.
  """

  def __init__(self, strategy: tf.distribute.Strategy):
    super().__init__()
    self.strategy = strategy
    self._broadcast = tf.function(lambda values: strategy.run(_from_first_replica, args=(values,)))

  def on_epoch_end(self, epoch, logs=None):
    if not logs:
      return
    keys = sorted(logs)
    values = tf.constant([float(logs[k]) for k in keys], tf.float64)
    agreed = self.strategy.experimental_local_results(self._broadcast(values))[0].numpy()
    logs.update({k: float(v) for k, v in zip(keys, agreed)})


def _train_epoch(model, train_step, iterator, steps_per_epoch, callback_list) -> float:
  """Runs one epoch's batches (all of `iterator`, or `steps_per_epoch`); returns their mean loss."""
  loss_sum, steps = 0.0, 0
  while steps_per_epoch is None or steps < steps_per_epoch:
    try:
      batch = next(iterator)
    except StopIteration:
      if steps_per_epoch:
        warnings.warn("the training data ran out before steps_per_epoch * epochs batches; stopping")
        model.stop_training = True
      break
    callback_list.on_train_batch_begin(steps)
    loss_sum += float(train_step(batch))
    steps += 1
    callback_list.on_train_batch_end(steps - 1, {"loss": loss_sum / steps})
    if model.stop_training:
      break
  return loss_sum / max(steps, 1)


def fit(
  model: keras.Model,
  train_data: tf.data.Dataset,
  validation_data: tf.data.Dataset,
  *,
  strategy: tf.distribute.Strategy,
  train_dir: str,
  extra_callbacks=(),
  **schedule,
) -> List[Dict[str, float]]:
  """`trainer.fit` for a model compiled under `strategy.scope()`; returns this worker's per-epoch logs.

  `train_dir` is the run's directory (the chief's); each worker writes into `worker_dir(train_dir, strategy)`.
  `train_data` yields global batches (every worker reads the same stream; `experimental_distribute_dataset`
  gives each replica its part of each batch). `schedule`: the fields of `trainer.FitSchedule`.
  """
  schedule = trainer.FitSchedule(**schedule)
  epochs, steps_per_epoch, verbose = schedule.epochs, schedule.steps_per_epoch, schedule.verbose
  own_dir = worker_dir(train_dir, strategy)
  tf.io.gfile.makedirs(own_dir)
  remove_temporary_siblings(own_dir)  # a killed run's half-written best/last.keras
  optimizer = model.optimizer
  train_step = make_train_step(model, strategy)
  backup = EpochBackup(os.path.join(own_dir, BACKUP_DIR), model)
  # Every worker resumes from the chief's backup: the others' scratch copies may be gone.
  epochs_done = backup.restore(os.path.join(train_dir, BACKUP_DIR))
  _check_workers_resume_alike(strategy, epochs_done)

  callbacks, history = trainer.epoch_callbacks(own_dir, validation_data, schedule, resumed_at=epochs_done)
  callbacks.insert(1, _ChiefLogs(strategy))  # after ValidationMetrics, before anything that reads its logs
  callback_list = keras.callbacks.CallbackList(
    callbacks + list(extra_callbacks),
    add_history=True,
    add_progbar=verbose != 0,
    verbose=verbose,
    epochs=epochs,
    steps=steps_per_epoch,
    model=model,
  )
  batches = strategy.experimental_distribute_dataset(train_data)
  iterator = iter(batches) if steps_per_epoch else None  # pseudo-epochs continue one endless stream
  # A resumed run reads through what the finished epochs read, to continue their order (see
  # trainer._continue_data_order).
  for _ in range(epochs_done):
    if steps_per_epoch:
      for _ in range(steps_per_epoch):
        next(iterator)
    else:
      for _ in batches:
        pass

  model.stop_training = False
  callback_list.on_train_begin()
  logs: Dict[str, float] = {}
  for epoch in range(epochs_done, epochs):
    callback_list.on_epoch_begin(epoch)
    if not steps_per_epoch:
      iterator = iter(batches)
    logs = {"loss": _train_epoch(model, train_step, iterator, steps_per_epoch, callback_list)}
    callback_list.on_epoch_end(epoch, logs)
    if model.stop_training:  # no backup: see backup._SaveEachEpoch
      break
    backup.save(epoch + 1)  # after the callbacks: see EpochBackup
  optimizer.finalize_variable_values(model.trainable_variables)
  callback_list.on_train_end(logs)
  backup.remove()
  return history.epochs
