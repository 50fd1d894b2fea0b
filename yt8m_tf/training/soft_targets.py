"""Distillation targets: a soft-label store (`yt8m_tf.stores.soft_labels`) mixed into tf.data label batches.

`target_transform(store, weight)` is a `tf.data.Dataset.map` function on `(features, labels)` batches
whose `features["id"]` holds the video ids. Rows are looked up inside tf.data with TF ops (a static
hash table id -> row, a ragged range over `row_splits`, the entries added sparsely to the scaled hard
labels). The table and the CSR tensors are built once per store, on the CPU, and shared by every
transform of that store.
A training video missing from the store: the seed's store covers every training video (each is OOF
exactly once), so a miss most likely means a store made for other data or folds. The default
`on_missing="error"` fails the input pipeline naming the missing ids; `on_missing="hard"` trains those
videos on their hard labels instead.
"""

from __future__ import annotations

import weakref
from typing import Callable, Tuple

import tensorflow as tf

from yt8m_tf.stores.soft_labels import SoftLabelStore

ON_MISSING = ("error", "hard")
# What a hard positive outside the video's candidates trains on: "mixed" (the seed) 1 - weight, which is 0
# at weight 1; "hard": 1, since the teacher gave it no score rather than a low one. "max": every hard
# positive trains on 1, candidates or not, and the teacher only lifts the negatives (to weight * score).
MISSED_POSITIVES = ("mixed", "hard", "max")
_SCORE_CLIP = 1e-6  # keeps logit(score) finite when a temperature is applied
_MISSING_IDS_SHOWN = 10  # missing ids an error message lists


def target_transform(
  store: SoftLabelStore,
  weight: float,
  on_missing: str = "error",
  missed_positives: str = "mixed",
  temperature: float = 1.0,
) -> Callable[[dict, tf.Tensor], Tuple[dict, tf.Tensor]]:
  """A `Dataset.map` function: `(features, labels) -> (features, weight * soft + (1 - weight) * labels)`,
  soft from `store`.

  `features` must hold `"id"` (tf.string [B]) and passes through unchanged; `labels` is the multi-hot
  [B, num_classes] batch.
  on_missing: "error" (default) fails the pipeline naming the ids the store lacks; "hard" keeps the
    hard labels for those videos.
  missed_positives: a hard positive outside the video's candidates trains on `1 - weight` ("mixed",
    the seed's formula) or on 1 ("hard"); "max": targets are max(hard, weight * soft), so every hard
    positive keeps 1 and the teacher's scores only lift the negatives.
  temperature: the stored probabilities p become sigmoid(logit(p) / temperature); above 1 softens them.
  """
  weight = float(weight)
  if not 0.0 <= weight <= 1.0:
    raise ValueError(f"soft-label weight must be in [0, 1], got {weight}")
  if on_missing not in ON_MISSING:
    raise ValueError(f"on_missing must be one of {ON_MISSING}, got {on_missing!r}")
  if missed_positives not in MISSED_POSITIVES:
    raise ValueError(f"missed_positives must be one of {MISSED_POSITIVES}, got {missed_positives!r}")
  temperature = float(temperature)
  if not temperature > 0:
    raise ValueError(f"temperature must be positive, got {temperature}")
  tensors = tensor_store(store)
  num_classes = store.num_classes
  missing_message = (
    f"{store.source} has no soft labels for these video ids (a store made for other data? "
    "on_missing='hard' trains them on hard labels):"
  )

  def transform(features, labels):
    if not isinstance(features, dict) or "id" not in features:
      raise ValueError("soft labels are looked up by features['id']: read the data with keep_ids=True")
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank is not None and labels.shape.rank != 2:
      raise ValueError(f"labels must be [batch, classes], got shape {labels.shape}")
    width = labels.shape[-1] if labels.shape.rank else None
    if width is None:
      labels = tf.ensure_shape(labels, [None, num_classes])
    elif width != num_classes:
      raise ValueError(f"labels have {width} classes, the soft-label store {store.source} has {num_classes}")
    ids = features["id"]
    rows = tensors.table.lookup(ids)
    found = rows >= 0
    hard = tf.cast(labels, tf.float32)
    if on_missing == "error":
      check = tf.debugging.Assert(
        tf.reduce_all(found),
        [missing_message, tf.boolean_mask(ids, tf.logical_not(found))],
        summarize=_MISSING_IDS_SHOWN,
      )
      with tf.control_dependencies([check]):
        rows = tf.identity(rows)
      hard_weight = 1.0 - weight
    else:
      hard_weight = tf.where(found, 1.0 - weight, 1.0)[:, None]
    indices, scores = tensors.entries(rows, found)
    if temperature != 1.0:
      clipped = tf.clip_by_value(scores, _SCORE_CLIP, 1.0 - _SCORE_CLIP)
      scores = tf.sigmoid((tf.math.log(clipped) - tf.math.log1p(-clipped)) / temperature)
    shape = tf.shape(hard, out_type=tf.int64)
    if missed_positives == "max":
      targets = tf.maximum(hard, tf.scatter_nd(indices, weight * scores, shape))
    elif missed_positives == "hard" and weight > 0:
      # Outside the candidates (and for videos the store lacks: they have no entries) the hard label
      # stays whole; 1 - weight scales it only where the teacher scored the class.
      candidate = tf.scatter_nd(indices, tf.ones_like(scores), shape)
      targets = hard * (1.0 - weight * candidate) + tf.scatter_nd(indices, weight * scores, shape)
    # Missing rows have no entries, so the soft part is weight * score for every entry. Adding it
    # sparsely to the scaled hard labels costs two passes over the dense [B, C] block, fewer than
    # densifying soft and mixing two dense blocks; at weight 1 the hard labels drop out entirely.
    elif weight == 1.0 and on_missing == "error":
      targets = tf.sparse.to_dense(tf.SparseTensor(indices, scores, shape), validate_indices=False)
    else:
      targets = tf.sparse.add(hard * hard_weight, tf.SparseTensor(indices, weight * scores, shape))
    targets.set_shape(hard.shape)
    if labels.dtype.is_floating:
      targets = tf.cast(targets, labels.dtype)
    return features, targets

  return transform


