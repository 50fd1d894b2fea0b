"""VLAD-family and cluster-centroid frame models: shapes, padding invariance, round trips, a short fit,
numpy references for the pooling layers, masked BN, k-means and the nearest-centroid layer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import call_with_unknown_frames
from yt8m_tf import models
from yt8m_tf.models.frame import centroids as centroids_lib
from yt8m_tf.models.frame import vlad

NUM_CLASSES = 5
T = 8
SIZES = (1024, 128)

TINY = {
  "NetVLADModel": dict(cluster_size=4, hidden_size=16),
  "NetRVLADModel": dict(cluster_size=4, hidden_size=16, classifier="logistic"),
  "NetFVModel": dict(cluster_size=4, hidden_size=16, relu=True),
  "NeXtVLADModel": dict(cluster_size=4, hidden_size=16, groups=4, gating_reduction=4, drop_rate=0.0),
  "ClusterCentroids": dict(num_clusters=4, hidden_size=16, dropout=0.0, representation="both"),
}


def _batch(num=16, seed=0, sizes=SIZES, frames=T):
  rng = np.random.default_rng(seed)
  counts = rng.integers(1, frames + 1, num).astype(np.int32)
  counts[:2] = [frames, 1]
  valid = (np.arange(frames)[None, :] < counts[:, None])[..., None]
  features = {
    name: (rng.normal(size=(num, frames, size)) * valid).astype(np.float32)
    for name, size in zip(("rgb", "audio"), sizes)
  }
  features["num_frames"] = counts
  labels = (rng.random((num, NUM_CLASSES)) < 0.3).astype(np.float32)
  return features, labels


def _garbage_padding(features, seed=1, scale=30.0):
  rng = np.random.default_rng(seed)
  padded = np.arange(T)[None, :] >= features["num_frames"][:, None]
  out = dict(features)
  for name in ("rgb", "audio"):
    noise = rng.normal(size=features[name].shape).astype(np.float32) * scale
    noise[1, -1, :3] = [np.nan, np.inf, -np.inf]  # video 1 has 1 real frame; NaN padding must not leak
    out[name] = np.where(padded[..., None], noise, features[name]).astype(np.float32)
  return out


def _build(name):
  params = dict(TINY[name])
  if name == "ClusterCentroids":
    params["centroids"] = np.random.default_rng(3).normal(size=(4, sum(SIZES))).astype(np.float32)
  return models.build(name, num_classes=NUM_CLASSES, max_frames=T, **params)


@pytest.mark.parametrize("name", sorted(TINY))
def test_frame_model_contract(name, tmp_path):
  keras.utils.set_random_seed(1)
  model = _build(name)
  assert models.get(name).kind == models.FRAME
  features, labels = _batch()
  logits = np.asarray(model(features, training=False))
  assert logits.shape == (16, NUM_CLASSES) and np.isfinite(logits).all()

  # Padding never matters: inference, and training (BN batch statistics over real frames only).
  garbage = _garbage_padding(features)
  np.testing.assert_allclose(model(garbage, training=False), logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
    model(garbage, training=True), model(features, training=True), rtol=1e-4, atol=1e-5
  )
  logits = np.asarray(model(features, training=False))  # the training calls moved the BN averages
  # Graph mode with the batch and frame axes unknown (as from tf.data) gives the same outputs.
  np.testing.assert_allclose(call_with_unknown_frames(model, features), logits, rtol=1e-5, atol=1e-5)

  clone = keras.Model.from_config(model.get_config())
  clone.set_weights(model.get_weights())
  np.testing.assert_allclose(clone(features, training=False), logits, rtol=1e-5, atol=1e-6)

  path = str(tmp_path / "model.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  np.testing.assert_allclose(loaded(features, training=False), logits, rtol=1e-5, atol=1e-6)
  for a, b in zip(model.weights, loaded.weights):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  if name == "ClusterCentroids":
    np.testing.assert_array_equal(
      loaded.get_layer("nearest_centroid").centroids.numpy(),
      np.random.default_rng(3).normal(size=(4, 1152)).astype(np.float32),
    )

  model.compile(optimizer=keras.optimizers.Adam(0.01), loss=keras.losses.BinaryCrossentropy(from_logits=True))
  history = model.fit(features, labels, epochs=6, batch_size=8, shuffle=False, verbose=0).history["loss"]
  assert history[-1] < history[0]


def test_registry_defaults_and_nextvlad_size():
  for name in ("NetVLADModel", "NetRVLADModel", "NetFVModel", "NeXtVLADModel", "ClusterCentroids"):
    assert name in models.list_models("frame")
  params = models.get("NeXtVLADModel").params
  assert (params["cluster_size"], params["hidden_size"], params["gating_reduction"]) == (128, 2048, 8)
  assert models.get("ClusterCentroids").params["num_clusters"] == 10000
  # NeXtVLAD layer output: K * lambda * N / G.
  layer = vlad.NeXtVLAD(4, groups=8, expansion=2)
  x = np.zeros((2, T, 1024), np.float32)
  assert tuple(layer(x, np.ones((2, T), np.float32)).shape) == (2, 4 * 2 * 1024 // 8)
  assert layer.compute_output_shape((None, T, 1024)) == (None, 1024)
  with pytest.raises(ValueError, match="divisible"):
    vlad.NeXtVLAD(4, groups=3, expansion=1)(np.zeros((1, T, 10), np.float32), np.ones((1, T)))


def test_nextvlad_bn_momentum_reaches_every_batch_norm_and_round_trips(tmp_path):
  params = dict(TINY["NeXtVLADModel"], bn_momentum=0.9)
  model = models.build("NeXtVLADModel", num_classes=NUM_CLASSES, max_frames=T, **params)
  features, _ = _batch()
  model(features, training=True)  # builds every sublayer
  path = str(tmp_path / "nextvlad.keras")
  model.save(path)
  for candidate in (model, keras.models.load_model(path)):
    norms = [
      layer
      for layer in candidate._flatten_layers(include_self=False, recursive=True)
      if isinstance(layer, (keras.layers.BatchNormalization, vlad.MaskedBatchNormalization))
    ]
    # rgb and audio: cluster_bn + vlad_bn each; hidden_bn; the SE gating's BN
    assert len(norms) == 6
    assert all(layer.momentum == pytest.approx(0.9) for layer in norms)


@pytest.mark.parametrize(
  "name,params",
  [
    ("NetVLADModel", dict(add_batch_norm=False, probability_gating=False)),
    ("NetFVModel", dict(couple_weights=True, gating=False, classifier="logistic")),
    ("ClusterCentroids", dict(representation="sequence")),
  ],
)
def test_frame_model_variants_ignore_padding(name, params):
  model = models.build(
    name, num_classes=NUM_CLASSES, max_frames=T, **{**TINY[name], "hidden_size": 8, **params}
  )
  features, _ = _batch(4)
  logits = np.asarray(model(features, training=False))
  assert logits.shape == (4, NUM_CLASSES) and np.isfinite(logits).all()
  np.testing.assert_allclose(model(_garbage_padding(features), training=False), logits, rtol=1e-5, atol=1e-5)


# ---- numpy references of the pooling layers (inference mode: BN uses the moving statistics) ----


def _softmax(z):
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def _l2(x, axis):
  return x / np.maximum(np.sqrt((x**2).sum(axis, keepdims=True)), 1e-6)


def _bn(z, layer):
  w = {v.name: np.asarray(v) for v in layer.weights}
  return (z - w["moving_mean"]) / np.sqrt(w["moving_variance"] + layer.epsilon) * w["gamma"] + w["beta"]


def _randomize_bn(layer, rng):
  for v in layer.weights:
    if v.name in ("moving_mean", "beta", "gamma", "moving_variance"):
      base = 1.0 if v.name in ("gamma", "moving_variance") else 0.0
      v.assign(base + np.abs(rng.normal(size=v.shape)) * 0.5)


def _small_frames(n=6, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(3, 5, n)).astype(np.float32)
  counts = np.array([5, 2, 0])
  mask = (np.arange(5)[None] < counts[:, None]).astype(np.float32)
  return rng, x, mask


@pytest.mark.parametrize("cls", [vlad.NetVLAD, vlad.NetRVLAD, vlad.NetFV])
def test_willow_pooling_matches_numpy(cls):
  rng, x, mask = _small_frames()
  layer = cls(3)
  got = np.asarray(layer(x, mask, training=False))
  _randomize_bn(layer.cluster_bn, rng)
  got = np.asarray(layer(x, mask, training=False))
  a = _softmax(_bn(x @ np.asarray(layer.cluster_weights), layer.cluster_bn)) * mask[..., None]
  s1 = np.einsum("btk,btj->bjk", a, x)
  a_sum = a.sum(1)[:, None, :]
  if cls is vlad.NetRVLAD:
    expected = _l2(_l2(s1, 1).reshape(3, -1), 1)
  elif cls is vlad.NetVLAD:
    expected = _l2(_l2(s1 - a_sum * np.asarray(layer.centers), 1).reshape(3, -1), 1)
  else:
    c, w = np.asarray(layer.centers), np.asarray(layer.covar_weights)
    sigma = w**2 + 1e-6
    fv1 = np.einsum("btk,btjk->bjk", a, (x[..., None] - c) / sigma)
    fv2 = np.einsum("btk,btjk->bjk", a, (x[..., None] - c) ** 2 / sigma**2 - 1)
    expected = np.concatenate([_l2(_l2(f, 1).reshape(3, -1), 1) for f in (fv1, fv2)], 1)
  assert got.shape == expected.shape == (3, (2 if cls is vlad.NetFV else 1) * 6 * 3)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(got[2], 0)  # no frames: zeros, not NaN


def test_nextvlad_matches_numpy():
  rng, x, mask = _small_frames(n=6)
  groups, k, lam = 3, 2, 2
  layer = vlad.NeXtVLAD(k, groups=groups, expansion=lam)
  layer(x, mask, training=False)
  _randomize_bn(layer.cluster_bn, rng)
  _randomize_bn(layer.vlad_bn, rng)
  got = np.asarray(layer(x, mask, training=False))
  we, be = (np.asarray(v) for v in layer.expand.weights)
  wa, ba = (np.asarray(v) for v in layer.attention.weights)
  xe = x @ we + be  # [B, T, 12]
  attention = 1 / (1 + np.exp(-(xe @ wa + ba))) * mask[..., None]  # [B, T, G]
  logits = _bn(xe @ np.asarray(layer.cluster_weights), layer.cluster_bn).reshape(3, 5, groups, k)
  a = _softmax(logits) * attention[..., None]  # [B, T, G, K]
  xg = xe.reshape(3, 5, groups, lam * 6 // groups)  # [B, T, G, F]
  v = np.einsum("btgk,btgj->bjk", a, xg) - a.sum((1, 2))[:, None, :] * np.asarray(layer.centers)
  expected = _bn(_l2(v, 1).reshape(3, -1), layer.vlad_bn)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_masked_batch_norm_uses_real_frames_only():
  rng, x, mask = _small_frames(n=4)
  layer = vlad.MaskedBatchNormalization(momentum=0.9)
  garbage = np.where(mask[..., None] > 0, x, 1e3).astype(np.float32)
  y = np.asarray(layer(garbage, mask, training=True))
  real = x[mask > 0]
  mean, var = real.mean(0), real.var(0)
  np.testing.assert_allclose(y[mask > 0], (real - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(layer.moving_variance.numpy(), 0.9 + 0.1 * var, rtol=1e-5)
  before = layer.moving_mean.numpy().copy()
  layer(garbage, np.zeros_like(mask), training=True)  # no real frame: statistics unchanged
  np.testing.assert_array_equal(layer.moving_mean.numpy(), before)


def test_probability_gating_formula():
  layer = vlad.ProbabilityGating()
  z = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
  got = np.asarray(layer(z, training=False))
  p = 1 / (1 + np.exp(-z))
  gates = 1 / (1 + np.exp(-_bn(p @ np.asarray(layer.gating_weights), layer.norm)))
  expected = np.clip(p * gates, 1e-7, 1 - 1e-7)
  np.testing.assert_allclose(got, np.log(expected / (1 - expected)), rtol=1e-4, atol=1e-4)


# ---- k-means and nearest centroids ----


def _blobs(num_blobs=5, dim=8, per_blob=120, spread=0.05, seed=0, offset=4.0):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(num_blobs, dim)) * 2.0
  centers += np.sign(centers) * offset  # every coordinate |c| >= offset: far from the origin
  labels = rng.integers(0, num_blobs, num_blobs * per_blob)
  points = centers[labels] + rng.normal(size=(len(labels), dim)) * spread
  return centers.astype(np.float32), points.astype(np.float32)


def _match(fitted, centers, tol):
  distances = np.linalg.norm(fitted[:, None] - centers[None], axis=-1)
  assert sorted(distances.argmin(1)) == list(range(len(centers))), distances  # a permutation
  assert distances.min(1).max() < tol, distances


def test_fit_kmeans_recovers_blob_centers():
  centers, points = _blobs()
  batches = [points[i : i + 64] for i in range(0, len(points), 64)]
  fitted = centroids_lib.fit_kmeans(batches, 5, num_passes=4, seed=0, init_size=300)
  assert fitted.shape == (5, 8) and fitted.dtype == np.float32
  _match(fitted, centers, tol=0.05)
  # Random init (k distinct sample rows) may put two centroids in one blob; it only has to run.
  fitted = centroids_lib.fit_kmeans(lambda: iter(batches), 5, num_passes=2, init="random")
  assert fitted.shape == (5, 8) and np.isfinite(fitted).all()
  with pytest.raises(ValueError, match="one-shot"):
    centroids_lib.fit_kmeans(iter(batches), 5)
  with pytest.raises(ValueError, match="at least k"):
    centroids_lib.fit_kmeans([points[:3]], 5)


def test_fit_kmeans_on_dataset_ignores_padding():
  centers, points = _blobs(num_blobs=4, dim=6, per_blob=40)
  rng = np.random.default_rng(1)
  num_videos, frames = len(points) // 4, 10
  counts = np.full(num_videos, 4, np.int32)  # 4 real frames, 6 zero-padded
  x = np.zeros((num_videos, frames, 6), np.float32)
  x[:, :4] = points[rng.permutation(len(points))].reshape(num_videos, 4, 6)

  def dataset(num_frames):
    elements = {"rgb": x[..., :4], "audio": x[..., 4:], "num_frames": num_frames}
    return tf.data.Dataset.from_tensor_slices((elements, np.zeros(num_videos))).batch(8)

  fitted = centroids_lib.fit_kmeans_on_dataset(dataset(counts), 4, num_passes=3, seed=0)
  _match(fitted, centers, tol=0.1)
  assert np.linalg.norm(fitted, axis=1).min() > 3.0  # nothing at the padding point
  # Control: if the padding were taken as frames, zeros would form a cluster at the origin.
  polluted = centroids_lib.fit_kmeans_on_dataset(
    dataset(np.full(num_videos, frames, np.int32)), 4, num_passes=3, seed=0
  )
  assert np.linalg.norm(polluted, axis=1).min() < 3.0
  assert centroids_lib.real_frames(next(iter(dataset(counts)))).shape == (8 * 4, 6)


def test_nearest_centroid_layer():
  rng = np.random.default_rng(0)
  k, d = 5, 7
  cents = rng.normal(size=(k, d)).astype(np.float32) * 3
  idx = rng.integers(0, k, (4, T))
  x = (cents[idx] + rng.normal(size=(4, T, d)) * 0.1).astype(np.float32)
  counts = np.array([T, 3, 1, 0])
  mask = (np.arange(T)[None] < counts[:, None]).astype(np.float32)
  x_garbage = np.where(mask[..., None] > 0, x, 100.0).astype(np.float32)

  layer = centroids_lib.NearestCentroid(k, "both", chunk_size=3)  # chunks smaller than the batch
  layer.build((None, T, d))
  layer.centroids.assign(cents)
  histogram, sequence = (np.asarray(t) for t in layer(x_garbage, mask))
  expected_hist = np.zeros((4, k))
  for b in range(4):
    for t in range(counts[b]):
      expected_hist[b, idx[b, t]] += 1.0 / counts[b]
  np.testing.assert_allclose(histogram, expected_hist, rtol=1e-6)
  np.testing.assert_allclose(sequence, cents[idx] * mask[..., None], rtol=1e-6)
  np.testing.assert_array_equal(histogram[3], 0)

  # Nearest by L2, agreeing with the numpy helper on arbitrary points (chunked both ways).
  points = rng.normal(size=(50, d)).astype(np.float32) * 3
  brute = np.linalg.norm(points[:, None] - cents[None], axis=-1).argmin(1)
  np.testing.assert_array_equal(np.asarray(layer.nearest(points)), brute)
  np.testing.assert_array_equal(centroids_lib.nearest_centroids(points, cents, chunk_elements=7), brute)

  # IDF: log((1 + N) / (1 + df)) + 1 over videos, applied by the histogram output.
  features = {"rgb": x[..., :4], "audio": x[..., 4:], "num_frames": counts}
  idf = centroids_lib.compute_idf([features], cents, chunk_size=3)
  df = np.array([(expected_hist[:, j] > 0).sum() for j in range(k)])
  np.testing.assert_allclose(idf, np.log(5.0 / (1 + df)) + 1, rtol=1e-6)


def test_cluster_centroids_set_centroids_and_histogram_mode():
  keras.utils.set_random_seed(0)
  model = models.build(
    "ClusterCentroids", num_classes=NUM_CLASSES, max_frames=T, num_clusters=4, hidden_size=8
  )
  features, _ = _batch(4)
  before = np.asarray(model(features))
  cents = np.random.default_rng(5).normal(size=(4, 1152)).astype(np.float32)
  centroids_lib.set_centroids(model, cents, idf=np.array([1, 2, 3, 4], np.float32))
  layer = model.get_layer("nearest_centroid")
  np.testing.assert_array_equal(layer.centroids.numpy(), cents)
  assert not layer.trainable_weights and not np.allclose(np.asarray(model(features)), before)
  with pytest.raises(ValueError, match="shape"):
    centroids_lib.set_centroids(model, cents[:3])
