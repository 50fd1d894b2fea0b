"""Mixup on batched `(features, labels)`: per-sample lambda ~ Beta(alpha, alpha), one in-batch permutation.

    x~_i = lam_i * x_i + (1 - lam_i) * x_perm(i)        for every float input tensor of the dict
    y~_i = lam_i * y_i + (1 - lam_i) * y_perm(i)        for the (hard or soft) labels, same lam_i

The seed (`DataLoaderWithMixUp`) mixed each batch with the previous batch; a within-batch permutation
is equivalent in expectation without dropping the first batch or correlating neighbouring updates
(seed_method.md §9 item 10). `perm(i) == i` can happen (that sample is left as it is).

Frame-level dicts (a `num_frames` key): every float tensor of rank >= 3 is a frame tensor [B, T, D].
Each video's padding (frames at or after its `num_frames`) is zeroed first, then the pair is mixed frame
by frame, and the mixed video's `num_frames` is the MAX of the pair: beyond the shorter video's end the
mixed frames are `lam * x_long + 0` (the longer video faded by its weight), exactly what mixing two
zero-padded tensors gives. Mixing never re-times a video; models see a mask covering both videos.

Keys that are not floating point (`id` strings, `num_frames` aside from the rule above, integer
tensors) and sparse/ragged values pass through unmixed. Float16/bfloat16 tensors are mixed in float32
and cast back. Labels of an integer or bool dtype become float32 (mixed labels are soft).

RNG: stateless (`tf.random.stateless_*`). `seed` is an int, a shape-[2] integer tensor, or None:
the same seed gives the same lambdas and permutation; None draws a fresh seed with a stateful op (not
reproducible unless TF's global seed is set). `mixup_dataset` gives each batch its own seed from
`tf.data.Dataset.random(seed, rerandomize_each_iteration=True)`: a pipeline built with the same seed
(and the same TF global seed, if one is set) replays the same mixes, while each new iteration of the
dataset (e.g. each Keras epoch) gets new ones.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import tensorflow as tf

_SEED_MAX = 2**31 - 1


def as_seed(seed) -> tf.Tensor:
  """int / shape-[2] int tensor / None -> a shape-[2] int64 seed for `tf.random.stateless_*`."""
  if seed is None:
    return tf.random.uniform([2], 0, _SEED_MAX, dtype=tf.int64)
  if isinstance(seed, int):
    return tf.constant([seed, 0], tf.int64)
  seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
  if seed.shape.rank == 0:
    return tf.stack([seed, tf.zeros([], tf.int64)])
  seed.shape.assert_is_compatible_with([2])
  return seed


def split_seed(seed, num: int) -> tf.Tensor:
  """`num` independent shape-[2] seeds derived from one."""
  return tf.random.experimental.stateless_split(as_seed(seed), num)


def seeded_map(
  dataset: tf.data.Dataset, fn: Callable, seed: Optional[int] = None, num_parallel_calls=tf.data.AUTOTUNE
) -> tf.data.Dataset:
  """`dataset.map(lambda *element: fn(*element, seed=s))` with a fresh stateless seed `s` per element.

  Seeds come from `tf.data.Dataset.random(seed, rerandomize_each_iteration=True)`: reproducible for a
  given seed, different on each iteration of the dataset. Order and results do not depend on the
  parallelism (`deterministic=True`).
  """
  seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
  zipped = tf.data.Dataset.zip((dataset, seeds))

  def apply(element, batch_seed):
    if isinstance(element, tuple):
      return fn(*element, seed=batch_seed)
    return fn(element, seed=batch_seed)

  return zipped.map(apply, num_parallel_calls=num_parallel_calls, deterministic=True)


def sample_beta(shape, alpha: float, seed) -> tf.Tensor:
  """Beta(alpha, alpha) float32 samples as G1 / (G1 + G2), G ~ Gamma(alpha) (stateless).

  For small alpha both Gammas can underflow to 0; such a draw gives 0.5.
  """
  seeds = split_seed(seed, 2)
  g1 = tf.random.stateless_gamma(shape, seeds[0], alpha=alpha, dtype=tf.float32)
  g2 = tf.random.stateless_gamma(shape, seeds[1], alpha=alpha, dtype=tf.float32)
  total = g1 + g2
  return tf.where(total > 0, g1 / tf.where(total > 0, total, 1.0), 0.5)


def mixup_params(batch_size, alpha: float = 0.4, seed=None) -> Tuple[tf.Tensor, tf.Tensor]:
  """(lam [B] float32 ~ Beta(alpha, alpha), perm [B] int32 a permutation of 0..B-1) for one batch.

  `mixup_batch` uses exactly these for the same `(batch_size, alpha, seed)`.
  """
  _check_alpha(alpha)
  seeds = split_seed(seed, 2)
  lam = sample_beta(tf.reshape(batch_size, [1]), alpha, seeds[0])
  perm = tf.argsort(tf.random.stateless_uniform(tf.reshape(batch_size, [1]), seeds[1]), stable=True)
  return lam, tf.cast(perm, tf.int32)


def _check_alpha(alpha):
  if not float(alpha) > 0:
    raise ValueError(f"mixup alpha must be > 0, got {alpha}")


def _mix(x, lam, perm):
  dtype = x.dtype
  compute = tf.float64 if dtype == tf.float64 else tf.float32
  x = tf.cast(x, compute)
  weight = tf.reshape(
    tf.cast(lam, compute), tf.concat([tf.shape(lam), tf.ones([tf.rank(x) - 1], tf.int32)], 0)
  )
  mixed = weight * x + (1.0 - weight) * tf.gather(x, perm)
  return tf.cast(mixed, dtype)


def _zero_padding(x, num_frames):
  mask = tf.range(tf.shape(x)[1])[None, :] < tf.cast(num_frames, tf.int32)[:, None]
  mask = tf.reshape(mask, tf.concat([tf.shape(mask), tf.ones([tf.rank(x) - 2], tf.int32)], 0))
  return tf.where(mask, x, tf.zeros_like(x))


def mixup_batch(features, labels, alpha: float = 0.4, seed=None):
  """Mixes a batched `(features dict, labels)` pair; returns `(features, labels)`. See the module doc."""
  _check_alpha(alpha)
  if not isinstance(features, dict):
    raise TypeError(f"features must be a dict of batched tensors, got {type(features).__name__}")
  labels = tf.convert_to_tensor(labels)
  if not labels.dtype.is_floating:
    labels = tf.cast(labels, tf.float32)
  lam, perm = mixup_params(tf.shape(labels)[0], alpha, seed)

  num_frames = features.get("num_frames")
  out = dict(features)
  for key, value in features.items():
    if key == "num_frames" or isinstance(value, (tf.SparseTensor, tf.RaggedTensor)):
      continue
    value = tf.convert_to_tensor(value)
    if not value.dtype.is_floating:
      continue
    if num_frames is not None and value.shape.rank is not None and value.shape.rank >= 3:
      value = _zero_padding(value, num_frames)
    out[key] = _mix(value, lam, perm)
  if num_frames is not None:
    num_frames = tf.convert_to_tensor(num_frames)
    out["num_frames"] = tf.maximum(num_frames, tf.gather(num_frames, perm))
  return out, _mix(labels, lam, perm)


def mixup_dataset(
  dataset: tf.data.Dataset,
  alpha: float = 0.4,
  seed: Optional[int] = None,
  num_parallel_calls=tf.data.AUTOTUNE,
) -> tf.data.Dataset:
  """`mixup_batch` on every element of a BATCHED `(features, labels)` dataset, a fresh seed per batch."""
  _check_alpha(alpha)
  spec = dataset.element_spec
  if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], dict)):
    raise ValueError(f"mixup_dataset needs batched (features dict, labels) elements, got {spec}")
  return seeded_map(
    dataset,
    lambda features, labels, seed: mixup_batch(features, labels, alpha, seed),
    seed=seed,
    num_parallel_calls=num_parallel_calls,
  )
