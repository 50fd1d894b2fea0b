"""Batch inference with an exported SavedModel: test TFRecords -> Kaggle submission CSV.

Only the SavedModel is needed, not the model code: raw serialized records go through its `from_examples`
signature (video-level Examples) or, for an export that reads frames, its `from_sequence_examples`
signature (frame-level SequenceExamples), which parses them, scores them and returns ids with the top
classes. Exports containing TF-DF
components need TF-DF's custom ops; they are loaded on demand when the plain load reports them missing.

Bad input stops with a ValueError naming the file and record: a record the export refuses (its message,
with the file and record in place of the batch position), an id that is not UTF-8 text, or an id seen
before (both places named), since a Kaggle submission has exactly one row per video.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from yt8m_tf import metrics, progress
from yt8m_tf.data import readers
from yt8m_tf.data.schema import Schema
from yt8m_tf.export import submission
from yt8m_tf.export.saved_model import (
  EXAMPLES_INPUT,
  EXAMPLES_SIGNATURE,
  SEQUENCE_EXAMPLES_INPUT,
  SEQUENCE_EXAMPLES_SIGNATURE,
  list_versions,
)

_TFDF_OP_PREFIX = "SimpleML"


def resolve_export_dir(model_dir: str) -> str:
  """A SavedModel version directory, or a `<model_name>` directory -> its highest version."""
  if tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
    return model_dir
  versions = [
    v
    for v in list_versions(model_dir)
    if tf.io.gfile.exists(os.path.join(model_dir, str(v), "saved_model.pb"))
  ]
  if not versions:
    raise FileNotFoundError(f"{model_dir} is neither a SavedModel nor a directory of numbered versions")
  return os.path.join(model_dir, str(versions[-1]))


def load_export(model_dir: str):
  """`tf.saved_model.load` of the resolved export, registering TF-DF's ops first if the graph needs them."""
  path = resolve_export_dir(model_dir)
  try:
    return tf.saved_model.load(path)
  except (RuntimeError, tf.errors.NotFoundError) as error:
    if _TFDF_OP_PREFIX not in str(error):
      raise
    import tensorflow_decision_forests  # noqa: F401  (registers the SimpleML* inference ops)

    return tf.saved_model.load(path)


def exported_top_k(signature) -> int:
  return int(signature.structured_outputs["top_classes"].shape[-1])


def exported_num_classes(signature) -> int:
  return int(signature.structured_outputs["probabilities"].shape[-1])


@dataclasses.dataclass(frozen=True)
class InferenceCounts:
  num_videos: int
  num_files: int
  num_batches: int
  seconds: float

  @property
  def videos_per_second(self) -> float:
    return self.num_videos / self.seconds if self.seconds > 0 else float("inf")


def records_signature(loaded) -> Tuple[str, str]:
  """(signature name, input name) of the export's serialized-records signature: `from_examples` for
  video-level Examples, else `from_sequence_examples` for frame-level SequenceExamples."""
  if EXAMPLES_SIGNATURE in loaded.signatures:
    return EXAMPLES_SIGNATURE, EXAMPLES_INPUT
  if SEQUENCE_EXAMPLES_SIGNATURE in loaded.signatures:
    return SEQUENCE_EXAMPLES_SIGNATURE, SEQUENCE_EXAMPLES_INPUT
  raise ValueError(f"the export has no {EXAMPLES_SIGNATURE} or {SEQUENCE_EXAMPLES_SIGNATURE} signature")


def load_for_examples(model_dir: str, top_k: int):
  """(the loaded export, the k it can serve: min(top_k, classes)).

  Raises ValueError when that k exceeds the export's top-k.
  """
  loaded = load_export(model_dir)
  signature = loaded.signatures[records_signature(loaded)[0]]
  available = exported_top_k(signature)
  if top_k <= 0 or min(top_k, exported_num_classes(signature)) > available:
    raise ValueError(f"top_k must be in [1, {available}] (the export's top-k), got {top_k}")
  return loaded, min(top_k, available)


def _named_records(files: Sequence[str], batch_size: int) -> tf.data.Dataset:
  """Batches of (file number [n], record index in its file [n], serialized record [n]), in file order."""

  def read(number, path):
    records = tf.data.TFRecordDataset(path, buffer_size=1 << 20).enumerate()
    return records.map(lambda index, record: (number, index, record))

  numbered = tf.data.Dataset.from_tensor_slices((tf.range(len(files), dtype=tf.int64), list(files)))
  return numbered.flat_map(read).batch(batch_size).prefetch(2)


def _refusal(error: tf.errors.InvalidArgumentError, files, numbers, indices) -> Optional[ValueError]:
  """The export's message about `example_bytes:<row>` (or `sequence_example_bytes:<row>`) with that row's
  file and record index instead, or None when the error names no record."""
  inputs = "|".join(re.escape(name) for name in (SEQUENCE_EXAMPLES_INPUT, EXAMPLES_INPUT))
  match = re.search(r"(?:" + inputs + r"):(\d+): ([^\]\n]*)", error.message)
  if match is None:
    return None
  row = int(match.group(1))
  return ValueError(f"{files[numbers[row]]}:{indices[row]}: {match.group(2)}")


