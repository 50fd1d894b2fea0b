"""Writers for YouTube-8M-format records: video-level Example and frame-level SequenceExample.

Used by the synthetic benchmark data and by the tests; the output reads back with the readers in
`yt8m_tf.data.readers` and with the starter code.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from yt8m_tf.data.schema import Schema
from yt8m_tf.files import atomic_tfrecord_writer


def _bytes(values) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _ints(values) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _floats(values) -> tf.train.Feature:
  return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _id_bytes(video_id) -> bytes:
  return video_id if isinstance(video_id, bytes) else str(video_id).encode("utf-8")


def _labels_list(labels, schema: Schema) -> list:
  labels = [int(x) for x in np.asarray(labels, np.int64).ravel()]
  bad = [x for x in labels if not 0 <= x < schema.num_classes]
  if bad:
    raise ValueError(f"label ids {bad} outside [0, {schema.num_classes})")
  return labels


def video_example(
  video_id, labels: Sequence[int] | None, features: Mapping[str, np.ndarray], schema: Schema = Schema()
) -> tf.train.Example:
  """One video-level Example. `features` maps `mean_rgb`/`mean_audio` (schema names) to float vectors.

  `labels=None` writes no labels key (like the real test files).
  """
  feature = {schema.id_key: _bytes([_id_bytes(video_id)])}
  if labels is not None:
    feature[schema.labels_key] = _ints(_labels_list(labels, schema))
  for name, size in zip(schema.video_feature_names, schema.feature_sizes):
    values = np.asarray(features[name], np.float32).ravel()
    if values.size != size:
      raise ValueError(f"video {video_id!r}: feature {name} has {values.size} values, expected {size}")
    feature[name] = _floats(values)
  return tf.train.Example(features=tf.train.Features(feature=feature))


def frame_example(
  video_id, labels: Sequence[int] | None, frames: Mapping[str, np.ndarray], schema: Schema = Schema()
) -> tf.train.SequenceExample:
  """One frame-level SequenceExample. `frames` maps `rgb`/`audio` to uint8 arrays [num_frames, size]."""
  context = {schema.id_key: _bytes([_id_bytes(video_id)])}
  if labels is not None:
    context[schema.labels_key] = _ints(_labels_list(labels, schema))
  feature_lists = {}
  num_frames = None
  for name, size in zip(schema.feature_names, schema.feature_sizes):
    values = np.asarray(frames[name])
    if values.dtype != np.uint8 or values.ndim != 2 or values.shape[1] != size:
      raise ValueError(
        f"video {video_id!r}: frames[{name!r}] must be uint8 [num_frames, {size}], "
        f"got {values.dtype} {values.shape}"
      )
    if num_frames is not None and values.shape[0] != num_frames:
      raise ValueError(f"video {video_id!r}: {name} has {values.shape[0]} frames, expected {num_frames}")
    num_frames = values.shape[0]
    feature_lists[name] = tf.train.FeatureList(feature=[_bytes([row.tobytes()]) for row in values])
  return tf.train.SequenceExample(
    context=tf.train.Features(feature=context),
    feature_lists=tf.train.FeatureLists(feature_list=feature_lists),
  )


def write_records(path: str, records: Iterable, compression: str = "") -> int:
  """Writes protos (or serialized bytes) to one TFRecord file, atomically. Returns the record count."""
  count = 0
  with atomic_tfrecord_writer(path, compression) as writer:
    for record in records:
      writer.write(record if isinstance(record, bytes) else record.SerializeToString())
      count += 1
  return count
