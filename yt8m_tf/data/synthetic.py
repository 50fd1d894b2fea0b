r"""Synthetic YouTube-8M data: REAL label sets, features from a documented latent model.

`generate(config, out_dir)` writes video-level Examples and frame-level SequenceExamples in the YouTube-8M
2018 layout, split into train/validate/test shards, plus the test answers, the noise-free labels, the
vocabulary of the classes used and (last, so its presence means "complete") `synthetic_config.json`.

The latent model (d = latent_dim, K = classes, `difficulty` multiplies every noise std sigma_*):

  World (fixed by the seed and the label sets):
    S      = D^-1/2 C D^-1/2, C the class co-occurrence counts, D = diag(C)      (cosine of occurrences)
    u_c    = row c of the top-`cooccurrence_rank` eigenvectors of S, times sqrt(eigenvalue)
    e_c    = unit(w_co R u_c / rms|u| + w_vert g_{Vertical1(c)} + w_own n_c)      g, n ~ N(0, I/d), R random
    a_c^k  = sqrt(1 - rho) e_c + sqrt(rho) (R_k - mean_j R_j) e_c, R_k random rotations: style k
    q_c    = exp(N(0, class_strength_spread^2))                                   how visible class c is
  Video v (true labels Y_v, T_v frames in S_v shots, style k_v ~ U{1..num_styles}):
    w_vc   = q_c exp(N(0, salience_spread^2)); "brief" labels (prob. brief_label_fraction) are visible only
             in one window of 1..brief_max_frames frames, with weight x brief_boost; the others in each shot
             with prob. shot_visibility (at least one shot)
    h_t    = sum_{c in Y_v} vis_ct w_vc a_c^{k_v} + s_{k_v} + sigma_video z_v + sigma_shot z_{shot(t)}
    m_t    = sum_{c in Y_v, Vertical1(c) in audio_verticals} vis_ct w_vc e_c + sigma_audio_video z'_v
    rgb_t  = quantize(P_rgb^T h_t + sigma_frame xi_t),  audio_t = quantize(P_audio^T m_t + sigma_frame xi'_t)
  with P_* Gaussian projections scaled per output dim by a decaying profile (a few dominant dims, like the
  PCA'd real features; values mostly inside the quantizer's [-2, 2]), xi uniform with unit variance,
  quantize = `schema.quantize`. Video-level features are the means over frames of `schema.dequantize`d bytes.

Why each part: co-occurring classes get related features; the style term is invisible to a linear model
(R_k - mean R averages out over styles) but an MLP can gate on s_k, which gives non-linear models headroom;
brief labels are diluted in the mean but visible in a few frames, which gives frame-level models headroom;
audio helps only for a few verticals. Labels: features derive from the TRUE labels Y_v; records store the
OBSERVED labels: each true label is dropped with prob. label_drop_rate (a video always keeps one) and spawns,
with prob. label_add_rate, a related label drawn from its co-occurrence neighbours (P(c'|c) ~ C[c, c']).

Determinism: the world and the label noise come from generators keyed by (seed, stream); each video's
frames from a generator keyed by (seed, video index), so the output is byte-identical for a config and
does not depend on the chunk size. Memory is bounded by the chunk (default 256 videos), plus O(K^2) for
the co-occurrence matrix and O(total labels) for the label sets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from yt8m_tf import progress as progress_lib
from yt8m_tf.configs.dataclass_flags import setting
from yt8m_tf.data import labels as labels_lib
from yt8m_tf.data.labels import LabelSets, Vocabulary
from yt8m_tf.data.schema import Schema, dequantize, quantize
from yt8m_tf.data.writers import frame_example, video_example
from yt8m_tf.files import atomic_open, atomic_tfrecord_writer

SPLITS = ("train", "validate", "test")
CONFIG_FILE = "synthetic_config.json"
PENDING_FILE = ".synthetic_config.pending.json"
FORMAT_VERSION = 1

# Generator streams: each kind of randomness has its own key, so adding a knob to one part of the model
# leaves the others' draws unchanged.
_WORLD, _SUBSET, _SPLIT, _LABEL_NOISE, _PLAN, _VIDEO = range(6)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Every knob of the synthetic data.

  Defaults are calibrated on the packaged 50k sample (bench/calibrate_synthetic.py): validation GAP@20 of a
  logistic model 0.778 (0.833 against the clean labels), of a 2048-unit MLP 0.817 (0.877).
  """

  seed: int = setting(0, "Random seed: same seed and knobs, same bytes.")
  num_videos: Optional[int] = setting(
    None, "Videos to use (a seeded sample); default: all of the label file."
  )
  num_classes: Optional[int] = setting(None, "Keep the N most frequent classes; default: all of them.")
  split_fractions: Tuple[float, float, float] = setting((0.7, 0.15, 0.15), "train,validate,test fractions.")
  num_shards: Tuple[int, int, int] = setting((8, 2, 2), "Shards of train,validate,test.")
  frame_level: bool = setting(
    True, "Also write frame-level SequenceExamples (video/ is the same either way)."
  )
  # Frames: clipped log-normal around mean_frames (mean ~29); frame-level records take ~33 MB per 1k videos,
  # video-level ~4.5 MB. Shots: contiguous frame ranges with their own nuisance and visible labels.
  min_frames: int = setting(10, "Fewest frames per video.")
  max_frames: int = setting(60, "Most frames per video (<= 300).")
  mean_frames: float = setting(30.0, "Typical frames per video (log-normal centre).")
  frames_spread: float = setting(0.5, "Log-normal spread of the frame count.")
  min_shots: int = setting(1, "Fewest shots per video.")
  max_shots: int = setting(6, "Most shots per video.")
  # Class embeddings e_c.
  latent_dim: int = setting(256, "Dimension d of the latent class space.")
  cooccurrence_rank: int = setting(64, "Rank of the co-occurrence factorization u_c.")
  cooccurrence_weight: float = setting(0.5, "w_co: how much co-occurring classes look alike.")
  vertical_weight: float = setting(0.3, "w_vert: how much classes of one vertical look alike.")
  own_weight: float = setting(0.8, "w_own: weight of the class's own random direction.")
  class_strength_spread: float = setting(0.25, "Log-std of per-class visibility q_c.")
  # Per-video label appearance.
  salience_spread: float = setting(0.3, "Log-std of a label's weight in one video.")
  shot_visibility: float = setting(0.85, "P(a non-brief label is visible in a given shot).")
  brief_label_fraction: float = setting(0.1, "Labels visible in only 1..brief_max_frames frames.")
  brief_max_frames: int = setting(3, "Longest window of a brief label.")
  brief_boost: float = setting(2.0, "Salience multiplier of brief labels while visible.")
  num_styles: int = setting(3, "Visual styles (1 removes the non-linear style effect).")
  style_dependence: float = setting(0.4, "rho: share of appearance that depends on the style.")
  style_strength: float = setting(1.0, "Norm of the style vector s_k (how visible the style itself is).")
  # Classes whose Vertical1 is here make sound (music, engines, animals, crowds); others leave audio to noise.
  audio_verticals: Tuple[str, ...] = setting(
    ("Arts & Entertainment", "Autos & Vehicles", "Pets & Animals", "Sports"),
    "Vertical1 names whose classes are audible.",
  )
  # Noise (std in latent units; all multiplied by difficulty).
  difficulty: float = setting(1.0, "Multiplies every feature noise std (1: calibrated; 2 doubles them).")
  video_noise: float = setting(0.2, "sigma_video: per-video nuisance std (does not average out).")
  shot_noise: float = setting(0.1, "sigma_shot: per-shot nuisance std.")
  audio_video_noise: float = setting(0.2, "sigma_audio_video: per-video audio nuisance std.")
  frame_noise: float = setting(0.1, "sigma_frame: per-frame, per-dim feature noise std.")
  feature_peak_std: float = setting(0.8, "Std of the first rgb/audio dim per frame.")
  # Label noise (observed labels; features use the true ones).
  label_drop_rate: float = setting(0.05, "P(a true label is not recorded).")
  label_add_rate: float = setting(0.05, "P(a true label adds a related false one).")
  neighbours_per_class: int = setting(16, "Co-occurrence neighbours an added label is drawn from.")

  def __post_init__(self):
    fractions = tuple(float(f) for f in self.split_fractions)
    if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
      raise ValueError(f"split_fractions must be 3 non-negative numbers summing to 1: {self.split_fractions}")
    if len(self.num_shards) != 3 or min(self.num_shards) < 1:
      raise ValueError(f"num_shards must be 3 positive counts: {self.num_shards}")
    if not 1 <= self.min_frames <= self.max_frames or self.max_frames > Schema().max_frames:
      raise ValueError(f"need 1 <= min_frames <= max_frames <= 300: {self.min_frames}, {self.max_frames}")
    if not 1 <= self.min_shots <= self.max_shots:
      raise ValueError(f"need 1 <= min_shots <= max_shots: {self.min_shots}, {self.max_shots}")
    for name in (
      "label_drop_rate",
      "label_add_rate",
      "brief_label_fraction",
      "shot_visibility",
      "style_dependence",
    ):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
    if self.num_styles < 1 or self.latent_dim < 2 or self.cooccurrence_rank < 1 or self.brief_max_frames < 1:
      raise ValueError("num_styles, latent_dim, cooccurrence_rank and brief_max_frames must be positive")
    if self.num_videos is not None and self.num_videos < 1:
      raise ValueError(f"num_videos must be positive or None, got {self.num_videos}")
    if self.difficulty < 0:
      raise ValueError(f"difficulty must be >= 0, got {self.difficulty}")
    # Normalize sequences to tuples so that equality and JSON round trips behave.
    object.__setattr__(self, "split_fractions", fractions)
    object.__setattr__(self, "num_shards", tuple(int(n) for n in self.num_shards))
    object.__setattr__(self, "audio_verticals", tuple(self.audio_verticals))

  def to_json_dict(self) -> dict:
    return {
      field.name: (list(value) if isinstance(value, tuple) else value)
      for field in dataclasses.fields(self)
      for value in [getattr(self, field.name)]
    }

  @classmethod
  def from_json_dict(cls, values: dict) -> "SyntheticConfig":
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
      raise ValueError(f"unknown SyntheticConfig fields {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclasses.dataclass(frozen=True)
class Progress:
  """Passed to the progress callback after every chunk; times count from the start of the synthesis."""

  split: str
  videos_done: int
  videos_total: int
  frames_done: int
  elapsed_seconds: float

  @property
  def videos_per_second(self) -> float:
    return self.videos_done / max(self.elapsed_seconds, 1e-9)


def progress_display(
  label: str, interval_seconds: float = 10.0, log: Callable[[str], None] = print
) -> Callable[[Progress], None]:
  """A `generate(progress=...)` callback that shows one progress display (bar or lines, with ETA) over every
  split's videos; it is made at the first chunk, when the total is known."""
  display: List[progress_lib.Progress] = []

  def show(done: Progress) -> None:
    if not display:
      display.append(
        progress_lib.Progress(
          done.videos_total, label, "videos", interval_seconds, log, already_elapsed=done.elapsed_seconds
        )
      )
    display[0].update(done.videos_done, split=done.split, frames=done.frames_done)

  return show


def _generator(seed: int, stream: int, index: int = 0) -> np.random.Generator:
  return np.random.default_rng([int(seed), stream, int(index)])


# ----------------------------------------------------------------------------------------------------------
# World: class co-occurrence, embeddings, projections.


def cooccurrence_counts(label_sets: LabelSets, num_classes: int) -> np.ndarray:
  """C[a, b] = videos with both a and b (C[a, a] = videos with a), int64 [K, K]."""
  counts = label_sets.counts
  rows = label_sets.rows
  # Pair every entry with every entry of its row: entry e repeats n_row(e) times.
  left = np.repeat(np.arange(len(label_sets.values)), counts[rows])
  group_start = np.repeat(np.cumsum(counts[rows]) - counts[rows], counts[rows])
  right = label_sets.offsets[rows[left]] + (np.arange(len(left)) - group_start)
  flat = label_sets.values[left].astype(np.int64) * num_classes + label_sets.values[right]
  return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def cooccurrence_embedding(cooccurrence: np.ndarray, rank: int, rng: np.random.Generator) -> np.ndarray:
  """Rows u_c with u_a . u_b ~ cosine similarity of the classes' occurrences (top-`rank` eigenpairs)."""
  num_classes = len(cooccurrence)
  rank = min(rank, num_classes)
  diagonal = np.sqrt(np.maximum(np.diag(cooccurrence), 1)).astype(np.float32)
  similarity = cooccurrence.astype(np.float32) / diagonal[:, None] / diagonal[None, :]
  # Randomized subspace iteration: only matmuls, fast for thousands of classes and deterministic for a seed.
  basis = rng.standard_normal((num_classes, min(rank + 10, num_classes))).astype(np.float32)
  for _ in range(6):
    basis, _ = np.linalg.qr(similarity @ basis)
  eigenvalues, rotation = np.linalg.eigh(basis.T @ similarity @ basis)
  top = np.argsort(eigenvalues)[::-1][:rank]
  vectors = basis @ rotation[:, top]
  return (vectors * np.sqrt(np.maximum(eigenvalues[top], 0.0))).astype(np.float32)


def _feature_profile(size: int, peak: float) -> np.ndarray:
  """Per-dim std decaying like a PCA spectrum: peak at dim 0, ~0.15 * peak at dim 1023."""
  return (peak * (1.0 + np.arange(size) / 16.0) ** -0.45).astype(np.float32)


@dataclasses.dataclass
class _World:
  """The fixed part of the model, with the projections already applied (features = latent @ projection)."""

  rgb_appearance: np.ndarray  # [styles, K, 1024] a_c^k @ P_rgb
  audio_appearance: np.ndarray  # [K, 128] e_c @ P_audio, zero rows for classes that are not audible
  strength: np.ndarray  # [K] q_c
  rgb_style: np.ndarray  # [styles, 1024] s_k @ P_rgb
  rgb_projection: np.ndarray  # [d, 1024], profile folded in (projects the nuisance vectors)
  audio_projection: np.ndarray  # [d, 128]
  rgb_noise_scale: np.ndarray  # [1024] per-dim scale of the unit uniform frame noise
  audio_noise_scale: np.ndarray  # [128]
  neighbours: np.ndarray  # [K, M] int32, co-occurrence neighbours (-1 padding)
  neighbour_cdf: np.ndarray  # [K, M] float64 cumulative P(c'|c); rows of zeros: no neighbour
  class_cdf: np.ndarray  # [K] cumulative class frequency (fallback for added labels)


def _build_world(
  config: SyntheticConfig, label_sets: LabelSets, vocabulary: Vocabulary, schema: Schema
) -> _World:
  rng = _generator(config.seed, _WORLD)
  num_classes, dim = len(vocabulary), config.latent_dim
  cooccurrence = cooccurrence_counts(label_sets, num_classes)

  cooc = cooccurrence_embedding(cooccurrence, config.cooccurrence_rank, rng)
  cooc /= max(float(np.sqrt(np.mean(np.sum(cooc**2, axis=1)))), 1e-12)
  rotation = np.linalg.qr(rng.standard_normal((dim, cooc.shape[1])))[0].astype(np.float32)  # [d, rank]
  verticals, vertical_ids = np.unique(vocabulary.vertical1, return_inverse=True)
  vertical_vectors = rng.standard_normal((len(verticals), dim)).astype(np.float32) / np.sqrt(dim)
  own = rng.standard_normal((num_classes, dim)).astype(np.float32) / np.sqrt(dim)
  embedding = (
    config.cooccurrence_weight * cooc @ rotation.T
    + config.vertical_weight * vertical_vectors[vertical_ids]
    + config.own_weight * own
  )
  embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)

  # Style k transforms the whole latent space (one rotation R_k shared by all classes, like a change of
  # camera or rendering): a_c^k = sqrt(1 - rho) e_c + sqrt(rho) (R_k - mean_j R_j) e_c. The style-dependent
  # part averages to zero over styles, so a linear model cannot use it; an MLP gating on s_k can, and it
  # learns that one map from every class's examples.
  styles = config.num_styles
  rotations = np.stack([np.linalg.qr(rng.standard_normal((dim, dim)))[0] for _ in range(styles)])
  rotations = rotations.astype(np.float32)
  if styles > 1:
    rotations -= rotations.mean(axis=0, keepdims=True)
    rotations *= np.sqrt(styles / (styles - 1))  # keeps E|(R_k - mean R) e| ~ 1 after centring
  rho = config.style_dependence if styles > 1 else 0.0
  appearance = np.sqrt(1.0 - rho) * embedding[None] + np.sqrt(rho) * np.einsum(
    "cd,ked->kce", embedding, rotations
  )
  style_vectors = rng.standard_normal((styles, dim)).astype(np.float32)
  style_vectors *= config.style_strength / np.linalg.norm(style_vectors, axis=1, keepdims=True)
  strength = np.exp(config.class_strength_spread * rng.standard_normal(num_classes)).astype(np.float32)

  # Scale projections so the typical frame has ~unit variance per dim before the profile.
  noise = config.difficulty
  labels_power = float(np.mean(label_sets.counts)) * float(np.exp(2 * config.salience_spread**2))
  rgb_power = (
    labels_power + config.style_strength**2 + noise**2 * (config.video_noise**2 + config.shot_noise**2)
  )
  audio_power = labels_power * 0.3 + noise**2 * config.audio_video_noise**2
  projections = []
  for size, power in ((schema.feature_sizes[0], rgb_power), (schema.feature_sizes[1], audio_power)):
    profile = _feature_profile(size, config.feature_peak_std)
    frame_std = noise * config.frame_noise
    norm = np.sqrt(power / dim * 1.0 + frame_std**2) + 1e-6
    matrix = rng.standard_normal((dim, size)).astype(np.float32) / np.sqrt(dim)
    projections.append((matrix * (profile / norm), profile / norm * frame_std * np.sqrt(12.0)))

  neighbours, neighbour_cdf = _neighbour_tables(cooccurrence, config.neighbours_per_class)
  frequency = np.diag(cooccurrence).astype(np.float64) + 1e-3
  rgb_projection, audio_projection = projections[0][0], projections[1][0]
  audible = np.isin(vocabulary.vertical1, list(config.audio_verticals))
  return _World(
    rgb_appearance=(appearance.astype(np.float32) @ rgb_projection),
    audio_appearance=(embedding.astype(np.float32) @ audio_projection) * audible[:, None],
    strength=strength,
    rgb_style=style_vectors @ rgb_projection,
    rgb_projection=rgb_projection,
    audio_projection=audio_projection,
    rgb_noise_scale=projections[0][1].astype(np.float32),
    audio_noise_scale=projections[1][1].astype(np.float32),
    neighbours=neighbours,
    neighbour_cdf=neighbour_cdf,
    class_cdf=np.cumsum(frequency) / frequency.sum(),
  )


