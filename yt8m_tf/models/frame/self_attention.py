"""SelfAttentionEncoder: a standard transformer encoder over frames (replaces the seed's
EarlyConcatTransformerClassifier, seed_method.md §2.2).

  concat(rgb, audio) -> Dense(d_model) -> + sinusoidal positions (sin/cos) -> Dropout
  -> num_layers x [x = LayerNorm(x + Dropout(MHA(x, x))); x = LayerNorm(x + Dropout(FFN(x)))]   (post-LN)
  -> mean over the real frames -> Dense logits

Differences from the seed, on purpose: residuals, LayerNorm and a position-wise FFN (the seed had none of them);
the positions are the usual sin/cos code added once to the input (the seed added a sine-only code to queries and
keys only), scores scaled by 1/sqrt(d_head) (Keras MultiHeadAttention; the seed used the input width); logits out
(the seed's sigmoid output trained with BCE-with-logits was a double sigmoid, §9.6).

Masking: every query attends to the real frames only (attention_mask [B, T, T] built from the frame mask);
padded positions are set to zero after the input projection and after every block, so nothing computed there is
passed on, and the final mean is over the real frames only.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from yt8m_tf.data.schema import Schema
from yt8m_tf.models.inputs import masked_frame_inputs
from yt8m_tf.models.layers import OUTPUT_DTYPE, MaskedFramePooling, ZeroPadFrames, zero_padded
from yt8m_tf.models.registry import FRAME, register


@keras.saving.register_keras_serializable(package="yt8m_tf")
class SinusoidalPositions(keras.layers.Layer):
  """Adds the transformer's sin/cos position code to [B, T, D]; computed for the input's T, so no weights."""

  def __init__(self, max_wavelength: float = 10000.0, **kwargs):
    super().__init__(**kwargs)
    self.supports_masking = True
    self.max_wavelength = max_wavelength

  def call(self, x):
    length, width = ops.shape(x)[1], x.shape[-1]
    positions = ops.cast(ops.arange(length), "float32")[:, None]
    dims = ops.arange(width)
    frequencies = ops.exp(-math.log(self.max_wavelength) * ops.cast(2 * (dims // 2), "float32") / width)
    angles = positions * frequencies[None, :]
    code = ops.where(dims[None, :] % 2 == 0, ops.sin(angles), ops.cos(angles))
    return x + ops.cast(code, x.dtype)[None]

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "max_wavelength": self.max_wavelength}


@keras.saving.register_keras_serializable(package="yt8m_tf")
class TransformerEncoderBlock(keras.layers.Layer):
  """Post-LN transformer encoder block on [B, T, d_model] with a [B, T] frame mask; padded rows come out zero."""

  def __init__(self, d_model: int, num_heads: int, ff_dim: int, dropout: float = 0.1, **kwargs):
    super().__init__(**kwargs)
    self.supports_masking = True
    if d_model % num_heads:
      raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
    self.d_model, self.num_heads, self.ff_dim, self.dropout = d_model, num_heads, ff_dim, dropout
    self.attention = keras.layers.MultiHeadAttention(
      num_heads, d_model // num_heads, dropout=dropout, name="attention"
    )
    self.ff_in = keras.layers.Dense(ff_dim, activation="relu", name="ff_in")
    self.ff_out = keras.layers.Dense(d_model, name="ff_out")
    self.norm_attention = keras.layers.LayerNormalization(epsilon=1e-5, name="norm_attention")
    self.norm_ff = keras.layers.LayerNormalization(epsilon=1e-5, name="norm_ff")
    self.drop = keras.layers.Dropout(dropout)

  def build(self, x_shape, mask_shape=None):
    self.attention.build(x_shape, x_shape)
    self.ff_in.build(x_shape)
    self.ff_out.build((*x_shape[:-1], self.ff_dim))
    self.norm_attention.build(x_shape)
    self.norm_ff.build(x_shape)

  def call(self, x, mask, training=None):
    valid = mask > 0
    # Query t may attend to key s iff s is a real frame; a padded query's row is zeroed below.
    attention_mask = ops.logical_and(ops.ones_like(valid)[:, :, None], valid[:, None, :])
    attended = self.attention(x, x, attention_mask=attention_mask, training=training)
    x = self.norm_attention(x + self.drop(attended, training=training))
    ff = self.ff_out(self.drop(self.ff_in(x), training=training))
    x = self.norm_ff(x + self.drop(ff, training=training))
    return zero_padded(x, mask)

  def compute_output_shape(self, x_shape, mask_shape=None):
    return x_shape

  def get_config(self):
    return {
      **super().get_config(),
      "d_model": self.d_model,
      "num_heads": self.num_heads,
      "ff_dim": self.ff_dim,
      "dropout": self.dropout,
    }


@register("SelfAttentionEncoder", kind=FRAME, any_features=True)
def self_attention_encoder(
  schema: Schema,
  d_model: int = 512,
  num_heads: int = 8,
  num_layers: int = 2,
  ff_dim: int = 2048,
  dropout: float = 0.1,
) -> keras.Model:
  """Transformer encoder over the real frames (module docstring); `dropout` is used on the input, inside the
  attention, on both residual branches and inside the FFN."""
  inputs, frames, mask = masked_frame_inputs(schema)
  x = keras.layers.Concatenate(name="concat_features")(list(frames.values()))
  x = keras.layers.Dense(d_model, name="input_projection")(x)
  x = SinusoidalPositions(name="positions")(x)
  if dropout > 0:
    x = keras.layers.Dropout(dropout, name="input_dropout")(x)
  x = ZeroPadFrames(name="zero_pad")(x, mask)
  for i in range(num_layers):
    x = TransformerEncoderBlock(d_model, num_heads, ff_dim, dropout, name=f"encoder{i}")(x, mask)
  x = MaskedFramePooling("mean", name="mean_pool")(x, mask)
  logits = keras.layers.Dense(schema.num_classes, name="logits", dtype=OUTPUT_DTYPE)(x)
  return keras.Model(inputs, logits, name="SelfAttentionEncoder")
