"""Early-concat fully connected models of the seed (seed_method.md §2.1): EarlyConcatFCN and AttentiveFCN*.

Every model here concatenates [mean_rgb, mean_audio] (1152 dims) first and ends in a Dense layer that
emits logits. "gate" is the self-gating of the AttentiveFCN family, h = h * sigmoid(Dense(h)(h)).

  EarlyConcatFCN   per hidden width: Dense -> Dropout -> ReLU (dropout before the activation, as the seed);
                   then Dense(num_classes): the seed's FCN (`heads.fcn_head`) on the concatenation
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

AttentiveFCN and AttentiveFCN3-7 are one builder (`attentive_fcn`) and a table of trunks (ATTENTIVE_FCN).
All hidden Dense layers are inner_size -> inner_size as in the seed's code. PyTorch defaults are kept:
nn.Linear's U(+-1/sqrt(fan_in)) init (`torch_dense`) and BatchNorm1d's momentum 0.1 (Keras 0.9) / eps 1e-5.
AttentiveFCN2's default inner_size is 2048, as in its only config (42) and the spec; the seed class default
was 4096.

Parameters at the defaults (the 2018 classes; BN moving statistics included): EarlyConcatFCN 6,188,822;
AttentiveFCN 37,326,614; AttentiveFCN2 46,123,922; AttentiveFCN3/4/5 54,107,926; AttentiveFCN6 70,905,622;
AttentiveFCN7 87,719,702.
"""

import dataclasses
from collections.abc import Sequence

import keras
from keras import ops

from yt8m_tf.data.schema import Schema
from yt8m_tf.models.heads import fcn_head
from yt8m_tf.models.inputs import concat_video_inputs
from yt8m_tf.models.layers import OUTPUT_DTYPE, torch_batch_norm, torch_dense
from yt8m_tf.models.registry import VIDEO, register, register_variant


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


def _dense(x, units: int, name: str, activation: str | None = None, dtype=None):
  x = torch_dense(units, x.shape[-1], name=name, dtype=dtype)(x)
  if activation:
    x = keras.layers.Activation(activation, name=f"{name}_{activation}")(x)
  return x


def _self_gate(x, name: str = "gate", activation: str = "sigmoid"):
  """x * activation(Dense(x)); the Dense maps the last axis to itself."""
  weights = _dense(x, x.shape[-1], name=name, activation=activation)
  return keras.layers.Multiply(name=f"{name}_multiply")([x, weights])


def _residual(x, name: str):
  """x + Dense(x)(x), no activation (the seed's `layer(x) + x`)."""
  return keras.layers.Add(name=f"{name}_add")([_dense(x, x.shape[-1], name=name), x])


@register("EarlyConcatFCN", kind=VIDEO, any_features=True)
def early_concat_fcn(
  schema: Schema, inner_sizes: Sequence[int] = (1024, 1024), dropout: float = 0.0
) -> keras.Model:
  inputs, x = concat_video_inputs(schema)
  logits = fcn_head(
    x, schema.num_classes, inner_sizes, dropout, layer_names=("fc{n}", "fc{n}_dropout", "fc{n}_relu")
  )
  return keras.Model(inputs, logits, name="EarlyConcatFCN")


@register("AttentiveFCN2", kind=VIDEO, any_features=True)
def attentive_fcn2(schema: Schema, inner_size: int = 2048, n_heads: int = 5) -> keras.Model:
  num_classes = schema.num_classes
  inputs, x = concat_video_inputs(schema)
  x = _dense(x, inner_size, name="fc1", activation="relu")
  x = _dense(x, inner_size, name="fc2", activation="relu")
  x = _dense(x, n_heads * num_classes, name="fc3", activation="relu")
  # Row-major, like torch's view(-1, C, n_heads): head h of class c is column c * n_heads + h.
  x = keras.layers.Reshape((num_classes, n_heads), name="heads")(x)
  x = _self_gate(x)  # Dense(n_heads -> n_heads) on the last axis, shared by all classes
  x = _dense(x, 1, name="head_output", dtype=OUTPUT_DTYPE)
  logits = keras.layers.Reshape((num_classes,), name="logits", dtype=OUTPUT_DTYPE)(x)
  return keras.Model(inputs, logits, name="AttentiveFCN2")