def _neighbour_tables(cooccurrence: np.ndarray, size: int) -> Tuple[np.ndarray, np.ndarray]:
  off_diagonal = cooccurrence.astype(np.float64)
  np.fill_diagonal(off_diagonal, 0.0)
  size = min(size, len(off_diagonal) - 1) if len(off_diagonal) > 1 else 1
  top = np.argsort(-off_diagonal, axis=1, kind="stable")[:, :size]
  weights = np.take_along_axis(off_diagonal, top, axis=1)
  totals = weights.sum(axis=1, keepdims=True)
  cdf = np.where(totals > 0, np.cumsum(weights, axis=1) / np.maximum(totals, 1e-12), 0.0)
  return np.where(weights > 0, top, -1).astype(np.int32), cdf


# ----------------------------------------------------------------------------------------------------------
# Labels: subset, split, noise.


def observe_labels(
  clean: LabelSets,
  world_neighbours: np.ndarray,
  neighbour_cdf: np.ndarray,
  class_cdf: np.ndarray,
  drop_rate: float,
  add_rate: float,
  rng: np.random.Generator,
) -> LabelSets:
  """Noisy observed labels: drop each true label (keeping at least one), add co-occurrence neighbours."""
  rows, values = clean.rows, clean.values.astype(np.int64)
  num_classes = len(class_cdf)
  drop_draw = rng.random(len(values))
  dropped = drop_draw < drop_rate
  # A video that lost every label keeps the one with the largest draw.
  kept_per_row = np.bincount(rows[~dropped], minlength=len(clean))
  order = np.lexsort((-drop_draw, rows))
  has_labels = clean.counts > 0
  rescue = order[clean.offsets[:-1][has_labels & (kept_per_row == 0)]]
  dropped[rescue] = False

  spawns = rng.random(len(values)) < add_rate
  true_keys = rows * num_classes + values
  added_keys = _related_labels(
    rows[spawns], values[spawns], true_keys, world_neighbours, neighbour_cdf, class_cdf, rng
  )
  keys = np.unique(np.concatenate([true_keys[~dropped], added_keys]))
  out_rows, out_values = keys // num_classes, (keys % num_classes).astype(np.int32)
  offsets = np.zeros(len(clean) + 1, np.int64)
  np.cumsum(np.bincount(out_rows, minlength=len(clean)), out=offsets[1:])
  return LabelSets(clean.ids, out_values, offsets)


