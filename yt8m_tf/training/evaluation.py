"""Streaming prediction and evaluation: memory grows with videos * k, never videos * classes."""

from __future__ import annotations

from typing import Dict, Iterator, Tuple

import keras
import numpy as np
import tensorflow as tf

from yt8m_tf import metrics


def predict_batches(model: keras.Model, dataset: tf.data.Dataset
                    ) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Yields (ids, probabilities, labels) per batch; `dataset` must keep the `id` feature."""
  infer = tf.function(lambda features: tf.sigmoid(model(features, training=False)),
                      reduce_retracing=True)
  for features, labels in dataset:
    ids = features["id"]
    inputs = {k: v for k, v in features.items() if k != "id"}
    yield ids.numpy(), infer(inputs).numpy(), labels.numpy()


def evaluate(model: keras.Model, dataset: tf.data.Dataset, k: int = 20) -> Dict[str, float]:
  """GAP@k, Hit@1 and PERR of `model` on a labeled dataset (with `id`), in one streaming pass."""
  gap = metrics.GapAccumulator(k=k)
  hits, perr_sum, videos, labeled = 0.0, 0.0, 0, 0
  for _, probabilities, labels in predict_batches(model, dataset):
    gap.add(probabilities, labels)
    videos += len(labels)
    has_labels = labels.sum(axis=1) > 0
    labeled += int(has_labels.sum())
    hits += metrics.hit_at_one(probabilities, labels) * len(labels)
    if has_labels.any():
      perr_sum += metrics.perr(probabilities[has_labels], labels[has_labels]) * int(has_labels.sum())
  return {f"gap@{k}": gap.result(), "hit@1": hits / max(videos, 1),
          "perr": perr_sum / max(labeled, 1), "videos": videos}
