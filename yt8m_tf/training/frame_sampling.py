"""Mask-aware frame subsampling on batched frame-level dicts (seed_method.md §3.2, §3.3; bugs of §9 fixed).

Input: `{"rgb": [B, T, 1024], "audio": [B, T, 128], "num_frames": [B], ...}`, frames at or after
`num_frames` are padding (whatever their values). Every sampler picks frame indices per video among its
REAL frames only, gathers every key of `frame_keys` at the same indices, and returns the dict with those
keys replaced by [B, L, D] tensors (L fixed by the sampler's arguments, listed per sampler): the selected
frames first, in temporal order, then zero padding; `num_frames` is the new count of real frames (same
dtype). A video with fewer real frames than a sampler asks for keeps all its real frames, then padding.
`pad_to` (optional) zero-pads the output to that many frames, e.g. the `max_frames` a model was built for.
Other keys (`id`, ...) pass through.

Fixes relative to the seed modules: crops stay within the real frames (the seed's crop could run past T,
and crops/bootstrap/borders were drawn over padding too); one random draw per VIDEO where the seed drew
one per batch (crop start/length, segment borders) because videos have different lengths; cosine
selection ignores padding (the seed picked zero frames first, their |cos| being 0) and returns frames in
temporal order (the seed's shot boundaries came out in similarity order).

Randomness is stateless: `seed` is an int, a shape-[2] integer tensor, or None (a fresh stateful draw
per call). In a `tf.data` pipeline use `get_sampler(name, **params).map_dataset(dataset, seed)`, which
gives each batch its own seed (see `yt8m_tf.training.mixup.seeded_map`).
"""

from __future__ import annotations

import inspect
from typing import Optional, Sequence

import tensorflow as tf

from yt8m_tf.training.mixup import as_seed, seeded_map

FRAME_KEYS = ("rgb", "audio")
NORM_EPSILON = 1e-5  # seed: x / (||x||_2 + 1e-5)


# ---------------------------------------------------------------------------------------------------
# Shared plumbing


def _present_keys(features, frame_keys):
  keys = [k for k in frame_keys if k in features]
  if not keys:
    raise KeyError(f"none of the frame keys {tuple(frame_keys)} is in the features {sorted(features)}")
  if "num_frames" not in features:
    raise KeyError("frame sampling needs a 'num_frames' feature")
  return keys


def _lengths(features, keys):
  """(real frame counts [B] int32 clipped to [0, T], T scalar int32, the batch size B)."""
  x = features[keys[0]]
  shape = tf.shape(x)
  n = tf.clip_by_value(tf.cast(features["num_frames"], tf.int32), 0, shape[1])
  return n, shape[1], shape[0]


def _real_mask(n, t):
  return tf.range(t)[None, :] < n[:, None]


def _masked(x, n):
  """x with its padding frames set to 0 (padding may hold anything)."""
  mask = _real_mask(n, tf.shape(x)[1])[:, :, None]
  return tf.where(mask, x, tf.zeros_like(x))


def _finish(features, keys, new_frames, count, pad_to: Optional[int]):
  out = dict(features)
  for key in keys:
    x = new_frames[key]
    if pad_to is not None:
      length = x.shape[1]
      if length is not None and length > pad_to:
        raise ValueError(f"the sampler returns {length} frames, more than pad_to={pad_to}")
      x = tf.pad(x, [[0, 0], [0, tf.maximum(pad_to - tf.shape(x)[1], 0)], [0, 0]])
      x = tf.ensure_shape(x[:, :pad_to], [None, pad_to, x.shape[2]])
    out[key] = x
  out["num_frames"] = tf.cast(count, tf.convert_to_tensor(features["num_frames"]).dtype)
  return out


def _gather(features, keys, index, count, pad_to):
  """Frames at `index` [B, L] for positions < count [B]; zeros after (index there is ignored)."""
  _, t, _ = _lengths(features, keys)
  index = tf.clip_by_value(tf.cast(index, tf.int32), 0, tf.maximum(t - 1, 0))
  valid = tf.range(tf.shape(index)[1])[None, :] < count[:, None]
  frames = {}
  for key in keys:
    x = features[key]
    gathered = tf.gather(x, index, batch_dims=1)
    frames[key] = tf.where(valid[:, :, None], gathered, tf.zeros_like(gathered))
  return _finish(features, keys, frames, count, pad_to)