def _related_labels(
  rows, sources, true_keys, neighbours, neighbour_cdf, class_cdf, rng, attempts: int = 8
) -> np.ndarray:
  """Keys row * K + class of one co-occurrence neighbour of each source label, never a true label.

  A draw that hits a true or already added label of its video is redrawn (up to `attempts` times, the
  second half uniformly over the neighbours, then given up), so the measured add rate stays close to the
  configured one.
  """
  num_classes = len(class_cdf)
  found, taken = [], true_keys
  for attempt in range(attempts):
    if not len(sources):
      break
    pick = rng.random(len(sources))
    cdf = neighbour_cdf[sources]
    if attempt < attempts // 2:
      slot = np.minimum(np.sum(cdf < pick[:, None], axis=1), cdf.shape[1] - 1)
    else:  # the likeliest neighbours are often true labels already: try the others uniformly
      slot = (pick * np.maximum(np.sum(neighbours[sources] >= 0, axis=1), 1)).astype(np.int64)
    added = neighbours[sources, slot].astype(np.int64)
    no_neighbour = (cdf[:, -1] <= 0) | (added < 0)
    added[no_neighbour] = np.minimum(np.searchsorted(class_cdf, pick[no_neighbour]), num_classes - 1)
    keys = rows * num_classes + added
    first = np.zeros(len(keys), bool)
    first[np.unique(keys, return_index=True)[1]] = True
    clash = ~first | np.isin(keys, taken)
    found.append(keys[~clash])
    taken = np.concatenate([taken, keys[~clash]])
    rows, sources = rows[clash], sources[clash]
  return np.concatenate(found) if found else np.zeros([0], np.int64)


