"""Losses on logits: the seed's BCE and rank losses, the starter's per-example-sum losses, target mixing.

Every loss takes `(y_true, logits)`: `y_true` float [B, C], multi-hot or soft in [0, 1]; `logits` [B, C]
(the models output logits, never probabilities). They are Keras 3 losses, usable in `model.compile` and
serializable by name (`package="yt8m_tf"`); `get_loss(name, **params)` builds one from a config.

Two kinds (C = classes, B = batch):

* Per-example losses return a [B] vector that Keras reduces (default: mean over the batch), so
  `sample_weight` works. `BinaryCrossEntropy` (mean over C, hence the mean over all B*C elements:
  the seed's `F.binary_cross_entropy_with_logits`), the starter-code losses (a SUM over C per example),
  `LabelsTagsBCE` and `MSE`.
* Batch-level rank losses (the seed's `utils/losses.py`) pair every positive of the whole batch with the
  30*B hardest negatives of the whole batch, so they return one scalar and reject `sample_weight`. They
  gather a data-dependent number of positives (`tf.boolean_mask`). XLA does compile that, but pads the
  positives to their bound B*C, so memory grows as B*C*30B (measured: 4.5 GB at B=64 with the 2018 classes, against
  a few MB without XLA): compile with `jit_compile=False` (these classes have `supports_jit = False`;
  see `loss_supports_jit`). Under a `tf.distribute` strategy they are computed per replica, over the
  replica's own batch, and each replica's value is divided by the number of replicas (so the global
  loss is the mean over replicas, like the per-example losses).

Seed definitions (twoleggedeye/youtube8m `youtube8m/utils/losses.py`), with s the logits flattened over
the batch, P = {(b, c): y > 0} the positives, N = {(b, c): y <= 0} the negatives, and
H = the min(30*B, |N|) highest-scoring negatives of the whole batch ("hardest"):
  soft_ranking_loss                 mean over pairs (p, n) in P x H with s_n != s_p of softplus(s_n - s_p + 1)
  sigmoid_ranking_loss_with_logits  mean over P x H of log(1 + sigmoid(s_n - s_p))
  lsep_loss                         log(1 + mean over P x H of exp(s_n - s_p))
  bce_with_soft_rank_with_logits    BCE (mean over B*C) + 0.1 * soft_ranking_loss
A positive is any class with target > 0 (so soft targets count as positives wherever they are non-zero).
The seed code raises when |N| < 30*B and returns NaN when no pair exists; here H is clipped to |N| and a
batch without pairs gives loss 0.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Dict, Type

import keras
import tensorflow as tf

from yt8m_tf.data.schema import NUM_CLASSES_2018

# Starter-code epsilons: CrossEntropyLoss `epsilon = 10e-6` (= 1e-5); SoftmaxLoss `epsilon = 10e-8` (= 1e-7).
STARTER_CE_EPSILON = 1e-5
STARTER_SOFTMAX_EPSILON = 1e-7
TOP_NEG_COUNT = 30  # seed: hardest negatives per example in the batch (top_neg_count * B in all)


def _float(x):
  x = tf.convert_to_tensor(x)
  return x if x.dtype == tf.float32 else tf.cast(x, tf.float32)


class _Loss(keras.losses.Loss):
  """Base: float32 maths whatever the model's compute dtype, params in `get_config`."""

  supports_jit = True

  def __init__(self, name=None, reduction="sum_over_batch_size", dtype="float32"):
    super().__init__(name=name, reduction=reduction, dtype=dtype)

  def _params(self) -> Dict[str, object]:
    return {}

  def get_config(self):
    return {**super().get_config(), **self._params()}


class _BatchLoss(_Loss):
  """A loss over the whole batch at once: one scalar, no per-example weights.

  Under a tf.distribute strategy with N replicas each replica returns its loss divided by N, as Keras
  does for the per-example losses (which it divides itself; it leaves a scalar alone), so the replicas'
  shares sum to the mean of their losses and the summed gradients match that mean.
  """

  def __call__(self, y_true, y_pred, sample_weight=None):
    if sample_weight is not None:
      raise ValueError(
        f"{type(self).__name__} is a batch-level loss (pairs across the whole batch); "
        "sample_weight is not supported."
      )
    loss = super().__call__(y_true, y_pred)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss if replicas == 1 else loss / tf.cast(replicas, loss.dtype)


