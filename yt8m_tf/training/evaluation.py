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


def evaluate(model: keras.Model, dataset: tf.data.Dataset, k: int = 20) -> Dict[str, float]:
  """GAP@k, Hit@1, PERR and mean BCE of `model` on a labeled dataset, in one streaming pass."""
  gap = metrics.GapAccumulator(k=k)
  hits, perr_sum, bce_sum, videos, labeled = 0.0, 0.0, 0.0, 0, 0
  for _, probabilities, labels in predict_batches(model, dataset):
    gap.add(probabilities, labels)
    videos += len(labels)
    hits += metrics.hit_at_one(probabilities, labels) * len(labels)
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    bce_sum += float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log1p(-clipped), axis=1).sum())
    has_labels = labels.sum(axis=1) > 0
    labeled += int(has_labels.sum())
    if has_labels.any():
      perr_sum += metrics.perr(probabilities[has_labels], labels[has_labels]) * int(has_labels.sum())
  return {
    f"gap@{k}": gap.result(),
    "hit@1": hits / max(videos, 1),
    "perr": perr_sum / max(labeled, 1),
    "loss": bce_sum / max(videos, 1),
    "videos": videos,
  }


class ValidationMetrics(keras.callbacks.Callback):
  """Adds `val_gap`, `val_loss` (mean BCE), `val_hit@1` and `val_perr` to each epoch's logs.

  One streaming pass per epoch. A compiled GAP metric would instead re-sort every stored pair after
  each training batch; this keeps training steps free of it. Put it before callbacks that read
  `val_gap` (checkpointing, learning-rate schedule, early stopping).
  """

  def __init__(self, dataset: tf.data.Dataset, k: int = 20):
    super().__init__()
    self.dataset = dataset
    self.k = k

  def on_epoch_end(self, epoch, logs=None):
    if logs is None:
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
