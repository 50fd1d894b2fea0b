"""Stacker rows: per video, the union of every L1 model's top-20 classes, one row per (video, candidate).

Row features (names in `feature_names(models)`):
  class_id               the candidate class (numerical by default; see stacker.StackerConfig)
  score_<m>, rank_<m>    model m's probability and 1-based rank of the class in its stored top-K;
                         missing (NaN) when the class is outside that top-K
  mean_score, max_score  over models, a missing score counting as 0
  num_models             how many models have the class in their top-`top_n`
  prior                  the class's frequency among labeled training videos
target = the candidate is a true label. Positives that are no candidate get no row, but each video's
full positive count is kept so that GAP of a row scoring has the right denominator.

One TF function, `candidate_features`, computes the rows from per-model top-K lists. The offline path
runs it eagerly on chunks of a few thousand videos read from the prediction stores; the exported "large
ensemble" runs the same function inside its serving graph, so the two cannot drift apart. Memory is one
[chunk, classes] matrix at a time, never videos x models x classes.

The set on disk (part files and an index written last) is `yt8m_tf.stores.candidates`.
"""

from __future__ import annotations

import os
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from yt8m_tf import files
from yt8m_tf.stores import predictions
from yt8m_tf.stores.candidates import CandidateChunk, concatenate, is_complete, read_index, write_part

TOP_N = 20  # classes per model that become candidates (the seed's TOP_LABELS_PER_MODEL)


def feature_names(model_names: Sequence[str]) -> List[str]:
  per_model = [f"{kind}_{name}" for name in model_names for kind in ("score", "rank")]
  return ["class_id", *per_model, "mean_score", "max_score", "num_models", "prior"]


def candidate_features(
  top_classes: Sequence[tf.Tensor],
  top_scores: Sequence[tf.Tensor],
  model_names: Sequence[str],
  prior: tf.Tensor,
  top_n: int = TOP_N,
):
  """Candidate rows of a batch of videos.

  Args:
    top_classes: per model, [n, K] int class ids, best first.
    top_scores: per model, [n, K] float probabilities matching `top_classes`.
    model_names: the models' names (feature names).
    prior: [num_classes] float32 class frequencies.
    top_n: classes per model that become candidates.

  Returns:
    (row_video [R] int64 index into the batch, class_id [R] int64, features {name: [R] float32}), rows
    ordered by video, then class.
  """
  num_classes = int(prior.shape[0])
  n = tf.shape(top_classes[0])[0]

  def dense_index(classes):  # [n, k] class ids -> [n*k, 2] (video, class) pairs
    k = tf.shape(classes)[1]
    videos = tf.repeat(tf.range(n, dtype=tf.int64), k)
    return tf.stack([videos, tf.reshape(tf.cast(classes, tf.int64), [-1])], axis=1)

  shape = tf.stack([tf.cast(n, tf.int64), num_classes])
  in_top_n = [
    tf.scatter_nd(dense_index(c[:, :top_n]), tf.ones([tf.size(c[:, :top_n])], tf.int32), shape)
    for c in top_classes
  ]
  num_models_top_n = tf.add_n(in_top_n)
  positions = tf.where(num_models_top_n > 0)  # [R, 2], row-major: by video, then class
  features = {"class_id": tf.cast(positions[:, 1], tf.float32)}
  scores = []
  for name, classes, model_scores in zip(model_names, top_classes, top_scores):
    index = dense_index(classes)
    k = tf.shape(classes)[1]
    missing = tf.fill(tf.cast(shape, tf.int32), np.float32("nan"))
    score_grid = tf.tensor_scatter_nd_update(
      missing, index, tf.reshape(tf.cast(model_scores, tf.float32), [-1])
    )
    ranks = tf.tile(tf.range(1, k + 1, dtype=tf.float32), [n])
    rank_grid = tf.tensor_scatter_nd_update(missing, index, ranks)
    score = tf.gather_nd(score_grid, positions)
    features[f"score_{name}"] = score
    features[f"rank_{name}"] = tf.gather_nd(rank_grid, positions)
    scores.append(tf.where(tf.math.is_nan(score), 0.0, score))
  stacked = tf.stack(scores, axis=1)
  features["mean_score"] = tf.reduce_mean(stacked, axis=1)
  features["max_score"] = tf.reduce_max(stacked, axis=1)
  features["num_models"] = tf.cast(tf.gather_nd(num_models_top_n, positions), tf.float32)
  features["prior"] = tf.gather(tf.cast(prior, tf.float32), positions[:, 1])
  return positions[:, 0], positions[:, 1], features


