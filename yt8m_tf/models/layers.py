"""Layers and masked operations shared by the models.

Frame-level tensors are [B, T, D] zero-padded after `num_frames` real frames. Every reduction over
time goes through the masked helpers here, so a padded frame never enters a softmax, mean, sum or max:
a model's output for a video must not change when its padding changes.
"""

from __future__ import annotations

import keras
from keras import ops

# Large negative logit for masked positions; finite so that an all-masked row gives no NaN.
_MASKED_LOGIT = -1e9


def frame_mask(num_frames, max_frames: int, dtype="float32"):
  """[B] frame counts -> [B, T] mask, 1 for real frames and 0 for padding."""
  positions = ops.arange(max_frames, dtype="int32")[None, :]
  return ops.cast(positions < ops.cast(num_frames, "int32")[:, None], dtype)


def masked_sum(x, mask):
  """Sum over time of [B, T, D] with a [B, T] mask."""
  return ops.sum(x * ops.expand_dims(mask, -1), axis=1)


def masked_mean(x, mask):
  """Mean over the real frames; a video with no real frames gives zeros, not NaN."""
  count = ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)
  return masked_sum(x, mask) / count


def masked_max(x, mask):
  """Max over the real frames; padding can never win, even where all real values are negative."""
  fill = ops.cast(_MASKED_LOGIT, x.dtype)
  masked = ops.where(ops.expand_dims(mask, -1) > 0, x, fill)
  has_frames = ops.sum(mask, axis=1, keepdims=True) > 0
  return ops.where(has_frames, ops.max(masked, axis=1), ops.zeros_like(masked[:, 0]))


def masked_softmax(logits, mask, axis: int = 1):
  """Softmax over time of [B, T] or [B, T, H] logits; padded positions get exactly 0 weight."""
  while len(mask.shape) < len(logits.shape):
    mask = ops.expand_dims(mask, -1)
  logits = ops.where(mask > 0, logits, ops.cast(_MASKED_LOGIT, logits.dtype))
  weights = ops.softmax(logits, axis=axis)
  return weights * ops.cast(mask > 0, weights.dtype)


@keras.saving.register_keras_serializable(package="yt8m_tf")
class FrameMask(keras.layers.Layer):
  """num_frames [B] -> float mask [B, T], as a layer so functional models can use it."""

  def __init__(self, max_frames: int, **kwargs):
    super().__init__(**kwargs)
    self.max_frames = max_frames

  def call(self, num_frames):
    return frame_mask(num_frames, self.max_frames)

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.max_frames)

  def get_config(self):
    return {**super().get_config(), "max_frames": self.max_frames}


@keras.saving.register_keras_serializable(package="yt8m_tf")
class MaskedPooling(keras.layers.Layer):
  """Pools [B, T, D] over the real frames: "mean", "max" or "sum"."""

  def __init__(self, method: str = "mean", **kwargs):
    super().__init__(**kwargs)
    if method not in ("mean", "max", "sum"):
      raise ValueError(f"method must be mean, max or sum, got {method!r}")
    self.method = method

  def call(self, x, mask):
    return {"mean": masked_mean, "max": masked_max, "sum": masked_sum}[self.method](x, mask)

  def compute_output_shape(self, x_shape, mask_shape=None):
    return (x_shape[0], x_shape[-1])

  def get_config(self):
    return {**super().get_config(), "method": self.method}


@keras.saving.register_keras_serializable(package="yt8m_tf")
class ContextGating(keras.layers.Layer):
  """y = x * sigmoid(W x + b) (WILLOW's context gating; with `batch_norm`, BN replaces the bias)."""

  def __init__(self, batch_norm: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.batch_norm = batch_norm

  def build(self, input_shape):
    width = input_shape[-1]
    self.gate = keras.layers.Dense(width, use_bias=not self.batch_norm, name="gate")
    self.gate.build(input_shape)
    if self.batch_norm:
      self.norm = keras.layers.BatchNormalization(name="gate_bn")
      self.norm.build(input_shape)

  def call(self, x, training=None):
    gates = self.gate(x)
    if self.batch_norm:
      gates = self.norm(gates, training=training)
    return x * ops.sigmoid(gates)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "batch_norm": self.batch_norm}


def class_summed_l2(l2_penalty: float, num_classes: int) -> keras.regularizers.Regularizer:
  """L2 for a penalty published next to a loss SUMMED over classes (TF starter, WILLOW, NeXtVLAD).

  Our default loss averages over classes, num_classes times smaller, so the coefficient is divided by
  num_classes to keep the published balance (measured: the starter's 1e-8 applied as is next to the
  mean BCE costs the logistic model 0.03 GAP@20 on the benchmark data).
  """
  return keras.regularizers.L2(l2_penalty / num_classes)
