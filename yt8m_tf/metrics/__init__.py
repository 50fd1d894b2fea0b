"""YouTube-8M evaluation metrics: GAP@k (numpy, streaming, Keras metric), Hit@1, PERR, mAP."""

from yt8m_tf.metrics.gap import (
  GAP_K,
  TopKPairs,
  extract_top_k_pairs,
  gap_at_k,
  gap_from_pairs,
  top_k_per_video,
)
from yt8m_tf.metrics.keras_metric import GapMetric
from yt8m_tf.metrics.ranking import (
  hit_at_one,
  mean_average_precision,
  per_class_average_precision,
  perr,
  positives_per_class,
)
from yt8m_tf.metrics.streaming import GapAccumulator, TopKMetrics

__all__ = [
  "GAP_K",
  "GapAccumulator",
  "GapMetric",
  "TopKMetrics",
  "TopKPairs",
  "extract_top_k_pairs",
  "gap_at_k",
  "gap_from_pairs",
  "hit_at_one",
  "mean_average_precision",
  "per_class_average_precision",
  "perr",
  "positives_per_class",
  "top_k_per_video",
]