# ---------------------------------------------------------------------------------------------------
# Per-example losses


@keras.saving.register_keras_serializable(package="yt8m_tf")
class BinaryCrossEntropy(_Loss):
  """BCE with logits, mean over the C classes per example -> Keras mean over the batch = mean over B*C.

  The seed's `F.binary_cross_entropy_with_logits` (76 of 113 configs). Stable form
  `max(x, 0) - x*y + log(1 + exp(-|x|))` (`tf.nn.sigmoid_cross_entropy_with_logits`).
  """

  def call(self, y_true, logits):
    losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=_float(y_true), logits=_float(logits))
    return tf.reduce_mean(losses, axis=-1)


def _bce_mean(y_true, logits):
  return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y_true, logits=logits))


@keras.saving.register_keras_serializable(package="yt8m_tf")
class StarterCrossEntropy(_Loss):
  """The starter's CrossEntropyLoss on p = sigmoid(logits), summed over classes, mean over the batch.

  per example: -sum_c [y log(p + eps) + (1 - y) log(1 - p + eps)], eps = 1e-5 (the starter's `10e-6`).
  The loss the distilled EnsembleModel was trained with. `1 - p` is computed as `sigmoid(-logits)`
  (the same value, without the cancellation of 1 - sigmoid(x) for large x).
  """

  def __init__(self, epsilon: float = STARTER_CE_EPSILON, **kwargs):
    super().__init__(**kwargs)
    self.epsilon = float(epsilon)

  def _params(self):
    return {"epsilon": self.epsilon}

  def call(self, y_true, logits):
    y, x = _float(y_true), _float(logits)
    losses = -(
      y * tf.math.log(tf.sigmoid(x) + self.epsilon) + (1.0 - y) * tf.math.log(tf.sigmoid(-x) + self.epsilon)
    )
    return tf.reduce_sum(losses, axis=-1)


@keras.saving.register_keras_serializable(package="yt8m_tf")
class StarterHinge(_Loss):
  """The starter's HingeLoss on p = sigmoid(logits): per example sum_c max(0, b - (2y - 1) p), b = 1."""

  def __init__(self, b: float = 1.0, **kwargs):
    super().__init__(**kwargs)
    self.b = float(b)

  def _params(self):
    return {"b": self.b}

  def call(self, y_true, logits):
    sign = 2.0 * _float(y_true) - 1.0
    return tf.reduce_sum(tf.nn.relu(self.b - sign * tf.sigmoid(_float(logits))), axis=-1)


@keras.saving.register_keras_serializable(package="yt8m_tf")
class StarterSoftmax(_Loss):
  """The starter's SoftmaxLoss: y~ = y / max(sum_c y, 1e-7); per example -sum_c y~_c log softmax(z)_c.

  The starter applied the softmax to its models' sigmoid outputs; here z = logits by default
  (`on_probabilities=False`), or z = sigmoid(logits) to reproduce the starter exactly.
  """

  def __init__(self, on_probabilities: bool = False, epsilon: float = STARTER_SOFTMAX_EPSILON, **kwargs):
    super().__init__(**kwargs)
    self.on_probabilities = bool(on_probabilities)
    self.epsilon = float(epsilon)

  def _params(self):
    return {"on_probabilities": self.on_probabilities, "epsilon": self.epsilon}

  def call(self, y_true, logits):
    y, z = _float(y_true), _float(logits)
    if self.on_probabilities:
      z = tf.sigmoid(z)
    y = y / tf.maximum(tf.reduce_sum(y, axis=-1, keepdims=True), self.epsilon)
    return -tf.reduce_sum(y * tf.nn.log_softmax(z, axis=-1), axis=-1)


