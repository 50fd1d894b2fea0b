"""Classifier heads shared by the video- and frame-level models: every head maps a [B, D] representation to
logits [B, num_classes].

  logistic_head     Dense(num_classes) with the class-summed L2 of the TF starter (LogisticModel).
  MixtureOfExperts  the starter's MoE, returning logits.
  classifier_head   "moe" or "logistic", as the starter's and WILLOW's `video_level_classifier_model` flag.
  fcn_head          the seed's FCN: per hidden width Linear -> Dropout -> ReLU, then a linear output.
  ResNetLikeHead    the seed's ResNetLike on an (audio, video) pair (seed_method.md §2.1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
from keras import ops

from yt8m_tf.models.layers import OUTPUT_DTYPE, class_summed_l2, torch_batch_norm, torch_dense

CLASSIFIERS = ("moe", "logistic")
# PyTorch's nn.LeakyReLU default (Keras' is 0.3).
LEAKY_SLOPE = 0.01


def logistic_head(
  x, num_classes: int, l2_penalty: float, regularize_bias: bool = False, name: str = "logits"
):
  """logits = W x + b with the class-summed L2 on W (and on b with `regularize_bias`, as WILLOW and NeXtVLAD)."""
  regularizer = class_summed_l2(l2_penalty, num_classes)
  return keras.layers.Dense(
    num_classes,
    kernel_regularizer=regularizer,
    bias_regularizer=regularizer if regularize_bias else None,
    name=name,
    dtype=OUTPUT_DTYPE,
  )(x)


@keras.saving.register_keras_serializable(package="yt8m_tf")
class MixtureOfExperts(keras.layers.Layer):
  """Per class c: p_c = sum_m softmax(gates_c)_m * sigmoid(expert_c,m), with M experts plus a dummy
  expert (gate M+1) that always predicts 0. Returns logit(p_c), so every model emits logits.
  """

  def __init__(self, num_classes, num_mixtures=2, l2_penalty=1e-8, epsilon=1e-7, **kwargs):
    super().__init__(**kwargs)
    self.num_classes = num_classes
    self.num_mixtures = num_mixtures
    self.l2_penalty = l2_penalty
    self.epsilon = epsilon
    regularizer = class_summed_l2(l2_penalty, num_classes)
    # Sublayers compute in this layer's dtype (float32 for the output head, whatever the global policy).
    sublayer = dict(kernel_regularizer=regularizer, dtype=self.dtype_policy)
    self.gates = keras.layers.Dense(
      num_classes * (num_mixtures + 1), use_bias=False, name="gates", **sublayer
    )
    self.experts = keras.layers.Dense(num_classes * num_mixtures, name="experts", **sublayer)

  def build(self, input_shape):
    self.gates.build(input_shape)
    self.experts.build(input_shape)

  def call(self, x):
    gates = ops.softmax(ops.reshape(self.gates(x), [-1, self.num_classes, self.num_mixtures + 1]))
    experts = ops.sigmoid(ops.reshape(self.experts(x), [-1, self.num_classes, self.num_mixtures]))
    probabilities = ops.sum(gates[..., : self.num_mixtures] * experts, axis=-1)
    probabilities = ops.clip(probabilities, self.epsilon, 1.0 - self.epsilon)
    return ops.log(probabilities) - ops.log1p(-probabilities)

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.num_classes)

  def get_config(self):
    return {
      **super().get_config(),
      "num_classes": self.num_classes,
      "num_mixtures": self.num_mixtures,
      "l2_penalty": self.l2_penalty,
      "epsilon": self.epsilon,
    }


def check_classifier(classifier: str) -> None:
  if classifier not in CLASSIFIERS:
    raise ValueError(f"classifier must be 'moe' or 'logistic', got {classifier!r}")


def classifier_head(
  x, num_classes: int, classifier: str, num_mixtures: int, l2_penalty: float, regularize_bias: bool = False
):
  """MixtureOfExperts (layer "moe") or `logistic_head` (layer "logits"); `regularize_bias` is the logistic's."""
  check_classifier(classifier)
  if classifier == "moe":
    return MixtureOfExperts(num_classes, num_mixtures, l2_penalty, name="moe", dtype=OUTPUT_DTYPE)(x)
  return logistic_head(x, num_classes, l2_penalty, regularize_bias)


# The FCN's layer names: {name} is the head's name, {i} counts from 0, {n} from 1.
FCN_LAYER_NAMES = ("{name}_dense{i}", "{name}_dropout{i}", "{name}_relu{i}")


