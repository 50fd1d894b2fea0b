"""Real YouTube-8M label sets and vocabulary: loading, class-subset remapping, writing.

Label-set files are CSV `id,labels` with the positive class indices space separated (gzip when the
name ends in `.gz`). Without a path, the loaders read the packaged resources: a 50k-video sample of the
766,871 real 2018 label sets (see `bench/make_label_sample.py` for how it was drawn) and the
vocabulary. Label sets are held ragged (`LabelSets`: flat int32 values + int64 row offsets), which
stays compact for the full 766k-row file.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import importlib.resources
import io
from typing import Iterable, Iterator, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from yt8m_tf.files import atomic_open

SAMPLE_LABELS_RESOURCE = "video_labels_sample.csv.gz"
VOCABULARY_RESOURCE = "vocabulary.csv.gz"
LABELS_HEADER = "id,labels"
VOCABULARY_COLUMNS = (
  "Index",
  "TrainVideoCount",
  "KnowledgeGraphId",
  "Name",
  "Vertical1",
  "Vertical2",
  "Vertical3",
)


@dataclasses.dataclass(frozen=True)
class LabelSets:
  """Videos and their label sets: row i's labels are `values[offsets[i]:offsets[i + 1]]`."""

  ids: np.ndarray  # [N] str
  values: np.ndarray  # [total labels] int32
  offsets: np.ndarray  # [N + 1] int64, offsets[0] == 0

  def __post_init__(self):
    if len(self.offsets) != len(self.ids) + 1 or (len(self.offsets) and self.offsets[-1] != len(self.values)):
      raise ValueError(
        f"inconsistent LabelSets: {len(self.ids)} ids, {len(self.offsets)} offsets, {len(self.values)} values"
      )

  @classmethod
  def from_lists(cls, ids: Sequence[str], labels: Iterable[Sequence[int]]) -> "LabelSets":
    arrays = [np.asarray(row, np.int32).ravel() for row in labels]
    if len(arrays) != len(ids):
      raise ValueError(f"{len(ids)} ids but {len(arrays)} label sets")
    offsets = np.zeros(len(arrays) + 1, np.int64)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    values = np.concatenate(arrays) if arrays else np.zeros([0], np.int32)
    return cls(np.asarray(ids, dtype=str), values.astype(np.int32), offsets)

  def __len__(self) -> int:
    return len(self.ids)

  def __getitem__(self, row: int) -> np.ndarray:
    return self.values[self.offsets[row] : self.offsets[row + 1]]

  def __iter__(self) -> Iterator[np.ndarray]:
    return (self[i] for i in range(len(self)))

  @property
  def counts(self) -> np.ndarray:
    """Labels per video, int64 [N]."""
    return np.diff(self.offsets)

  @property
  def rows(self) -> np.ndarray:
    """Row index of every entry of `values` (for scatter operations)."""
    return np.repeat(np.arange(len(self), dtype=np.int64), self.counts)

  def select(self, rows: np.ndarray) -> "LabelSets":
    """The label sets of `rows` (indices or a boolean mask), in that order."""
    rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows, np.int64)
    starts, counts = self.offsets[rows], self.counts[rows]
    offsets = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    gather = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])
    return LabelSets(self.ids[rows], self.values[gather], offsets)

  def class_counts(self, num_classes: int) -> np.ndarray:
    """Videos per class (each label counted once per video), int64 [num_classes]."""
    return np.bincount(self.values, minlength=num_classes)[:num_classes]

  def to_dense(self, num_classes: int, dtype=np.float32) -> np.ndarray:
    """Multi-hot [N, num_classes]; for small sets only (tests, calibration)."""
    dense = np.zeros([len(self), num_classes], dtype)
    dense[self.rows, self.values] = 1
    return dense


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """The class table of `vocabulary.csv`; `original_index` differs from `index` after subset remapping."""

  index: np.ndarray  # [C] int32, 0..C-1
  train_video_count: np.ndarray  # [C] int64
  knowledge_graph_id: np.ndarray  # [C] str
  name: np.ndarray  # [C] str
  verticals: np.ndarray  # [C, 3] str (Vertical1..3, "" when absent)
  original_index: np.ndarray  # [C] int32

  def __len__(self) -> int:
    return len(self.index)

  @property
  def vertical1(self) -> np.ndarray:
    return self.verticals[:, 0]

  def select(self, original_classes: np.ndarray) -> "Vocabulary":
    """The rows of `original_classes` (indices into this table), renumbered 0..len-1."""
    rows = np.asarray(original_classes, np.int64)
    return Vocabulary(
      np.arange(len(rows), dtype=np.int32),
      self.train_video_count[rows],
      self.knowledge_graph_id[rows],
      self.name[rows],
      self.verticals[rows],
      self.original_index[rows],
    )