@keras.saving.register_keras_serializable(package="yt8m_tf")
class LabelsTagsBCE(_Loss):
  """Seed `bce_with_logits_labels_tags`: lw * BCE(first num_labels columns) + tw * BCE(the rest).

  For the 3887-column targets (the 2018 labels + 25 vertical tags); each BCE is a mean over its columns.
  The seed's config uses `bce_with_logits_labels1_tags2` (lw = 1, tw = 2).
  """

  def __init__(
    self, num_labels: int = NUM_CLASSES_2018, labels_weight: float = 1.0, tags_weight: float = 2.0, **kwargs
  ):
    super().__init__(**kwargs)
    self.num_labels = int(num_labels)
    self.labels_weight = float(labels_weight)
    self.tags_weight = float(tags_weight)

  def _params(self):
    return {
      "num_labels": self.num_labels,
      "labels_weight": self.labels_weight,
      "tags_weight": self.tags_weight,
    }

  def call(self, y_true, logits):
    losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=_float(y_true), logits=_float(logits))
    k = self.num_labels
    return self.labels_weight * tf.reduce_mean(losses[:, :k], axis=-1) + self.tags_weight * tf.reduce_mean(
      losses[:, k:], axis=-1
    )


@keras.saving.register_keras_serializable(package="yt8m_tf")
class MSE(_Loss):
  """Seed `mse_loss` (`F.mse_loss` on the model output, i.e. on logits): mean over C of (x - y)^2.

  `on_probabilities=True` uses sigmoid(logits) instead.
  """

  def __init__(self, on_probabilities: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.on_probabilities = bool(on_probabilities)

  def _params(self):
    return {"on_probabilities": self.on_probabilities}

  def call(self, y_true, logits):
    x = _float(logits)
    if self.on_probabilities:
      x = tf.sigmoid(x)
    return tf.reduce_mean(tf.square(x - _float(y_true)), axis=-1)


# ---------------------------------------------------------------------------------------------------
# Batch-level rank losses


def hardest_negative_pairs(
  y_true, logits, top_neg_count: int = TOP_NEG_COUNT, positive_threshold: float = 0.0
):
  """Seed `_get_pos_neg_scores_diff`: `diff[p, n] = s_n - s_p` for every batch positive p and each of
  the `top_neg_count * B` highest-scoring batch negatives n.

  Returns (diff [P, K], valid [P, K] bool). K = min(top_neg_count * B, B * C); a column is invalid when
  fewer than K negatives exist (the seed would raise there). Positives are `y_true > positive_threshold`.
  Gradients flow through both scores; the choice of the hardest negatives does not.
  """
  y = tf.reshape(_float(y_true), [-1])
  s = tf.reshape(_float(logits), [-1])
  batch = tf.shape(logits)[0]
  positive = y > positive_threshold
  k = tf.minimum(top_neg_count * batch, tf.size(s))
  negative_key = tf.where(positive, tf.constant(-float("inf")), tf.stop_gradient(s))
  _, neg_index = tf.math.top_k(negative_key, k=k, sorted=False)
  neg_scores = tf.gather(s, neg_index)
  neg_valid = tf.logical_not(tf.gather(positive, neg_index))
  pos_scores = tf.boolean_mask(s, positive)
  diff = neg_scores[None, :] - pos_scores[:, None]
  valid = tf.broadcast_to(neg_valid[None, :], tf.shape(diff))
  return diff, valid


def _masked_mean(values, valid):
  count = tf.reduce_sum(tf.cast(valid, tf.float32))
  total = tf.reduce_sum(tf.where(valid, values, tf.zeros_like(values)))
  return tf.math.divide_no_nan(total, count)


class _RankLoss(_BatchLoss):
  supports_jit = False  # XLA pads the data-dependent positives to B*C: memory B*C*30B

  def __init__(self, top_neg_count: int = TOP_NEG_COUNT, positive_threshold: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    if int(top_neg_count) < 1:
      raise ValueError(f"top_neg_count must be >= 1, got {top_neg_count}")
    self.top_neg_count = int(top_neg_count)
    self.positive_threshold = float(positive_threshold)

  def _params(self):
    return {"top_neg_count": self.top_neg_count, "positive_threshold": self.positive_threshold}

  def _pairs(self, y_true, logits):
    return hardest_negative_pairs(y_true, logits, self.top_neg_count, self.positive_threshold)


class _MarginRankLoss(_RankLoss):
  """A rank loss with a margin over (positive, hardest negative) pairs; `ignore_ties` drops pairs whose
  scores are exactly equal (the seed's `torch.nonzero(diff)`)."""

  def __init__(
    self,
    top_neg_count: int = TOP_NEG_COUNT,
    margin: float = 1.0,
    ignore_ties: bool = True,
    positive_threshold: float = 0.0,
    **kwargs,
  ):
    super().__init__(top_neg_count=top_neg_count, positive_threshold=positive_threshold, **kwargs)
    self.margin = float(margin)
    self.ignore_ties = bool(ignore_ties)

  def _params(self):
    return {**super()._params(), "margin": self.margin, "ignore_ties": self.ignore_ties}


@keras.saving.register_keras_serializable(package="yt8m_tf")
class SoftRankingLoss(_MarginRankLoss):
  """Seed `soft_ranking_loss`: mean over (positive, hardest negative) pairs of softplus(s_n - s_p + margin).

  margin = 1, 30*B hardest negatives of the batch. The seed keeps only pairs with s_n - s_p != 0
  (`torch.nonzero(diff)`); `ignore_ties=True` reproduces that (it also makes exactly tied logits, e.g.
  a constant model, give zero loss and gradient); `ignore_ties=False` keeps every pair.
  """

  def call(self, y_true, logits):
    return soft_ranking_loss(
      y_true, logits, self.top_neg_count, self.margin, self.ignore_ties, self.positive_threshold
    )


def soft_ranking_loss(
  y_true, logits, top_neg_count=TOP_NEG_COUNT, margin=1.0, ignore_ties=True, positive_threshold=0.0
):
  diff, valid = hardest_negative_pairs(y_true, logits, top_neg_count, positive_threshold)
  if ignore_ties:
    valid = tf.logical_and(valid, tf.not_equal(diff, 0.0))
  return _masked_mean(tf.nn.softplus(diff + margin), valid)


@keras.saving.register_keras_serializable(package="yt8m_tf")
class SigmoidRankingLoss(_RankLoss):
  """Seed `sigmoid_ranking_loss_with_logits`: mean over all (positive, hardest negative) pairs of
  log(1 + sigmoid(s_n - s_p)). No margin, ties kept."""

  def call(self, y_true, logits):
    diff, valid = self._pairs(y_true, logits)
    return _masked_mean(tf.math.log1p(tf.sigmoid(diff)), valid)


@keras.saving.register_keras_serializable(package="yt8m_tf")
class LSEPLoss(_RankLoss):
  """Seed `lsep_loss`: log(1 + mean over (positive, hardest negative) pairs of exp(s_n - s_p)).

  Computed as softplus(logsumexp(diff) - log(#pairs)), finite for any logits; 0 without pairs.
  """

  def call(self, y_true, logits):
    diff, valid = self._pairs(y_true, logits)
    count = tf.reduce_sum(tf.cast(valid, tf.float32))
    masked = tf.where(valid, diff, tf.fill(tf.shape(diff), tf.constant(-float("inf"))))
    flat = tf.reshape(masked, [-1])
    # logsumexp of an all -inf (or empty) vector would be -inf / NaN: guard by the pair count.
    safe = tf.where(count > 0, flat, tf.zeros_like(flat))
    log_mean = tf.reduce_logsumexp(tf.concat([safe, [-float("inf")]], 0)) - tf.math.log(
      tf.maximum(count, 1.0)
    )
    return tf.where(count > 0, tf.nn.softplus(log_mean), 0.0)


@keras.saving.register_keras_serializable(package="yt8m_tf")
class HingeRankingLoss(_MarginRankLoss):
  """Hinge ranking: mean over (positive, hardest negative) pairs of max(0, s_n - s_p + margin).

  The slides list a "hinge ranking loss" among the losses tried, but the seed code has none; this is
  the soft ranking loss with softplus replaced by the hinge (same pairs: 30*B hardest batch negatives,
  margin 1). All pairs count (`ignore_ties=False`): a tied pair violates the margin.
  """

  def __init__(self, ignore_ties: bool = False, **kwargs):
    super().__init__(ignore_ties=ignore_ties, **kwargs)

  def call(self, y_true, logits):
    diff, valid = self._pairs(y_true, logits)
    if self.ignore_ties:
      valid = tf.logical_and(valid, tf.not_equal(diff, 0.0))
    return _masked_mean(tf.nn.relu(diff + self.margin), valid)


@keras.saving.register_keras_serializable(package="yt8m_tf")
class BCEWithSoftRank(_MarginRankLoss):
  """Seed `bce_with_soft_rank_with_logits`: BCE (mean over B*C) + alpha * soft_ranking_loss, alpha = 0.1
  (soft ranking with its defaults: 30*B hardest negatives, margin 1, ties dropped)."""

  def __init__(self, alpha: float = 0.1, **kwargs):
    super().__init__(**kwargs)
    self.alpha = float(alpha)

  def _params(self):
    return {**super()._params(), "alpha": self.alpha}

  def call(self, y_true, logits):
    y, x = _float(y_true), _float(logits)
    return _bce_mean(y, x) + self.alpha * soft_ranking_loss(
      y, x, self.top_neg_count, self.margin, self.ignore_ties, self.positive_threshold
    )


# ---------------------------------------------------------------------------------------------------
# Registry and target mixing

LOSSES: Dict[str, Type[_Loss]] = {
  "bce": BinaryCrossEntropy,
  "starter_ce": StarterCrossEntropy,
  "starter_hinge": StarterHinge,
  "starter_softmax": StarterSoftmax,
  "soft_ranking": SoftRankingLoss,
  "sigmoid_ranking": SigmoidRankingLoss,
  "hinge_ranking": HingeRankingLoss,
  "lsep": LSEPLoss,
  "bce_soft_rank": BCEWithSoftRank,
  "bce_labels_tags": LabelsTagsBCE,
  "mse": MSE,
}

# Names used by the seed's configs (`train_kwargs.criterion`) and the starter's `--label_loss`.
ALIASES: Dict[str, str] = {
  "bce_with_logits": "bce",
  "binary_cross_entropy_with_logits": "bce",
  "soft_ranking_loss": "soft_ranking",
  "sigmoid_ranking_loss_with_logits": "sigmoid_ranking",
  "lsep_loss": "lsep",
  "bce_with_soft_rank_with_logits": "bce_soft_rank",
  "bce_with_logits_labels1_tags2": "bce_labels_tags",
  "mse_loss": "mse",
  "CrossEntropyLoss": "starter_ce",
  "HingeLoss": "starter_hinge",
  "SoftmaxLoss": "starter_softmax",
}


def get_loss(name: str, **params) -> keras.losses.Loss:
  """A loss instance by registry name (or a seed/starter alias), e.g. `get_loss("soft_ranking", margin=1)`."""
  key = ALIASES.get(name, name)
  if key not in LOSSES:
    known = sorted(LOSSES) + sorted(ALIASES)
    close = difflib.get_close_matches(str(name), known, n=3)
    hint = f" Did you mean {close}?" if close else ""
    raise ValueError(
      f"unknown loss {name!r}.{hint} Known losses: {sorted(LOSSES)}; aliases: {sorted(ALIASES)}"
    )
  cls = LOSSES[key]
  try:
    return cls(**params)
  except TypeError as e:
    raise TypeError(
      f"bad parameters {sorted(params)} for loss {name!r} ({cls.__name__}{inspect.signature(cls)}): {e}"
    ) from None


def loss_supports_jit(loss) -> bool:
  """False for losses that must not be XLA-compiled (the rank losses): compile those with jit_compile=False."""
  return bool(getattr(loss, "supports_jit", True))
