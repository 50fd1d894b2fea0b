"""Cluster-centroid frame model: "Frames replaced with cluster centroids (k-means, k=10000)".

The seed's slides name this model but its code has no k-means (seed_method.md §3.4), so this is our
reading of the one slide line:

1. `fit_kmeans` learns k centroids of the real (unpadded) frames, x_t = concat(rgb_t, audio_t)
   (1152-d, dequantized), by streaming mini-batch k-means; `fit_kmeans_on_dataset` feeds it from
   `yt8m_tf.data.frame_dataset`, dropping the padded frames.
2. `NearestCentroid` replaces each real frame by its nearest centroid (L2, argmin of
   ||c||^2 - 2 x.c, in row chunks) and outputs the bag-of-centroids histogram (counts / num_frames,
   optionally scaled by an IDF weight), the centroid sequence, or both. Centroids and IDF are
   non-trainable weights, saved with the model.
3. The registered model "ClusterCentroids" classifies the histogram (default, `representation=
   "histogram"`): hist * idf -> L2 normalize -> [Dense(hidden) -> BN -> ReLU -> Dropout] x layers
   -> Dense(num_classes). `representation="sequence"` uses the masked mean and max over time of the
   centroid sequence instead ([2*1152]); "both" concatenates the two.

Build with `centroids=None` (random, seeded), then `set_centroids(model, fit_kmeans(...))`, and
optionally `set_centroids(model, centroids, idf=compute_idf(dataset, centroids))`.

Size and cost at the defaults (k=10000, hidden 2048, 3862 classes): 28.4M trainable parameters plus
11.5M non-trainable (centroids 10000 x 1152, idf, BN statistics), 39.9M in all; the quantizer costs
k*1152 multiply-adds per real frame (~3.5 GFLOP for a 300-frame video). k-means++ seeding is
sequential: k passes over the init sample (for k=10000, 30000 x 1152), minutes on a CPU; numpy's
OpenBLAS threads can make the small mat-vecs much slower on a loaded machine
(OPENBLAS_NUM_THREADS=1 helps there); init="random" is instant.
"""

from __future__ import annotations

import collections.abc
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import keras
import numpy as np
import tensorflow as tf

from yt8m_tf.models.inputs import frame_inputs
from yt8m_tf.models.layers import FrameMask, MaskedPooling
from yt8m_tf.models.registry import FRAME, register

FrameSource = Union[Iterable[np.ndarray], Callable[[], Iterable[np.ndarray]]]

# ------------------------------------------------------------------------------------------------
# k-means
# ------------------------------------------------------------------------------------------------


def _batches(source: FrameSource) -> Iterator[np.ndarray]:
  iterable = source() if callable(source) else source
  for batch in iterable:
    batch = np.asarray(batch, dtype=np.float32)
    if batch.ndim != 2:
      raise ValueError(f"frame batches must be [n, d] arrays of real frames, got shape {batch.shape}")
    if len(batch):
      yield batch