@dataclasses.dataclass(frozen=True)
class AttentiveTrunk:
  """Where the gated AttentiveFCNs differ: fc1 -> [sort] -> [fc2 -> [BN]] -> residuals -> gate."""

  fc1_activation: str | None = "relu"
  sort_features: bool = False  # sort fc1's outputs ascending before fc2
  fc2: bool = True
  fc2_batch_norm: bool = False  # ReLU(BN(fc2)) instead of ReLU(fc2)
  residuals: int = 0  # x + fc(x) blocks, named fc4, fc5, ... each followed by ReLU
  residual_batch_norm: bool = False  # ReLU(BN(x + fc(x))) instead of ReLU(x + fc(x))
  gate_activation: str = "sigmoid"


def attentive_fcn(
  schema: Schema,
  name: str,
  trunk: AttentiveTrunk,
  inner_size: int = 4096,
  dropout: float = 0.3,
  bn_momentum: float = 0.9,
) -> keras.Model:
  """The gated AttentiveFCN family: concat -> `trunk` (every Dense inner_size wide) -> Dropout -> logits.
  `bn_momentum`: of every BatchNorm of the trunk (0.9: PyTorch's default)."""
  inputs, x = concat_video_inputs(schema)
  x = _dense(x, inner_size, name="fc1", activation=trunk.fc1_activation)
  if trunk.sort_features:
    x = FeatureSort(name="sort_features")(x)
  if trunk.fc2:
    x = _dense(x, inner_size, name="fc2", activation=None if trunk.fc2_batch_norm else "relu")
    if trunk.fc2_batch_norm:
      x = keras.layers.ReLU(name="bn1_relu")(torch_batch_norm("bn1", bn_momentum)(x))
  for i in range(trunk.residuals):
    x = _residual(x, f"fc{i + 4}")
    if trunk.residual_batch_norm:
      x = keras.layers.ReLU(name=f"bn{i + 2}_relu")(torch_batch_norm(f"bn{i + 2}", bn_momentum)(x))
    else:
      x = keras.layers.ReLU(name=f"fc{i + 4}_relu")(x)
  x = _self_gate(x, activation=trunk.gate_activation)
  if dropout > 0:
    x = keras.layers.Dropout(dropout, name="dropout")(x)
  logits = _dense(x, schema.num_classes, name="logits", dtype=OUTPUT_DTYPE)
  return keras.Model(inputs, logits, name=name)


# The seed's gated AttentiveFCNs (3-7), each registered with its trunk bound, taking the family's params.
ATTENTIVE_FCN = {
  "AttentiveFCN3": AttentiveTrunk(),
  "AttentiveFCN4": AttentiveTrunk(gate_activation="softmax"),
  "AttentiveFCN5": AttentiveTrunk(fc1_activation=None, sort_features=True),
  "AttentiveFCN6": AttentiveTrunk(fc2_batch_norm=True, residuals=1),
  "AttentiveFCN7": AttentiveTrunk(fc2_batch_norm=True, residuals=2, residual_batch_norm=True),
}
for _name, _trunk in ATTENTIVE_FCN.items():
  register_variant(_name, VIDEO, attentive_fcn, fixed={"name": _name, "trunk": _trunk}, any_features=True)
# The first AttentiveFCN has neither fc2 nor dropout in the seed, hence no dropout param.
register_variant(
  "AttentiveFCN",
  VIDEO,
  attentive_fcn,
  fixed={"name": "AttentiveFCN", "trunk": AttentiveTrunk(fc2=False), "dropout": 0.0},
  any_features=True,
)
