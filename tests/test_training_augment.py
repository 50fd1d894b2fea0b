"""Mixup and the mask-aware frame samplers."""

import numpy as np
import pytest
import tensorflow as tf

from yt8m_tf.training import frame_sampling as fs
from yt8m_tf.training import mixup

SENTINEL = 1e6


# --- mixup -------------------------------------------------------------------------------------------


def _ks_statistic(a, b):
  grid = np.sort(np.concatenate([a, b]))
  cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
  cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
  return np.max(np.abs(cdf_a - cdf_b))


@pytest.mark.parametrize("alpha", [0.2, 0.4, 1.0])
def test_lambda_is_beta_alpha_alpha(alpha):
  n = 20000
  lam, _ = mixup.mixup_params(n, alpha, seed=alpha_seed(alpha))
  lam = lam.numpy()
  assert lam.shape == (n,) and np.all((lam >= 0) & (lam <= 1))
  assert abs(lam.mean() - 0.5) < 0.01
  np.testing.assert_allclose(lam.var(), 1.0 / (4 * (2 * alpha + 1)), rtol=0.05)
  reference = np.random.default_rng(0).beta(alpha, alpha, n)
  assert _ks_statistic(lam, reference) < 0.025  # two-sample KS, p ~ 0.0001 for this size


def alpha_seed(alpha):
  return int(alpha * 100)


def _video_batch(b=8, seed=0):
  rng = np.random.default_rng(seed)
  features = {
    "id": tf.constant([f"v{i}" for i in range(b)]),
    "mean_rgb": tf.constant(np.eye(b, 12, dtype=np.float32)),  # one-hot: x~ reveals (lam, perm)
    "mean_audio": tf.constant(rng.normal(size=(b, 5)).astype(np.float32)),
    "count": tf.constant(np.arange(b, dtype=np.int64)),
  }
  labels = tf.constant((rng.random((b, 10)) < 0.3).astype(np.float32))
  return features, labels


def test_mixup_uses_one_lambda_per_sample_on_every_input_and_the_labels():
  features, labels = _video_batch()
  mixed, mixed_labels = mixup.mixup_batch(features, labels, alpha=0.4, seed=3)
  x = mixed["mean_rgb"].numpy()[:, :8]
  b = x.shape[0]
  # Recover lam_i and perm(i) from the one-hot input alone...
  perm = np.array(
    [i if x[i, i] >= 1 - 1e-6 else int(np.argmax(np.where(np.arange(b) == i, -1, x[i]))) for i in range(b)]
  )
  lam = np.array([x[i, i] for i in range(b)])
  assert sorted(perm) == list(range(b))
  assert not np.array_equal(perm, np.arange(b))
  # ...and check every other float tensor and the labels used the same lam_i and perm(i).
  audio, y = features["mean_audio"].numpy(), labels.numpy()
  w = lam[:, None]
  np.testing.assert_allclose(mixed["mean_audio"].numpy(), w * audio + (1 - w) * audio[perm], atol=1e-6)
  np.testing.assert_allclose(mixed_labels.numpy(), w * y + (1 - w) * y[perm], atol=1e-6)
  # mixup_params gives exactly these for the same seed
  lam2, perm2 = mixup.mixup_params(b, 0.4, seed=3)
  np.testing.assert_allclose(lam2.numpy(), lam, atol=1e-6)
  fixed = perm != np.arange(b)
  np.testing.assert_array_equal(perm2.numpy()[fixed], perm[fixed])
  # non-float keys pass through untouched
  np.testing.assert_array_equal(mixed["id"].numpy(), features["id"].numpy())
  np.testing.assert_array_equal(mixed["count"].numpy(), features["count"].numpy())


def test_permutation_is_a_permutation_and_seeds_reproduce():
  for seed in range(5):
    _, perm = mixup.mixup_params(37, 0.4, seed=seed)
    assert sorted(perm.numpy()) == list(range(37))
  features, labels = _video_batch()
  a = mixup.mixup_batch(features, labels, 0.4, seed=7)
  b = mixup.mixup_batch(features, labels, 0.4, seed=7)
  c = mixup.mixup_batch(features, labels, 0.4, seed=8)
  np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
  np.testing.assert_array_equal(a[0]["mean_audio"].numpy(), b[0]["mean_audio"].numpy())
  assert not np.array_equal(a[1].numpy(), c[1].numpy())
  seed_tensor = mixup.mixup_batch(features, labels, 0.4, seed=tf.constant([7, 0]))
  np.testing.assert_array_equal(a[1].numpy(), seed_tensor[1].numpy())