def _temporal_order(index, count):
  """Sort each row's first `count` indices ascending (the rest go after them, unspecified)."""
  valid = tf.range(tf.shape(index)[1])[None, :] < count[:, None]
  key = tf.where(valid, index, tf.int32.max)
  return tf.sort(key, axis=1)


def _top_k_padded(scores, k: int, fill: float):
  """Indices of the k largest scores per row; rows shorter than k are padded with `fill` (lowest)."""
  short = tf.maximum(k - tf.shape(scores)[1], 0)
  scores = tf.pad(scores, [[0, 0], [0, short]], constant_values=fill)
  return tf.math.top_k(scores, k=k, sorted=True).indices


def _check_positive(**values):
  for name, value in values.items():
    if int(value) < 1:
      raise ValueError(f"{name} must be >= 1, got {value}")


def _normalized(x, n):
  x = _masked(tf.cast(x, tf.float32), n)
  return x / (tf.norm(x, axis=-1, keepdims=True) + NORM_EPSILON)


# ---------------------------------------------------------------------------------------------------
# Random samplers (seed §3.2)


def random_crop(
  features,
  min_len: int,
  max_len: int,
  seed=None,
  frame_keys: Sequence[str] = FRAME_KEYS,
  pad_to: Optional[int] = None,
):
  """A random crop per video: length ~ U{min_len..max_len} clipped to the video's real frames, start
  uniform over the positions where the crop fits. Output L = max_len."""
  _check_positive(min_len=min_len, max_len=max_len)
  if min_len > max_len:
    raise ValueError(f"min_len {min_len} > max_len {max_len}")
  keys = _present_keys(features, frame_keys)
  n, _, b = _lengths(features, keys)
  u = tf.random.stateless_uniform(tf.stack([2, b]), as_seed(seed))
  span = max_len - min_len + 1
  length = tf.minimum(min_len + tf.cast(tf.floor(u[0] * span), tf.int32), max_len)
  length = tf.minimum(length, n)
  room = n - length + 1
  start = tf.minimum(tf.cast(tf.floor(u[1] * tf.cast(room, tf.float32)), tf.int32), room - 1)
  index = start[:, None] + tf.range(max_len)[None, :]
  return _gather(features, keys, index, length, pad_to)


def bootstrap(
  features, length: int, seed=None, frame_keys: Sequence[str] = FRAME_KEYS, pad_to: Optional[int] = None
):
  """Per video, `length` indices drawn uniformly WITH replacement from its real frames, sorted.

  A video with fewer than `length` real frames keeps all of them once, in order. Output L = length.
  """
  _check_positive(length=length)
  keys = _present_keys(features, frame_keys)
  n, _, b = _lengths(features, keys)
  u = tf.random.stateless_uniform(tf.stack([b, length]), as_seed(seed))
  draws = tf.cast(tf.floor(u * tf.cast(n, tf.float32)[:, None]), tf.int32)
  draws = tf.sort(tf.minimum(draws, tf.maximum(n - 1, 0)[:, None]), axis=1)
  short = n < length
  index = tf.where(short[:, None], tf.range(length)[None, :], draws)
  count = tf.where(short, n, length)
  return _gather(features, keys, index, count, pad_to)


