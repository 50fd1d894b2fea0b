"""Candidate sets on disk: the stacker's rows, one part file per ~100k videos and an index written last.

A candidate set is a directory of `part-NNNNN.npz` (ids [n], num_positives [n], row_video [R], class_id [R],
target [R] when labeled, one `feature/<name>` array [R] per feature) and `index.json` (models, stores,
features, top_n, labeled, parts, counts). `yt8m_tf.stacking.candidates` builds them; the stacker and the
reports read them, and score rows with `rows_gap` (GAP@20 of a row scoring, as `store_gap` of a store).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Iterator, Optional, Sequence

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


def read_candidates(candidate_dir: str) -> Iterator[CandidateChunk]:
  index = read_index(candidate_dir)
  for name in index["parts"]:
    path = os.path.join(candidate_dir, name)
    arrays = files.load_npz(path)
    try:
      chunk = CandidateChunk(
        ids=arrays["ids"],
        num_positives=arrays["num_positives"],
        row_video=arrays["row_video"],
        class_id=arrays["class_id"],
        features={k: arrays[f"feature/{k}"] for k in index["features"]},
        target=arrays["target"] if index["labeled"] else None,
      )
    except KeyError as error:
      raise ValueError(f"{path}: missing field {error}") from None
    yield chunk


def load_candidates(candidate_dir: str) -> CandidateChunk:
  """All rows of a candidate set in memory (what the GBT trainer needs anyway)."""
  return concatenate(list(read_candidates(candidate_dir)))


def rows_gap(chunk: CandidateChunk, row_scores: np.ndarray, k: int = metrics.GAP_K) -> float:
  """GAP@k of per-row scores: each video's top-k rows, pooled; the denominator counts every positive
  of the videos, candidates or not. A NaN score means no prediction for that row."""
  if chunk.target is None:
    raise ValueError("GAP needs labeled candidates")
  accumulator = metrics.GapAccumulator(k=k)
  row_scores = np.asarray(row_scores)
  scored = ~np.isnan(row_scores)
  top_scores, top_targets = top_rows_per_video(
    chunk.row_video[scored], row_scores[scored], chunk.target[scored], len(chunk.ids), k
  )
  accumulator.add_topk(top_scores, top_targets, int(chunk.num_positives.sum()), num_videos=len(chunk.ids))
  return accumulator.result()


def top_rows_per_video(row_video, row_scores, row_values, num_videos: int, k: int):
  """Each video's best `k` rows by score: ([kept] scores, [kept] values) in video order, best first.
  Ties keep row order (class id), never the target."""
  order = np.lexsort((-np.asarray(row_scores, np.float64), row_video))
  video_sorted = row_video[order]
  starts = np.searchsorted(video_sorted, np.arange(num_videos))
  position = np.arange(len(order)) - starts[video_sorted]
  keep = order[position < k]
  return np.asarray(row_scores)[keep], np.asarray(row_values)[keep]
