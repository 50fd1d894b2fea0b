"""The soft-label store: the stacker's out-of-fold probabilities per (video, candidate class).

Distillation trains L1 models on `y = w * soft + (1 - w) * hard` over all classes (seed_method.md §4.4),
where `soft[v, c]` is the stacker's OOF probability when c is one of v's candidate classes and 0
otherwise (§4.3). The seed built that matrix with per-element `lil_matrix` inserts and looked rows up
in a per-example Python generator (§9 item 17); here both steps are vectorized.

Layout (CSR, numpy): `ids` sorted unique video ids (np.bytes_), `row_splits` int64 [videos + 1],
`classes` [nnz] (uint16 when the classes fit, else int32) sorted within each row, `scores` float32 or
float16 [nnz] in [0, 1]. At YouTube-8M scale (~5M videos x 20-60 candidates) that is ~6 bytes a
candidate instead of a dense videos x classes matrix.

Building: `SoftLabelStore.from_rows` takes flat per-(video, candidate) rows in any order; the stacker,
which produces rows fold by fold, can feed `SoftLabelStoreBuilder.add` instead; rows that come in parts
holding whole videos, grouped by video (the stacker's candidate parts), go through
`VideoGroupedStoreBuilder` without a sort of the rows. Rows usually come grouped by video, so runs of one
id are collapsed before the string sort: the sort sees ~videos, not rows. A (video, class) pair given
twice, a class outside [0, num_classes) or a score outside [0, 1] (NaN included) is an error naming the
video. `all_video_ids` lets a store cover videos that have no rows (their soft row is all zeros), which is
different from not covering them.

Storage: one `.npz` file with a format version, written atomically (`yt8m_tf.files`) through
tf.io.gfile, so gs:// works; `load` checks every field and names the file and field on error.

Training reads a store through `yt8m_tf.training.soft_targets`.
"""

from __future__ import annotations

import io
import zipfile
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from yt8m_tf.files import atomic_save_npz

FORMAT_VERSION = 1
SCORE_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
_FIELDS = ("format_version", "num_classes", "ids", "row_splits", "classes", "scores")

VideoIds = Union[Sequence[Union[str, bytes]], np.ndarray]


def _as_ids(video_ids: VideoIds) -> np.ndarray:
  """Video ids as a 1-D np.bytes_ array (str ids are UTF-8 encoded).

  np.bytes_ drops trailing NUL bytes; YouTube-8M ids are printable ASCII, so nothing is lost.
  """
  ids = np.asarray(video_ids)
  if ids.ndim != 1:
    raise ValueError(f"video ids must be 1-D, got shape {ids.shape}")
  if ids.size == 0:
    return np.zeros(0, np.bytes_)
  if ids.dtype.kind == "S":
    return ids
  if ids.dtype.kind not in "UO":
    raise TypeError(f"video ids must be str or bytes, got dtype {ids.dtype}")
  try:
    return ids.astype(np.bytes_)  # vectorized, ASCII only
  except UnicodeEncodeError:
    if ids.dtype.kind == "U":
      return np.char.encode(ids, "utf-8")
    # Non-ASCII ids in an object array: a per-id loop, never taken for YouTube-8M ids.
    return np.array([i.encode("utf-8") if isinstance(i, str) else bytes(i) for i in ids], np.bytes_)


def _class_dtype(num_classes: int) -> np.dtype:
  return np.dtype(np.uint16) if num_classes <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


def _decoded(video_id) -> str:
  return video_id.decode("utf-8", "backslashreplace") if isinstance(video_id, bytes) else str(video_id)