class _TensorStore:
  """The store as CPU tensors for tf.data: a hash table id -> row plus the CSR arrays.

  Built once per store (eagerly, whatever context asks for it), since the table over millions of ids
  takes seconds; dataset functions capture these tensors rather than re-creating them per batch.
  """

  def __init__(self, store: SoftLabelStore):
    self.num_classes = store.num_classes
    with tf.init_scope(), tf.device("/cpu:0"):
      self.table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
          tf.constant(store.ids, tf.string), tf.range(len(store), dtype=tf.int64)
        ),
        default_value=-1,
      )
      self.row_splits = tf.constant(store.row_splits, tf.int64)
      self.classes = tf.constant(store.classes)
      self.scores = tf.constant(store.scores)

  def entries(self, rows: tf.Tensor, found: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """The stored scores of store rows `rows` as sparse [B, num_classes] entries: (indices int64 [n, 2]
    of (batch row, class), float32 scores [n]), in row-major order; none for rows not `found`."""
    safe_rows = tf.where(found, rows, 0)
    starts = tf.gather(self.row_splits, safe_rows)
    limits = tf.where(found, tf.gather(self.row_splits, safe_rows + 1), starts)
    positions = tf.ragged.range(starts, limits)  # [B, (candidates)] indices into classes/scores
    flat_positions = positions.flat_values
    indices = tf.stack(
      [positions.value_rowids(), tf.cast(tf.gather(self.classes, flat_positions), tf.int64)], axis=1
    )
    return indices, tf.cast(tf.gather(self.scores, flat_positions), tf.float32)


_TENSOR_STORES: "weakref.WeakKeyDictionary[SoftLabelStore, _TensorStore]" = weakref.WeakKeyDictionary()


def tensor_store(store: SoftLabelStore) -> _TensorStore:
  """The store as CPU tensors: built on first use, then shared by all of its transforms; freed with it."""
  if store not in _TENSOR_STORES:
    _TENSOR_STORES[store] = _TensorStore(store)
  return _TENSOR_STORES[store]