def test_mixup_dataset_reproducible_per_seed_and_fresh_per_iteration():
  features, labels = _video_batch(b=16)
  base = tf.data.Dataset.from_tensor_slices((features, labels)).batch(4)

  def run(dataset):
    return np.concatenate([y.numpy() for _, y in dataset])

  first = mixup.mixup_dataset(base, alpha=0.4, seed=11)
  again = mixup.mixup_dataset(base, alpha=0.4, seed=11)
  other = mixup.mixup_dataset(base, alpha=0.4, seed=12)
  epoch1 = run(first)
  np.testing.assert_array_equal(epoch1, run(again))
  assert not np.array_equal(epoch1, run(other))
  assert not np.array_equal(epoch1, run(first))  # a second pass over the same dataset mixes anew
  batches = list(first)
  assert len(batches) == 4
  np.testing.assert_array_equal(np.concatenate([f["id"].numpy() for f, _ in batches]), features["id"].numpy())
  with pytest.raises(ValueError, match="features dict, labels"):
    mixup.mixup_dataset(tf.data.Dataset.from_tensor_slices(labels).batch(4), 0.4, seed=0)
  with pytest.raises(ValueError, match="alpha"):
    mixup.mixup_dataset(base, alpha=0.0, seed=0)


def test_mixup_frame_level_num_frames_is_max_of_the_pair_and_padding_never_leaks():
  b, t = 6, 10
  rng = np.random.default_rng(1)
  n = np.array([10, 4, 7, 0, 1, 6], np.int32)
  rgb = rng.normal(size=(b, t, 3)).astype(np.float32) + 5.0
  audio = rng.normal(size=(b, t, 2)).astype(np.float16)
  for i in range(b):
    rgb[i, n[i] :] = SENTINEL
    audio[i, n[i] :] = 1000.0
  features = {"rgb": tf.constant(rgb), "audio": tf.constant(audio), "num_frames": tf.constant(n)}
  labels = tf.constant(np.eye(b, dtype=np.float32))
  mixed, _ = mixup.mixup_batch(features, labels, alpha=1.0, seed=5)
  lam, perm = (v.numpy() for v in mixup.mixup_params(b, 1.0, seed=5))
  assert mixed["audio"].dtype == tf.float16
  np.testing.assert_array_equal(mixed["num_frames"].numpy(), np.maximum(n, n[perm]))
  clean = np.where(np.arange(t)[None, :, None] < n[:, None, None], rgb, 0.0)
  want = lam[:, None, None] * clean + (1 - lam[:, None, None]) * clean[perm]
  np.testing.assert_allclose(mixed["rgb"].numpy(), want, rtol=1e-6)
  assert (
    np.abs(mixed["rgb"].numpy()).max() < 100 and np.abs(mixed["audio"].numpy().astype(np.float32)).max() < 100
  )


# --- frame samplers ------------------------------------------------------------------------------------

T = 20
LENGTHS = np.array([20, 13, 7, 3, 1, 0], np.int32)


def _frame_batch(lengths=LENGTHS, t=T, seed=0, padding=SENTINEL):
  """Channel 0 of rgb and audio holds the frame index, so outputs reveal which frames were taken."""
  rng = np.random.default_rng(seed)
  b = len(lengths)
  rgb = rng.normal(size=(b, t, 6)).astype(np.float32)
  audio = rng.normal(size=(b, t, 3)).astype(np.float32)
  rgb[:, :, 0] = np.arange(t)
  audio[:, :, 0] = np.arange(t)
  for i, n in enumerate(lengths):
    rgb[i, n:] = padding
    audio[i, n:] = padding
  return {
    "rgb": tf.constant(rgb),
    "audio": tf.constant(audio),
    "num_frames": tf.constant(lengths),
    "id": tf.constant([f"v{i}" for i in range(b)]),
  }