def split_rows(num_videos: int, fractions: Sequence[float], seed: int) -> List[np.ndarray]:
  """Row indices of each split (seeded permutation, exact sizes, each split in increasing row order)."""
  permutation = _generator(seed, _SPLIT).permutation(num_videos)
  sizes = [int(math.floor(f * num_videos)) for f in fractions[:-1]]
  bounds = np.cumsum([0] + sizes + [num_videos - sum(sizes)])
  return [np.sort(permutation[bounds[i] : bounds[i + 1]]) for i in range(len(fractions))]


def shard_name(split: str, shard: int, num_shards: int) -> str:
  return f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord"


# ----------------------------------------------------------------------------------------------------------
# Frames.


@dataclasses.dataclass
class _Plan:
  """Per-video and per-label draws made once for all videos (vectorized, chunk-independent)."""

  num_frames: np.ndarray  # [N] int64
  num_shots: np.ndarray  # [N] int64
  style: np.ndarray  # [N] int64
  weight: np.ndarray  # [E] float32, salience times class strength (x brief_boost when brief)
  brief: np.ndarray  # [E] bool


def _make_plan(config: SyntheticConfig, clean: LabelSets, world: _World) -> _Plan:
  rng = _generator(config.seed, _PLAN)
  n = len(clean)
  spread = config.frames_spread
  frames = np.rint(config.mean_frames * np.exp(spread * rng.standard_normal(n) - spread**2 / 2))
  frames = np.clip(frames, config.min_frames, config.max_frames).astype(np.int64)
  shots = rng.integers(config.min_shots, config.max_shots + 1, size=n)
  shots = np.minimum(shots, frames)
  style = rng.integers(0, config.num_styles, size=n)
  salience = np.exp(config.salience_spread * rng.standard_normal(len(clean.values)))
  brief = rng.random(len(clean.values)) < config.brief_label_fraction
  weight = salience * world.strength[clean.values] * np.where(brief, config.brief_boost, 1.0)
  return _Plan(frames, shots, style, weight.astype(np.float32), brief)


