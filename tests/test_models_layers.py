"""Masked operations: padding never changes a result."""

import numpy as np
import pytest

from yt8m_tf.models import layers


def _padded(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(3, 6, 4)).astype(np.float32) - 2.0  # negative: a zero pad would win a max
  num_frames = np.array([6, 2, 0], np.int32)
  mask = np.asarray(layers.frame_mask(num_frames, 6))
  garbage = x.copy()
  garbage[1, 2:] = 1e6  # what the padding holds must not matter
  return x, garbage, num_frames, mask


def test_frame_mask():
  mask = np.asarray(layers.frame_mask(np.array([0, 2, 4]), 4))
  np.testing.assert_array_equal(mask, [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]])


@pytest.mark.parametrize("method", ["mean", "max", "sum"])
def test_masked_pooling_ignores_padding(method):
  x, garbage, _, mask = _padded()
  pool = layers.MaskedPooling(method)
  clean, noisy = np.asarray(pool(x, mask)), np.asarray(pool(garbage, mask))
  np.testing.assert_allclose(clean, noisy, rtol=1e-6)
  reference = {"mean": np.mean, "max": np.max, "sum": np.sum}[method]
  np.testing.assert_allclose(clean[1], reference(x[1, :2], axis=0), rtol=1e-5)
  np.testing.assert_array_equal(clean[2], np.zeros(4))  # no frames: zeros, never NaN


def test_masked_softmax_gives_padding_zero_weight():
  x, garbage, _, mask = _padded()
  weights = np.asarray(layers.masked_softmax(garbage[..., 0], mask))
  np.testing.assert_allclose(weights[1, :2].sum(), 1.0, rtol=1e-6)
  assert (weights[1, 2:] == 0).all() and (weights[2] == 0).all()
  expected = np.exp(x[1, :2, 0]) / np.exp(x[1, :2, 0]).sum()
  np.testing.assert_allclose(weights[1, :2], expected, rtol=1e-5)


def test_context_gating_roundtrip():
  for batch_norm in (False, True):
    layer = layers.ContextGating(batch_norm=batch_norm)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    y = np.asarray(layer(x))
    assert y.shape == (4, 5) and np.all(np.abs(y) <= np.abs(x) + 1e-6)
    clone = layers.ContextGating.from_config(layer.get_config())
    clone.build((None, 5))
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x)), y, rtol=1e-6)


def test_masked_batch_norm_uses_real_frames_only():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 5, 4)).astype(np.float32)
  mask = (np.arange(5)[None] < np.array([[5], [2], [0]])).astype(np.float32)
  layer = layers.MaskedBatchNormalization(momentum=0.9)
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