@contextlib.contextmanager
def _resource_path(name: str) -> Iterator[str]:
  with importlib.resources.as_file(importlib.resources.files("yt8m_tf.data") / "resources" / name) as path:
    yield str(path)


@contextlib.contextmanager
def _open_text(path: str) -> Iterator[io.TextIOBase]:
  """Text of a local or gs:// file, gunzipped when the name ends in .gz (read whole: label files are small)."""
  with tf.io.gfile.GFile(path, "rb") as raw:
    data = raw.read()
  if path.endswith(".gz"):
    data = gzip.decompress(data)
  yield io.StringIO(data.decode("utf-8"), newline="")


def load_label_sets(path: Optional[str] = None, num_classes: Optional[int] = None) -> LabelSets:
  """Reads an `id,labels` CSV (default: the packaged 50k-video sample).

  Raises ValueError naming the file and line for a malformed row (no comma, a non-integer or negative
  label, a label >= num_classes when given, an empty id).
  """
  if path is None:
    with _resource_path(SAMPLE_LABELS_RESOURCE) as resource:
      return load_label_sets(resource, num_classes)
  ids, values, counts = [], [], []
  with _open_text(path) as lines:
    header = lines.readline().strip()
    if header != LABELS_HEADER:
      raise ValueError(f"{path}:1: expected header {LABELS_HEADER!r}, got {header!r}")
    for line_number, line in enumerate(lines, start=2):
      line = line.strip()
      if not line:
        continue
      video_id, comma, labels_text = line.partition(",")
      if not comma or not video_id or "," in labels_text:
        raise ValueError(f"{path}:{line_number}: expected 'id,label label ...', got {line!r}")
      try:
        labels = [int(x) for x in labels_text.split()]
      except ValueError:
        raise ValueError(f"{path}:{line_number}: labels must be integers, got {labels_text!r}") from None
      if labels and (min(labels) < 0 or (num_classes is not None and max(labels) >= num_classes)):
        raise ValueError(
          f"{path}:{line_number}: label out of range [0, {num_classes or 'inf'}): {labels_text!r}"
        )
      ids.append(video_id)
      values.extend(labels)
      counts.append(len(labels))
  offsets = np.zeros(len(counts) + 1, np.int64)
  np.cumsum(counts, out=offsets[1:])
  return LabelSets(np.asarray(ids, dtype=str), np.asarray(values, np.int32), offsets)


def write_label_sets(path: str, label_sets: LabelSets) -> None:
  """Writes `id,labels` CSV atomically (gzip, with a fixed mtime, when the name ends in .gz)."""
  text = "".join(
    [LABELS_HEADER + "\n"]
    + [
      f"{video_id},{' '.join(map(str, labels.tolist()))}\n"
      for video_id, labels in zip(label_sets.ids, label_sets)
    ]
  )
  data = text.encode("utf-8")
  if path.endswith(".gz"):
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as zipped:
      zipped.write(data)
    data = buffer.getvalue()
  with atomic_open(path, "wb") as handle:
    handle.write(data)