def _batches(loaded, top_k: int, files: Sequence[str], batch_size: int):
  # The loaded object is kept referenced while its signature runs (it owns the variables).
  signature_name, input_name = records_signature(loaded)
  signature = loaded.signatures[signature_name]
  first_seen = {}  # id -> (file number, record index): one row per video in a submission
  for numbers, indices, records in _named_records(files, batch_size):
    numbers, indices = numbers.numpy().tolist(), indices.numpy().tolist()
    try:
      outputs = signature(**{input_name: records})
    except tf.errors.InvalidArgumentError as error:
      refusal = _refusal(error, files, numbers, indices)
      if refusal is None:
        raise
      raise refusal from error
    ids = outputs["id"].numpy()
    for video_id, number, index in zip(ids, numbers, indices):
      try:
        video_id.decode("utf-8")
      except UnicodeDecodeError:
        raise ValueError(f"{files[number]}:{index}: video id {video_id!r} is not UTF-8 text") from None
      if video_id in first_seen:
        before, index_before = first_seen[video_id]
        raise ValueError(
          f"{files[number]}:{index}: duplicate video id {video_id.decode()!r}, "
          f"also at {files[before]}:{index_before}"
        )
      first_seen[video_id] = (number, index)
    yield (
      ids,
      outputs["top_classes"].numpy()[:, :top_k],
      outputs["top_scores"].numpy()[:, :top_k],
    )


def predict_records(
  model_dir: str, input_data_pattern: str, batch_size: int = 1024, top_k: int = metrics.GAP_K
) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """(ids [n] bytes, top classes [n, k] int32, scores [n, k] float32) per batch of records, in file order.

  k = min(top_k, number of classes); asking for more than the export's top-k is an error (raised here,
  before any record is read).
  """
  loaded, top_k = load_for_examples(model_dir, top_k)
  return _batches(loaded, top_k, readers.list_files(input_data_pattern), batch_size)


def run_inference(
  model_dir: str,
  input_data_pattern: str,
  output_file: str,
  batch_size: int = 1024,
  top_k: int = metrics.GAP_K,
  log_every_seconds: float = 30.0,
) -> InferenceCounts:
  """Scores every record matching `input_data_pattern` and writes the submission CSV atomically."""
  start = time.perf_counter()
  files = readers.list_files(input_data_pattern)
  loaded, top_k = load_for_examples(model_dir, top_k)  # fails before the output is opened
  logging.info("inference: %s on %d files -> %s", resolve_export_dir(model_dir), len(files), output_file)
  num_batches = 0
  shown = progress.Progress(None, "inference:", "videos", log_every_seconds, logging.info, bar=False)
  with submission.open_submission(output_file) as writer:
    for ids, classes, scores in _batches(loaded, top_k, files, batch_size):
      writer.write_batch(ids, classes, scores)
      num_batches += 1
      shown.update(writer.num_videos)
  counts = InferenceCounts(writer.num_videos, len(files), num_batches, time.perf_counter() - start)
  logging.info(
    "inference: wrote %d videos to %s in %.1f s (%.0f videos/s)",
    counts.num_videos,
    output_file,
    counts.seconds,
    counts.videos_per_second,
  )
  return counts


def read_labels(
  data_pattern: str, schema: Schema, batch_size: int = 1024, frame_level: bool = False
) -> Dict[str, List[int]]:
  """id -> positive class ids of labeled video-level (or frame-level) records, read with the repo's reader."""
  labels = {}
  reader = readers.frame_dataset if frame_level else readers.video_dataset
  for features, multi_hot in reader(data_pattern, batch_size, schema=schema):
    for video_id, row in zip(features["id"].numpy(), multi_hot.numpy()):
      labels[video_id.decode("utf-8")] = np.flatnonzero(row).tolist()
  return labels


def evaluate_export(
  model_dir: str,
  data_pattern: str,
  schema: Optional[Schema] = None,
  batch_size: int = 1024,
  top_k: int = metrics.GAP_K,
) -> Dict[str, float]:
  """GAP@top_k, Hit@1, PERR and mAP of an export on labeled records, from its top-k as served
  (`metrics.TopKMetrics`); `gap` and `num_videos` repeat gap@top_k and videos. `schema` defaults to the
  2018 features with the export's class count."""
  loaded, k = load_for_examples(model_dir, top_k)
  signature_name = records_signature(loaded)[0]
  num_classes = exported_num_classes(loaded.signatures[signature_name])
  schema = schema or Schema(num_classes=num_classes)
  labels = read_labels(
    data_pattern, schema, batch_size, frame_level=signature_name == SEQUENCE_EXAMPLES_SIGNATURE
  )
  result = metrics.TopKMetrics(num_classes, k=k)
  for ids, classes, scores in _batches(loaded, k, readers.list_files(data_pattern), batch_size):
    result.add(classes, scores, [labels[i.decode("utf-8")] for i in ids])
  values = result.result()
  return {**values, "gap": values[f"gap@{k}"], "num_videos": values["videos"]}
