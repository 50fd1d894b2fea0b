"""Streaming mini-batch k-means (yt8m_tf.models.kmeans): blob centers recovered, padding never clustered."""

import numpy as np
import pytest
import tensorflow as tf

from yt8m_tf.models import kmeans


def _blobs(num_blobs=5, dim=8, per_blob=120, spread=0.05, seed=0, offset=4.0):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(num_blobs, dim)) * 2.0
  centers += np.sign(centers) * offset  # every coordinate |c| >= offset: far from the origin
  labels = rng.integers(0, num_blobs, num_blobs * per_blob)
  points = centers[labels] + rng.normal(size=(len(labels), dim)) * spread
  return centers.astype(np.float32), points.astype(np.float32)


def _match(fitted, centers, tol):
  distances = np.linalg.norm(fitted[:, None] - centers[None], axis=-1)
  assert sorted(distances.argmin(1)) == list(range(len(centers))), distances  # a permutation
  assert distances.min(1).max() < tol, distances


def test_fit_kmeans_recovers_blob_centers():
  centers, points = _blobs()
  batches = [points[i : i + 64] for i in range(0, len(points), 64)]
  fitted = kmeans.fit_kmeans(batches, 5, num_passes=4, seed=0, init_size=300)
  assert fitted.shape == (5, 8) and fitted.dtype == np.float32
  _match(fitted, centers, tol=0.05)
  # Random init (k distinct sample rows) may put two centroids in one blob; it only has to run.
  fitted = kmeans.fit_kmeans(lambda: iter(batches), 5, num_passes=2, init="random")
  assert fitted.shape == (5, 8) and np.isfinite(fitted).all()
  with pytest.raises(ValueError, match="one-shot"):
    kmeans.fit_kmeans(iter(batches), 5)
  with pytest.raises(ValueError, match="at least k"):
    kmeans.fit_kmeans([points[:3]], 5)


def test_fit_kmeans_on_dataset_ignores_padding():
  centers, points = _blobs(num_blobs=4, dim=6, per_blob=40)
  rng = np.random.default_rng(1)
  num_videos, frames = len(points) // 4, 10
  counts = np.full(num_videos, 4, np.int32)  # 4 real frames, 6 zero-padded
  x = np.zeros((num_videos, frames, 6), np.float32)
  x[:, :4] = points[rng.permutation(len(points))].reshape(num_videos, 4, 6)

  def dataset(num_frames):
    elements = {"rgb": x[..., :4], "audio": x[..., 4:], "num_frames": num_frames}
    return tf.data.Dataset.from_tensor_slices((elements, np.zeros(num_videos))).batch(8)

  fitted = kmeans.fit_kmeans_on_dataset(dataset(counts), 4, num_passes=3, seed=0)
  _match(fitted, centers, tol=0.1)
  assert np.linalg.norm(fitted, axis=1).min() > 3.0  # nothing at the padding point
  # Control: if the padding were taken as frames, zeros would form a cluster at the origin.
  polluted = kmeans.fit_kmeans_on_dataset(
    dataset(np.full(num_videos, frames, np.int32)), 4, num_passes=3, seed=0
  )
  assert np.linalg.norm(polluted, axis=1).min() < 3.0
  assert kmeans.real_frames(next(iter(dataset(counts)))).shape == (8 * 4, 6)
