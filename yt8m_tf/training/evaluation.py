"""Streaming prediction and evaluation: memory grows with videos * k, never videos * classes."""

from __future__ import annotations

import weakref
from typing import Callable, Dict, Iterator, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from yt8m_tf import metrics


_INFERENCE_FUNCTIONS: "weakref.WeakKeyDictionary[keras.Model, Callable]" = weakref.WeakKeyDictionary()


def inference_function(model: keras.Model) -> Callable:
  """features -> probabilities, traced once per model (and input shapes) rather than per call."""
  if model not in _INFERENCE_FUNCTIONS:
    _INFERENCE_FUNCTIONS[model] = tf.function(
      lambda features: tf.sigmoid(model(features, training=False)), reduce_retracing=True
    )
  return _INFERENCE_FUNCTIONS[model]


def predict_batches(
  model: keras.Model, dataset: tf.data.Dataset
) -> Iterator[Tuple[Optional[np.ndarray], np.ndarray, np.ndarray]]:
  """Yields (ids or None, probabilities, labels) per batch of a `(features, labels)` dataset."""
  infer = inference_function(model)
  for features, labels in dataset:
    ids = features.get("id")
    inputs = {k: v for k, v in features.items() if k != "id"}
    yield (None if ids is None else ids.numpy()), infer(inputs).numpy(), labels.numpy()


def evaluate_top_k(
  model: keras.Model,
  dataset: tf.data.Dataset,
  k: int = metrics.GAP_K,
  labels: Optional[Dict[bytes, np.ndarray]] = None,
) -> Dict[str, float]:
  """GAP@k, Hit@1, PERR and mAP (`metrics.TopKMetrics`) of `model` on a labeled dataset, from each video's
  top k of its float32 scores: the same figures an export of the model gets from `export.evaluate_export`.

  `labels` (video id -> positive class ids) replaces the dataset's own, for records that carry none (a test
  set); the dataset must then keep `id`.
  """
  result = None
  for ids, probabilities, batch_labels in predict_batches(model, dataset):
    if result is None:
      result = metrics.TopKMetrics(probabilities.shape[1], k=k)
    classes, scores = metrics.top_k_per_video(probabilities, k=k)
    if labels is None:
      positives = [np.flatnonzero(row) for row in batch_labels]
    else:
      positives = [labels[video_id] for video_id in ids]
    result.add(classes, scores, positives)
  if result is None:
    raise ValueError("the dataset holds no videos")
  return result.result()


_SUMMARY_FUNCTIONS: "weakref.WeakKeyDictionary[keras.Model, Dict[int, Callable]]" = (
  weakref.WeakKeyDictionary()
)


def _summary_function(model: keras.Model, k: int) -> Callable:
  """(features, labels) -> per-video top-k scores and hits, BCE, PERR and Hit@1, in one traced call.

  The [batch, classes] work (sigmoid, BCE, sorting) stays in TensorFlow, multithreaded; only [batch, k]
  leaves the graph. top_k ranks equal scores by ascending class id, as `metrics.gap_at_k` does.
  """

  def summary(features, labels):
    logits = tf.cast(model(features, training=False), tf.float32)
    scores = tf.sigmoid(logits)
    labels = tf.cast(labels, tf.float32)
    positive = labels > 0
    num_positive = tf.reduce_sum(tf.cast(positive, tf.int32), axis=1)
    # Enough of each row for PERR's n top classes (n = the video's positives) and for GAP's k.
    depth = tf.minimum(tf.maximum(k, tf.reduce_max(num_positive)), tf.shape(scores)[1])
    top = tf.math.top_k(scores, k=depth, sorted=True)
    top_hit = tf.gather(positive, top.indices, batch_dims=1)
    within_n = tf.range(depth)[None, :] < num_positive[:, None]
    correct = top_hit & within_n & (top.values > 0)  # the starter counts a positive only if scored > 0
    perr = tf.math.divide_no_nan(
      tf.reduce_sum(tf.cast(correct, tf.float32), axis=1), tf.cast(num_positive, tf.float32)
    )
    bce = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits), axis=1)
    width = tf.minimum(k, depth)
    return top.values[:, :width], top_hit[:, :width], num_positive, bce, perr, top_hit[:, 0]

  return tf.function(summary, reduce_retracing=True)


def evaluate(model: keras.Model, dataset: tf.data.Dataset, k: int = metrics.GAP_K) -> Dict[str, float]:
  """GAP@k, Hit@1, PERR and mean BCE of `model` on a labeled dataset, in one streaming pass.

  PERR as the starter's (videos without labels count as 0); its n-th place ties go to the lower class id.
  """
  per_k = _SUMMARY_FUNCTIONS.setdefault(model, {})
  if k not in per_k:
    per_k[k] = _summary_function(model, k)
  summarize = per_k[k]
  gap = metrics.GapAccumulator(k=k)
  hits, perr_sum, bce_sum, videos = 0.0, 0.0, 0.0, 0
  for features, labels in dataset:
    inputs = {name: value for name, value in features.items() if name != "id"}
    values, top_hit, num_positive, bce, perr, hit = (t.numpy() for t in summarize(inputs, labels))
    gap.add_topk(values, top_hit, int(num_positive.sum()), len(values))
    videos += len(values)
    hits += float(hit.sum())
    perr_sum += float(perr.sum())
    bce_sum += float(bce.sum())
  return {
    f"gap@{k}": gap.result(),
    "hit@1": hits / max(videos, 1),
    "perr": perr_sum / max(videos, 1),
    "loss": bce_sum / max(videos, 1),
    "videos": videos,
  }


class ValidationMetrics(keras.callbacks.Callback):
  """Adds `val_gap`, `val_loss` (mean BCE), `val_hit@1` and `val_perr` to each epoch's logs.

  One streaming pass per epoch. A compiled GAP metric would instead re-sort every stored pair after
  each training batch; this keeps training steps free of it. Put it before callbacks that read
  `val_gap` (checkpointing, learning-rate schedule, early stopping).
  """

  def __init__(self, dataset: tf.data.Dataset, k: int = metrics.GAP_K, every: int = 1):
    super().__init__()
    self.dataset = dataset
    self.k = k
    self.every = every

  def on_epoch_end(self, epoch, logs=None):
    if logs is None:
      return
    last = epoch + 1 >= self.params.get("epochs", epoch + 1) or self.model.stop_training
    if (epoch + 1) % self.every and not last:
      return
    result = evaluate(self.model, self.dataset, k=self.k)
    logs.update(
      {
        "val_gap": result[f"gap@{self.k}"],
        "val_loss": result["loss"],
        "val_hit@1": result["hit@1"],
        "val_perr": result["perr"],
      }
    )
