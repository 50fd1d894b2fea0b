"""Early-concat fully connected models of the seed (seed_method.md §2.1): EarlyConcatFCN and AttentiveFCN*.

Every model here concatenates [mean_rgb, mean_audio] (1152 dims) first and ends in a Dense layer that
emits logits. "gate" is the self-gating of the AttentiveFCN family, h = h * sigmoid(Dense(h)(h)).

  EarlyConcatFCN   per hidden width: Dense -> Dropout -> ReLU (dropout before the activation, as the seed);
                   then Dense(num_classes)
  AttentiveFCN     ReLU(fc1) -> gate -> logits
  AttentiveFCN2    ReLU(fc1) -> ReLU(fc2) -> ReLU(fc3: n_heads*C) -> [B, C, n_heads]
                   -> per-class gate (Dense n_heads->n_heads, shared over classes) -> Dense(n_heads->1)
  AttentiveFCN3    ReLU(fc1) -> ReLU(fc2) -> gate -> Dropout -> logits
  AttentiveFCN4    AttentiveFCN3 with a softmax gate (softmax over the features: PyTorch's nn.Softmax()
                   without `dim` normalizes dim 1 of a 2-D input)
  AttentiveFCN5    fc1 (no activation) -> sort features ascending -> ReLU(fc2) -> gate -> Dropout -> logits
  AttentiveFCN6    ReLU(fc1) -> ReLU(BN(fc2)) -> x + fc4(x) -> ReLU -> gate -> Dropout -> logits
  AttentiveFCN7    ReLU(fc1) -> ReLU(BN1(fc2)) -> x + fc4(x) -> ReLU(BN2) -> x + fc5(x) -> ReLU(BN3)
                   -> gate -> Dropout -> logits

All hidden Dense layers are inner_size -> inner_size as in the seed's code. PyTorch defaults are kept:
nn.Linear's U(+-1/sqrt(fan_in)) init (`torch_dense`) and BatchNorm1d's momentum 0.1 (Keras 0.9) / eps 1e-5.
AttentiveFCN2's default inner_size is 2048, as in its only config (42) and the spec; the seed class default
was 4096.

Parameters at the defaults (3862 classes; BN moving statistics included): EarlyConcatFCN 6,188,822;
AttentiveFCN 37,326,614; AttentiveFCN2 46,123,922; AttentiveFCN3/4/5 54,107,926; AttentiveFCN6 70,905,622;
AttentiveFCN7 87,719,702.
"""

from typing import Sequence

import keras
from keras import ops

from yt8m_tf.models.inputs import video_inputs
from yt8m_tf.models.registry import VIDEO, register
from yt8m_tf.models.video.resnet_like import torch_dense


@keras.saving.register_keras_serializable(package="yt8m_tf")
class FeatureSort(keras.layers.Layer):
  """Sorts the values of each row along the last axis (ascending unless `descending`)."""

  def __init__(self, descending: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.descending = descending

  def call(self, x):
    if self.descending:
      return -ops.sort(-x, axis=-1)
    return ops.sort(x, axis=-1)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "descending": self.descending}


def _concat_inputs(feature_sizes):
  inputs = video_inputs(feature_sizes)
  x = keras.layers.Concatenate(name="concat_features")([inputs["mean_rgb"], inputs["mean_audio"]])
  return inputs, x


def _dense(x, units: int, name: str, activation: str | None = None):
  x = torch_dense(units, x.shape[-1], name=name)(x)
  if activation:
    x = keras.layers.Activation(activation, name=f"{name}_{activation}")(x)
  return x


def _batch_norm(x, name: str):
  return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)(x)


def _self_gate(x, name: str = "gate", activation: str = "sigmoid"):
  """x * activation(Dense(x)); the Dense maps the last axis to itself."""
  weights = _dense(x, x.shape[-1], name=name, activation=activation)
  return keras.layers.Multiply(name=f"{name}_multiply")([x, weights])


def _dropout(x, rate: float, name: str = "dropout"):
  return keras.layers.Dropout(rate, name=name)(x) if rate > 0 else x


def _residual(x, name: str):
  """x + Dense(x)(x), no activation (the seed's `layer(x) + x`)."""
  return keras.layers.Add(name=f"{name}_add")([_dense(x, x.shape[-1], name=name), x])


@register("EarlyConcatFCN", kind=VIDEO)
def early_concat_fcn(
  num_classes: int = 3862,
  feature_sizes=(1024, 128),
  inner_sizes: Sequence[int] = (1024, 1024),
  dropout: float = 0.0,
) -> keras.Model:
  inputs, x = _concat_inputs(feature_sizes)
  for i, width in enumerate(inner_sizes):
    x = _dense(x, int(width), name=f"fc{i + 1}")
    x = _dropout(x, dropout, name=f"fc{i + 1}_dropout")  # before the activation, as the seed
    x = keras.layers.ReLU(name=f"fc{i + 1}_relu")(x)
  logits = _dense(x, num_classes, name="logits")
  return keras.Model(inputs, logits, name="EarlyConcatFCN")


