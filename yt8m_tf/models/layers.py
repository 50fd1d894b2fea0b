"""Layers and masked operations shared by the video- and frame-level models.

Frame-level tensors are [B, T, D] zero-padded after `num_frames` real frames. Every reduction over
time goes through the masked helpers here, so a padded frame never enters a softmax, mean, sum or max:
a model's output for a video must not change when its padding changes. Padded frames are removed with
`where`, never with a 0-weight product, so even inf/NaN padding cannot leak (0 * inf is NaN).

Also here: the PyTorch-default Dense and BatchNorm of the seed's models, and the class-summed L2.
"""

from __future__ import annotations

import math

import keras
from keras import ops

# Large negative logit for masked positions; finite so that an all-masked row gives no NaN.
_MASKED_LOGIT = -1e9

# The layers that make the class scores compute in float32 under mixed precision (`TrainConfig.mixed_precision`):
# bfloat16 keeps 8 bits of mantissa, so logits near -7 would move in steps of 0.03 and tie across classes,
# and MoE's clipping at 1 - 1e-7 would round to 1.
OUTPUT_DTYPE = "float32"


# ---------------------------------------------------------------------------------------------------------------
# Masked operations.


def frame_mask(num_frames, max_frames: int, dtype="float32"):
  """[B] frame counts -> [B, T] mask, 1 for real frames and 0 for padding."""
  positions = ops.arange(max_frames, dtype="int32")[None, :]
  return ops.cast(positions < ops.cast(num_frames, "int32")[:, None], dtype)


def _expand(mask, x):
  """[B, T] mask -> the rank of x ([B, T, 1, ...]) so that it broadcasts against x."""
  while len(mask.shape) < len(x.shape):
    mask = ops.expand_dims(mask, -1)
  return mask


def zero_padded(x, mask):
  """x [B, T, ...] with its padded frames replaced by exact zeros, whatever they held."""
  return ops.where(_expand(mask, x) > 0, x, ops.zeros_like(x))


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
  mask = _expand(mask, logits)
  logits = ops.where(mask > 0, logits, ops.cast(_MASKED_LOGIT, logits.dtype))
  weights = ops.softmax(logits, axis=axis)
  return weights * ops.cast(mask > 0, weights.dtype)


# ---------------------------------------------------------------------------------------------------------------
# Masked layers.


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
class MaskedFramePooling(MaskedPooling):
  """MaskedPooling ("mean" / "max" / "sum") whose padded frames are removed with `where` first, so non-finite
  padding cannot reach the result through a 0 * inf product. The pooled output carries no Keras mask."""

  def call(self, x, mask):
    return super().call(zero_padded(x, mask), mask)

  def compute_mask(self, inputs, previous_mask=None):
    return None


@keras.saving.register_keras_serializable(package="yt8m_tf")
class ZeroPadFrames(keras.layers.Layer):
  """Replaces padded frames of [B, T, D] by zeros (with `where`, so inf/NaN padding is removed too).

  The output carries no Keras mask (layers after it, such as Conv1D, take none); pass the frame mask explicitly.
  """

  def call(self, x, mask):
    return zero_padded(x, mask)

  def compute_mask(self, inputs, previous_mask=None):
    return None

  def compute_output_shape(self, x_shape, mask_shape=None):
    return x_shape


@keras.saving.register_keras_serializable(package="yt8m_tf")
class AttentionPooling(keras.layers.Layer):
  """Learned temporal pooling: w = masked softmax_t(Dense(num_heads)(x_t)); out_h = sum_t w_th x_t.

  [B, T, D] -> [B, num_heads * D] (heads concatenated). Padded frames get exactly zero weight and their values
  are replaced by zeros before the weighted sum; a video with no real frames pools to zeros.
  """

  def __init__(self, num_heads: int = 1, **kwargs):
    super().__init__(**kwargs)
    self.num_heads = num_heads
    self.score = keras.layers.Dense(num_heads, name="score")

  def build(self, x_shape, mask_shape=None):
    self.score.build(x_shape)

  def call(self, x, mask):
    weights = masked_softmax(self.score(x), mask, axis=1)  # [B, T, H]
    pooled = ops.einsum("bth,btd->bhd", weights, zero_padded(x, mask))  # [B, H, D]
    return ops.reshape(pooled, (-1, self.num_heads * x.shape[-1]))

  def compute_output_shape(self, x_shape, mask_shape=None):
    return (x_shape[0], self.num_heads * x_shape[-1])

  def compute_mask(self, inputs, previous_mask=None):
    return None

  def get_config(self):
    return {**super().get_config(), "num_heads": self.num_heads}


