"""Keras inputs matching the readers' feature dicts."""

from __future__ import annotations

from typing import Dict, Sequence

import keras


def video_inputs(
  feature_sizes: Sequence[int] = (1024, 128), feature_names: Sequence[str] = ("mean_rgb", "mean_audio")
) -> Dict[str, keras.KerasTensor]:
  return {name: keras.Input(shape=(size,), name=name) for name, size in zip(feature_names, feature_sizes)}


def frame_inputs(
  feature_sizes: Sequence[int] = (1024, 128),
  max_frames: int = 300,
  feature_names: Sequence[str] = ("rgb", "audio"),
) -> Dict[str, keras.KerasTensor]:
  inputs = {
    name: keras.Input(shape=(max_frames, size), name=name) for name, size in zip(feature_names, feature_sizes)
  }
  inputs["num_frames"] = keras.Input(shape=(), dtype="int32", name="num_frames")
  return inputs
