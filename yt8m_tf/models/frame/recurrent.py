"""Recurrent and iterated-attention frame-level models of the seed (seed_method.md §2.2).

Masking: every RNN is called with the [B, T] frame mask (Keras masking), so a padded step never updates a state;
the final states are those after the last real frame, and in a Bidirectional layer the backward direction meets
the padded steps first, leaves its zero initial state untouched by them, and so starts at the last real frame
(the same as PyTorch's pack_padded_sequence in the seed). Attention softmaxes and means go over real frames only
(the seed's included the padding, §9.7).

Models:
  StackedRNN        stacked LSTM/GRU, every layer's final state(s) concatenated (LSTM: [h, c]) -> FCN head.
                    Presets: EarlyConcatLSTM, EarlyConcatLSTM2, EarlyConcatGRU2 (seed defaults).
  BiLSTMAttention   seed EarlyConcatLSTM4 (also registered under that name): per-modality ReLU(Dense), densely
                    connected bidirectional LSTMs, masked attention pooling, concat -> BN -> FCN(4096, 4096).
  AttentionModel    seed iterated global-context attention; presets AttentionModel2/3/4.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from yt8m_tf.data.schema import Schema
from yt8m_tf.models.heads import fcn_head
from yt8m_tf.models.inputs import masked_frame_inputs
from yt8m_tf.models.layers import (
  AttentionPooling,
  masked_mean,
  masked_softmax,
  torch_batch_norm,
  torch_dense,
  zero_padded,
)
from yt8m_tf.models.registry import FRAME, register, register_variant


def _uniform_dense(units: int, fan_in: int, name: str, use_bias: bool = True):
  """Dense with weights and bias U(+-1/sqrt(fan_in)) for a given fan_in: a slice of a wider nn.Linear."""
  limit = fan_in**-0.5
  init = keras.initializers.RandomUniform(-limit, limit)
  return keras.layers.Dense(
    units, use_bias=use_bias, name=name, kernel_initializer=init, bias_initializer=init
  )


@register("StackedRNN", kind=FRAME, aliases=("LstmModel",), any_features=True)
def stacked_rnn(
  schema: Schema,
  cell: str = "lstm",
  num_layers: int = 2,
  units: int = 1024,
  hidden_sizes: Sequence[int] = (2048,),
  dropout: float = 0.1,
) -> keras.Model:
  """Stacked unidirectional LSTM/GRU over concat(rgb, audio); the representation is the concatenation of every
  layer's final state at the last real frame (LSTM: [h, c] per layer, GRU: h), then the seed's FCN head
  (Linear -> Dropout -> ReLU per hidden size). The defaults are the seed's EarlyConcatLSTM."""
  if cell not in ("lstm", "gru"):
    raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
  inputs, frames, mask = masked_frame_inputs(schema)
  x = keras.layers.Concatenate(name="concat_features")(list(frames.values()))
  rnn_class = keras.layers.LSTM if cell == "lstm" else keras.layers.GRU
  states = []
  for i in range(num_layers):
    last = i == num_layers - 1
    outputs = rnn_class(units, return_sequences=not last, return_state=True, name=f"{cell}{i}")(x, mask=mask)
    x, layer_states = outputs[0], outputs[1:]
    states.extend(layer_states)  # LSTM: [h, c]; GRU: [h]
  x = states[0] if len(states) == 1 else keras.layers.Concatenate(name="concat_states")(states)
  logits = fcn_head(x, schema.num_classes, hidden_sizes, dropout, name="head")
  return keras.Model(inputs, logits, name="StackedRNN")


# The seed's stacked RNNs: StackedRNN with other defaults (every param stays a param).
STACKED_RNN_PRESETS = {
  "EarlyConcatLSTM": {
    "cell": "lstm",
    "num_layers": 2,
    "units": 1024,
    "hidden_sizes": (2048,),
    "dropout": 0.1,
  },
  "EarlyConcatLSTM2": {
    "cell": "lstm",
    "num_layers": 3,
    "units": 512,
    "hidden_sizes": (1024, 1024),
    "dropout": 0.0,
  },
  "EarlyConcatGRU2": {
    "cell": "gru",
    "num_layers": 3,
    "units": 1024,
    "hidden_sizes": (1024, 1024),
    "dropout": 0.0,
  },
}
for _name, _defaults in STACKED_RNN_PRESETS.items():
  register_variant(_name, FRAME, stacked_rnn, any_features=True, **_defaults)


@register("BiLSTMAttention", kind=FRAME)
def bilstm_attention(
  schema: Schema,
  layers_number: int = 1,
  video_hidden: int = 1024,
  audio_hidden: int = 128,
  hidden_sizes: Sequence[int] = (4096, 4096),
  dropout: float = 0.0,
  bn_momentum: float = 0.9,
) -> keras.Model:
  """The seed's EarlyConcatLSTM4, per modality (video, audio):
    x = ReLU(Dense(d)(x_t)) (d = the modality's feature size);
    layers_number x: x = concat(x, BiLSTM(hidden)(x))  (densely connected; hidden 1024 video, 128 audio);
    pooled = sum_t softmax_t(Dense(1)(x_t)) x_t over the real frames.
  concat(video, audio) (3072 + 384 = 3456 at the defaults) -> BatchNorm -> FCN(hidden_sizes, dropout) -> logits.
  `bn_momentum`: of the BatchNorm (0.9: PyTorch's default).
  """
  inputs, frames, mask = masked_frame_inputs(schema)
  pooled = []
  for name, x, hidden in (("video", frames["rgb"], video_hidden), ("audio", frames["audio"], audio_hidden)):
    x = torch_dense(x.shape[-1], x.shape[-1], name=f"{name}_dense")(x)
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    for i in range(layers_number):
      lstm = keras.layers.LSTM(hidden, return_sequences=True, name=f"{name}_lstm{i}")
      h = keras.layers.Bidirectional(lstm, name=f"{name}_bilstm{i}")(x, mask=mask)
      x = keras.layers.Concatenate(name=f"{name}_dense_concat{i}")([x, h])
    pooled.append(AttentionPooling(1, name=f"{name}_attention_pool")(x, mask))
  x = keras.layers.Concatenate(name="concat_modalities")(pooled)
  x = torch_batch_norm("head_bn", bn_momentum)(x)
  logits = fcn_head(x, schema.num_classes, hidden_sizes, dropout, name="head")
  return keras.Model(inputs, logits, name="BiLSTMAttention")


