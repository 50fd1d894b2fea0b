"""Deterministic K-fold assignment from the video id alone.

A fold depends only on the id string (FarmHash fingerprint, which TF documents as stable), never on
file order, so video-level and frame-level records of one video always land in the same fold, and the
same function runs inside tf.data (`fold_of_tensor`) and on numpy/Python ids (`fold_of`).
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

IdLike = Union[str, bytes]


def fold_of_tensor(video_ids: tf.Tensor, num_folds: int) -> tf.Tensor:
  """Fold index (int32) of each string id in a tensor of any shape."""
  _check_num_folds(num_folds)
  return tf.cast(tf.strings.to_hash_bucket_fast(video_ids, num_folds), tf.int32)


def fold_of(video_id: Union[IdLike, Iterable[IdLike], np.ndarray], num_folds: int):
  """Fold of one id (returns int) or of many ids (returns an int32 numpy array)."""
  if isinstance(video_id, (str, bytes)):
    return int(fold_of_tensor(tf.constant(video_id), num_folds).numpy())
  ids = np.asarray(list(video_id) if not isinstance(video_id, np.ndarray) else video_id, dtype=object)
  if ids.size == 0:
    return np.zeros([0], np.int32)
  return fold_of_tensor(tf.constant(ids.astype(bytes) if ids.dtype == object else ids), num_folds).numpy()


def fold_mask_tensor(
  video_ids: tf.Tensor,
  num_folds: int,
  folds: Optional[Sequence[int]] = None,
  exclude_folds: Optional[Sequence[int]] = None,
) -> tf.Tensor:
  """Boolean mask: id is in `folds` (all when None) and not in `exclude_folds`."""
  fold = fold_of_tensor(video_ids, num_folds)
  keep = tf.ones_like(fold, tf.bool)
  if folds is not None:
    keep &= tf.reduce_any(fold[..., None] == tf.constant(_checked(folds, num_folds), tf.int32), axis=-1)
  if exclude_folds:
    keep &= ~tf.reduce_any(
      fold[..., None] == tf.constant(_checked(exclude_folds, num_folds), tf.int32), axis=-1
    )
  return keep


def check_fold_arguments(
  num_folds: int, folds: Optional[Sequence[int]] = None, exclude_folds: Optional[Sequence[int]] = None
) -> None:
  """Raises ValueError unless the fold arguments describe a valid selection (as fold_mask_tensor needs)."""
  _check_num_folds(num_folds)
  if folds is not None:
    _checked(folds, num_folds)
  if exclude_folds:
    _checked(exclude_folds, num_folds)


def _checked(folds: Sequence[int], num_folds: int) -> list:
  folds = [int(f) for f in folds]
  bad = [f for f in folds if not 0 <= f < num_folds]
  if bad or not folds:
    raise ValueError(f"fold ids {folds} must be a non-empty subset of 0..{num_folds - 1}")
  return folds


def _check_num_folds(num_folds: int) -> None:
  if int(num_folds) < 1:
    raise ValueError(f"num_folds must be >= 1, got {num_folds}")
