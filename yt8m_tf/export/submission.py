"""The Kaggle submission CSV of the 2018 challenge: writer, reader and GAP against known labels.

Format (the starter's inference.py in its final 2018 form, reference/peers.md A.3):

  VideoId,LabelConfidencePairs
  <id>,<label> <score> <label> <score> ...

one row per video, its top 20 classes (fewer when there are fewer classes) by descending score, each pair
printed with `%i %g` (6 significant digits: near-equal scores can print as equal, their order is kept).
The file appears under its name only once complete (written to a temporary sibling, then renamed).
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator, Mapping, Sequence, Tuple

import numpy as np
import tensorflow as tf

from yt8m_tf.files import atomic_open
from yt8m_tf.metrics import GAP_K, gap_from_pairs

HEADER = "VideoId,LabelConfidencePairs"

# id -> (classes [k] int64, scores [k] float64), best first.
Predictions = Dict[str, Tuple[np.ndarray, np.ndarray]]


def _text(video_id) -> str:
  return video_id.decode("utf-8") if isinstance(video_id, bytes) else str(video_id)


def format_row(video_id, classes: Sequence[int], scores: Sequence[float]) -> str:
  """One CSV line (without newline); pairs are written in the given order."""
  video_id = _text(video_id)
  if "," in video_id or "\n" in video_id:
    raise ValueError(f"video id {video_id!r} cannot be written to the CSV")
  pairs = " ".join("%i %g" % (c, s) for c, s in zip(classes, scores))
  return f"{video_id},{pairs}"


class SubmissionWriter:
  """Appends batches of (ids, classes, scores) rows; use through `open_submission`."""

  def __init__(self, handle):
    self._handle = handle
    self.num_videos = 0
    handle.write(HEADER + "\n")

  def write_batch(self, ids: Sequence, classes: np.ndarray, scores: np.ndarray) -> None:
    """classes, scores: [n, k], each row already sorted by descending score."""
    classes, scores = np.asarray(classes), np.asarray(scores)
    if classes.shape != scores.shape or classes.ndim != 2 or len(ids) != classes.shape[0]:
      raise ValueError(
        f"{len(ids)} ids, classes {classes.shape}, scores {scores.shape}: expected [n, k] each"
      )
    if classes.shape[1] > 1 and np.any(np.diff(scores, axis=1) > 0):
      raise ValueError("scores must be sorted by descending score within each row")
    lines = [format_row(i, c.tolist(), s.tolist()) for i, c, s in zip(ids, classes, scores)]
    if lines:
      self._handle.write("\n".join(lines) + "\n")
    self.num_videos += len(lines)


@contextlib.contextmanager
def open_submission(path: str) -> Iterator[SubmissionWriter]:
  """A SubmissionWriter whose file appears at `path` only if the block completes."""
  with atomic_open(path, "w") as handle:
    yield SubmissionWriter(handle)


def write_submission(path: str, ids: Sequence, classes: np.ndarray, scores: np.ndarray) -> int:
  """Writes a whole submission at once; returns the number of rows."""
  with open_submission(path) as writer:
    writer.write_batch(ids, classes, scores)
  return writer.num_videos


def read_submission(path: str) -> Predictions:
  """Parses a submission CSV; raises ValueError on a wrong header, odd pair list or duplicate id."""
  predictions: Predictions = {}
  with tf.io.gfile.GFile(path, "r") as f:
    header = f.readline().rstrip("\n")
    if header != HEADER:
      raise ValueError(f"{path}: header {header!r}, expected {HEADER!r}")
    for line_number, line in enumerate(f, start=2):
      line = line.rstrip("\n")
      if not line:
        continue
      video_id, _, pairs = line.partition(",")
      fields = pairs.split()
      if len(fields) % 2:
        raise ValueError(f"{path}:{line_number}: odd number of label/score fields")
      if video_id in predictions:
        raise ValueError(f"{path}:{line_number}: duplicate video id {video_id!r}")
      predictions[video_id] = (
        np.array(fields[0::2], dtype=np.int64),
        np.array(fields[1::2], dtype=np.float64),
      )
  return predictions


def submission_gap(
  predictions: Predictions, labels: Mapping[str, Sequence[int]], top_k: int = GAP_K
) -> float:
  """GAP@top_k of parsed predictions against `labels` (id -> positive class ids).

  The denominator counts every label of every video in `labels`, so videos missing from the predictions
  lower the score; predicted videos absent from `labels` have no positives (all their pairs count as misses).
  """
  scores, hits = [], []
  for video_id, (classes, values) in predictions.items():
    positives = set(int(c) for c in labels.get(video_id, ()))
    scores.append(values[:top_k])
    hits.append(np.isin(classes[:top_k], list(positives)))
  num_positives = sum(len(set(int(c) for c in v)) for v in labels.values())
  if not scores:
    return 0.0
  return gap_from_pairs(np.concatenate(scores), np.concatenate(hits), num_positives)
