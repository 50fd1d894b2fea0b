"""Datasets shaped for a given model: the reader matching its kind, and only the inputs it takes."""

from __future__ import annotations


import tensorflow as tf

from yt8m_tf import data
from yt8m_tf.models.registry import FRAME, VIDEO


def input_keys(kind: str, schema: data.Schema) -> tuple:
  if kind == VIDEO:
    return schema.video_feature_names
  if kind == FRAME:
    return tuple(schema.feature_names) + ("num_frames",)
  raise ValueError(f"unknown model kind {kind!r}")


def dataset_for(
  kind: str,
  file_pattern: str,
  batch_size: int,
  *,
  schema: data.Schema,
  keep_ids: bool = False,
  **reader_kwargs,
) -> tf.data.Dataset:
  """The reader for `kind`, with features restricted to the model inputs (plus `id` if keep_ids)."""
  reader = data.video_dataset if kind == VIDEO else data.frame_dataset
  dataset = reader(file_pattern, batch_size, schema=schema, **reader_kwargs)
  keys = input_keys(kind, schema) + (("id",) if keep_ids else ())
  return dataset.map(
    lambda features, labels: ({k: features[k] for k in keys}, labels), num_parallel_calls=tf.data.AUTOTUNE
  )
