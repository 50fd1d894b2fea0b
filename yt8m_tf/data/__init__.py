"""YouTube-8M data: schema, tf.data readers, record writers and K-fold assignment."""

from yt8m_tf.data.folds import fold_mask_tensor, fold_of, fold_of_tensor
from yt8m_tf.data.readers import BadRecordCounter, frame_dataset, list_files, video_dataset
from yt8m_tf.data.schema import Schema, dequantize, quantize
from yt8m_tf.data.writers import frame_example, video_example, write_records

__all__ = [
  "BadRecordCounter",
  "Schema",
  "dequantize",
  "fold_mask_tensor",
  "fold_of",
  "fold_of_tensor",
  "frame_dataset",
  "frame_example",
  "list_files",
  "quantize",
  "video_dataset",
  "video_example",
  "write_records",
]