def regular_intervals(
  features,
  min_step: int,
  max_step: int,
  seed=None,
  frame_keys: Sequence[str] = FRAME_KEYS,
  pad_to: Optional[int] = None,
):
  """One random step s ~ U{min_step..max_step} per batch; frames 0, s, 2s, ... below each video's
  `num_frames` (ceil(n / s) frames). Output L = ceil(T / min_step), the most any step can give."""
  _check_positive(min_step=min_step, max_step=max_step)
  if min_step > max_step:
    raise ValueError(f"min_step {min_step} > max_step {max_step}")
  keys = _present_keys(features, frame_keys)
  n, t, _ = _lengths(features, keys)
  step = tf.random.stateless_uniform([], as_seed(seed), minval=min_step, maxval=max_step + 1, dtype=tf.int32)
  static_t = features[keys[0]].shape[1]
  out_len = -(-static_t // min_step) if static_t is not None else (t + min_step - 1) // min_step
  index = tf.range(out_len)[None, :] * step
  count = (n + step - 1) // step
  return _gather(features, keys, tf.tile(index, [tf.shape(n)[0], 1]), count, pad_to)


def random_segment_means(
  features, max_segments: int, seed=None, frame_keys: Sequence[str] = FRAME_KEYS, pad_to: Optional[int] = None
):
  """Random temporal average pooling: per video min(max_segments, n) segments whose borders are frame 0
  plus distinct random frames in 1..n-1; each output frame is the mean of one segment (all frames of
  the video are covered). Output L = max_segments."""
  _check_positive(max_segments=max_segments)
  keys = _present_keys(features, frame_keys)
  n, t, b = _lengths(features, keys)
  k = int(max_segments)
  count = tf.minimum(n, k)
  positions = tf.range(t)[None, :]
  u = tf.random.stateless_uniform(tf.stack([b, t]), as_seed(seed))
  # frame 0 always starts a segment (score 2); other real frames by a random score in [0, 1);
  # padding (-1) and the columns top-k pads with (-2) rank after every real frame.
  scores = tf.where(positions == 0, 2.0, tf.where(positions < n[:, None], u, -1.0))
  starts = _temporal_order(_top_k_padded(scores, k, -2.0), count)  # [B, K], unused slots = int32 max
  # segment of frame t = number of segment starts <= t, minus 1; padding goes to a dropped extra segment
  segment = tf.searchsorted(starts, tf.tile(positions, tf.stack([b, 1])), side="right") - 1
  segment = tf.where(positions < n[:, None], tf.range(b)[:, None] * k + segment, b * k)
  segment = tf.reshape(segment, [-1])
  sizes = tf.math.unsorted_segment_sum(tf.ones_like(segment, tf.float32), segment, b * k + 1)[:-1]
  sizes = tf.reshape(sizes, [-1, k, 1])
  real = tf.reshape(positions < n[:, None], [-1, 1])
  frames = {}
  for key in keys:
    x = tf.convert_to_tensor(features[key])
    depth = x.shape[2] if x.shape[2] is not None else tf.shape(x)[2]
    flat = tf.reshape(tf.cast(x, tf.float32), [-1, depth])
    flat = tf.where(real, flat, 0.0)  # padding may hold anything (inf, NaN): never summed
    sums = tf.math.unsorted_segment_sum(flat, segment, b * k + 1)[:-1]
    sums = tf.reshape(sums, [-1, k, depth])
    frames[key] = tf.cast(tf.math.divide_no_nan(sums, sizes), x.dtype)
  return _finish(features, keys, frames, count, pad_to)


# ---------------------------------------------------------------------------------------------------
# Cosine-similarity selection (seed §3.3), deterministic


def shot_boundaries(
  features,
  k: int,
  frame_keys: Sequence[str] = FRAME_KEYS,
  similarity_key: str = "rgb",
  pad_to: Optional[int] = None,
):
  """Frame 0 plus the first frames of the k sharpest cuts: the k real frames t >= 1 with the lowest
  |cos(x_t, x_{t-1})| on `similarity_key` (x / (||x|| + 1e-5)), in temporal order. Ties go to the
  earlier frame. Output L = k + 1; a video with n <= k + 1 real frames keeps all of them."""
  _check_positive(k=k)
  keys = _present_keys(features, frame_keys)
  n, t, _ = _lengths(features, keys)
  xh = _normalized(features[similarity_key], n)
  adjacent = tf.abs(tf.reduce_sum(xh[:, 1:] * xh[:, :-1], axis=-1))  # [B, T-1]: entry t-1 is frame t
  positions = tf.range(t)[None, :]
  # frame 0 first (2), real frames by -|cos| in [-1, 0], padding (-3), top-k's filler (-4) last.
  scores = tf.concat([tf.fill([tf.shape(n)[0], 1], 2.0), -adjacent], axis=1)
  scores = tf.where(positions < n[:, None], scores, -3.0)
  count = tf.minimum(n, k + 1)
  index = _temporal_order(_top_k_padded(scores, k + 1, -4.0), count)
  return _gather(features, keys, index, count, pad_to)


def farthest_point(
  features,
  k: int,
  frame_keys: Sequence[str] = FRAME_KEYS,
  similarity_key: str = "rgb",
  pad_to: Optional[int] = None,
):
  """Greedy farthest-point selection in |cos| among real frames, returned in temporal order.

  S = {0}; best_t = |cos(x_0, x_t)|; repeat: next = argmin of best over real frames not in S (ties to
  the earlier frame), add it, best = max(best, |cos(x_next, .)|), until |S| = min(k, n).
  Output L = k.
  """
  _check_positive(k=k)
  keys = _present_keys(features, frame_keys)
  n, t, b = _lengths(features, keys)
  xh = _normalized(features[similarity_key], n)
  real = _real_mask(n, t)

  # |cos| between all frame pairs, once: one batched matmul beats k memory-bound passes over the frames.
  gram = tf.abs(tf.matmul(xh, xh, transpose_b=True))  # [B, T, T]

  def similarity(frame):  # |cos| of every frame with frame [B] of its video -> [B, T]
    return tf.gather(gram, frame, batch_dims=1)

  first = tf.zeros([b], tf.int32)
  selected = tf.zeros(tf.stack([b, k]), tf.int32)
  chosen = tf.one_hot(first, t, on_value=True, off_value=False)
  best = similarity(first)

  def body(j, selected, chosen, best):
    key = tf.where(tf.logical_and(real, tf.logical_not(chosen)), best, float("inf"))
    nxt = tf.argmin(key, axis=1, output_type=tf.int32)
    selected = selected + tf.one_hot(j, k, dtype=tf.int32)[None, :] * nxt[:, None]
    chosen = tf.logical_or(chosen, tf.one_hot(nxt, t, on_value=True, off_value=False))
    return j + 1, selected, chosen, tf.maximum(best, similarity(nxt))

  _, selected, _, _ = tf.while_loop(lambda j, *_: j < k, body, (tf.constant(1), selected, chosen, best))
  count = tf.minimum(n, k)
  return _gather(features, keys, _temporal_order(selected, count), count, pad_to)


# ---------------------------------------------------------------------------------------------------
# Registry

SAMPLERS = {
  "random_crop": random_crop,
  "bootstrap": bootstrap,
  "regular_intervals": regular_intervals,
  "random_segment_means": random_segment_means,
  "shot_boundaries": shot_boundaries,
  "farthest_point": farthest_point,
}
RANDOM_SAMPLERS = ("random_crop", "bootstrap", "regular_intervals", "random_segment_means")


class FrameSampler:
  """A configured sampler: `sampler(features, labels=None, seed=None)` returns features, or
  `(features, labels)` when labels are given, so it works directly in `dataset.map`. Without a seed the
  random samplers draw a fresh one per call; `map_dataset(dataset, seed)` seeds each batch reproducibly.
  """

  def __init__(self, name: str, **params):
    if name not in SAMPLERS:
      raise ValueError(f"unknown frame sampler {name!r}; known: {sorted(SAMPLERS)}")
    fn = SAMPLERS[name]
    signature = inspect.signature(fn)
    if "seed" in params:
      raise TypeError("pass the seed when calling the sampler or to map_dataset, not to get_sampler")
    try:
      signature.bind(None, **params)
    except TypeError as e:
      accepted = [p for p in signature.parameters if p not in ("features", "seed")]
      raise TypeError(
        f"bad parameters {sorted(params)} for frame sampler {name!r} (accepts {accepted}): {e}"
      ) from None
    self.name = name
    self.params = dict(params)
    self._fn = fn
    self.random = name in RANDOM_SAMPLERS

  def __call__(self, features, labels=None, seed=None):
    kwargs = dict(self.params)
    if self.random:
      kwargs["seed"] = seed
    out = self._fn(features, **kwargs)
    return out if labels is None else (out, labels)

  def map_dataset(
    self, dataset: tf.data.Dataset, seed: Optional[int] = None, num_parallel_calls=tf.data.AUTOTUNE
  ) -> tf.data.Dataset:
    """The sampler on every batch of `dataset` (elements `features` or `(features, labels)`)."""
    if not self.random:
      return dataset.map(self, num_parallel_calls=num_parallel_calls, deterministic=True)
    return seeded_map(dataset, self, seed=seed, num_parallel_calls=num_parallel_calls)

  def __repr__(self):
    args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
    return f"FrameSampler({self.name!r}{', ' if args else ''}{args})"


def get_sampler(name: str, **params) -> FrameSampler:
  """A frame sampler by name with its parameters bound, e.g. `get_sampler("bootstrap", length=30)`."""
  return FrameSampler(name, **params)


__all__ = [
  "FRAME_KEYS",
  "FrameSampler",
  "SAMPLERS",
  "bootstrap",
  "farthest_point",
  "get_sampler",
  "random_crop",
  "random_segment_means",
  "regular_intervals",
  "shot_boundaries",
]
