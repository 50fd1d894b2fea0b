"""Cluster-centroid frame model: "Frames replaced with cluster centroids (k-means, k=10000)".

The seed's slides name this model but its code has no k-means (seed_method.md §3.4), so this is our
reading of the one slide line:

1. `yt8m_tf.models.kmeans.fit_kmeans` learns k centroids of the real (unpadded) frames,
   x_t = concat(rgb_t, audio_t) (1152-d, dequantized), by streaming mini-batch k-means;
   `fit_kmeans_on_dataset` feeds it from `yt8m_tf.data.frame_dataset`, dropping the padded frames.
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

Size and cost at the defaults (k=10000, hidden 2048, the 2018 classes): 28.4M trainable parameters plus
11.5M non-trainable (centroids 10000 x 1152, idf, BN statistics), 39.9M in all; the quantizer costs
k*1152 multiply-adds per real frame (~3.5 GFLOP for a 300-frame video).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from yt8m_tf.data.schema import Schema
from yt8m_tf.models.inputs import FRAME_FEATURES, NUM_FRAMES, masked_frame_inputs
from yt8m_tf.models.kmeans import fit_kmeans_on_dataset  # noqa: F401  (training calls it from here)
from yt8m_tf.models.layers import OUTPUT_DTYPE, MaskedPooling, frame_mask
from yt8m_tf.models.registry import FRAME, register

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
  feature_names: Sequence[str] = FRAME_FEATURES,
  max_batches: int | None = None,
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
    mask = frame_mask(tf.reshape(features[NUM_FRAMES], [-1]), tf.shape(x)[1])
    histogram = np.asarray(layer(x, mask))
    document_frequency += (histogram > 0).sum(axis=0)
    videos += len(histogram)
  return (np.log((1.0 + videos) / (1.0 + document_frequency)) + 1.0).astype(np.float32)


REPRESENTATIONS = ("histogram", "sequence", "both")


@register("ClusterCentroids", kind=FRAME, any_features=True)
def cluster_centroids(
  schema: Schema,
  num_clusters: int = 10000,
  centroids=None,
  idf=None,
  representation: str = "histogram",
  l2_normalize: bool = True,
  hidden_size: int = 2048,
  num_hidden_layers: int = 1,
  dropout: float = 0.5,
  chunk_size: int = 4096,
  bn_momentum: float = 0.99,
) -> keras.Model:
  """Frames -> nearest of `num_clusters` k-means centroids of concat(rgb, audio) -> MLP -> logits.

  representation "histogram" (default): bag-of-centroids frequencies * idf, L2-normalized if
  `l2_normalize` (a TF-IDF vector); "sequence": masked mean and max over time of the centroid
  sequence; "both": their concatenation. centroids [num_clusters, schema.total_feature_size] / idf
  [num_clusters] initialize the non-trainable weights (random centroids and unit idf if None).
  `bn_momentum`: of every BatchNorm.
  """
  if representation not in REPRESENTATIONS:
    raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
  inputs, frames, mask = masked_frame_inputs(schema)
  frames = keras.layers.Concatenate(axis=-1, name="concat_frames")(list(frames.values()))
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
    x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"hidden{i}_bn")(x)
    x = keras.layers.ReLU(name=f"hidden{i}_relu")(x)
    if dropout > 0:
      x = keras.layers.Dropout(dropout, name=f"hidden{i}_dropout")(x)
  logits = keras.layers.Dense(schema.num_classes, name="logits", dtype=OUTPUT_DTYPE)(x)
  model = keras.Model(inputs, logits, name="ClusterCentroids")
  if centroids is not None or idf is not None:
    set_centroids(model, quantizer.centroids.numpy() if centroids is None else centroids, idf)
  return model
