"""Frame-level models that embed frames independently and pool them over time (seed_method.md §2.2,
peers.md §A.4). The masked layers they use are in models/layers.py, the heads in models/heads.py.

Inputs are `rgb` [B, T, 1024], `audio` [B, T, 128] zero-padded after `num_frames`; every model returns logits.
Masking: the [B, T] frame mask is built from `num_frames` (never inferred from zero frames, as the seed did).
Every time reduction here selects real frames with `where` (so even inf/NaN padding cannot leak through a
0-weight product), every BatchNormalization over frames gets the mask so that in training its batch moments come
from real frames only, and a temporal convolution sees zeros in place of padding. Inference is deterministic:
unlike the starter's DBoF, no model samples frames (sampling is a training-time augmentation of the input).

Models:
  FrameLevelLogistic      masked mean of concat(rgb, audio) -> Dense logits (the starter's model).
  DBoF                    starter DbofModel: input BN -> per-frame Dense(cluster_size, no bias) -> BN -> relu6
                          -> masked max (or mean) over frames -> Dense(hidden) -> BN -> relu6 -> MoE / logistic.
  SoftBoW (= VLADBoW)     seed BoWResnetLike: per modality s_t = softmax_K(f(Dense(K)(x_t))), histogram
                          = masked sum_t s_t, dropout, then the ResNetLike head on (audio_hist, video_hist).
  TimeDistributedPooling  per-frame Dense or masked Conv1D -> masked attention pooling -> FCN head.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
from keras import ops

from yt8m_tf.data.schema import Schema
from yt8m_tf.models.heads import ResNetLikeHead, classifier_head, fcn_head, logistic_head
from yt8m_tf.models.inputs import masked_frame_inputs
from yt8m_tf.models.layers import AttentionPooling, MaskedFramePooling, ZeroPadFrames
from yt8m_tf.models.registry import FRAME, register, register_variant


@keras.saving.register_keras_serializable(package="yt8m_tf")
class SoftAssignment(keras.layers.Layer):
  """Per-frame soft bag-of-words assignment s_t = softmax_K(f(W x_t + b)), [B, T, D] -> [B, T, K].

  Without `power`, f is the identity. With `power` p, f(z) = sign(z) * max(|z|, 1e-6)^p: the seed's z^p for
  odd integer p (its config 91 starts from p = 3), but defined for every real p, so a learnable power cannot
  produce NaN from a negative base the way the seed's did (seed_method.md §9). A learnable power is kept >= 0.
  """

  def __init__(self, num_clusters: int, power: float | None = None, learnable_power: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.supports_masking = True
    if learnable_power and power is None:
      raise ValueError("learnable_power needs an initial power")
    self.num_clusters = num_clusters
    self.power = power
    self.learnable_power = learnable_power
    self.logits = keras.layers.Dense(num_clusters, name="logits")

  def build(self, input_shape):
    self.logits.build(input_shape)
    if self.learnable_power:
      self.power_weight = self.add_weight(
        name="power",
        shape=(),
        initializer=keras.initializers.Constant(self.power),
        constraint=keras.constraints.NonNeg(),
      )

  def call(self, x):
    z = self.logits(x)
    if self.power is not None:
      power = self.power_weight if self.learnable_power else self.power
      z = ops.sign(z) * ops.power(ops.maximum(ops.abs(z), 1e-6), power)
    return ops.softmax(z, axis=-1)

  def compute_output_shape(self, input_shape):
    return (*input_shape[:-1], self.num_clusters)

  def get_config(self):
    return {
      **super().get_config(),
      "num_clusters": self.num_clusters,
      "power": self.power,
      "learnable_power": self.learnable_power,
    }


@register("FrameLevelLogistic", kind=FRAME, aliases=("FrameLevelLogisticModel",), any_features=True)
def frame_level_logistic(
  schema: Schema,
  l2_penalty: float = 1e-8,
) -> keras.Model:
  """The starter's FrameLevelLogisticModel: mean over the real frames -> Dense logits (L2 on the kernel)."""
  inputs, frames, mask = masked_frame_inputs(schema)
  x = keras.layers.Concatenate(name="concat_features")(list(frames.values()))
  x = MaskedFramePooling("mean", name="mean_pool")(x, mask)
  logits = logistic_head(x, schema.num_classes, l2_penalty)
  return keras.Model(inputs, logits, name="FrameLevelLogistic")