def _chunk_rows(k: int, chunk_elements: int) -> int:
  return max(1, chunk_elements // max(k, 1))


def nearest_centroids(
  x: np.ndarray,
  centroids: np.ndarray,
  chunk_elements: int = 1 << 24,
  centroid_sq_norms: Optional[np.ndarray] = None,
  return_distances: bool = False,
):
  """Index of the nearest centroid (L2) of each row of x [n, d]; chunked so that no more than
  `chunk_elements` scores are held at once. With `return_distances`, also the squared distances."""
  if centroid_sq_norms is None:
    centroid_sq_norms = np.einsum("kd,kd->k", centroids, centroids)
  rows = _chunk_rows(len(centroids), chunk_elements)
  indices = np.empty(len(x), np.int64)
  distances = np.empty(len(x), np.float32) if return_distances else None
  for start in range(0, len(x), rows):
    chunk = x[start : start + rows]
    scores = centroid_sq_norms[None, :] - 2.0 * (chunk @ centroids.T)
    best = np.argmin(scores, axis=1)
    indices[start : start + rows] = best
    if return_distances:
      distances[start : start + rows] = np.maximum(
        scores[np.arange(len(chunk)), best] + np.einsum("nd,nd->n", chunk, chunk), 0.0
      )
  return (indices, distances) if return_distances else indices


def _kmeans_plus_plus(sample: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
  """k-means++ seeding (Arthur & Vassilvitskii 2007) on an in-memory sample [n, d]."""
  n = len(sample)
  sample_sq = np.einsum("nd,nd->n", sample, sample)
  centroids = np.empty((k, sample.shape[1]), np.float32)
  first = rng.integers(n)
  centroids[0] = sample[first]
  closest = np.maximum(sample_sq - 2.0 * sample @ sample[first] + sample_sq[first], 0.0)
  for i in range(1, k):
    total = closest.sum()
    j = rng.choice(n, p=closest / total) if total > 0 else rng.integers(n)
    centroids[i] = sample[j]
    closest = np.minimum(closest, np.maximum(sample_sq - 2.0 * sample @ sample[j] + sample_sq[j], 0.0))
  return centroids


def _segment_sums(x: np.ndarray, indices: np.ndarray, k: int):
  """Per-centroid sums of the rows of x and counts, without a dense [n, k] one-hot."""
  order = np.argsort(indices, kind="stable")
  sorted_indices = indices[order]
  clusters, starts = np.unique(sorted_indices, return_index=True)
  sums = np.add.reduceat(x[order], starts, axis=0)
  counts = np.diff(np.append(starts, len(indices)))
  return clusters, sums, counts


def fit_kmeans(
  frames: FrameSource,
  k: int,
  *,
  num_passes: int = 3,
  init: str = "k-means++",
  init_size: Optional[int] = None,
  seed: int = 0,
  reassign_empty: bool = True,
  chunk_elements: int = 1 << 24,
  verbose: bool = False,
) -> np.ndarray:
  """Streaming mini-batch k-means (Sculley 2010) over batches of real frames; returns [k, d] float32.

  Args:
    frames: an iterable of [n, d] float arrays of REAL frames (no padding), or a zero-argument
      callable returning such an iterable. It is iterated once for the initial sample and once per
      pass, so with num_passes > 1 it must be re-iterable (a list, a tf.data.Dataset wrapper, a
      callable); a one-shot iterator raises ValueError.
    k: number of centroids (e.g. 10000).
    num_passes: fixed number of passes over the data.
    init: "k-means++" (seeding on the initial sample) or "random" (k distinct rows of it).
    init_size: frames gathered from the first batches for the initialization (default
      max(3k, 10000), at least k; for k=10000 that is 30000 x 1152 float32 = 138 MB). The reader
      should shuffle (and `frame_stride` thin) so that the first batches are representative: a
      cluster missing from the sample can end up with no centroid while another gets two, a local
      minimum that mini-batch updates do not leave.
    seed: numpy seed (initialization and re-seeding); the result is deterministic given the data order.
    reassign_empty: after every pass but the last, centroids that received no frame in that pass are
      re-seeded from the initial sample with probability proportional to the squared distance to
      the nearest centroid (their counts restart at 0).
    chunk_elements: at most this many frame-centroid scores are held at once.

  Update: each batch is assigned to the nearest centroids; for every centroid c with n_c new frames
  summing to s_c, count_c += n_c and c += (s_c - n_c c) / count_c, i.e. c is the running mean of every
  frame ever assigned to it (per-centroid learning rate 1/count). Memory O(k d + batch + init_size d).
  """
  if k < 1:
    raise ValueError(f"k must be positive, got {k}")
  if init not in ("k-means++", "random"):
    raise ValueError(f"init must be 'k-means++' or 'random', got {init!r}")
  if num_passes < 1:
    raise ValueError(f"num_passes must be >= 1, got {num_passes}")
  if not callable(frames) and isinstance(frames, collections.abc.Iterator):
    raise ValueError(
      "frames is a one-shot iterator; pass a list, a re-iterable object or a callable "
      "returning a fresh iterator (it is read once for init and once per pass)"
    )
  rng = np.random.default_rng(seed)
  init_size = max(init_size or max(3 * k, 10_000), k)

  gathered, size = [], 0
  for batch in _batches(frames):
    gathered.append(batch[: init_size - size])
    size += len(gathered[-1])
    if size >= init_size:
      break
  if size < k:
    raise ValueError(f"k-means with k={k} needs at least k real frames, got {size}")
  sample = np.concatenate(gathered)
  if init == "k-means++":
    centroids = _kmeans_plus_plus(sample, k, rng)
  else:
    centroids = sample[rng.choice(len(sample), k, replace=False)].copy()
  counts = np.zeros(k, np.float64)

  for epoch in range(num_passes):
    pass_counts = np.zeros(k, np.int64)
    seen = 0
    for batch in _batches(frames):
      indices = nearest_centroids(batch, centroids, chunk_elements)
      clusters, sums, batch_counts = _segment_sums(batch, indices, k)
      counts[clusters] += batch_counts
      pass_counts[clusters] += batch_counts
      step = (sums - batch_counts[:, None] * centroids[clusters]) / counts[clusters, None]
      centroids[clusters] += step.astype(np.float32)
      seen += len(batch)
    empty = np.flatnonzero(pass_counts == 0)
    if verbose:
      print(f"k-means pass {epoch + 1}/{num_passes}: {seen} frames, {len(empty)} empty centroids")
    if reassign_empty and len(empty) and epoch < num_passes - 1:
      _, distances = nearest_centroids(sample, centroids, chunk_elements, return_distances=True)
      total = distances.sum()
      replace = min(len(empty), len(sample))
      p = distances / total if total > 0 else None
      nonzero = np.count_nonzero(distances) if total > 0 else len(sample)
      picks = rng.choice(len(sample), replace, replace=False, p=p if nonzero >= replace else None)
      centroids[empty[:replace]] = sample[picks]
      counts[empty[:replace]] = 0
  return centroids.astype(np.float32)


def real_frames(features, feature_names: Sequence[str] = ("rgb", "audio")) -> np.ndarray:
  """One `frame_dataset` batch (features dict, or (features, labels)) -> [n_real, sum(d)] numpy:
  the concatenated features of the real frames only (frame t of a video is real iff t < num_frames)."""
  if isinstance(features, (tuple, list)):
    features = features[0]
  x = np.concatenate([np.asarray(features[name], np.float32) for name in feature_names], axis=-1)
  num_frames = np.asarray(features["num_frames"]).reshape(-1)
  mask = np.arange(x.shape[1])[None, :] < num_frames[:, None]
  return x[mask]


class DatasetFrames:
  """Re-iterable view of a frame dataset as batches of real frames, for `fit_kmeans`.

  `dataset` is a tf.data.Dataset (or any re-iterable) of `frame_dataset` elements; each iteration
  re-reads it (a shuffled dataset reshuffles per pass). `max_batches` caps the batches per pass;
  `frame_stride` keeps every stride-th real frame (neighbouring frames are near duplicates).
  """

  def __init__(
    self,
    dataset,
    feature_names: Sequence[str] = ("rgb", "audio"),
    max_batches: Optional[int] = None,
    frame_stride: int = 1,
  ):
    self.dataset = dataset
    self.feature_names = tuple(feature_names)
    self.max_batches = max_batches
    self.frame_stride = max(int(frame_stride), 1)

  def __iter__(self):
    for i, element in enumerate(self.dataset):
      if self.max_batches is not None and i >= self.max_batches:
        break
      frames = real_frames(element, self.feature_names)
      yield frames[:: self.frame_stride] if self.frame_stride > 1 else frames


def fit_kmeans_on_dataset(
  dataset,
  k: int,
  *,
  feature_names: Sequence[str] = ("rgb", "audio"),
  max_batches: Optional[int] = None,
  frame_stride: int = 1,
  **kmeans_kwargs,
) -> np.ndarray:
  """`fit_kmeans` over the real frames of a `yt8m_tf.data.frame_dataset` (padding never enters)."""
  return fit_kmeans(DatasetFrames(dataset, feature_names, max_batches, frame_stride), k, **kmeans_kwargs)


# ------------------------------------------------------------------------------------------------
# NearestCentroid layer
# ------------------------------------------------------------------------------------------------

OUTPUT_MODES = ("histogram", "centroids", "both")


@keras.saving.register_keras_serializable(package="yt8m_tf")
class NearestCentroid(keras.layers.Layer):
  """Replaces each real frame of x [B, T, d] by its nearest centroid (L2); mask [B, T].

  output_mode:
    "histogram": [B, k] bag of centroids, counts of real frames per centroid / num_frames, times
      the `idf` weight (ones unless set); a video with no frame gives zeros.
    "centroids": [B, T, d] the centroid of each real frame, zeros at padded positions.
    "both": [histogram, centroids].
  Only real frames are scored (gathered with the mask, scattered back), in chunks of `chunk_size`
  rows, sequentially, so the score matrix never exceeds chunk_size x k. Centroids [k, d] and idf [k]
  are non-trainable weights (saved with the model, not in the config); set them with
  `set_centroids`. Not differentiable with respect to x (there is nothing to learn below it).
  """

  def __init__(
    self, num_clusters: int, output_mode: str = "histogram", chunk_size: int = 4096, seed: int = 0, **kwargs
  ):
    super().__init__(**kwargs)
    if output_mode not in OUTPUT_MODES:
      raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}")
    self.num_clusters = int(num_clusters)
    self.output_mode = output_mode
    self.chunk_size = int(chunk_size)
    self.seed = seed

  def build(self, input_shape):
    self.feature_size = int(input_shape[-1])
    self.centroids = self.add_weight(
      name="centroids",
      shape=(self.num_clusters, self.feature_size),
      trainable=False,
      initializer=keras.initializers.RandomNormal(stddev=1.0, seed=self.seed),
      autocast=False,
    )
    self.idf = self.add_weight(
      name="idf", shape=(self.num_clusters,), initializer="ones", trainable=False, autocast=False
    )

  def nearest(self, x):
    """Nearest-centroid indices (int32) of the rows of x [n, d]."""
    centroids = tf.convert_to_tensor(self.centroids)
    sq_norms = tf.reduce_sum(tf.square(centroids), axis=1)
    n = tf.shape(x)[0]
    rows = tf.maximum(tf.minimum(n, self.chunk_size), 1)
    num_chunks = (n + rows - 1) // rows
    padded = tf.pad(x, [[0, num_chunks * rows - n], [0, 0]])
    chunks = tf.reshape(padded, [num_chunks, rows, self.feature_size])

    def score(chunk):
      scores = sq_norms[None, :] - 2.0 * tf.matmul(chunk, centroids, transpose_b=True)
      return tf.argmin(scores, axis=1, output_type=tf.int32)

    indices = tf.map_fn(
      score, chunks, fn_output_signature=tf.TensorSpec([None], tf.int32), parallel_iterations=1
    )
    return tf.reshape(indices, [-1])[:n]

  def call(self, x, mask):
    x = tf.cast(x, tf.float32)
    real = tf.cast(mask, tf.float32) > 0
    positions = tf.where(real)  # [n_real, 2] (video, frame)
    indices = self.nearest(tf.gather_nd(x, positions))  # [n_real]
    outputs = []
    if self.output_mode in ("histogram", "both"):
      batch = tf.shape(x)[0]
      segments = tf.cast(positions[:, 0], tf.int32) * self.num_clusters + indices
      counts = tf.math.unsorted_segment_sum(
        tf.ones_like(indices, tf.float32), segments, batch * self.num_clusters
      )
      counts = tf.reshape(counts, [batch, self.num_clusters])
      num_frames = tf.reduce_sum(tf.cast(real, tf.float32), axis=1, keepdims=True)
      outputs.append(counts / tf.maximum(num_frames, 1.0) * tf.convert_to_tensor(self.idf)[None, :])
    if self.output_mode in ("centroids", "both"):
      vectors = tf.gather(tf.convert_to_tensor(self.centroids), indices)
      outputs.append(tf.scatter_nd(positions, vectors, tf.shape(x, out_type=tf.int64)))
    return outputs[0] if len(outputs) == 1 else outputs

  def compute_output_shape(self, x_shape, mask_shape=None):
    histogram = (x_shape[0], self.num_clusters)
    if self.output_mode == "histogram":
      return histogram
    if self.output_mode == "centroids":
      return tuple(x_shape)
    return [histogram, tuple(x_shape)]

  def get_config(self):
    return {
      **super().get_config(),
      "num_clusters": self.num_clusters,
      "output_mode": self.output_mode,
      "chunk_size": self.chunk_size,
      "seed": self.seed,
    }


def _centroid_layers(model) -> list:
  found = []
  for layer in model.layers:
    if isinstance(layer, NearestCentroid):
      found.append(layer)
    elif isinstance(layer, keras.Model):
      found.extend(_centroid_layers(layer))
  return found


def set_centroids(model: keras.Model, centroids, idf=None) -> None:
  """Writes centroids [k, d] (and optionally idf [k]) into every NearestCentroid layer of `model`."""
  layers = _centroid_layers(model)
  if not layers:
    raise ValueError(f"model {model.name!r} has no NearestCentroid layer")
  centroids = np.asarray(centroids, np.float32)
  for layer in layers:
    if tuple(layer.centroids.shape) != centroids.shape:
      raise ValueError(
        f"centroids have shape {centroids.shape}, layer {layer.name!r} expects {tuple(layer.centroids.shape)}"
      )
    layer.centroids.assign(centroids)
    if idf is not None:
      layer.idf.assign(np.asarray(idf, np.float32).reshape(layer.idf.shape))


def compute_idf(
  dataset,
  centroids,
  *,
  feature_names: Sequence[str] = ("rgb", "audio"),
  max_batches: Optional[int] = None,
  chunk_size: int = 4096,
) -> np.ndarray:
  """Smoothed inverse document frequency of each centroid over the videos of a frame dataset:
  idf_k = log((1 + N) / (1 + df_k)) + 1, df_k = videos with at least one real frame nearest to c_k."""
  centroids = np.asarray(centroids, np.float32)
  layer = NearestCentroid(len(centroids), "histogram", chunk_size)
  layer.build((None, None, centroids.shape[1]))
  layer.centroids.assign(centroids)
  document_frequency = np.zeros(len(centroids), np.float64)
  videos = 0
  for i, element in enumerate(dataset):
    if max_batches is not None and i >= max_batches:
      break
    features = element[0] if isinstance(element, (tuple, list)) else element
    x = tf.concat([tf.cast(features[name], tf.float32) for name in feature_names], axis=-1)
    mask = tf.cast(
      tf.range(tf.shape(x)[1])[None, :] < tf.reshape(tf.cast(features["num_frames"], tf.int32), [-1, 1]),
      tf.float32,
    )
    histogram = np.asarray(layer(x, mask))
    document_frequency += (histogram > 0).sum(axis=0)
    videos += len(histogram)
  return (np.log((1.0 + videos) / (1.0 + document_frequency)) + 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------

REPRESENTATIONS = ("histogram", "sequence", "both")


@register("ClusterCentroids", kind=FRAME)
def cluster_centroids(
  num_classes: int = 3862,
  feature_sizes=(1024, 128),
  max_frames: int = 300,
  num_clusters: int = 10000,
  centroids=None,
  idf=None,
  representation: str = "histogram",
  l2_normalize: bool = True,
  hidden_size: int = 2048,
  num_hidden_layers: int = 1,
  dropout: float = 0.5,
  chunk_size: int = 4096,
) -> keras.Model:
  """Frames -> nearest of `num_clusters` k-means centroids of concat(rgb, audio) -> MLP -> logits.

  representation "histogram" (default): bag-of-centroids frequencies * idf, L2-normalized if
  `l2_normalize` (a TF-IDF vector); "sequence": masked mean and max over time of the centroid
  sequence; "both": their concatenation. centroids [num_clusters, sum(feature_sizes)] / idf
  [num_clusters] initialize the non-trainable weights (random centroids and unit idf if None).
  """
  if representation not in REPRESENTATIONS:
    raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
  inputs = frame_inputs(feature_sizes, max_frames)
  mask = FrameMask(max_frames, name="frame_mask")(inputs["num_frames"])
  frames = keras.layers.Concatenate(axis=-1, name="concat_frames")(
    [inputs[name] for name in inputs if name != "num_frames"]
  )
  mode = {"histogram": "histogram", "sequence": "centroids", "both": "both"}[representation]
  quantizer = NearestCentroid(num_clusters, mode, chunk_size, name="nearest_centroid")
  quantized = quantizer(frames, mask)
  parts = []
  if representation in ("histogram", "both"):
    histogram = quantized[0] if representation == "both" else quantized
    if l2_normalize:
      histogram = keras.layers.UnitNormalization(name="histogram_l2")(histogram)
    parts.append(histogram)
  if representation in ("sequence", "both"):
    sequence = quantized[1] if representation == "both" else quantized
    parts.append(MaskedPooling("mean", name="centroid_mean")(sequence, mask))
    parts.append(MaskedPooling("max", name="centroid_max")(sequence, mask))
  x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="concat_representation")(parts)
  for i in range(num_hidden_layers):
    x = keras.layers.Dense(hidden_size, name=f"hidden{i}")(x)
    x = keras.layers.BatchNormalization(name=f"hidden{i}_bn")(x)
    x = keras.layers.ReLU(name=f"hidden{i}_relu")(x)
    if dropout > 0:
      x = keras.layers.Dropout(dropout, name=f"hidden{i}_dropout")(x)
  logits = keras.layers.Dense(num_classes, name="logits")(x)
  model = keras.Model(inputs, logits, name="ClusterCentroids")
  if centroids is not None or idf is not None:
    set_centroids(model, quantizer.centroids.numpy() if centroids is None else centroids, idf)
  return model
