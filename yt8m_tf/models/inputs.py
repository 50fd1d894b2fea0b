"""Keras inputs matching the readers' feature dicts."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from yt8m_tf.models.layers import FrameMask

VIDEO_FEATURES = ("mean_rgb", "mean_audio")
FRAME_FEATURES = ("rgb", "audio")
NUM_FRAMES = "num_frames"


def video_inputs(
  feature_sizes: Sequence[int] = (1024, 128), feature_names: Sequence[str] = VIDEO_FEATURES
) -> dict[str, keras.KerasTensor]:
  return {name: keras.Input(shape=(size,), name=name) for name, size in zip(feature_names, feature_sizes)}


def concat_video_inputs(
  feature_sizes: Sequence[int] = (1024, 128),
  feature_names: Sequence[str] = VIDEO_FEATURES,
  normalize: bool = False,
):
  """(inputs, x): the video-level inputs and their concatenation in feature order ("concat_features"),
  L2-normalized as one vector ("l2_normalize") if `normalize`, as the starter's models."""
  inputs = video_inputs(feature_sizes, feature_names)
  x = keras.layers.Concatenate(name="concat_features")([inputs[name] for name in feature_names])
  if normalize:
    x = keras.layers.UnitNormalization(name="l2_normalize")(x)
  return inputs, x


def frame_inputs(
  feature_sizes: Sequence[int] = (1024, 128),
  max_frames: int = 300,
  feature_names: Sequence[str] = FRAME_FEATURES,
) -> dict[str, keras.KerasTensor]:
  inputs = {
    name: keras.Input(shape=(max_frames, size), name=name) for name, size in zip(feature_names, feature_sizes)
  }
  inputs[NUM_FRAMES] = keras.Input(shape=(), dtype="int32", name=NUM_FRAMES)
  return inputs


def masked_frame_inputs(
  feature_sizes: Sequence[int] = (1024, 128),
  max_frames: int = 300,
  feature_names: Sequence[str] = FRAME_FEATURES,
):
  """(inputs, frames, mask): the frame-level inputs dict, its features without num_frames ({name: [B, T, D]},
  in feature order) and the float [B, T] frame mask ("frame_mask") built from num_frames."""
  inputs = frame_inputs(feature_sizes, max_frames, feature_names)
  mask = FrameMask(max_frames, name="frame_mask")(inputs[NUM_FRAMES])
  return inputs, {name: inputs[name] for name in feature_names}, mask
