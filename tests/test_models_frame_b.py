"""VLAD-family and cluster-centroid frame models against their formulas: numpy references for the pooling
layers and the probability gating, NeXtVLAD's size and BN momentum, the nearest-centroid layer and set_centroids.
(Shapes, masking, round trips and a short fit of every model: test_models_contract.py.)"""

import keras
import numpy as np
import pytest

from yt8m_tf import models
from yt8m_tf.models import kmeans, layers
from yt8m_tf.models.frame import centroids as centroids_lib
from yt8m_tf.models.frame import vlad

NUM_CLASSES = 5
T = 8

NEXTVLAD_TINY = {"cluster_size": 4, "hidden_size": 16, "groups": 4, "gating_reduction": 4, "drop_rate": 0.0}


def _batch(num=16, seed=0):
  """Videos of the readers' feature sizes with 1 to T real frames."""
  rng = np.random.default_rng(seed)
  counts = rng.integers(1, T + 1, num).astype(np.int32)
  counts[:2] = [T, 1]
  valid = (np.arange(T)[None, :] < counts[:, None])[..., None]
  features = {
    name: (rng.normal(size=(num, T, size)) * valid).astype(np.float32)
    for name, size in zip(("rgb", "audio"), (1024, 128))
  }
  features["num_frames"] = counts
  return features


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
  model = models.build(
    "NeXtVLADModel", num_classes=NUM_CLASSES, max_frames=T, bn_momentum=0.9, **NEXTVLAD_TINY
  )
  features = _batch()
  model(features, training=True)  # builds every sublayer
  path = str(tmp_path / "nextvlad.keras")
  model.save(path)
  for candidate in (model, keras.models.load_model(path)):
    norms = [
      layer
      for layer in candidate._flatten_layers(include_self=False, recursive=True)
      if isinstance(layer, (keras.layers.BatchNormalization, layers.MaskedBatchNormalization))
    ]
    # rgb and audio: cluster_bn + vlad_bn each; hidden_bn; the SE gating's BN
    assert len(norms) == 6
    assert all(layer.momentum == pytest.approx(0.9) for layer in norms)


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


def test_probability_gating_formula():
  layer = vlad.ProbabilityGating()
  z = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
  got = np.asarray(layer(z, training=False))
  p = 1 / (1 + np.exp(-z))
  gates = 1 / (1 + np.exp(-_bn(p @ np.asarray(layer.gating_weights), layer.norm)))
  expected = np.clip(p * gates, 1e-7, 1 - 1e-7)
  np.testing.assert_allclose(got, np.log(expected / (1 - expected)), rtol=1e-4, atol=1e-4)


# ---- nearest centroids ----


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
  np.testing.assert_array_equal(kmeans.nearest_centroids(points, cents, chunk_elements=7), brute)

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
  features = _batch(4)
  before = np.asarray(model(features))
  cents = np.random.default_rng(5).normal(size=(4, 1152)).astype(np.float32)
  centroids_lib.set_centroids(model, cents, idf=np.array([1, 2, 3, 4], np.float32))
  layer = model.get_layer("nearest_centroid")
  np.testing.assert_array_equal(layer.centroids.numpy(), cents)
  assert not layer.trainable_weights and not np.allclose(np.asarray(model(features)), before)
  with pytest.raises(ValueError, match="shape"):
    centroids_lib.set_centroids(model, cents[:3])
  # The build params set the same weights.
  built = models.build(
    "ClusterCentroids",
    num_classes=NUM_CLASSES,
    max_frames=T,
    num_clusters=4,
    centroids=cents,
    idf=[1, 2, 3, 4],
  )
  np.testing.assert_array_equal(built.get_layer("nearest_centroid").centroids.numpy(), cents)
  np.testing.assert_array_equal(built.get_layer("nearest_centroid").idf.numpy(), [1, 2, 3, 4])