def _checked_rows(
  video_ids: VideoIds, class_ids, scores, num_classes: int, score_dtype
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Validated flat rows in storage dtypes: (ids bytes, classes compact int, scores score_dtype)."""
  ids = _as_ids(video_ids)
  classes = np.asarray(class_ids)
  scores = np.asarray(scores)
  if classes.ndim != 1 or scores.ndim != 1 or not len(ids) == len(classes) == len(scores):
    raise ValueError(
      "video_ids, class_ids and scores must be 1-D of one length, got shapes "
      f"{ids.shape}, {classes.shape}, {scores.shape}"
    )
  if len(classes) and classes.dtype.kind not in "iu":
    raise TypeError(f"class_ids must be integers, got dtype {classes.dtype}")
  bad = (classes < 0) | (classes >= num_classes)
  if bad.any():
    i = int(np.argmax(bad))
    raise ValueError(f"video {_decoded(ids[i])!r}: class id {classes[i]} is outside [0, {num_classes})")
  if len(scores) and scores.dtype.kind not in "fiub":
    raise TypeError(f"scores must be numbers, got dtype {scores.dtype}")
  bad = ~((scores >= 0) & (scores <= 1))  # NaN fails both comparisons
  if bad.any():
    i = int(np.argmax(bad))
    raise ValueError(
      f"video {_decoded(ids[i])!r}: score {scores[i]} for class {classes[i]} is outside [0, 1]"
    )
  return ids, classes.astype(_class_dtype(num_classes), copy=False), scores.astype(score_dtype, copy=False)


def _check_num_classes(num_classes) -> int:
  if isinstance(num_classes, (bool, np.bool_)) or not isinstance(num_classes, (int, np.integer)):
    raise TypeError(f"num_classes must be an int, got {num_classes!r}")
  if num_classes <= 0:
    raise ValueError(f"num_classes must be positive, got {num_classes}")
  return int(num_classes)


def _check_score_dtype(score_dtype) -> np.dtype:
  dtype = np.dtype(score_dtype)
  if dtype not in SCORE_DTYPES:
    raise ValueError(f"score_dtype must be float32 or float16, got {dtype}")
  return dtype


class SoftLabelStore:
  """Stacker OOF probabilities, sparse [videos x classes], keyed by video id. Treat it as immutable:
  transforms made by `target_transform` hold TF copies of the arrays."""

  def __init__(
    self,
    ids: np.ndarray,
    row_splits: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray,
    num_classes: int,
    source: str = "soft-label store",
  ):
    """The CSR arrays as described in the module docstring; all of them are checked.

    `source` names the store in error messages (its file, once loaded).
    """
    self.source = source
    self.num_classes = _check_num_classes(num_classes)
    self.ids = ids
    self.row_splits = row_splits
    self.classes = classes
    self.scores = scores
    self._validate()

  # Construction ---------------------------------------------------------------------------------------

  @classmethod
  def from_rows(
    cls,
    video_ids: VideoIds,
    class_ids,
    scores,
    num_classes: int,
    *,
    all_video_ids: Optional[VideoIds] = None,
    score_dtype=np.float32,
  ) -> "SoftLabelStore":
    """A store from flat rows (one per video and candidate class), in any order.

    Args:
      video_ids, class_ids, scores: 1-D arrays of one length; ids are str or bytes.
      num_classes: width of the label vectors (`Schema.num_classes`).
      all_video_ids: if given, the store covers exactly these videos: those without rows get all-zero
        soft rows, and rows of any other video are an error.
      score_dtype: float32 (default) or float16 (half the score memory, ~3 significant digits).
    """
    num_classes = _check_num_classes(num_classes)
    rows = _checked_rows(video_ids, class_ids, scores, num_classes, _check_score_dtype(score_dtype))
    return cls._from_checked_rows(*rows, num_classes, all_video_ids)

  @classmethod
  def _from_checked_rows(
    cls,
    ids: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray,
    num_classes: int,
    all_video_ids: Optional[VideoIds],
  ) -> "SoftLabelStore":
    num_rows = len(ids)
    # Runs of one id (the usual grouped input) are collapsed first: the string sort sees runs, not rows.
    is_run_start = np.ones(num_rows, bool)
    is_run_start[1:] = ids[1:] != ids[:-1]
    run_starts = np.flatnonzero(is_run_start)
    run_ids = ids[run_starts]
    run_lengths = np.diff(np.append(run_starts, num_rows))
    if all_video_ids is None:
      store_ids, run_rows = np.unique(run_ids, return_inverse=True)
    else:
      store_ids = np.unique(_as_ids(all_video_ids))
      run_rows = np.searchsorted(store_ids, run_ids)
      known = run_rows < len(store_ids)
      known[known] = store_ids[run_rows[known]] == run_ids[known]
      if not known.all():
        unknown = _decoded(run_ids[np.argmin(known)])
        raise ValueError(f"rows for video {unknown!r}, which is not in all_video_ids")
    # One int64 key per row orders by (store row, class) and makes duplicate pairs adjacent; the stable
    # sort (timsort) is near linear on rows that already come sorted.
    keys = np.repeat(run_rows.astype(np.int64) * num_classes, run_lengths) + classes
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    duplicates = np.flatnonzero(keys[1:] == keys[:-1])
    if duplicates.size:
      i = order[duplicates[0]]
      raise ValueError(f"video {_decoded(ids[i])!r} has more than one row for class {classes[i]}")
    row_splits = np.zeros(len(store_ids) + 1, np.int64)
    rows_per_video = np.bincount(run_rows, weights=run_lengths, minlength=len(store_ids))
    np.cumsum(rows_per_video.astype(np.int64), out=row_splits[1:])
    return cls(store_ids, row_splits, classes[order], scores[order], num_classes)

  def _validate(self) -> None:
    def fail(field, problem):
      raise ValueError(f"{self.source}: field {field!r} {problem}")

    for field, kinds in (("ids", "S"), ("row_splits", "iu"), ("classes", "iu"), ("scores", "f")):
      value = getattr(self, field)
      if not isinstance(value, np.ndarray) or value.ndim != 1:
        fail(field, f"must be a 1-D array, got {getattr(value, 'shape', type(value).__name__)}")
      if value.size and value.dtype.kind not in kinds:
        fail(field, f"has dtype {value.dtype}")
    num_videos, nnz = len(self.ids), len(self.classes)
    self.ids = self.ids.astype(np.bytes_, copy=False)  # an empty array may come as another dtype
    if len(self.row_splits) != num_videos + 1:
      fail("row_splits", f"has {len(self.row_splits)} entries for {num_videos} ids (needs ids + 1)")
    self.row_splits = self.row_splits.astype(np.int64, copy=False)
    if self.row_splits[0] != 0 or self.row_splits[-1] != nnz or np.any(np.diff(self.row_splits) < 0):
      fail("row_splits", f"must rise from 0 to the number of stored scores ({nnz})")
    if len(self.scores) != nnz:
      fail("scores", f"has {len(self.scores)} entries, classes has {nnz}")
    if self.scores.dtype not in SCORE_DTYPES:
      self.scores = self.scores.astype(np.float32)
    if np.any(self.ids[1:] <= self.ids[:-1]):
      fail("ids", "must be sorted and unique")
    if nnz and (self.classes.min() < 0 or self.classes.max() >= self.num_classes):
      fail("classes", f"has class ids outside [0, {self.num_classes})")
    self.classes = self.classes.astype(_class_dtype(self.num_classes), copy=False)
    # Classes rise within each row: no duplicates (the tf.data lookup would add them up).
    rising = np.diff(self.classes.astype(np.int32)) > 0
    boundaries = self.row_splits[1:-1]
    rising[boundaries[(boundaries > 0) & (boundaries < nnz)] - 1] = True
    if not rising.all():
      fail("classes", "must rise within each video (a class given twice?)")
    if not np.all((self.scores >= 0) & (self.scores <= 1)):
      fail("scores", "has values outside [0, 1] or NaN")

  # Files ----------------------------------------------------------------------------------------------

  def save(self, path: str) -> None:
    """Writes one `.npz` file (any path tf.io.gfile takes); it appears only once complete."""
    atomic_save_npz(
      path,
      format_version=np.int64(FORMAT_VERSION),
      num_classes=np.int64(self.num_classes),
      ids=self.ids,
      row_splits=self.row_splits,
      classes=self.classes,
      scores=self.scores,
    )

  @classmethod
  def load(cls, path: str) -> "SoftLabelStore":
    """Reads a file written by `save`; errors name the file and the field at fault."""
    with tf.io.gfile.GFile(path, "rb") as f:
      raw = f.read()
    try:
      archive = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as e:
      raise ValueError(f"{path}: not a soft-label store (.npz): {e}") from e
    with archive:
      fields = {}
      for field in _FIELDS:
        if field not in archive.files:
          raise ValueError(
            f"{path}: field {field!r} is missing (a soft-label store has {', '.join(_FIELDS)})"
          )
        try:
          fields[field] = archive[field]
        except (ValueError, OSError, zipfile.BadZipFile) as e:
          raise ValueError(f"{path}: field {field!r} cannot be read: {e}") from e
    for field in ("format_version", "num_classes"):
      if fields[field].shape != () or fields[field].dtype.kind not in "iu":
        raise ValueError(f"{path}: field {field!r} must be an integer scalar, got {fields[field]!r}")
    if int(fields["format_version"]) != FORMAT_VERSION:
      raise ValueError(
        f"{path}: field 'format_version' is {int(fields['format_version'])}; this code reads {FORMAT_VERSION}"
      )
    return cls(
      fields["ids"],
      fields["row_splits"],
      fields["classes"],
      fields["scores"],
      int(fields["num_classes"]),
      source=path,
    )

  # Numpy access ---------------------------------------------------------------------------------------

  def __len__(self) -> int:
    return len(self.ids)

  def __contains__(self, video_id) -> bool:
    return bool(self._rows_of(_as_ids([video_id]))[0] >= 0)

  def __repr__(self) -> str:
    return (
      f"SoftLabelStore({self.source!r}, videos={len(self)}, classes={self.num_classes}, "
      f"stored={self.nnz}, scores={self.scores.dtype})"
    )

  @property
  def nnz(self) -> int:
    """Stored (video, class) scores."""
    return len(self.classes)

  def _rows_of(self, ids: np.ndarray) -> np.ndarray:
    """Store rows of `ids`, -1 where the store has no entry."""
    rows = np.searchsorted(self.ids, ids)
    found = rows < len(self.ids)
    found[found] = self.ids[rows[found]] == ids[found]
    return np.where(found, rows, -1)

  def lookup(self, video_ids: VideoIds) -> np.ndarray:
    """Dense float32 soft rows [len(video_ids), num_classes]; KeyError for an id not in the store."""
    ids = _as_ids(video_ids)
    rows = self._rows_of(ids)
    if np.any(rows < 0):
      missing = _decoded(ids[np.argmin(rows)])
      raise KeyError(f"{self.source} has no entry for video {missing!r}")
    starts = self.row_splits[rows]
    counts = self.row_splits[rows + 1] - starts
    batch_index = np.repeat(np.arange(len(ids)), counts)
    # Entry j of a row sits at starts[row] + j: positions run on from each row's start.
    positions = np.arange(counts.sum()) + np.repeat(starts - (np.cumsum(counts) - counts), counts)
    dense = np.zeros((len(ids), self.num_classes), np.float32)
    dense[batch_index, self.classes[positions]] = self.scores[positions]
    return dense


class SoftLabelStoreBuilder:
  """Collects rows chunk by chunk (e.g. one stacker fold at a time), then builds the store.

  Each chunk is checked as it is added (class range, score range), so a bad fold fails early; pairs
  repeated across chunks are caught by `build`. Chunks are kept in the compact storage dtypes.
  """

  def __init__(self, num_classes: int, score_dtype=np.float32):
    self.num_classes = _check_num_classes(num_classes)
    self.score_dtype = _check_score_dtype(score_dtype)
    self._chunks: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = []

  @property
  def num_rows(self) -> int:
    return sum(len(chunk[0]) for chunk in self._chunks)

  def add(self, video_ids: VideoIds, class_ids, scores) -> None:
    self._chunks.append(_checked_rows(video_ids, class_ids, scores, self.num_classes, self.score_dtype))

  def build(self, all_video_ids: Optional[VideoIds] = None) -> SoftLabelStore:
    """The store of every row added so far (see `SoftLabelStore.from_rows` for `all_video_ids`)."""
    if not self._chunks:
      empty = _checked_rows([], np.zeros(0, np.int64), np.zeros(0), self.num_classes, self.score_dtype)
      return SoftLabelStore._from_checked_rows(*empty, self.num_classes, all_video_ids)
    ids, classes, scores = (np.concatenate(parts) for parts in zip(*self._chunks))
    return SoftLabelStore._from_checked_rows(ids, classes, scores, self.num_classes, all_video_ids)


class VideoGroupedStoreBuilder:
  """The store of rows given part by part, each part holding all the rows of its videos, in ~12 bytes a
  row at the peak (the stacker's candidate parts).

  Rows come grouped by video, classes rising within a video (as the candidate builder writes them;
  a part that is not is sorted so on its own), and every video of the set is in one part. So the store's
  CSR arrays are the rows with their videos reordered by id: a sort of the video ids, then the rows
  gathered block by block, where `SoftLabelStoreBuilder` sorts one int64 key a row (~60 bytes a row:
  measured, the run's peak at 90k videos). The store checks the result (ids sorted and unique, classes
  rising within a video, scores in [0, 1]) as it does every store's."""

  BLOCK_VIDEOS = 1 << 16

  def __init__(self, num_classes: int):
    self.num_classes = num_classes
    self.class_dtype = _class_dtype(num_classes)  # the store's (uint16 for 3,862 classes)
    self.ids, self.rows_per_video, self.classes, self.scores = [], [], [], []

  def add(self, video_ids, row_video, class_id, row_scores) -> None:
    """A part: its videos' ids (those without rows too: they get empty rows), each row's video as an index
    into `video_ids`, its class and score."""
    row_scores = np.asarray(row_scores, np.float32)
    next_video = np.diff(row_video)
    if not np.all((next_video > 0) | ((next_video == 0) & (np.diff(class_id.astype(np.int64)) > 0))):
      order = np.lexsort((class_id, row_video))
      row_video, class_id, row_scores = row_video[order], class_id[order], row_scores[order]
    if len(class_id) and (class_id.min() < 0 or class_id.max() >= self.num_classes):
      raise ValueError(f"a candidate row's class id is outside [0, {self.num_classes})")
    self.ids.append(np.asarray(video_ids))
    self.rows_per_video.append(np.bincount(row_video, minlength=len(video_ids)))
    self.classes.append(class_id.astype(self.class_dtype))
    self.scores.append(row_scores)

  def build(self) -> SoftLabelStore:
    ids = np.concatenate(self.ids) if self.ids else np.zeros(0, np.bytes_)
    counts = np.concatenate(self.rows_per_video).astype(np.int64) if self.ids else np.zeros(0, np.int64)
    classes = np.concatenate(self.classes) if self.ids else np.zeros(0, self.class_dtype)
    scores = np.concatenate(self.scores) if self.ids else np.zeros(0, np.float32)
    self.ids, self.rows_per_video, self.classes, self.scores = [], [], [], []
    starts = np.cumsum(counts) - counts
    order = np.argsort(ids, kind="stable")
    row_splits = np.zeros(len(ids) + 1, np.int64)
    np.cumsum(counts[order], out=row_splits[1:])
    sorted_classes, sorted_scores = np.empty_like(classes), np.empty_like(scores)
    for first in range(0, len(ids), self.BLOCK_VIDEOS):
      videos = order[first : first + self.BLOCK_VIDEOS]
      begin, end = row_splits[first], row_splits[first + len(videos)]
      # Row i of the block comes from its video's first row, offset by i's place within the video.
      source = np.repeat(starts[videos] - row_splits[first : first + len(videos)], counts[videos])
      source += np.arange(begin, end)
      sorted_classes[begin:end], sorted_scores[begin:end] = classes[source], scores[source]
    del classes, scores
    return SoftLabelStore(ids[order], row_splits, sorted_classes, sorted_scores, self.num_classes)
