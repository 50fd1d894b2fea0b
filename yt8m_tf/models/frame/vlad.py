"""VLAD-family frame pooling: WILLOW's NetVLAD / NetRVLAD / NetFV (peers.md §D) and NeXtVLAD (§C).

Layers (each takes frames [B, T, N] and the frame mask [B, T], returns a video vector [B, D]):

  NetVLAD    a_k(x_t) = softmax_k(BN(W x_t)); V_jk = sum_t a_k(x_t) (x_tj - c_jk);
             intra-L2 over j, flatten (index j*K + k), global L2.                      D = N*K
  NetRVLAD   the same without centers: V_jk = sum_t a_k(x_t) x_tj.                      D = N*K
  NetFV      sigma_jk = w_jk^2 + 1e-6; FV1_jk = sum_t a_k (x_tj - c_jk) / sigma_jk;
             FV2_jk = sum_t a_k ((x_tj - c_jk)^2 / sigma_jk^2 - 1); each intra- and globally
             L2-normalized, concatenated [FV1, FV2].                                     D = 2*N*K
  NeXtVLAD   x' = W_e x + b_e (lambda*N); alpha_g = sigmoid(w_g.x' + b_g) * mask; cluster logits
             x' W_c (G*K, no bias) -> BN -> softmax over K per group; residuals of the G group
             slices x~^g (lambda*N/G) against centers c [lambda*N/G, K], summed over t and g with
             weight alpha_g * alpha_gk; intra-L2 over j, flatten, BN.                   D = K*lambda*N/G

Masking. Each pooling layer first sets padded frames to exactly 0 (`where`, so even NaN padding
cannot leak), and padded frames get zero assignment weight (the soft assignment, and for NeXtVLAD
the group attention, is multiplied by the frame mask), so they never enter a sum. The batch
normalization of the per-frame cluster logits (and WILLOW's input BN of the frames) is
`MaskedBatchNormalization`: in training its mean and variance are moments over (batch, time) over
real frames only, and the moving averages are updated from those moments (skipped for a batch
without any real frame); at inference it uses the moving averages, a per-frame affine map. A
video's output therefore never depends on what its padding holds, in inference or in training
(where padding also cannot shift the statistics seen by the other videos of the batch). BN layers
on video-level vectors (hidden, gating, vlad_bn, probability gating) are ordinary
`keras.layers.BatchNormalization`. (The originals' BNs saw every sampled/padded row.)

No frame sampling: every model pools all `num_frames` real frames, so inference is deterministic
(WILLOW sampled `iterations` frames with replacement, also at inference).

Models (registered, kind FRAME; inputs rgb [B,T,1024], audio [B,T,128], num_frames [B]; output logits):

  NetVLADModel / NetRVLADModel / NetFVModel (WILLOW's NetVLADModelLF / --lightvlad / NetFVModelLF):
    masked input BN per modality -> pooling (rgb K clusters, audio K//2) -> concat -> FC H
    (BN if add_batch_norm and relu, else bias) -> [ReLU6 if relu] -> [context gating] ->
    MoE (num_mixtures) or logistic -> [probability gating p <- p * sigmoid(BN(p W_p))] -> logits.
    Defaults follow WILLOW's published "gated ... norelu ... gatedmoe" commands (relu False,
    gating True, MoE 2 mixtures, moe_l2 1e-6, prob gating on, fv_couple_weights False) with the
    flag defaults K=64, H=1024 (the published K=256 NetVLAD/NetRVLAD and K=128 NetFV have ~321M
    parameters, 1.29 GB in float32, over the 1 GB budget; pass cluster_size to get them).
    Parameters at the defaults (the 2018 classes, trainable + BN moving statistics): NetVLADModel
    107.2M, NetRVLADModel 107.1M, NetFVModel 178.6M; published K: 321.5M / 321.2M / 321.4M.
    One deviation: WILLOW's NetFV L2-normalizes its flattened FV2 twice (no intra-normalization);
    here, as peers.md states it, FV2 is intra-normalized like FV1.
  NeXtVLADModel (linrongc NeXtVLADModel + LogisticModel): NeXtVLAD rgb (K, G) and audio (K//2, G//2),
    expansion lambda -> concat -> dropout -> FC H (no bias) -> BN -> SE gating
    h * sigmoid(W_2 ReLU(BN(W_1 h))) (reduction r) -> logistic (L2 on weights and biases).
    88,889,378 trainable parameters at K=128, H=2048, G=8, lambda=2, r=8 (peers.md: 88.9M);
    78,643,170 at K=112, r=16 (78.6M); plus 80,896 BN moving statistics. Its input preprocessing
    (PCA-eigenvalue rescaling of rgb instead of the starter's features as read) is a data transform,
    not part of this model.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from yt8m_tf.data.schema import Schema
from yt8m_tf.models.heads import check_classifier, classifier_head, logistic_head
from yt8m_tf.models.inputs import masked_frame_inputs
from yt8m_tf.models.layers import OUTPUT_DTYPE, ContextGating, MaskedBatchNormalization, zero_padded
from yt8m_tf.models.registry import FRAME, register, register_variant

_L2_EPSILON = 1e-12  # tf.nn.l2_normalize's default


def l2_normalize(x, axis):
  """x / max(||x||, 1e-6) along `axis`, as tf.nn.l2_normalize (a zero vector stays zero)."""
  return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), _L2_EPSILON))


class _WillowPooling(keras.layers.Layer):
  """Shared by NetVLAD/NetRVLAD/NetFV: a_k(x_t) = softmax_k(BN(W x_t)) (or W x_t + b), 0 on padding.

  Initialization as WILLOW: N(0, 1/sqrt(N)) for the cluster weights (and biases, and centers).
  """

  def __init__(self, cluster_size: int, add_batch_norm: bool = True, bn_momentum: float = 0.99, **kwargs):
    super().__init__(**kwargs)
    self.cluster_size = int(cluster_size)
    self.add_batch_norm = add_batch_norm
    self.bn_momentum = float(bn_momentum)

  def _normal(self, feature_size, mean=0.0):
    return keras.initializers.RandomNormal(mean=mean, stddev=1.0 / math.sqrt(feature_size))

  def build(self, input_shape):
    n = int(input_shape[-1])
    self.feature_size = n
    self.cluster_weights = self.add_weight(
      name="cluster_weights", shape=(n, self.cluster_size), initializer=self._normal(n)
    )
    if self.add_batch_norm:
      self.cluster_bn = MaskedBatchNormalization(momentum=self.bn_momentum, name="cluster_bn")
      self.cluster_bn.build(tuple(input_shape[:-1]) + (self.cluster_size,))
    else:
      self.cluster_biases = self.add_weight(
        name="cluster_biases", shape=(self.cluster_size,), initializer=self._normal(n)
      )
    self._build_pooling(n)

  def _build_pooling(self, n):
    pass

  def _assignment(self, x, mask, training):
    """Soft assignment [B, T, K], 0 on padded frames (callers pass x through zero_padded first)."""
    logits = ops.matmul(x, self.cluster_weights)  # [B, T, K]
    if self.add_batch_norm:
      logits = self.cluster_bn(logits, mask, training=training)
    else:
      logits = logits + self.cluster_biases
    return ops.softmax(logits, axis=-1) * ops.expand_dims(ops.cast(mask, logits.dtype), -1)

  @staticmethod
  def _weighted_sum(assignment, x):
    """sum_t a_k(x_t) x_tj -> [B, N, K]."""
    return ops.matmul(ops.transpose(x, (0, 2, 1)), assignment)

  def _output_dim(self, n):
    return n * self.cluster_size

  def compute_output_shape(self, x_shape, mask_shape=None):
    return (x_shape[0], self._output_dim(int(x_shape[-1])))

  def get_config(self):
    return {
      **super().get_config(),
      "cluster_size": self.cluster_size,
      "add_batch_norm": self.add_batch_norm,
      "bn_momentum": self.bn_momentum,
    }


@keras.saving.register_keras_serializable(package="yt8m_tf")
class NetVLAD(_WillowPooling):
  """WILLOW NetVLAD: V_jk = sum_t a_k(x_t)(x_tj - c_jk), intra-L2 over j, flatten, global L2."""

  def _build_pooling(self, n):
    self.centers = self.add_weight(
      name="cluster_centers", shape=(n, self.cluster_size), initializer=self._normal(n)
    )

  def call(self, x, mask, training=None):
    x = zero_padded(x, mask)
    a = self._assignment(x, mask, training)
    vlad = self._weighted_sum(a, x) - ops.expand_dims(ops.sum(a, axis=1), 1) * self.centers
    vlad = l2_normalize(vlad, axis=1)
    return l2_normalize(ops.reshape(vlad, (-1, self.feature_size * self.cluster_size)), axis=1)


@keras.saving.register_keras_serializable(package="yt8m_tf")
class NetRVLAD(_WillowPooling):
  """WILLOW NetRVLAD (LightVLAD): V_jk = sum_t a_k(x_t) x_tj, intra-L2, flatten, global L2."""

  def call(self, x, mask, training=None):
    x = zero_padded(x, mask)
    vlad = l2_normalize(self._weighted_sum(self._assignment(x, mask, training), x), axis=1)
    return l2_normalize(ops.reshape(vlad, (-1, self.feature_size * self.cluster_size)), axis=1)


@keras.saving.register_keras_serializable(package="yt8m_tf")
class NetFV(_WillowPooling):
  """WILLOW NetFV: first- and second-order Fisher-vector-like pooling, [FV1, FV2] of size 2*N*K.

  sigma = w^2 + 1e-6 with w ~ N(1, 1/sqrt(N)). `couple_weights` ties the centers to
  `coupling_factor` * cluster_weights (WILLOW's flag default; its published configs untie them,
  our default). Both halves are intra-L2-normalized over j, flattened, then globally L2-normalized.
  """

  def __init__(
    self,
    cluster_size: int,
    add_batch_norm: bool = True,
    couple_weights: bool = False,
    coupling_factor: float = 0.01,
    bn_momentum: float = 0.99,
    **kwargs,
  ):
    super().__init__(cluster_size, add_batch_norm, bn_momentum, **kwargs)
    self.couple_weights = couple_weights
    self.coupling_factor = coupling_factor

  def _build_pooling(self, n):
    self.covar_weights = self.add_weight(
      name="covar_weights", shape=(n, self.cluster_size), initializer=self._normal(n, mean=1.0)
    )
    if not self.couple_weights:
      self.centers = self.add_weight(
        name="cluster_centers", shape=(n, self.cluster_size), initializer=self._normal(n)
      )

  def _output_dim(self, n):
    return 2 * n * self.cluster_size

  def call(self, x, mask, training=None):
    x = zero_padded(x, mask)
    a = self._assignment(x, mask, training)
    centers = self.coupling_factor * self.cluster_weights if self.couple_weights else self.centers
    sigma = ops.square(self.covar_weights) + 1e-6
    a_sum = ops.expand_dims(ops.sum(a, axis=1), 1)  # [B, 1, K]
    first = self._weighted_sum(a, x)  # sum_t a x      [B, N, K]
    second = self._weighted_sum(a, ops.square(x))  # sum_t a x^2    [B, N, K]
    fv1 = (first - a_sum * centers) / sigma
    fv2 = (second - 2.0 * centers * first + a_sum * ops.square(centers)) / ops.square(sigma) - a_sum
    flat = self.feature_size * self.cluster_size
    fv1 = l2_normalize(ops.reshape(l2_normalize(fv1, axis=1), (-1, flat)), axis=1)
    fv2 = l2_normalize(ops.reshape(l2_normalize(fv2, axis=1), (-1, flat)), axis=1)
    return ops.concatenate([fv1, fv2], axis=1)

  def get_config(self):
    return {
      **super().get_config(),
      "couple_weights": self.couple_weights,
      "coupling_factor": self.coupling_factor,
    }


@keras.saving.register_keras_serializable(package="yt8m_tf")
class NeXtVLAD(keras.layers.Layer):
  """NeXtVLAD (peers.md §C), one modality: [B, T, N] + mask [B, T] -> [B, K * lambda*N/G].

  Expansion and group attention are dense layers with biases (slim.fully_connected), every weight is
  variance-scaling (he_normal) initialized as in linrongc's code. The cluster-logit BN is masked
  (see module docstring; the original's BN saw the padded frames); `vlad_bn` is ordinary BN.
  """

  def __init__(
    self, cluster_size: int, groups: int = 8, expansion: int = 2, bn_momentum: float = 0.99, **kwargs
  ):
    super().__init__(**kwargs)
    self.cluster_size = int(cluster_size)
    self.groups = int(groups)
    self.expansion = int(expansion)
    self.bn_momentum = float(bn_momentum)

  def build(self, input_shape):
    n = int(input_shape[-1])
    self.expanded_size = self.expansion * n
    if self.expanded_size % self.groups:
      raise ValueError(f"expansion*N = {self.expanded_size} is not divisible by groups = {self.groups}")
    self.group_size = self.expanded_size // self.groups
    frames_shape = tuple(input_shape[:-1])
    self.expand = keras.layers.Dense(self.expanded_size, kernel_initializer="he_normal", name="expansion")
    self.expand.build(input_shape)
    self.attention = keras.layers.Dense(
      self.groups, activation="sigmoid", kernel_initializer="he_normal", name="group_attention"
    )
    self.attention.build(frames_shape + (self.expanded_size,))
    self.cluster_weights = self.add_weight(
      name="cluster_weights",
      shape=(self.expanded_size, self.groups * self.cluster_size),
      initializer="he_normal",
    )
    self.cluster_bn = MaskedBatchNormalization(momentum=self.bn_momentum, name="cluster_bn")
    self.cluster_bn.build(frames_shape + (self.groups * self.cluster_size,))
    self.centers = self.add_weight(
      name="cluster_centers", shape=(self.group_size, self.cluster_size), initializer="he_normal"
    )
    self.vlad_bn = keras.layers.BatchNormalization(momentum=self.bn_momentum, name="vlad_bn")
    self.vlad_bn.build((input_shape[0], self.output_dim))

  @property
  def output_dim(self):
    return self.cluster_size * self.group_size

  def call(self, x, mask, training=None):
    max_frames = ops.shape(x)[1]  # static when known, else a scalar tensor (e.g. from a tf.data pipeline)
    mask = ops.cast(mask, x.dtype)
    expanded = self.expand(zero_padded(x, mask))  # [B, T, lambda*N]
    attention = self.attention(expanded) * ops.expand_dims(mask, -1)  # [B, T, G]
    logits = self.cluster_bn(ops.matmul(expanded, self.cluster_weights), mask, training=training)
    logits = ops.reshape(logits, (-1, max_frames, self.groups, self.cluster_size))
    assignment = ops.softmax(logits, axis=-1) * ops.expand_dims(attention, -1)  # [B, T, G, K]
    assignment = ops.reshape(assignment, (-1, max_frames * self.groups, self.cluster_size))
    grouped = ops.reshape(expanded, (-1, max_frames * self.groups, self.group_size))
    vlad = ops.matmul(ops.transpose(grouped, (0, 2, 1)), assignment)  # [B, lambda*N/G, K]
    vlad = vlad - ops.expand_dims(ops.sum(assignment, axis=1), 1) * self.centers
    vlad = ops.reshape(l2_normalize(vlad, axis=1), (-1, self.output_dim))
    return self.vlad_bn(vlad, training=training)

  def compute_output_shape(self, x_shape, mask_shape=None):
    n = int(x_shape[-1])
    return (x_shape[0], self.cluster_size * self.expansion * n // self.groups)

  def get_config(self):
    return {
      **super().get_config(),
      "cluster_size": self.cluster_size,
      "groups": self.groups,
      "expansion": self.expansion,
      "bn_momentum": self.bn_momentum,
    }


@keras.saving.register_keras_serializable(package="yt8m_tf")
class SEContextGating(keras.layers.Layer):
  """NeXtVLAD's gating: h * sigmoid(W_2 ReLU(BN(W_1 h))), W_1: H x H/r, W_2: H/r x H, no biases."""

  def __init__(self, reduction: int = 8, bn_momentum: float = 0.99, **kwargs):
    super().__init__(**kwargs)
    self.reduction = int(reduction)
    self.bn_momentum = float(bn_momentum)

  def build(self, input_shape):
    width = int(input_shape[-1])
    self.squeeze = keras.layers.Dense(
      max(width // self.reduction, 1), use_bias=False, kernel_initializer="he_normal", name="gating_1"
    )
    self.squeeze.build(input_shape)
    self.norm = keras.layers.BatchNormalization(momentum=self.bn_momentum, name="gating_bn")
    self.norm.build((input_shape[0], self.squeeze.units))
    self.excite = keras.layers.Dense(width, use_bias=False, kernel_initializer="he_normal", name="gating_2")
    self.excite.build((input_shape[0], self.squeeze.units))

  def call(self, h, training=None):
    gates = ops.relu(self.norm(self.squeeze(h), training=training))
    return h * ops.sigmoid(self.excite(gates))

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "reduction": self.reduction, "bn_momentum": self.bn_momentum}


@keras.saving.register_keras_serializable(package="yt8m_tf")
class ProbabilityGating(keras.layers.Layer):
  """WILLOW's MoE probability gating on logits: p = sigmoid(z); p <- p * sigmoid(BN(p W_p)); logit(p).

  W_p is C x C, N(0, 1/sqrt(C)); p is clipped to [epsilon, 1 - epsilon] before the logit, as MoE.
  """

  def __init__(self, epsilon: float = 1e-7, bn_momentum: float = 0.99, **kwargs):
    super().__init__(**kwargs)
    self.epsilon = epsilon
    self.bn_momentum = float(bn_momentum)

  def build(self, input_shape):
    classes = int(input_shape[-1])
    self.gating_weights = self.add_weight(
      name="gating_prob_weights",
      shape=(classes, classes),
      initializer=keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(classes)),
    )
    self.norm = keras.layers.BatchNormalization(
      momentum=self.bn_momentum, name="gating_prob_bn", dtype=self.dtype_policy
    )
    self.norm.build(input_shape)

  def call(self, logits, training=None):
    probabilities = ops.sigmoid(logits)
    gates = ops.sigmoid(self.norm(ops.matmul(probabilities, self.gating_weights), training=training))
    probabilities = ops.clip(probabilities * gates, self.epsilon, 1.0 - self.epsilon)
    return ops.log(probabilities) - ops.log1p(-probabilities)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "epsilon": self.epsilon, "bn_momentum": self.bn_momentum}