register("EarlyConcatLSTM4", kind=FRAME)(bilstm_attention)


@keras.saving.register_keras_serializable(package="yt8m_tf")
class GlobalContextAttention(keras.layers.Layer):
  """The seed's iterated global-context attention, [B, T, D] -> [B, D + num_layers * hidden_size].

  Seed: X_1 = x; for i = 1..L: V = ReLU(Linear_i(X_i)); w = softmax_t(Linear(H->1)(V)); v_i = sum_t w_t V_t;
  X_{i+1} = concat(X_i, v_i broadcast over t); output mean_t(X_{L+1}).
  Here with the softmax and the mean over real frames only, and computed without materialising the growing
  [B, T, D + i*H] tensor: Linear_i(concat(x_t, v_1..v_{i-1})) = W_x x_t + W_v concat(v_1..v_{i-1}) + b, and
  mean_t(X_{L+1}) = concat(mean_t(x), v_1, ..., v_L) because the v_i are constant over t. The parameters are
  those of the seed's Linear_i (split into a per-frame and a context part).
  """

  def __init__(self, num_layers: int = 3, hidden_size: int = 1024, **kwargs):
    super().__init__(**kwargs)
    self.num_layers = num_layers
    self.hidden_size = hidden_size

  def build(self, x_shape, mask_shape=None):
    # Layer i stands for the seed's Linear(D + i*H -> H): initialised with that fan-in.
    width = x_shape[-1]
    frame_dense, context_dense, score_dense = [], [], []
    for i in range(self.num_layers):
      fan_in = width + i * self.hidden_size
      frame_dense.append(_uniform_dense(self.hidden_size, fan_in, name=f"frame{i}"))
      frame_dense[i].build((None, None, width))
      if i > 0:
        context_dense.append(_uniform_dense(self.hidden_size, fan_in, name=f"context{i}", use_bias=False))
        context_dense[-1].build((None, i * self.hidden_size))
      score_dense.append(torch_dense(1, self.hidden_size, name=f"score{i}"))
      score_dense[i].build((None, None, self.hidden_size))
    self.frame_dense, self.context_dense, self.score_dense = frame_dense, context_dense, score_dense

  def call(self, x, mask):
    contexts = []
    for i in range(self.num_layers):
      v = self.frame_dense[i](x)
      if i > 0:
        v = v + ops.expand_dims(self.context_dense[i - 1](ops.concatenate(contexts, axis=-1)), 1)
      v = ops.relu(v)
      weights = masked_softmax(self.score_dense[i](v)[..., 0], mask, axis=1)  # [B, T]
      contexts.append(ops.einsum("bt,btd->bd", weights, zero_padded(v, mask)))
    return ops.concatenate([masked_mean(zero_padded(x, mask), mask), *contexts], axis=-1)

  def compute_output_shape(self, x_shape, mask_shape=None):
    return (x_shape[0], x_shape[-1] + self.num_layers * self.hidden_size)

  def compute_mask(self, inputs, previous_mask=None):
    return None

  def get_config(self):
    return {**super().get_config(), "num_layers": self.num_layers, "hidden_size": self.hidden_size}


@register("AttentionModel", kind=FRAME, any_features=True)
def attention_model(
  schema: Schema,
  num_layers: int = 3,
  hidden_size: int = 1024,
  hidden_sizes: Sequence[int] = (4096, 4096),
  dropout: float = 0.0,
  batch_norm: bool = True,
  bn_momentum: float = 0.9,
) -> keras.Model:
  """The seed's AttentionModel: GlobalContextAttention(L=num_layers, H=hidden_size) on concat(rgb, audio)
  -> BatchNorm (if batch_norm; `bn_momentum` 0.9: PyTorch's default) -> FCN(hidden_sizes, dropout) -> logits."""
  inputs, frames, mask = masked_frame_inputs(schema)
  x = keras.layers.Concatenate(name="concat_features")(list(frames.values()))
  x = GlobalContextAttention(num_layers, hidden_size, name="context_attention")(x, mask)
  if batch_norm:
    x = torch_batch_norm("head_bn", bn_momentum)(x)
  logits = fcn_head(x, schema.num_classes, hidden_sizes, dropout, name="head")
  return keras.Model(inputs, logits, name="AttentionModel")


# The seed's AttentionModel configurations.
ATTENTION_MODEL_PRESETS = {
  "AttentionModel2": {"dropout": 0.3},
  "AttentionModel3": {"num_layers": 5, "hidden_size": 512},
  "AttentionModel4": {"num_layers": 4, "hidden_size": 768, "dropout": 0.3},
}
for _name, _defaults in ATTENTION_MODEL_PRESETS.items():
  register_variant(_name, FRAME, attention_model, any_features=True, **_defaults)