def _visibility(
  rng: np.random.Generator, num_frames: int, num_shots: int, brief: np.ndarray, config: SyntheticConfig
) -> Tuple[np.ndarray, np.ndarray]:
  """([T, n] 0/1 float32: which label is visible in which frame, [T] shot of each frame)."""
  num_labels = len(brief)
  cuts = np.sort(rng.choice(np.arange(1, num_frames), num_shots - 1, replace=False)) if num_shots > 1 else []
  shot_of_frame = np.searchsorted(cuts, np.arange(num_frames), side="right")
  in_shot = rng.random((num_shots, num_labels)) < config.shot_visibility
  in_shot[rng.integers(0, num_shots, size=num_labels), np.arange(num_labels)] = True
  visible = in_shot[shot_of_frame].astype(np.float32)
  lengths = rng.integers(1, config.brief_max_frames + 1, size=num_labels)
  starts = rng.integers(0, np.maximum(num_frames - lengths, 0) + 1)
  frame = np.arange(num_frames)[:, None]
  window = (frame >= starts) & (frame < starts + lengths)
  return np.where(brief[None, :], window, visible).astype(np.float32), shot_of_frame


def synthesize_chunk(
  config: SyntheticConfig,
  world: _World,
  plan: _Plan,
  clean: LabelSets,
  rows: np.ndarray,
  schema: Schema = Schema(),
) -> Dict[str, np.ndarray]:
  """Quantized frames and video-level means of `rows` (indices into `clean`).

  Returns rgb [F, 1024] and audio [F, 128] uint8, frame_offsets [n + 1], mean_rgb [n, 1024] and
  mean_audio [n, 128] float32 (means of the dequantized frames).
  """
  dim = config.latent_dim
  counts = plan.num_frames[rows]
  offsets = np.zeros(len(rows) + 1, np.int64)
  np.cumsum(counts, out=offsets[1:])
  total = int(offsets[-1])
  rgb_size = schema.feature_sizes[0]
  shot_counts = plan.num_shots[rows]
  shot_starts = np.concatenate([[0], np.cumsum(shot_counts)])
  # Label terms are added per frame in feature space (tables already projected); the nuisance vectors are
  # drawn per video / per shot and projected once for the whole chunk.
  rgb = np.empty((total, rgb_size), np.float32)
  audio = np.empty((total, schema.feature_sizes[1]), np.float32)
  uniform = np.empty((total, schema.total_feature_size), np.float32)
  video_latent = np.empty((len(rows), dim), np.float32)
  audio_video_latent = np.empty((len(rows), dim), np.float32)
  shot_latent = np.empty((int(shot_starts[-1]), dim), np.float32)
  shot_of_frame = np.empty(total, np.int64)
  for i, row in enumerate(rows):
    rng = _generator(config.seed, _VIDEO, row)
    start, end = offsets[i], offsets[i + 1]
    entries = slice(clean.offsets[row], clean.offsets[row + 1])
    classes = clean.values[entries]
    visible, shots = _visibility(rng, end - start, int(shot_counts[i]), plan.brief[entries], config)
    coefficient = visible * plan.weight[entries][None, :]
    rgb[start:end] = coefficient @ world.rgb_appearance[plan.style[row], classes]
    audio[start:end] = coefficient @ world.audio_appearance[classes]
    shot_of_frame[start:end] = shots + shot_starts[i]
    rng.standard_normal(dtype=np.float32, out=video_latent[i])
    rng.standard_normal(dtype=np.float32, out=audio_video_latent[i])
    rng.standard_normal(dtype=np.float32, out=shot_latent[shot_starts[i] : shot_starts[i + 1]])
    rng.random(dtype=np.float32, out=uniform[start:end])
  scale = config.difficulty / np.sqrt(dim)
  video_of_frame = np.repeat(np.arange(len(rows)), counts)
  video_rgb = world.rgb_style[plan.style[rows]] + (scale * config.video_noise) * (
    video_latent @ world.rgb_projection
  )
  rgb += video_rgb[video_of_frame]
  rgb += ((scale * config.shot_noise) * (shot_latent @ world.rgb_projection))[shot_of_frame]
  audio += ((scale * config.audio_video_noise) * (audio_video_latent @ world.audio_projection))[
    video_of_frame
  ]
  uniform -= 0.5
  rgb += uniform[:, :rgb_size] * world.rgb_noise_scale
  audio += uniform[:, rgb_size:] * world.audio_noise_scale
  del uniform
  out = {"frame_offsets": offsets}
  for name, values in (("rgb", rgb), ("audio", audio)):
    quantized = quantize(values)
    # Dequantization is affine, so the mean of dequantized frames is the dequantized mean code (exact
    # integer sums; the float32 result matches averaging dequantize(frames) to float32 rounding).
    code_sums = np.stack(
      [quantized[begin:end].sum(axis=0, dtype=np.int64) for begin, end in zip(offsets[:-1], offsets[1:])]
    )
    code_means = code_sums / counts[:, None].astype(np.float64)
    out[name] = quantized
    out["mean_" + name] = dequantize(code_means)
  return out