def aligned_top_k(
  stores: Mapping[str, str], chunk_videos: int
) -> Iterator[tuple[np.ndarray, List[np.ndarray], List[np.ndarray]]]:
  """(ids, per-model classes, per-model scores) for consecutive chunks of videos read from top-K
  prediction stores in lockstep, in the first store's order. The stores must hold the same videos; one
  that lists them in another order (a frame-level member read other files, interleaved otherwise) is put
  in the first store's order by id, which loads that store whole (its top-K classes and scores). Stores
  of other videos are an error naming them."""
  names = list(stores)
  for name in names:
    if predictions.read_index(stores[name])["top_k"] is None:
      raise ValueError(f"{stores[name]}: candidates need a top-K store, not full rows")
  order = predictions.read_video_ids(stores[names[0]])
  streams = []
  for name in names:
    ids = order if name == names[0] else predictions.read_video_ids(stores[name])
    if np.array_equal(ids, order):
      streams.append(predictions.read_predictions(stores[name]))
    else:
      streams.append(iter([_reordered(stores[name], ids, order, stores[names[0]])]))
  streams = [_rechunk(stream, chunk_videos) for stream in streams]
  while True:
    parts = [next(s, None) for s in streams]
    if all(p is None for p in parts):
      return
    ids = parts[0].ids
    yield ids, [p.classes for p in parts], [p.scores for p in parts]


def _reordered(
  store: str, ids: np.ndarray, order: np.ndarray, first_store: str
) -> predictions.PredictionChunk:
  """The whole of `store` (whose videos are `ids`) in the order of the videos `order` of `first_store`."""
  if len(ids) != len(order) or len(np.unique(ids)) != len(ids):
    raise ValueError(
      f"prediction stores {first_store} ({len(order)} videos) and {store} ({len(ids)} videos, "
      f"{len(np.unique(ids))} distinct) do not hold the same videos; predict them from the same videos"
    )
  sorted_at = np.argsort(ids)
  where = np.searchsorted(ids, order, sorter=sorted_at)
  rows = sorted_at[np.minimum(where, len(ids) - 1)]
  missing = ids[rows] != order
  if missing.any():
    raise ValueError(
      f"prediction stores {first_store} and {store} list different videos ({order[missing][0]!r} is not in "
      f"the second); predict them from the same videos"
    )
  whole = _merge(list(predictions.read_predictions(store)))
  return predictions.PredictionChunk(order, whole.scores[rows], whole.classes[rows])


def _rechunk(
  chunks: Iterator[predictions.PredictionChunk], size: int
) -> Iterator[predictions.PredictionChunk]:
  buffer: List[predictions.PredictionChunk] = []
  buffered = 0
  for chunk in chunks:
    buffer.append(chunk)
    buffered += len(chunk.ids)
    while buffered >= size:
      merged = _merge(buffer)
      yield _slice(merged, 0, size)
      rest = _slice(merged, size, buffered)
      buffer, buffered = ([rest] if len(rest.ids) else []), buffered - size
  if buffered:
    yield _merge(buffer)


def _merge(chunks):
  if len(chunks) == 1:
    return chunks[0]
  return predictions.PredictionChunk(
    np.concatenate([c.ids for c in chunks]),
    np.concatenate([c.scores for c in chunks]),
    np.concatenate([c.classes for c in chunks]),
  )


def _slice(chunk, start, stop):
  return predictions.PredictionChunk(
    chunk.ids[start:stop], chunk.scores[start:stop], chunk.classes[start:stop]
  )


def class_prior(labels: Mapping[bytes, np.ndarray], num_classes: int) -> np.ndarray:
  """Fraction of the labeled videos carrying each class."""
  counts = np.zeros(num_classes, np.float64)
  for classes in labels.values():
    counts[classes] += 1
  return (counts / max(len(labels), 1)).astype(np.float32)