def willow_model(
  schema: Schema,
  name: str,
  pooling: type[_WillowPooling],
  cluster_size: int = 64,
  hidden_size: int = 1024,
  add_batch_norm: bool = True,
  relu: bool = False,
  gating: bool = True,
  classifier: str = "moe",
  num_mixtures: int = 2,
  l2_penalty: float = 1e-6,
  probability_gating: bool = True,
  bn_momentum: float = 0.99,
  **pooling_params,
) -> keras.Model:
  """WILLOW's gated model around one pooling layer class (module docstring); `pooling_params` go to it.
  `bn_momentum`: of every BatchNorm (NeXtVLADModel's docstring says when to lower it)."""
  check_classifier(classifier)
  inputs, frames, mask = masked_frame_inputs(schema)
  pooled = []
  for i, (modality, x) in enumerate(frames.items()):
    if add_batch_norm:
      x = MaskedBatchNormalization(momentum=bn_momentum, name=f"{modality}_input_bn")(x, mask)
    clusters = cluster_size if i == 0 else max(cluster_size // 2, 1)
    layer = pooling(
      clusters,
      add_batch_norm=add_batch_norm,
      bn_momentum=bn_momentum,
      name=f"{modality}_pooling",
      **pooling_params,
    )
    pooled.append(layer(x, mask))
  h = keras.layers.Concatenate(name="concat_pooled")(pooled)
  hidden_bn = add_batch_norm and relu  # WILLOW: BN only with the ReLU, otherwise a bias
  h = keras.layers.Dense(
    hidden_size,
    use_bias=not hidden_bn,
    name="hidden",
    kernel_initializer=keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(cluster_size)),
    bias_initializer=keras.initializers.RandomNormal(stddev=0.01),
  )(h)
  if hidden_bn:
    h = keras.layers.BatchNormalization(momentum=bn_momentum, name="hidden_bn")(h)
  if relu:
    h = keras.layers.ReLU(max_value=6.0, name="relu6")(h)
  if gating:
    h = ContextGating(batch_norm=add_batch_norm, bn_momentum=bn_momentum, name="context_gating")(h)
  logits = classifier_head(h, schema.num_classes, classifier, num_mixtures, l2_penalty, regularize_bias=True)
  if probability_gating:
    logits = ProbabilityGating(bn_momentum=bn_momentum, name="probability_gating", dtype=OUTPUT_DTYPE)(logits)
  return keras.Model(inputs, logits, name=name)


