"""Keras inputs matching the readers' feature dicts, shaped by the data's Schema."""

from __future__ import annotations

import keras

from yt8m_tf.data.schema import Schema
from yt8m_tf.models.layers import FrameMask

VIDEO_FEATURES = ("mean_rgb", "mean_audio")
FRAME_FEATURES = ("rgb", "audio")
NUM_FRAMES = "num_frames"


def video_inputs(schema: Schema) -> dict[str, keras.KerasTensor]:
  """{"mean_rgb": [B, 1024], ...}: one input per video-level feature of `schema`, in its order."""
  return {
    name: keras.Input(shape=(size,), name=name)
    for name, size in zip(schema.video_feature_names, schema.feature_sizes)
  }


def concat_video_inputs(schema: Schema, normalize: bool = False):
  """(inputs, x): the video-level inputs and their concatenation in feature order ("concat_features"),
  L2-normalized as one vector ("l2_normalize") if `normalize`, as the starter's models."""
  inputs = video_inputs(schema)
  x = keras.layers.Concatenate(name="concat_features")(list(inputs.values()))
  if normalize:
    x = keras.layers.UnitNormalization(name="l2_normalize")(x)
  return inputs, x


def frame_inputs(schema: Schema) -> dict[str, keras.KerasTensor]:
  """{"rgb": [B, T, 1024], ..., "num_frames": [B]} with T = schema.max_frames."""
  inputs = {
    name: keras.Input(shape=(schema.max_frames, size), name=name)
    for name, size in zip(schema.feature_names, schema.feature_sizes)
  }
  inputs[NUM_FRAMES] = keras.Input(shape=(), dtype="int32", name=NUM_FRAMES)
  return inputs


def masked_frame_inputs(schema: Schema):
  """(inputs, frames, mask): the frame-level inputs dict, its features without num_frames ({name: [B, T, D]},
  in feature order) and the float [B, T] frame mask ("frame_mask") built from num_frames."""
  inputs = frame_inputs(schema)
  mask = FrameMask(schema.max_frames, name="frame_mask")(inputs[NUM_FRAMES])
  return inputs, {name: inputs[name] for name in schema.feature_names}, mask