# ----------------------------------------------------------------------------------------------------------
# Generation.


def prepare_labels(
  config: SyntheticConfig, label_sets_path: Optional[str] = None, vocabulary_path: Optional[str] = None
) -> Tuple[LabelSets, Vocabulary, int]:
  """Loads the label sets, keeps the class subset and samples num_videos. Returns (clean, vocab, dropped)."""
  vocabulary = labels_lib.load_vocabulary(vocabulary_path)
  total_classes = len(vocabulary)
  label_sets = labels_lib.load_label_sets(label_sets_path, num_classes=total_classes)
  has_labels = label_sets.counts > 0  # a video needs a label to have features
  dropped = int(np.sum(~has_labels))
  label_sets = label_sets.select(has_labels)
  if config.num_classes is not None and config.num_classes < total_classes:
    kept = labels_lib.most_frequent_classes(label_sets, config.num_classes, total_classes)
    label_sets, dropped_by_subset = labels_lib.remap_classes(label_sets, kept, total_classes)
    vocabulary = vocabulary.select(kept)
    dropped += dropped_by_subset
  if config.num_videos is not None:
    if config.num_videos > len(label_sets):
      raise ValueError(
        f"num_videos={config.num_videos} but only {len(label_sets)} videos have labels "
        f"in {label_sets_path or 'the packaged sample'}"
      )
    chosen = np.sort(
      _generator(config.seed, _SUBSET).choice(len(label_sets), config.num_videos, replace=False)
    )
    label_sets = label_sets.select(chosen)
  return label_sets, vocabulary, dropped