# WILLOW's gated models: name -> (pooling layer, its extra params and their defaults). Published settings:
# Gated NetVLAD and NetRVLAD (--lightvlad) cluster_size=256, hidden_size=1024; Gated NetFV cluster_size=128,
# hidden_size=1024, fv_couple_weights=False.
WILLOW_MODELS = {
  "NetVLADModel": (NetVLAD, {}),
  "NetRVLADModel": (NetRVLAD, {}),
  "NetFVModel": (NetFV, {"couple_weights": False, "coupling_factor": 0.01}),
}
for _name, (_pooling, _pooling_params) in WILLOW_MODELS.items():
  register_variant(
    _name,
    FRAME,
    willow_model,
    fixed={"name": _name, "pooling": _pooling},
    any_features=True,
    **_pooling_params,
  )


@register("NeXtVLADModel", kind=FRAME, any_features=True)
def nextvlad_model(
  schema: Schema,
  cluster_size: int = 128,
  hidden_size: int = 2048,
  groups: int = 8,
  expansion: int = 2,
  gating_reduction: int = 8,
  drop_rate: float = 0.5,
  l2_penalty: float = 1e-5,
  bn_momentum: float = 0.99,
) -> keras.Model:
  """NeXtVLAD (linrongc, scripts/train_nextvlad_local.sh): rgb K clusters / G groups, audio K//2 / G//2.

  `bn_momentum` (every BN of the model): the L2-normalized VLAD has a per-dimension variance of ~1e-3
  to 1e-2, so its BN's moving variance, starting at 1, needs several hundred steps at 0.99 to come down;
  until then inference-mode outputs are several times too small (measured: 43x too large a moving
  variance after 182 steps). Short runs want ~0.9; the original (slim) used 0.999 over 100k+ steps.
  """
  inputs, frames, mask = masked_frame_inputs(schema)
  pooled = []
  for i, (modality, x) in enumerate(frames.items()):
    clusters, group_count = (
      (cluster_size, groups) if i == 0 else (max(cluster_size // 2, 1), max(groups // 2, 1))
    )
    pooled.append(
      NeXtVLAD(clusters, group_count, expansion, bn_momentum, name=f"{modality}_nextvlad")(x, mask)
    )
  h = keras.layers.Concatenate(name="concat_pooled")(pooled)
  if drop_rate > 0:
    h = keras.layers.Dropout(drop_rate, name="vlad_dropout")(h)
  h = keras.layers.Dense(hidden_size, use_bias=False, kernel_initializer="he_normal", name="hidden")(h)
  h = keras.layers.BatchNormalization(momentum=bn_momentum, name="hidden_bn")(h)
  h = SEContextGating(gating_reduction, bn_momentum, name="context_gating")(h)
  logits = logistic_head(h, schema.num_classes, l2_penalty, regularize_bias=True)
  return keras.Model(inputs, logits, name="NeXtVLADModel")
