"""Streaming mini-batch k-means of frame features (numpy), for the cluster-centroid model
(`yt8m_tf.models.frame.centroids`).

`fit_kmeans` learns k centroids from batches of real (unpadded) frames; `fit_kmeans_on_dataset` feeds it
the real frames of a `yt8m_tf.data.frame_dataset`, dropping the padding. `nearest_centroids` is the
chunked L2 assignment both use. k-means++ seeding is sequential: k passes over the init sample (for
k=10000, 30000 x 1152), minutes on a CPU; numpy's OpenBLAS threads can make the small mat-vecs much
slower on a loaded machine (OPENBLAS_NUM_THREADS=1 helps there); init="random" is instant.
"""

from __future__ import annotations

import collections.abc
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from yt8m_tf.models.inputs import FRAME_FEATURES, NUM_FRAMES

FrameSource = Iterable[np.ndarray] | Callable[[], Iterable[np.ndarray]]


def _batches(source: FrameSource) -> Iterator[np.ndarray]:
  iterable = source() if callable(source) else source
  for batch in iterable:
    batch = np.asarray(batch, dtype=np.float32)
    if batch.ndim != 2:
      raise ValueError(f"frame batches must be [n, d] arrays of real frames, got shape {batch.shape}")
    if len(batch):
      yield batch


def nearest_centroids(
  x: np.ndarray,
  centroids: np.ndarray,
  chunk_elements: int = 1 << 24,
  return_distances: bool = False,
):
  """Index of the nearest centroid (L2) of each row of x [n, d]; chunked so that no more than
  `chunk_elements` scores are held at once. With `return_distances`, also the squared distances."""
  centroid_sq_norms = np.einsum("kd,kd->k", centroids, centroids)
  rows = max(1, chunk_elements // max(len(centroids), 1))
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


def _segment_sums(x: np.ndarray, indices: np.ndarray):
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
  init_size: int | None = None,
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
    raise ValueError(  # noqa: TRY004  (a ValueError, as for the other bad arguments)
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
      clusters, sums, batch_counts = _segment_sums(batch, indices)
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


def real_frames(features, feature_names: Sequence[str] = FRAME_FEATURES) -> np.ndarray:
  """One `frame_dataset` batch (features dict, or (features, labels)) -> [n_real, sum(d)] numpy:
  the concatenated features of the real frames only (frame t of a video is real iff t < num_frames)."""
  if isinstance(features, (tuple, list)):
    features = features[0]
  x = np.concatenate([np.asarray(features[name], np.float32) for name in feature_names], axis=-1)
  num_frames = np.asarray(features[NUM_FRAMES]).reshape(-1)
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
    feature_names: Sequence[str] = FRAME_FEATURES,
    max_batches: int | None = None,
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
  feature_names: Sequence[str] = FRAME_FEATURES,
  max_batches: int | None = None,
  frame_stride: int = 1,
  **kmeans_kwargs,
) -> np.ndarray:
  """`fit_kmeans` over the real frames of a `yt8m_tf.data.frame_dataset` (padding never enters)."""
  return fit_kmeans(DatasetFrames(dataset, feature_names, max_batches, frame_stride), k, **kmeans_kwargs)