@register("AttentiveFCN", kind=VIDEO)
def attentive_fcn(num_classes: int = 3862, feature_sizes=(1024, 128), inner_size: int = 4096) -> keras.Model:
  inputs, x = _concat_inputs(feature_sizes)
  x = _dense(x, inner_size, name="fc1", activation="relu")
  x = _self_gate(x)
  logits = _dense(x, num_classes, name="logits")
  return keras.Model(inputs, logits, name="AttentiveFCN")


@register("AttentiveFCN2", kind=VIDEO)
def attentive_fcn2(
  num_classes: int = 3862, feature_sizes=(1024, 128), inner_size: int = 2048, n_heads: int = 5
) -> keras.Model:
  inputs, x = _concat_inputs(feature_sizes)
  x = _dense(x, inner_size, name="fc1", activation="relu")
  x = _dense(x, inner_size, name="fc2", activation="relu")
  x = _dense(x, n_heads * num_classes, name="fc3", activation="relu")
  # Row-major, like torch's view(-1, C, n_heads): head h of class c is column c * n_heads + h.
  x = keras.layers.Reshape((num_classes, n_heads), name="heads")(x)
  x = _self_gate(x)  # Dense(n_heads -> n_heads) on the last axis, shared by all classes
  x = _dense(x, 1, name="head_output")
  logits = keras.layers.Reshape((num_classes,), name="logits")(x)
  return keras.Model(inputs, logits, name="AttentiveFCN2")


def _attentive_fcn3_like(
  name: str, num_classes, feature_sizes, inner_size, dropout, gate_activation="sigmoid"
):
  inputs, x = _concat_inputs(feature_sizes)
  x = _dense(x, inner_size, name="fc1", activation="relu")
  x = _dense(x, inner_size, name="fc2", activation="relu")
  x = _self_gate(x, activation=gate_activation)
  x = _dropout(x, dropout)
  logits = _dense(x, num_classes, name="logits")
  return keras.Model(inputs, logits, name=name)


@register("AttentiveFCN3", kind=VIDEO)
def attentive_fcn3(
  num_classes: int = 3862, feature_sizes=(1024, 128), inner_size: int = 4096, dropout: float = 0.3
) -> keras.Model:
  return _attentive_fcn3_like("AttentiveFCN3", num_classes, feature_sizes, inner_size, dropout)


@register("AttentiveFCN4", kind=VIDEO)
def attentive_fcn4(
  num_classes: int = 3862, feature_sizes=(1024, 128), inner_size: int = 4096, dropout: float = 0.3
) -> keras.Model:
  return _attentive_fcn3_like(
    "AttentiveFCN4", num_classes, feature_sizes, inner_size, dropout, gate_activation="softmax"
  )


@register("AttentiveFCN5", kind=VIDEO)
def attentive_fcn5(
  num_classes: int = 3862, feature_sizes=(1024, 128), inner_size: int = 4096, dropout: float = 0.3
) -> keras.Model:
  inputs, x = _concat_inputs(feature_sizes)
  x = _dense(x, inner_size, name="fc1")  # no activation
  x = FeatureSort(name="sort_features")(x)
  x = _dense(x, inner_size, name="fc2", activation="relu")
  x = _self_gate(x)
  x = _dropout(x, dropout)
  logits = _dense(x, num_classes, name="logits")
  return keras.Model(inputs, logits, name="AttentiveFCN5")


@register("AttentiveFCN6", kind=VIDEO)
def attentive_fcn6(
  num_classes: int = 3862, feature_sizes=(1024, 128), inner_size: int = 4096, dropout: float = 0.3
) -> keras.Model:
  inputs, x = _concat_inputs(feature_sizes)
  x = _dense(x, inner_size, name="fc1", activation="relu")
  x = _dense(x, inner_size, name="fc2")
  x = keras.layers.ReLU(name="bn1_relu")(_batch_norm(x, "bn1"))
  x = keras.layers.ReLU(name="fc4_relu")(_residual(x, "fc4"))
  x = _self_gate(x)
  x = _dropout(x, dropout)
  logits = _dense(x, num_classes, name="logits")
  return keras.Model(inputs, logits, name="AttentiveFCN6")


@register("AttentiveFCN7", kind=VIDEO)
def attentive_fcn7(
  num_classes: int = 3862, feature_sizes=(1024, 128), inner_size: int = 4096, dropout: float = 0.3
) -> keras.Model:
  inputs, x = _concat_inputs(feature_sizes)
  x = _dense(x, inner_size, name="fc1", activation="relu")
  x = _dense(x, inner_size, name="fc2")
  x = keras.layers.ReLU(name="bn1_relu")(_batch_norm(x, "bn1"))
  x = keras.layers.ReLU(name="bn2_relu")(_batch_norm(_residual(x, "fc4"), "bn2"))
  x = keras.layers.ReLU(name="bn3_relu")(_batch_norm(_residual(x, "fc5"), "bn3"))
  x = _self_gate(x)
  x = _dropout(x, dropout)
  logits = _dense(x, num_classes, name="logits")
  return keras.Model(inputs, logits, name="AttentiveFCN7")