@keras.saving.register_keras_serializable(package="yt8m_tf")
class MaskedBatchNormalization(keras.layers.Layer):
  """Batch normalization over the last axis whose batch statistics come from real frames only.

  `call(x, mask)` with x [B, T, C] and mask [B, T] (1 real, 0 padding); without a mask it is plain
  BN over all leading axes. Training: mean and (biased) variance are the mask-weighted moments over
  (batch, time); moving averages are updated from them as Keras BN does
  (moving = moving * momentum + batch * (1 - momentum)), except that a batch with no real frame
  leaves them unchanged. Inference: moving averages. Same defaults as keras BatchNormalization.
  """

  def __init__(
    self, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True, scale: bool = True, **kwargs
  ):
    super().__init__(**kwargs)
    self.momentum = momentum
    self.epsilon = epsilon
    self.center = center
    self.scale = scale

  def build(self, input_shape):
    dim = (input_shape[-1],)
    self.gamma = self.add_weight(name="gamma", shape=dim, initializer="ones") if self.scale else None
    self.beta = self.add_weight(name="beta", shape=dim, initializer="zeros") if self.center else None
    self.moving_mean = self.add_weight(
      name="moving_mean", shape=dim, initializer="zeros", trainable=False, autocast=False
    )
    self.moving_variance = self.add_weight(
      name="moving_variance", shape=dim, initializer="ones", trainable=False, autocast=False
    )

  def _update(self, moving, batch_value, has_frames):
    updated = moving * self.momentum + ops.cast(batch_value, "float32") * (1 - self.momentum)
    moving.assign(ops.where(has_frames, updated, moving))

  def call(self, inputs, mask=None, training=None):
    x = inputs
    if training and self.trainable:
      axes = tuple(range(len(x.shape) - 1))
      if mask is None:
        mask = ops.ones_like(x[..., 0])
      valid = _expand(ops.cast(mask, x.dtype), x) > 0  # where(), not a product: NaN padding is fine
      count = ops.sum(ops.cast(valid, x.dtype) * ops.ones_like(x[..., :1]))
      denominator = ops.maximum(count, 1.0)
      mean = ops.sum(ops.where(valid, x, 0.0), axis=axes) / denominator
      variance = ops.sum(ops.where(valid, ops.square(x - mean), 0.0), axis=axes) / denominator
      self._update(self.moving_mean, mean, count > 0)
      self._update(self.moving_variance, variance, count > 0)
    else:
      mean = ops.cast(self.moving_mean, x.dtype)
      variance = ops.cast(self.moving_variance, x.dtype)
    y = (x - mean) * ops.rsqrt(variance + self.epsilon)
    if self.scale:
      y = y * self.gamma
    if self.center:
      y = y + self.beta
    return y

  def compute_output_shape(self, inputs_shape, mask_shape=None):
    return inputs_shape

  def get_config(self):
    return {
      **super().get_config(),
      "momentum": self.momentum,
      "epsilon": self.epsilon,
      "center": self.center,
      "scale": self.scale,
    }


# ---------------------------------------------------------------------------------------------------------------
# Gating, PyTorch-default layers, regularization.


@keras.saving.register_keras_serializable(package="yt8m_tf")
class ContextGating(keras.layers.Layer):
  """y = x * sigmoid(W x + b) (WILLOW's context gating; with `batch_norm`, BN replaces the bias)."""

  def __init__(self, batch_norm: bool = False, bn_momentum: float = 0.99, **kwargs):
    super().__init__(**kwargs)
    self.batch_norm = batch_norm
    self.bn_momentum = float(bn_momentum)

  def build(self, input_shape):
    width = input_shape[-1]
    self.gate = keras.layers.Dense(width, use_bias=not self.batch_norm, name="gate")
    self.gate.build(input_shape)
    if self.batch_norm:
      self.norm = keras.layers.BatchNormalization(momentum=self.bn_momentum, name="gate_bn")
      self.norm.build(input_shape)

  def call(self, x, training=None):
    gates = self.gate(x)
    if self.batch_norm:
      gates = self.norm(gates, training=training)
    return x * ops.sigmoid(gates)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "batch_norm": self.batch_norm, "bn_momentum": self.bn_momentum}


def torch_dense(units: int, fan_in: int, name: str, use_bias: bool = True, dtype=None) -> keras.layers.Dense:
  """Dense initialized like PyTorch's nn.Linear: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  limit = 1.0 / math.sqrt(fan_in)
  return keras.layers.Dense(
    units,
    use_bias=use_bias,
    name=name,
    dtype=dtype,
    kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
    bias_initializer=keras.initializers.RandomUniform(-limit, limit),
  )


def torch_batch_norm(name: str, momentum: float = 0.9) -> keras.layers.BatchNormalization:
  """BatchNorm1d's defaults: momentum 0.1 (Keras 0.9) and epsilon 1e-5."""
  return keras.layers.BatchNormalization(momentum=momentum, epsilon=1e-5, name=name)


def class_summed_l2(l2_penalty: float, num_classes: int) -> keras.regularizers.Regularizer:
  """L2 for a penalty published next to a loss SUMMED over classes (TF starter, WILLOW, NeXtVLAD).

  Our default loss averages over classes, num_classes times smaller, so the coefficient is divided by
  num_classes to keep the published balance (measured: the starter's 1e-8 applied as is next to the
  mean BCE costs the logistic model 0.03 GAP@20 on the benchmark data).
  """
  return keras.regularizers.L2(l2_penalty / num_classes)