def _read_json(path: str) -> Optional[dict]:
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, "r") as handle:
    return json.load(handle)


def _write_json(path: str, value: dict) -> None:
  with atomic_open(path, "w") as handle:
    handle.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def generate(
  config: SyntheticConfig,
  out_dir: str,
  label_sets_path: Optional[str] = None,
  vocabulary_path: Optional[str] = None,
  progress: Optional[Callable[[Progress], None]] = None,
  chunk_size: int = 256,
  overwrite: bool = False,
) -> dict:
  """Writes the synthetic dataset under `out_dir`; returns the summary also saved in synthetic_config.json.

  A complete directory made by the same config is left as is (its summary is returned); a different config
  raises unless `overwrite`. An interrupted run of the same config resumes, keeping finished shards.
  """
  schema = Schema()
  identity = {
    "config": config.to_json_dict(),
    "label_sets_path": label_sets_path,
    "vocabulary_path": vocabulary_path,
    "format_version": FORMAT_VERSION,
  }
  config_path = os.path.join(out_dir, CONFIG_FILE)
  pending_path = os.path.join(out_dir, PENDING_FILE)
  finished = _read_json(config_path)
  if finished is not None and not overwrite:
    if {k: finished.get(k) for k in identity} == identity:
      return finished
    raise ValueError(f"{config_path} was made by another config; pass overwrite=True or use a new out_dir")
  pending = _read_json(pending_path)
  resume = pending == identity and not overwrite
  if finished is not None:
    tf.io.gfile.remove(config_path)
  tf.io.gfile.makedirs(out_dir)
  _write_json(pending_path, identity)

  clean, vocabulary, dropped = prepare_labels(config, label_sets_path, vocabulary_path)
  schema = schema.with_num_classes(len(vocabulary))
  world = _build_world(config, clean, vocabulary, schema)
  observed = observe_labels(
    clean,
    world.neighbours,
    world.neighbour_cdf,
    world.class_cdf,
    config.label_drop_rate,
    config.label_add_rate,
    _generator(config.seed, _LABEL_NOISE),
  )
  plan = _make_plan(config, clean, world)
  splits = split_rows(len(clean), config.split_fractions, config.seed)
  synthesis = _Synthesis(config, world, plan, clean, observed, schema)

  _remove_stale_shards(out_dir, config)
  tracker = _ProgressTracker(progress, len(clean))
  for split, rows, num_shards in zip(SPLITS, splits, config.num_shards):
    for shard, shard_rows in enumerate(np.array_split(rows, num_shards)):
      name = shard_name(split, shard, num_shards)
      paths = [os.path.join(out_dir, level, name) for level in ("video", "frame")[: 1 + config.frame_level]]
      if resume and all(tf.io.gfile.exists(p) for p in paths):
        tracker.add(split, len(shard_rows), int(plan.num_frames[shard_rows].sum()))
        continue
      _write_shard(
        synthesis,
        shard_rows,
        paths,
        with_labels=split != "test",
        chunk_size=chunk_size,
        on_chunk=functools.partial(tracker.add, split),
      )

  labels_lib.write_label_sets(os.path.join(out_dir, "test_labels.csv"), observed.select(splits[2]))
  labels_lib.write_label_sets(os.path.join(out_dir, "clean_labels.csv"), clean)
  labels_lib.write_vocabulary(os.path.join(out_dir, "vocabulary.csv"), vocabulary)
  summary = dict(identity, counts=_counts(config, clean, observed, splits, plan, dropped, len(vocabulary)))
  _write_json(config_path, summary)
  tf.io.gfile.remove(pending_path)
  return summary