def _expected_count(name, n, params):
  if name == "random_crop":
    return None  # checked separately: in [min(n, min_len), min(n, max_len)]
  if name == "bootstrap":
    return n if n < params["length"] else params["length"]
  if name == "regular_intervals":
    return None
  if name == "random_segment_means":
    return min(n, params["max_segments"])
  if name == "shot_boundaries":
    return min(n, params["k"] + 1)
  if name == "farthest_point":
    return min(n, params["k"])


SAMPLER_PARAMS = {
  "random_crop": {"min_len": 5, "max_len": 9},
  "bootstrap": {"length": 8},
  "regular_intervals": {"min_step": 2, "max_step": 4},
  "random_segment_means": {"max_segments": 5},
  "shot_boundaries": {"k": 4},
  "farthest_point": {"k": 5},
}
OUT_LENGTH = {
  "random_crop": 9,
  "bootstrap": 8,
  "regular_intervals": 10,
  "random_segment_means": 5,
  "shot_boundaries": 5,
  "farthest_point": 5,
}


@pytest.mark.parametrize("name", sorted(SAMPLER_PARAMS))
def test_sampler_never_picks_padding_and_counts_frames(name):
  params = SAMPLER_PARAMS[name]
  features = _frame_batch()
  sampler = fs.get_sampler(name, **params)
  for seed in range(6):
    out = sampler(features, seed=seed)
    rgb, audio, count = out["rgb"].numpy(), out["audio"].numpy(), out["num_frames"].numpy()
    assert rgb.shape == (len(LENGTHS), OUT_LENGTH[name], 6) and audio.shape[:2] == rgb.shape[:2]
    assert out["num_frames"].dtype == tf.int32
    np.testing.assert_array_equal(out["id"].numpy(), features["id"].numpy())
    for i, n in enumerate(LENGTHS):
      real, pad = rgb[i, : count[i]], rgb[i, count[i] :]
      assert np.all(np.abs(real) < 1e5), (name, i)
      assert np.all(pad == 0) and np.all(audio[i, count[i] :] == 0)
      np.testing.assert_array_equal(audio[i, : count[i], 0], real[:, 0])  # same frames for both keys
      ids = real[:, 0]
      assert np.all(ids >= 0) and np.all(ids <= max(n - 1, 0))
      if name == "bootstrap":
        assert np.all(np.diff(ids) >= 0)
      else:
        assert np.all(np.diff(ids) > 0)  # temporal order
      want = _expected_count(name, n, params)
      if want is not None:
        assert count[i] == want, (name, i, n, count[i])
      if n == 0:
        assert count[i] == 0


def test_random_crop_lengths_starts_and_short_videos():
  features = _frame_batch()
  lengths, starts = [], []
  for seed in range(60):
    out = fs.random_crop(features, 5, 9, seed=seed)
    count, ids = out["num_frames"].numpy(), out["rgb"].numpy()[:, :, 0]
    for i, n in enumerate(LENGTHS):
      got = ids[i, : count[i]]
      np.testing.assert_array_equal(np.diff(got), np.ones(max(count[i] - 1, 0)))  # contiguous
      if n < 5:
        np.testing.assert_array_equal(got, np.arange(n))  # short video: all its frames
      else:
        assert 5 <= count[i] <= min(9, n)
        assert got[-1] <= n - 1
    lengths.append(count[0])
    starts.append(ids[0, 0])
  assert set(lengths) == set(range(5, 10))
  fixed = [fs.random_crop(features, 5, 5, seed=s)["rgb"].numpy()[0, 0, 0] for s in range(120)]
  assert min(fixed) == 0 and max(fixed) == 15  # every start where the crop fits, none past it
  with pytest.raises(ValueError):
    fs.random_crop(features, 6, 5)


def test_bootstrap_draws_with_replacement_and_keeps_short_videos():
  features = _frame_batch()
  duplicates = False
  for seed in range(10):
    out = fs.bootstrap(features, 8, seed=seed)
    ids = out["rgb"].numpy()[:, :, 0]
    duplicates |= len(set(ids[1])) < 8  # 8 draws from 13 frames
    np.testing.assert_array_equal(ids[2, :7], np.arange(7))  # 7 < 8 real frames: all kept once
  assert duplicates