def load_vocabulary(path: Optional[str] = None) -> Vocabulary:
  """Reads `vocabulary.csv` (default: the packaged 2018 table, gzipped); `OriginalIndex` optional."""
  if path is None:
    with _resource_path(VOCABULARY_RESOURCE) as resource:
      return load_vocabulary(resource)
  with _open_text(path) as lines:
    reader = csv.DictReader(lines)
    missing = {"Index", "TrainVideoCount", "Name", "Vertical1"} - set(reader.fieldnames or ())
    if missing:
      raise ValueError(f"{path}:1: vocabulary header lacks {sorted(missing)}: {reader.fieldnames}")
    rows = []
    for line_number, row in enumerate(reader, start=2):
      try:
        rows.append(
          (
            int(row["Index"]),
            int(row["TrainVideoCount"] or 0),
            int(row.get("OriginalIndex") or row["Index"]),
            row.get("KnowledgeGraphId") or "",
            row["Name"] or "",
            tuple(row.get(f"Vertical{k}") or "" for k in (1, 2, 3)),
          )
        )
      except (TypeError, ValueError) as error:
        raise ValueError(f"{path}:{line_number}: malformed vocabulary row {row}: {error}") from None
  index = np.asarray([r[0] for r in rows], np.int32)
  if not np.array_equal(index, np.arange(len(rows))):
    raise ValueError(f"{path}: Index column must be 0..{len(rows) - 1} in order")
  return Vocabulary(
    index,
    np.asarray([r[1] for r in rows], np.int64),
    np.asarray([r[3] for r in rows], str),
    np.asarray([r[4] for r in rows], str),
    np.asarray([r[5] for r in rows], str).reshape(-1, 3),
    np.asarray([r[2] for r in rows], np.int32),
  )


def write_vocabulary(path: str, vocabulary: Vocabulary) -> None:
  """Writes the table with an extra `OriginalIndex` column, atomically."""
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(("Index", "OriginalIndex") + VOCABULARY_COLUMNS[1:])
  for i in range(len(vocabulary)):
    writer.writerow(
      (
        int(vocabulary.index[i]),
        int(vocabulary.original_index[i]),
        int(vocabulary.train_video_count[i]),
        vocabulary.knowledge_graph_id[i],
        vocabulary.name[i],
        *vocabulary.verticals[i],
      )
    )
  with atomic_open(path, "w") as handle:
    handle.write(buffer.getvalue())


def most_frequent_classes(label_sets: LabelSets, num_classes: int, total_classes: int) -> np.ndarray:
  """The `num_classes` most frequent classes (ties: lower index first), in increasing index order."""
  if not 0 < num_classes <= total_classes:
    raise ValueError(f"num_classes must be in [1, {total_classes}], got {num_classes}")
  counts = label_sets.class_counts(total_classes)
  by_frequency = np.lexsort((np.arange(total_classes), -counts))
  return np.sort(by_frequency[:num_classes]).astype(np.int32)


def remap_classes(
  label_sets: LabelSets, kept_classes: np.ndarray, total_classes: int
) -> Tuple[LabelSets, int]:
  """Keeps only `kept_classes` (original indices), renumbered by their position in `kept_classes`.

  Returns the remapped label sets, without the videos left with no label, and how many were dropped.
  With `kept_classes` sorted the renumbering is monotone, so sorted label lists stay sorted.
  """
  new_index = np.full(total_classes, -1, np.int64)
  new_index[np.asarray(kept_classes, np.int64)] = np.arange(len(kept_classes))
  mapped = new_index[label_sets.values]
  keep_entry = mapped >= 0
  counts = np.bincount(label_sets.rows[keep_entry], minlength=len(label_sets))
  offsets = np.zeros(len(label_sets) + 1, np.int64)
  np.cumsum(counts, out=offsets[1:])
  remapped = LabelSets(label_sets.ids, mapped[keep_entry].astype(np.int32), offsets)
  has_labels = counts > 0
  return remapped.select(has_labels), int(np.sum(~has_labels))