@dataclasses.dataclass
class _Synthesis:
  """Everything a shard writer needs."""

  config: SyntheticConfig
  world: _World
  plan: _Plan
  clean: LabelSets
  observed: LabelSets
  schema: Schema


class _ProgressTracker:
  """Counts videos and frames; calls the user's callback with a Progress after each chunk."""

  def __init__(self, callback: Optional[Callable[[Progress], None]], videos_total: int):
    self._callback = callback
    self._videos_total = videos_total
    self._videos = self._frames = 0
    self._started = time.time()  # rates count the synthesis only, not the set-up before it

  def add(self, split: str, videos: int, frames: int) -> None:
    self._videos += videos
    self._frames += frames
    if self._callback is not None:
      self._callback(
        Progress(split, self._videos, self._videos_total, self._frames, time.time() - self._started)
      )


def _remove_stale_shards(out_dir: str, config: SyntheticConfig) -> None:
  """Deletes shard files of an earlier layout (other shard counts, frame level switched off), so that a glob
  over the directory sees only this config's files."""
  planned = {
    os.path.join(out_dir, "video", shard_name(split, shard, count))
    for split, count in zip(SPLITS, config.num_shards)
    for shard in range(count)
  }
  if config.frame_level:
    planned |= {
      path.replace(os.path.join(out_dir, "video"), os.path.join(out_dir, "frame"), 1) for path in planned
    }
  for level in ("video", "frame"):
    for split in SPLITS:
      for path in tf.io.gfile.glob(os.path.join(out_dir, level, f"{split}-*.tfrecord")):
        if path not in planned:
          tf.io.gfile.remove(path)


def _write_shard(
  synthesis: _Synthesis,
  shard_rows: np.ndarray,
  paths: Sequence[str],
  with_labels: bool,
  chunk_size: int,
  on_chunk: Callable[[int, int], None],
) -> None:
  """Writes one shard: video-level to paths[0] and, when given, frame-level to paths[1], chunk by chunk."""
  clean, observed, schema = synthesis.clean, synthesis.observed, synthesis.schema
  with contextlib.ExitStack() as stack:
    writers = [stack.enter_context(atomic_tfrecord_writer(path)) for path in paths]
    for begin in range(0, len(shard_rows), chunk_size):
      rows = shard_rows[begin : begin + chunk_size]
      chunk = synthesize_chunk(synthesis.config, synthesis.world, synthesis.plan, clean, rows, schema)
      offsets = chunk["frame_offsets"]
      for i, row in enumerate(rows):
        video_id = clean.ids[row]
        labels = observed[row] if with_labels else None
        writers[0].write(
          video_example(
            video_id, labels, {"mean_rgb": chunk["mean_rgb"][i], "mean_audio": chunk["mean_audio"][i]}, schema
          ).SerializeToString()
        )
        if len(writers) > 1:
          frames = slice(offsets[i], offsets[i + 1])
          writers[1].write(
            frame_example(
              video_id, labels, {"rgb": chunk["rgb"][frames], "audio": chunk["audio"][frames]}, schema
            ).SerializeToString()
          )
      on_chunk(len(rows), int(offsets[-1]))


def _counts(config, clean, observed, splits, plan, dropped, num_classes) -> dict:
  true_keys = clean.rows * num_classes + clean.values
  observed_keys = observed.rows * num_classes + observed.values
  kept = np.isin(true_keys, observed_keys)
  return {
    "videos": {split: int(len(rows)) for split, rows in zip(SPLITS, splits)},
    "frames": {split: int(plan.num_frames[rows].sum()) for split, rows in zip(SPLITS, splits)},
    "classes": int(num_classes),
    "classes_present": int(np.sum(clean.class_counts(num_classes) > 0)),
    "videos_dropped_without_labels": int(dropped),
    "clean_labels": int(len(clean.values)),
    "observed_labels": int(len(observed.values)),
    "measured_drop_rate": float(1.0 - kept.mean()) if len(kept) else 0.0,
    "measured_add_rate": float(np.sum(~np.isin(observed_keys, true_keys)) / max(len(true_keys), 1)),
    "brief_label_fraction": float(plan.brief.mean()) if len(plan.brief) else 0.0,
  }


def load_summary(out_dir: str) -> Optional[dict]:
  """The summary of a complete dataset directory, or None when generation has not finished."""
  return _read_json(os.path.join(out_dir, CONFIG_FILE))