def test_regular_intervals_one_step_per_batch():
  features = _frame_batch()
  steps = set()
  for seed in range(30):
    out = fs.regular_intervals(features, 2, 4, seed=seed)
    count, ids = out["num_frames"].numpy(), out["rgb"].numpy()[:, :, 0]
    step = int(ids[0, 1])
    steps.add(step)
    for i, n in enumerate(LENGTHS):
      want = np.arange(0, n, step)
      assert count[i] == len(want)
      np.testing.assert_array_equal(ids[i, : count[i]], want)
  assert steps == {2, 3, 4}


def test_random_segment_means_are_means_of_a_partition_of_the_real_frames():
  features = _frame_batch(seed=3)
  audio = features["audio"].numpy()
  for seed in range(8):
    out = fs.random_segment_means(features, 5, seed=seed)
    count = out["num_frames"].numpy()
    means_t, means_audio = out["rgb"].numpy()[:, :, 0], out["audio"].numpy()
    for i, n in enumerate(LENGTHS):
      start = 0
      for j in range(count[i]):
        end = 2 * means_t[i, j] - start + 1  # mean of start..end-1 is (start + end - 1) / 2
        assert abs(end - round(end)) < 1e-3
        end = int(round(end))
        assert start < end <= n
        np.testing.assert_allclose(means_audio[i, j], audio[i, start:end].mean(0), atol=1e-4)
        start = end
      assert start == n  # the segments cover every real frame
  every_frame = fs.random_segment_means(features, 30, seed=0)
  np.testing.assert_array_equal(every_frame["num_frames"].numpy(), LENGTHS)
  np.testing.assert_allclose(every_frame["rgb"].numpy()[0, :20, 0], np.arange(20))


def _unit(rng, d):
  v = rng.normal(size=d)
  return v / np.linalg.norm(v)


def _shots_batch(padding):
  """Three near-constant shots per video; the second cut is sharper than the first."""
  rng = np.random.default_rng(4)
  d, t = 16, 24
  layouts = [(24, 7, 15), (18, 10, 13), (12, 3, 9)]  # (num_frames, cut 1, cut 2)
  rgb = np.full((len(layouts), t, d), padding, np.float32)
  audio = np.full((len(layouts), t, 2), padding, np.float32)
  for i, (n, c1, c2) in enumerate(layouts):
    a = _unit(rng, d)
    o1, o2 = _unit(rng, d), _unit(rng, d)
    b = 0.8 * a + 0.6 * (o1 - (o1 @ a) * a) / np.linalg.norm(o1 - (o1 @ a) * a)  # |cos(a, b)| ~ 0.8
    c = -(0.2 * b + 0.98 * (o2 - (o2 @ b) * b) / np.linalg.norm(o2 - (o2 @ b) * b))  # |cos(b, c)| ~ 0.2
    for s in range(n):
      base = a if s < c1 else (b if s < c2 else c)
      rgb[i, s] = 2.0 * base + 0.01 * rng.normal(size=d)
      audio[i, s] = s
  lengths = np.array([l[0] for l in layouts], np.int32)
  return {"rgb": tf.constant(rgb), "audio": tf.constant(audio), "num_frames": tf.constant(lengths)}, layouts


@pytest.mark.parametrize("padding", [0.0, SENTINEL], ids=["zero_padding", "sentinel_padding"])
def test_shot_boundaries_finds_planted_cuts_in_temporal_order(padding):
  features, layouts = _shots_batch(padding)
  out = fs.shot_boundaries(features, k=2)
  frames = out["audio"].numpy()[:, :, 0]
  np.testing.assert_array_equal(out["num_frames"].numpy(), [3, 3, 3])
  for i, (_, c1, c2) in enumerate(layouts):
    # the seed would give [0, c2, c1] (similarity order) and, with zero padding, pick padding first
    np.testing.assert_array_equal(frames[i, :3], [0, c1, c2])
  short = fs.shot_boundaries(features, k=30)
  np.testing.assert_array_equal(short["num_frames"].numpy(), [24, 18, 12])
  np.testing.assert_array_equal(short["audio"].numpy()[2, :12, 0], np.arange(12))


