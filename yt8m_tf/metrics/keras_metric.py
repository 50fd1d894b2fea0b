"""Exact GAP@k as a Keras 3 metric (TensorFlow backend), usable in compile(metrics=[GapMetric()])."""

from __future__ import annotations

import keras
import tensorflow as tf

from yt8m_tf.metrics.gap import GAP_K

try:  # Private TF API, used only to choose between two equivalent code paths (the XLA-safe one is slower).
  from tensorflow.python.ops import control_flow_util as _control_flow_util
except ImportError:  # pragma: no cover
  _control_flow_util = None

OVERFLOW_MODES = ("error", "window")


def _in_xla_context() -> bool:
  """True while tracing for XLA (`jit_compile=True`, Keras' default on GPU)."""
  if _control_flow_util is None:  # pragma: no cover
    return True
  return _control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def _scatter_rows(variable, rows, updates):
  """`variable[rows] = updates`, in place when the variable allows it."""
  underlying = variable.value
  if isinstance(underlying, tf.Variable) and not isinstance(underlying, tf.distribute.DistributedValues):
    underlying.scatter_nd_update(rows[:, None], updates)
  else:  # per-replica (tf.distribute) variables have no scatter: rewrite the whole buffer
    variable.assign(tf.tensor_scatter_nd_update(variable, rows[:, None], updates))


def _gather_replicas(scores, flags, positives):
  """Concatenates the batch's pairs over replicas; identity without tf.distribute.

  `all_gather` needs equal shapes, but replicas can get different sizes of the last batch: pad to the
  largest with inert rows, gather, drop the padding (kept under XLA, where dynamic shapes are not allowed;
  there they are -inf negatives that only take buffer rows).
  """
  if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
    return scores, flags, positives
  context = tf.distribute.get_replica_context()
  if context.num_replicas_in_sync == 1:
    return scores, flags, positives
  local_size = tf.shape(scores)[0]
  padding = tf.reduce_max(context.all_gather(local_size[None], axis=0)) - local_size
  scores = tf.pad(scores, [[0, padding], [0, 0]], constant_values=float("-inf"))
  flags = tf.pad(flags, [[0, padding], [0, 0]])
  positives = tf.pad(positives, [[0, padding]])
  is_real = tf.pad(tf.ones([local_size], tf.float32), [[0, padding]])
  scores, flags, positives, is_real = context.all_gather([scores, flags, positives, is_real], axis=0)
  if _in_xla_context():
    return scores, flags, positives
  keep = is_real > 0
  return tf.boolean_mask(scores, keep), tf.boolean_mask(flags, keep), tf.boolean_mask(positives, keep)


