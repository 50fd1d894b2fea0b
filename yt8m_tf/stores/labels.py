"""Labels by video id, read from the records themselves or from an `id,labels` CSV (the test answers)."""

from __future__ import annotations

from typing import Dict

import numpy as np
import tensorflow as tf

from yt8m_tf import data
from yt8m_tf.data import labels as labels_lib


def labels_by_id(
  file_pattern: str, schema: data.Schema, frame_level: bool = False, batch_size: int = 1024
) -> Dict[bytes, np.ndarray]:
  """Video id -> its positive class ids. Frame-level files are read for their context only (the
  records were validated when the models trained on them)."""
  if not frame_level:
    dataset = data.video_dataset(file_pattern, batch_size, schema=schema)
    return {
      video_id: np.flatnonzero(row)
      for features, labels in dataset
      for video_id, row in zip(features["id"].numpy(), labels.numpy())
    }
  context = {
    schema.id_key: tf.io.FixedLenFeature([], tf.string),
    schema.labels_key: tf.io.VarLenFeature(tf.int64),
  }
  records = tf.data.TFRecordDataset(data.list_files(file_pattern)).batch(batch_size)
  result = {}
  for batch in records:
    parsed, _, _ = tf.io.parse_sequence_example(batch, context_features=context)
    labels = tf.sparse.to_dense(parsed[schema.labels_key], default_value=-1).numpy()
    for video_id, row in zip(parsed[schema.id_key].numpy(), labels):
      result[video_id] = np.sort(row[row >= 0])
  return result


def labels_from_csv(path: str) -> Dict[bytes, np.ndarray]:
  """Video id (bytes) -> positive classes, from an `id,labels` CSV (the synthetic test_labels.csv)."""
  sets = labels_lib.load_label_sets(path)
  return {video_id.encode(): row for video_id, row in zip(sets.ids, sets)}