@pytest.mark.parametrize("padding", [0.0, SENTINEL], ids=["zero_padding", "sentinel_padding"])
def test_farthest_point_picks_planted_distinct_frames(padding):
  rng = np.random.default_rng(5)
  d, t = 16, 30
  lengths = np.array([25, 12], np.int32)
  planted = [(6, 19), (4, 11)]
  rgb = np.full((2, t, d), padding, np.float32)
  audio = np.full((2, t, 1), padding, np.float32)
  for i, n in enumerate(lengths):
    q, _ = np.linalg.qr(rng.normal(size=(d, 3)))
    base, far1, far2 = q.T
    rgb[i, :n] = base + 0.05 * rng.normal(size=(n, d))
    rgb[i, planted[i][0]] = far1 + 0.01 * rng.normal(size=d)
    rgb[i, planted[i][1]] = far2 + 0.01 * rng.normal(size=d)
    audio[i, :n, 0] = np.arange(n)
  features = {"rgb": tf.constant(rgb), "audio": tf.constant(audio), "num_frames": tf.constant(lengths)}
  out = fs.farthest_point(features, k=3)
  frames = out["audio"].numpy()[:, :, 0]
  np.testing.assert_array_equal(out["num_frames"].numpy(), [3, 3])
  for i in range(2):
    np.testing.assert_array_equal(frames[i, :3], [0, *planted[i]])
  # more than the real frames asked for: all real frames, temporal order, then zeros
  everything = fs.farthest_point(features, k=20)
  np.testing.assert_array_equal(everything["num_frames"].numpy(), [20, 12])
  np.testing.assert_array_equal(everything["audio"].numpy()[1, :12, 0], np.arange(12))
  assert np.all(everything["rgb"].numpy()[1, 12:] == 0)


def test_samplers_under_tf_function_with_unknown_shapes_and_pad_to():
  features = _frame_batch()
  signature = [
    {
      "rgb": tf.TensorSpec([None, None, 6]),
      "audio": tf.TensorSpec([None, None, 3]),
      "num_frames": tf.TensorSpec([None], tf.int32),
      "id": tf.TensorSpec([None], tf.string),
    }
  ]
  for name, params in SAMPLER_PARAMS.items():
    sampler = fs.get_sampler(name, pad_to=T, **params)
    fn = tf.function(
      lambda f, sampler=sampler: sampler(f, seed=tf.constant([1, 2])), input_signature=signature
    )
    out = fn(features)
    assert out["rgb"].shape == (len(LENGTHS), T, 6), name
    eager = sampler(features, seed=tf.constant([1, 2]))
    np.testing.assert_allclose(out["rgb"].numpy(), eager["rgb"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(out["num_frames"].numpy(), eager["num_frames"].numpy())
  with pytest.raises(ValueError, match="pad_to"):
    fs.bootstrap(features, 8, seed=0, pad_to=4)


def test_get_sampler_in_dataset_map():
  features = _frame_batch()
  labels = tf.constant(np.eye(len(LENGTHS), dtype=np.float32))
  dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(3)
  plain = dataset.map(fs.get_sampler("shot_boundaries", k=2))
  for (f, y), (f0, y0) in zip(plain, dataset):
    assert f["rgb"].shape[1] == 3
    np.testing.assert_array_equal(y.numpy(), y0.numpy())
  crop = fs.get_sampler("random_crop", min_len=2, max_len=6)
  run = lambda ds: np.concatenate([f["rgb"].numpy() for f, _ in ds])  # noqa: E731
  seeded = crop.map_dataset(dataset, seed=3)
  np.testing.assert_array_equal(run(seeded), run(crop.map_dataset(dataset, seed=3)))
  assert not np.array_equal(run(seeded), run(crop.map_dataset(dataset, seed=4)))
  features_only = tf.data.Dataset.from_tensor_slices(features).batch(3)
  assert next(iter(crop.map_dataset(features_only, seed=0)))["rgb"].shape[1] == 6
  assert next(iter(features_only.map(crop)))["rgb"].shape[1] == 6  # unseeded: fresh draws per call
  with pytest.raises(ValueError, match="unknown frame sampler"):
    fs.get_sampler("kmeans")
  with pytest.raises(TypeError, match="accepts"):
    fs.get_sampler("bootstrap", lenght=4)
  with pytest.raises(TypeError, match="seed"):
    fs.get_sampler("bootstrap", length=4, seed=1)