@register("DBoF", kind=FRAME, aliases=("DbofModel",), any_features=True)
def dbof(
  schema: Schema,
  cluster_size: int = 8192,
  hidden_size: int = 1024,
  pooling: str = "max",
  activation: str = "relu6",
  batch_norm: bool = True,
  classifier: str = "moe",
  num_mixtures: int = 2,
  l2_penalty: float = 1e-8,
  bn_momentum: float = 0.99,
) -> keras.Model:
  """The starter's DbofModel (2018: relu6, max pooling, MoE with 2 mixtures) on all real frames.

  `pooling` is "max", "mean" or "sum" over the real frames; `activation` any Keras activation ("relu6" in the
  2018 starter, "sigmoid" at its HEAD); `batch_norm=False` replaces every BN by a bias (the starter could not
  switch BN off); `classifier` "moe" (MixtureOfExperts, returns logits) or "logistic"; `bn_momentum`: of every
  BatchNorm.
  """
  inputs, frames, mask = masked_frame_inputs(schema)
  x = keras.layers.Concatenate(name="concat_features")(list(frames.values()))
  if batch_norm:
    x = keras.layers.BatchNormalization(momentum=bn_momentum, name="input_bn")(x, mask=mask)
  x = keras.layers.Dense(cluster_size, use_bias=not batch_norm, name="cluster_dense")(x)
  if batch_norm:
    x = keras.layers.BatchNormalization(momentum=bn_momentum, name="cluster_bn")(x, mask=mask)
  x = keras.layers.Activation(activation, name="cluster_act")(x)
  x = MaskedFramePooling(pooling, name=f"{pooling}_pool")(x, mask)
  x = keras.layers.Dense(hidden_size, use_bias=not batch_norm, name="hidden_dense")(x)
  if batch_norm:
    x = keras.layers.BatchNormalization(momentum=bn_momentum, name="hidden_bn")(x)
  x = keras.layers.Activation(activation, name="hidden_act")(x)
  logits = classifier_head(x, schema.num_classes, classifier, num_mixtures, l2_penalty)
  return keras.Model(inputs, logits, name="DBoF")


def soft_bow(
  schema: Schema,
  num_clusters: int = 1000,
  softmax_power: float | None = None,
  learnable_power: bool = False,
  bow_dropout: float = 0.4,
  **head_params,
) -> keras.Model:
  """The seed's BoWResnetLike ("VLADBoW", a soft bag of words).

  Per modality: s_t = SoftAssignment(num_clusters, softmax_power)(x_t); hist = sum over the real frames of s_t
  (unnormalised, as in the seed); Dropout(bow_dropout); then the ResNetLike head (`head_params`: the fields
  of `heads.ResNetLikeHead`, bn_momentum included; inner_size 1024 here) with audio first. Seed config 91:
  num_clusters=4096, softmax_power=3, learnable_power=True, bow_dropout=0.1.
  """
  inputs, frames, mask = masked_frame_inputs(schema)
  hists = {}
  for name, x in (("video", frames["rgb"]), ("audio", frames["audio"])):
    s = SoftAssignment(num_clusters, softmax_power, learnable_power, name=f"{name}_assign")(x)
    h = MaskedFramePooling("sum", name=f"{name}_hist")(s, mask)
    if bow_dropout > 0:
      h = keras.layers.Dropout(bow_dropout, name=f"{name}_hist_dropout")(h)
    hists[name] = h
  logits = ResNetLikeHead(**head_params)(hists["audio"], hists["video"], schema.num_classes)
  return keras.Model(inputs, logits, name="SoftBoW")


for _name in ("SoftBoW", "VLADBoW"):
  register_variant(_name, FRAME, soft_bow, **dataclasses.asdict(ResNetLikeHead(inner_size=1024)))


@register("TimeDistributedPooling", kind=FRAME, any_features=True)
def time_distributed_pooling(
  schema: Schema,
  projection: str = "dense",
  units: int = 1024,
  num_layers: int = 1,
  kernel_size: int = 3,
  batch_norm: bool = True,
  attention_heads: int = 1,
  hidden_sizes: Sequence[int] = (1024,),
  dropout: float = 0.0,
  bn_momentum: float = 0.99,
) -> keras.Model:
  """Per-frame embedding followed by a learned temporal pooling.

  concat(rgb, audio) -> num_layers x [Dense(units) ("dense") or Conv1D(units, kernel_size, 'same') ("conv")
  -> BN over real frames -> ReLU] -> attention pooling (masked softmax over time of Dense(attention_heads)
  scores, heads concatenated) -> FCN(hidden_sizes, dropout) -> logits. For "conv", padded frames are zeroed
  before every convolution (so the last real frames see the same zeros as at the end of an unpadded sequence)
  and after it (so nothing computed at a padded position is passed on). `bn_momentum`: of every BatchNorm.
  """
  if projection not in ("dense", "conv"):
    raise ValueError(f"projection must be 'dense' or 'conv', got {projection!r}")
  inputs, frames, mask = masked_frame_inputs(schema)
  x = keras.layers.Concatenate(name="concat_features")(list(frames.values()))
  for i in range(num_layers):
    if projection == "conv":
      x = ZeroPadFrames(name=f"zero_pad{i}")(x, mask)
      x = keras.layers.Conv1D(units, kernel_size, padding="same", use_bias=not batch_norm, name=f"conv{i}")(x)
    else:
      x = keras.layers.Dense(units, use_bias=not batch_norm, name=f"dense{i}")(x)
    if batch_norm:
      x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"bn{i}")(x, mask=mask)
    x = keras.layers.ReLU(name=f"relu{i}")(x)
  if projection == "conv":
    x = ZeroPadFrames(name="zero_pad_out")(x, mask)
  x = AttentionPooling(attention_heads, name="attention_pool")(x, mask)
  logits = fcn_head(x, schema.num_classes, hidden_sizes, dropout, name="head")
  return keras.Model(inputs, logits, name="TimeDistributedPooling")