def fcn_head(
  x,
  num_classes: int,
  hidden_sizes: Sequence[int] = (),
  dropout: float = 0.0,
  name: str = "fcn",
  layer_names: Sequence[str] = FCN_LAYER_NAMES,
):
  """The seed's FCN: every hidden layer is Linear -> Dropout -> ReLU (dropout before the activation, no
  Dropout layer when 0), then a linear output "logits"; PyTorch nn.Linear initialization. `layer_names`
  are format strings for each hidden layer's (dense, dropout, relu) names."""
  for i, units in enumerate(hidden_sizes):
    dense_name, dropout_name, relu_name = (f.format(name=name, i=i, n=i + 1) for f in layer_names)
    x = torch_dense(int(units), x.shape[-1], name=dense_name)(x)
    if dropout > 0:
      x = keras.layers.Dropout(dropout, name=dropout_name)(x)
    x = keras.layers.ReLU(name=relu_name)(x)
  return torch_dense(num_classes, x.shape[-1], name="logits", dtype=OUTPUT_DTYPE)(x)


def fc_block(x, units: int, dropout: float, name: str, bn_momentum: float = 0.9):
  """ResNetLike's FCBlock: Dense -> BatchNorm -> LeakyReLU(0.01) -> Dropout, PyTorch defaults."""
  x = torch_dense(units, x.shape[-1], name=f"{name}_dense")(x)
  x = torch_batch_norm(f"{name}_bn", bn_momentum)(x)
  x = keras.layers.LeakyReLU(LEAKY_SLOPE, name=f"{name}_act")(x)
  return keras.layers.Dropout(dropout, name=f"{name}_dropout")(x) if dropout > 0 else x


def identity_block(x, inner: int, dropout: float, name: str, bn_momentum: float = 0.9):
  """ResNetLike's Identity: LeakyReLU(x + Dense(FCBlock(x))), no BN after the second Dense."""
  outer = x.shape[-1]
  residual = fc_block(x, inner, dropout, name=f"{name}_fc", bn_momentum=bn_momentum)
  residual = torch_dense(outer, inner, name=f"{name}_out")(residual)
  x = keras.layers.Add(name=f"{name}_add")([x, residual])
  return keras.layers.LeakyReLU(LEAKY_SLOPE, name=f"{name}_act")(x)


@dataclasses.dataclass(frozen=True)
class ResNetLikeHead:
  """The ResNetLike graph (video/resnet_like.py) on an (audio, video) pair of [B, *] tensors; SoftBoW uses
  it after pooling. Its fields are the hyperparameters of the models built on it (their registered params);
  `bn_momentum` is that of every BatchNorm (0.9: PyTorch's default)."""

  inner_size: int = 2048
  av_id_block_num: int = 1
  concat_id_block_num: int = 1
  dropout: float = 0.5
  context_gating: bool = False
  video_part: float = 1.0
  audio_part: float = 1.0
  bn_momentum: float = 0.9

  def __call__(self, audio, video, num_classes: int):
    inner, dropout, momentum = self.inner_size, self.dropout, self.bn_momentum
    parts = self.video_part + self.audio_part
    audio_width = round(2 * inner * self.audio_part / parts)
    video_width = round(2 * inner * self.video_part / parts)
    a = fc_block(audio, audio_width, dropout, name="audio_fc", bn_momentum=momentum)
    for i in range(self.av_id_block_num):
      a = identity_block(a, audio_width, dropout, name=f"audio_id{i}", bn_momentum=momentum)
    v = fc_block(video, video_width, dropout, name="video_fc", bn_momentum=momentum)
    for i in range(self.av_id_block_num):
      v = identity_block(v, video_width, dropout, name=f"video_id{i}", bn_momentum=momentum)
    x = keras.layers.Concatenate(name="concat_audio_video")([a, v])  # audio first, as in the seed
    for i in range(self.concat_id_block_num):
      x = identity_block(x, inner, dropout, name=f"concat_id{i}", bn_momentum=momentum)
    x = fc_block(x, inner, dropout, name="head_fc", bn_momentum=momentum)
    logits = torch_dense(num_classes, inner, name="logits", dtype=OUTPUT_DTYPE)(x)
    if self.context_gating:
      gates = torch_dense(num_classes, num_classes, name="context_gate", dtype=OUTPUT_DTYPE)(logits)
      gates = keras.layers.Activation("sigmoid", dtype=OUTPUT_DTYPE)(gates)
      logits = keras.layers.Multiply(name="gated_logits", dtype=OUTPUT_DTYPE)([logits, gates])
    return logits