def build_chunk(
  ids: np.ndarray,
  top_classes: Sequence[np.ndarray],
  top_scores: Sequence[np.ndarray],
  model_names: Sequence[str],
  prior: np.ndarray,
  labels: Optional[Mapping[bytes, np.ndarray]] = None,
  top_n: int = TOP_N,
) -> CandidateChunk:
  """Candidate rows of one chunk of videos; targets from `labels` (id -> positive classes) if given."""
  row_video, class_id, features = candidate_features(
    [tf.constant(c.astype(np.int32)) for c in top_classes],
    [tf.constant(s.astype(np.float32)) for s in top_scores],
    model_names,
    tf.constant(prior),
    top_n=top_n,
  )
  row_video = row_video.numpy().astype(np.int32)
  class_id = class_id.numpy().astype(np.int32)
  target = None
  num_positives = np.full(len(ids), -1, np.int32)
  if labels is not None:
    missing = [v for v in ids if v not in labels]
    if missing:
      raise KeyError(f"{len(missing)} videos have predictions but no labels, e.g. {missing[0]!r}")
    truth = [labels[v] for v in ids]
    num_positives = np.array([len(t) for t in truth], np.int32)
    # A (video, class) pair is positive when it is among the video's labels: one sorted key search.
    num_classes = len(prior)
    keys = np.concatenate([i * num_classes + np.asarray(t, np.int64) for i, t in enumerate(truth)] or [[]])
    row_keys = row_video.astype(np.int64) * num_classes + class_id
    target = np.isin(row_keys, keys).astype(np.int8)
  return CandidateChunk(
    ids=np.asarray(ids),
    num_positives=num_positives,
    row_video=row_video,
    class_id=class_id,
    features={k: v.numpy() for k, v in features.items()},
    target=target,
  )


def build_candidate_splits(
  stores_by_split: Mapping[str, Mapping[str, str]],
  out_dir: str,
  prior: np.ndarray,
  labels_by_split: Mapping[str, Optional[Mapping[bytes, np.ndarray]]],
  log=print,
) -> Dict[str, dict]:
  """The stacker's input, shared by stack_main and the pipeline: for each split ("train": the L1 models'
  OOF stores, "test": their test stores), `build_candidates` of its {model: store dir} into
  `out_dir/<split>`. Returns each split's index."""
  return {
    split: build_candidates(stores, os.path.join(out_dir, split), prior, labels_by_split.get(split), log=log)
    for split, stores in stores_by_split.items()
  }


def build_candidates(
  stores: Mapping[str, str],
  out_dir: str,
  prior: np.ndarray,
  labels: Optional[Mapping[bytes, np.ndarray]] = None,
  top_n: int = TOP_N,
  chunk_videos: int = 4096,
  part_videos: int = 100_000,
  log=print,
) -> dict:
  """Candidate rows of every video of the aligned `stores` ({model name: store dir}) into `out_dir`.

  A complete set (its index exists) is kept as it is; an interrupted one is rebuilt.
  """
  if is_complete(out_dir):
    return read_index(out_dir)
  names = list(stores)
  bad = [n for n in names if not n.replace("_", "").isalnum()]
  if bad:
    raise ValueError(f"model names must be letters, digits and '_' (they name features): {bad}")
  tf.io.gfile.makedirs(out_dir)
  parts, pending, pending_videos = [], [], 0
  totals = {"videos": 0, "rows": 0, "positive_rows": 0, "positives": 0}

  def flush():
    chunk = concatenate(pending)
    name = f"part-{len(parts):05d}.npz"
    write_part(os.path.join(out_dir, name), chunk)
    parts.append(name)

  for ids, classes, scores in aligned_top_k(stores, chunk_videos):
    chunk = build_chunk(ids, classes, scores, names, prior, labels, top_n)
    totals["videos"] += len(ids)
    totals["rows"] += len(chunk.class_id)
    if chunk.target is not None:
      totals["positive_rows"] += int(chunk.target.sum())
      totals["positives"] += int(chunk.num_positives.sum())
    pending.append(chunk)
    pending_videos += len(ids)
    if pending_videos >= part_videos:
      flush()
      pending, pending_videos = [], 0
  if pending:
    flush()
  index = {
    "models": names,
    "stores": dict(stores),
    "features": feature_names(names),
    "top_n": top_n,
    "labeled": labels is not None,
    "parts": parts,
    **totals,
  }
  if labels is not None:
    index["candidate_recall"] = totals["positive_rows"] / max(totals["positives"], 1)
  files.write_index(out_dir, index)
  log(
    f"[candidates] {out_dir}: {totals['videos']} videos, {totals['rows']} rows "
    f"({totals['rows'] / max(totals['videos'], 1):.1f} per video)"
  )
  return index
