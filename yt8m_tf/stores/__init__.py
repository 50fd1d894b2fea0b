"""What the method's stages hand each other on disk, and the label lookups that score them.

- `predictions`: a model's out-of-fold or test probabilities (top-K per video), written by training,
  read by the stacker and the reports.
- `candidates`: the stacker's rows per (video, candidate class) with their features, written by
  `yt8m_tf.stacking.candidates`, read part by part by the stacker (`stores.candidates.read_candidates`, `RowsGap`).
- `soft_labels`: the stacker's out-of-fold probabilities per (video, candidate class), written by the
  stacker, read by distillation (`yt8m_tf.training.soft_targets`).
- `labels`: video id -> positive classes, from the records or from an `id,labels` CSV.

This package sits below training and stacking: both import it, it imports neither.
"""

from yt8m_tf.stores import candidates
from yt8m_tf.stores.labels import labels_by_id, labels_from_csv
from yt8m_tf.stores.predictions import (
  STORE_TOP_K,
  PredictionChunk,
  PredictionWriter,
  is_complete,
  read_index,
  read_predictions,
  store_gap,
)
from yt8m_tf.stores.soft_labels import SoftLabelStore, SoftLabelStoreBuilder, VideoGroupedStoreBuilder

__all__ = [
  "STORE_TOP_K",
  "candidates",
  "PredictionChunk",
  "PredictionWriter",
  "SoftLabelStore",
  "SoftLabelStoreBuilder",
  "VideoGroupedStoreBuilder",
  "is_complete",
  "labels_by_id",
  "labels_from_csv",
  "read_index",
  "read_predictions",
  "store_gap",
]
