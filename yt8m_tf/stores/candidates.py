"""Candidate sets on disk: the stacker's rows, one part file per ~100k videos and an index written last.

A candidate set is a directory of `part-NNNNN.npz` (ids [n], num_positives [n], row_video [R], class_id [R],
target [R] when labeled, one `feature/<name>` array [R] per feature) and `index.json` (models, stores,
features, top_n, labeled, parts, counts). `yt8m_tf.stacking.candidates` builds them; the stacker and the
reports read them, and score rows with `rows_gap` (GAP@20 of a row scoring, as `store_gap` of a store) or,
part by part, with `RowsGap`.

Readers that need not hold a whole set read it part by part (`read_candidates`, `read_video_ids`), and
only the arrays they ask for: a part file is opened lazily, so skipped features are never read.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from yt8m_tf import files, metrics
from yt8m_tf.files import atomic_save_npz


@dataclasses.dataclass
class CandidateChunk:
  """Rows of a set of videos. `target` is None for unlabeled videos."""

  ids: np.ndarray  # [n] bytes
  num_positives: np.ndarray  # [n] int32, all positives of each video (-1 when unlabeled)
  row_video: np.ndarray  # [R] int32 index into ids
  class_id: np.ndarray  # [R] int32
  features: Dict[str, np.ndarray]  # name -> [R] float32
  target: Optional[np.ndarray]  # [R] int8

  def select_videos(self, keep: np.ndarray) -> "CandidateChunk":
    """The rows of the videos where `keep` [n] is True."""
    new_index = np.cumsum(keep) - 1
    rows = keep[self.row_video]
    return CandidateChunk(
      ids=self.ids[keep],
      num_positives=self.num_positives[keep],
      row_video=new_index[self.row_video[rows]].astype(np.int32),
      class_id=self.class_id[rows],
      features={k: v[rows] for k, v in self.features.items()},
      target=None if self.target is None else self.target[rows],
    )


def concatenate(chunks: Sequence[CandidateChunk]) -> CandidateChunk:
  offsets = np.cumsum([0] + [len(c.ids) for c in chunks[:-1]])
  return CandidateChunk(
    ids=np.concatenate([c.ids for c in chunks]),
    num_positives=np.concatenate([c.num_positives for c in chunks]),
    row_video=np.concatenate([c.row_video + o for c, o in zip(chunks, offsets)]).astype(np.int32),
    class_id=np.concatenate([c.class_id for c in chunks]),
    features={k: np.concatenate([c.features[k] for c in chunks]) for k in chunks[0].features},
    target=None if chunks[0].target is None else np.concatenate([c.target for c in chunks]),
  )


def write_part(path: str, chunk: CandidateChunk) -> None:
  """One part file (atomically); the index, written last by the builder, lists it."""
  arrays = {
    "ids": chunk.ids,
    "num_positives": chunk.num_positives,
    "row_video": chunk.row_video,
    "class_id": chunk.class_id,
    **{f"feature/{k}": v for k, v in chunk.features.items()},
  }
  if chunk.target is not None:
    arrays["target"] = chunk.target
  atomic_save_npz(path, **arrays)


def is_complete(candidate_dir: str) -> bool:
  return files.has_index(candidate_dir)


def read_index(candidate_dir: str) -> dict:
  return files.read_index(candidate_dir, "candidate set")


def part_paths(candidate_dir: str) -> List[str]:
  return [os.path.join(candidate_dir, name) for name in read_index(candidate_dir)["parts"]]


def read_part(path: str, index: dict, features: Optional[Sequence[str]] = None) -> CandidateChunk:
  """One part file; `features` names the feature arrays to read (default: all of the index's)."""
  names = index["features"] if features is None else list(features)
  with files.open_npz(path) as archive:
    try:
      return CandidateChunk(
        ids=archive["ids"],
        num_positives=archive["num_positives"],
        row_video=archive["row_video"],
        class_id=archive["class_id"],
        features={k: archive[f"feature/{k}"] for k in names},
        target=archive["target"] if index["labeled"] else None,
      )
    except KeyError as error:
      raise ValueError(f"{path}: missing field {error}") from None


def read_candidates(candidate_dir: str, features: Optional[Sequence[str]] = None) -> Iterator[CandidateChunk]:
  """The set part by part, in order (one part in memory at a time); `features` as in `read_part`."""
  index = read_index(candidate_dir)
  for name in index["parts"]:
    yield read_part(os.path.join(candidate_dir, name), index, features)


def read_video_ids(candidate_dir: str) -> List[np.ndarray]:
  """Each part's video ids, in order; no row is read."""
  ids = []
  for path in part_paths(candidate_dir):
    with files.open_npz(path) as archive:
      ids.append(archive["ids"])
  return ids


def load_candidates(candidate_dir: str) -> CandidateChunk:
  """All rows of a candidate set in memory (tests and small sets; the stacker reads part by part)."""
  return concatenate(list(read_candidates(candidate_dir)))


class RowsGap:
  """GAP@k of per-row scores added chunk by chunk (every row of a video in the same chunk, as in a part
  file): the same pairs in the same order as `rows_gap` of all the chunks concatenated, so the same GAP.
  A NaN score means no prediction for that row."""

  def __init__(self, k: int = metrics.GAP_K):
    self.k = k
    self._accumulator = metrics.GapAccumulator(k=k)

  def add(self, chunk: CandidateChunk, row_scores: np.ndarray) -> None:
    if chunk.target is None:
      raise ValueError("GAP needs labeled candidates")
    row_scores = np.asarray(row_scores)
    scored = ~np.isnan(row_scores)
    top_scores, top_targets = top_rows_per_video(
      chunk.row_video[scored], row_scores[scored], chunk.target[scored], len(chunk.ids), self.k
    )
    self._accumulator.add_topk(
      top_scores, top_targets, int(chunk.num_positives.sum()), num_videos=len(chunk.ids)
    )

  def result(self) -> float:
    return self._accumulator.result()


def rows_gap(chunk: CandidateChunk, row_scores: np.ndarray, k: int = metrics.GAP_K) -> float:
  """GAP@k of per-row scores: each video's top-k rows, pooled; the denominator counts every positive
  of the videos, candidates or not. A NaN score means no prediction for that row."""
  gap = RowsGap(k)
  gap.add(chunk, row_scores)
  return gap.result()


def top_rows_per_video(row_video, row_scores, row_values, num_videos: int, k: int):
  """Each video's best `k` rows by score: ([kept] scores, [kept] values) in video order, best first.
  Ties keep row order (class id), never the target."""
  order = np.lexsort((-np.asarray(row_scores, np.float64), row_video))
  video_sorted = row_video[order]
  starts = np.searchsorted(video_sorted, np.arange(num_videos))
  position = np.arange(len(order)) - starts[video_sorted]
  keep = order[position < k]
  return np.asarray(row_scores)[keep], np.asarray(row_values)[keep]