@keras.saving.register_keras_serializable(package="yt8m_tf")
class GapMetric(keras.metrics.Metric):
  """GAP@k of everything seen since the last reset; the same value as `gap_at_k` on that data.

  GAP depends only on the order of the scores, so `y_pred` may be logits or probabilities: the value is the
  same, except where a squashing function maps distinct logits to equal float32 values (saturated sigmoid),
  which creates ties. Ties rank as in `gap_at_k` (class index within a video, then arrival order).

  State: a fixed-capacity buffer of `max_videos` rows, because variables must keep a static shape under
  `tf.function` and XLA. `update_state` takes `tf.math.top_k` of the batch and scatters its k scores and
  positive flags (float32 each: 8*k bytes per video) and its positive-label count into the next rows.
  `result()` sorts the stored pairs (stable, descending) and sums precision in float64. Empty rows hold -inf
  scores and no positives, so under XLA the whole buffer is sorted; elsewhere only the filled rows.

  Keras calls `result()` after every batch, so each step costs a sort of the pairs stored so far
  (milliseconds on a GPU; ~0.3 s per 2M pairs on 2 CPU cores). Keras resets the metric at the start of each
  epoch and of `evaluate`. It is meant for validation sets; on a large training epoch use
  `on_overflow="window"` or leave it out.

  Args:
    k: pairs kept per video (`min(k, num_classes)`).
    max_videos: buffer capacity in videos between resets.
    on_overflow: past `max_videos` videos, "error" makes `update_state` raise InvalidArgumentError (eager
      and graph mode; XLA drops assertions, so there `result()` returns NaN instead); "window" turns the
      buffer into a ring: the value is the GAP of the last `max_videos` videos.
    name, dtype: as for any Keras metric.

  `sample_weight` ([batch], optional) only masks: a video with weight 0 is ignored (e.g. padding), any
  other weight counts as 1 (GAP has no weighted form). A masked video still takes a buffer row.

  Under tf.distribute (MirroredStrategy) every replica all-gathers the batch's pairs and holds the whole
  state, so the value is the global GAP; per-replica variables cannot be scattered into, so each step
  rewrites the buffer (8*k*max_videos bytes per replica).
  """

  def __init__(
    self, k: int = GAP_K, max_videos: int = 200_000, on_overflow: str = "error", name: str = "gap", dtype=None
  ):
    super().__init__(name=name, dtype=dtype)
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
      raise ValueError(f"k must be a positive integer, got {k!r}.")
    if isinstance(max_videos, bool) or not isinstance(max_videos, int) or max_videos <= 0:
      raise ValueError(f"max_videos must be a positive integer, got {max_videos!r}.")
    if on_overflow not in OVERFLOW_MODES:
      raise ValueError(f"on_overflow must be one of {OVERFLOW_MODES}, got {on_overflow!r}.")
    self.k = k
    self.max_videos = max_videos
    self.on_overflow = on_overflow
    # only_first_replica: under tf.distribute all replicas hold identical copies (see _gather_replicas).
    self.top_scores = self.add_variable(
      shape=(max_videos, k),
      initializer=keras.initializers.Constant(float("-inf")),
      dtype="float32",
      aggregation="only_first_replica",
      name="top_scores",
    )
    # float32 rather than bool/int8: scatter and assign kernels exist for it on every device.
    self.top_is_positive = self.add_variable(
      shape=(max_videos, k),
      initializer="zeros",
      dtype="float32",
      aggregation="only_first_replica",
      name="top_is_positive",
    )
    self.positives_per_video = self.add_variable(
      shape=(max_videos,),
      initializer="zeros",
      dtype="float32",
      aggregation="only_first_replica",
      name="positives_per_video",
    )
    self.videos_seen = self.add_variable(
      shape=(), initializer="zeros", dtype="int64", aggregation="only_first_replica", name="videos_seen"
    )

  def update_state(self, y_true, y_pred, sample_weight=None):
    y_pred = tf.cast(tf.convert_to_tensor(y_pred), tf.float32)
    y_true = tf.convert_to_tensor(y_true)
    is_label = y_true if y_true.dtype == tf.bool else y_true > 0
    num_classes = y_pred.shape[-1]
    if num_classes is None:
      raise ValueError("GapMetric needs a static number of classes (last axis of y_pred).")
    kept = min(self.k, num_classes)

    top = tf.math.top_k(y_pred, k=kept, sorted=True)  # ties: lower class index first, as gap_at_k
    scores = top.values
    flags = tf.cast(tf.gather(is_label, top.indices, batch_dims=1), tf.float32)
    positives = tf.reduce_sum(tf.cast(is_label, tf.float32), axis=1)
    if sample_weight is not None:
      keep = tf.reshape(tf.convert_to_tensor(sample_weight), [-1]) != 0
      scores = tf.where(keep[:, None], scores, float("-inf"))
      flags = tf.where(keep[:, None], flags, 0.0)
      positives = tf.where(keep, positives, 0.0)
    if kept < self.k:  # fewer classes than k: fill the row with inert pairs
      scores = tf.pad(scores, [[0, 0], [0, self.k - kept]], constant_values=float("-inf"))
      flags = tf.pad(flags, [[0, 0], [0, self.k - kept]])
    scores, flags, positives = _gather_replicas(scores, flags, positives)

    batch_size = tf.shape(scores, out_type=tf.int64)[0]
    first = tf.convert_to_tensor(self.videos_seen)
    video_index = first + tf.range(batch_size, dtype=tf.int64)
    if self.on_overflow == "window":
      rows = video_index % self.max_videos
    else:
      if not _in_xla_context():
        tf.debugging.assert_less_equal(
          first + batch_size,
          tf.constant(self.max_videos, tf.int64),
          message=(
            f"GapMetric '{self.name}' holds at most max_videos={self.max_videos} videos between "
            "resets; raise max_videos (8*k bytes per video) or use on_overflow='window'."
          ),
        )
      # Without assertions (XLA) clamp the writes; result() then reports NaN.
      rows = tf.minimum(video_index, self.max_videos - 1)
    _scatter_rows(self.top_scores, rows, scores)
    _scatter_rows(self.top_is_positive, rows, flags)
    _scatter_rows(self.positives_per_video, rows, positives)
    self.videos_seen.assign_add(batch_size)

  def result(self):
    videos_seen = tf.convert_to_tensor(self.videos_seen)
    scores = tf.convert_to_tensor(self.top_scores)
    flags = tf.convert_to_tensor(self.top_is_positive)
    positives = tf.convert_to_tensor(self.positives_per_video)
    if not _in_xla_context():  # dynamic shapes allowed: sort the filled rows only
      stored = tf.minimum(videos_seen, self.max_videos)
      scores, flags, positives = scores[:stored], flags[:stored], positives[:stored]
    scores = tf.reshape(scores, [-1])
    # top_k with k = size is a full sort, stable: equal scores keep buffer (arrival) order.
    order = tf.math.top_k(scores, k=tf.size(scores), sorted=True).indices
    sorted_flags = tf.cast(tf.gather(tf.reshape(flags, [-1]), order), tf.float64)
    ranks = tf.range(1, tf.size(sorted_flags) + 1, dtype=tf.float64)
    precision_sum = tf.reduce_sum(sorted_flags * tf.cumsum(sorted_flags) / ranks)
    gap = tf.math.divide_no_nan(precision_sum, tf.reduce_sum(tf.cast(positives, tf.float64)))
    if self.on_overflow == "error":
      gap = tf.where(videos_seen > self.max_videos, tf.constant(float("nan"), tf.float64), gap)
    return tf.cast(gap, self.dtype)

  def reset_state(self):
    self.top_scores.assign(tf.fill((self.max_videos, self.k), tf.constant(float("-inf"), tf.float32)))
    self.top_is_positive.assign(tf.zeros((self.max_videos, self.k), tf.float32))
    self.positives_per_video.assign(tf.zeros((self.max_videos,), tf.float32))
    self.videos_seen.assign(tf.constant(0, tf.int64))

  def get_config(self):
    config = super().get_config()
    config.update({"k": self.k, "max_videos": self.max_videos, "on_overflow": self.on_overflow})
    return config
