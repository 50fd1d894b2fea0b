"""The YouTube-8M record layout: keys, feature sizes, class count and dequantization.

Everything that depends on the dataset version lives here, so the 2017 data (`video_id`, 4716 classes)
reads with `Schema.yt8m_2017()` and the 2018 data (the default) with `Schema()`.
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np

# Starter-code quantization range: bytes q in 0..255 map to q * 4/255 + 4/512 - 2.
QUANTIZE_MIN = -2.0
QUANTIZE_MAX = 2.0
MAX_FRAMES = 300
NUM_CLASSES_2018 = 3862
NUM_CLASSES_2017 = 4716


@dataclasses.dataclass(frozen=True)
class Schema:
  """Names and sizes of one YouTube-8M release.

  `feature_names[i]` is the frame-level feature-list key whose per-frame byte string has
  `feature_sizes[i]` values; the video-level key is `"mean_" + name`. Order matters: models
  that split a concatenated input rely on rgb coming first.
  """

  id_key: str = "id"
  labels_key: str = "labels"
  feature_names: Tuple[str, ...] = ("rgb", "audio")
  feature_sizes: Tuple[int, ...] = (1024, 128)
  num_classes: int = NUM_CLASSES_2018
  max_frames: int = MAX_FRAMES

  def __post_init__(self):
    if len(self.feature_names) != len(self.feature_sizes):
      raise ValueError(
        f"feature_names {self.feature_names} and feature_sizes {self.feature_sizes} must have the same length"
      )
    if self.num_classes <= 0 or self.max_frames <= 0 or min(self.feature_sizes) <= 0:
      raise ValueError(f"num_classes, max_frames and feature sizes must be positive: {self}")

  @classmethod
  def yt8m_2017(cls) -> "Schema":
    return cls(id_key="video_id", num_classes=NUM_CLASSES_2017)

  @property
  def video_feature_names(self) -> Tuple[str, ...]:
    """Keys of the video-level (mean) features, e.g. ("mean_rgb", "mean_audio")."""
    return tuple("mean_" + name for name in self.feature_names)

  @property
  def total_feature_size(self) -> int:
    return sum(self.feature_sizes)

  def with_num_classes(self, num_classes: int) -> "Schema":
    return dataclasses.replace(self, num_classes=num_classes)


def dequantize(quantized, low: float = QUANTIZE_MIN, high: float = QUANTIZE_MAX):
  """Byte values -> floats exactly as the starter code: q * (high-low)/255 + (high-low)/512 + low.

  Works on numpy arrays and on TF tensors (anything supporting * and +); the result is float32.
  """
  scale = (high - low) / 255.0
  bias = (high - low) / 512.0 + low
  if isinstance(quantized, np.ndarray):
    return quantized.astype(np.float32) * np.float32(scale) + np.float32(bias)
  import tensorflow as tf  # local: keeps the schema importable without TF for numpy-only users

  return tf.cast(quantized, tf.float32) * scale + bias


def quantize(values, low: float = QUANTIZE_MIN, high: float = QUANTIZE_MAX) -> np.ndarray:
  """Floats -> uint8 bytes whose `dequantize` is the nearest representable value (clipped to the range)."""
  scale = (high - low) / 255.0
  bias = (high - low) / 512.0 + low
  codes = np.rint((np.asarray(values, np.float64) - bias) / scale)
  return np.clip(codes, 0, 255).astype(np.uint8)
