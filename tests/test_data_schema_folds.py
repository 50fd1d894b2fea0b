"""Schema, dequantization and fold assignment."""

import numpy as np
import pytest
import tensorflow as tf

from yt8m_tf import data


def test_dequantize_matches_starter_formula_on_every_byte():
  q = np.arange(256, dtype=np.uint8)
  expected = q.astype(np.float64) * 4.0 / 255.0 + 4.0 / 512.0 - 2.0
  np.testing.assert_allclose(data.dequantize(q), expected, atol=1e-6)
  np.testing.assert_allclose(data.dequantize(tf.constant(q)).numpy(), expected, atol=1e-6)
  assert data.quantize(data.dequantize(q)).tolist() == q.tolist()


def test_quantize_picks_the_nearest_level_and_clips():
  x = np.linspace(-3, 3, 1001)
  q = data.quantize(x)
  err = np.abs(data.dequantize(q) - np.clip(x, data.dequantize(np.uint8(0)), data.dequantize(np.uint8(255))))
  assert err.max() <= 2.0 / 255 + 1e-6
  assert q[0] == 0 and q[-1] == 255


def test_schema_validation_and_2017_variant():
  assert data.Schema().video_feature_names == ("mean_rgb", "mean_audio")
  assert data.Schema().total_feature_size == 1152
  old = data.Schema.yt8m_2017()
  assert old.id_key == "video_id" and old.num_classes == 4716
  with pytest.raises(ValueError):
    data.Schema(feature_names=("rgb",), feature_sizes=(1, 2))


def test_fold_of_is_deterministic_balanced_and_order_free():
  ids = [f"id{i}" for i in range(3000)]
  folds = data.fold_of(ids, 5)
  np.testing.assert_array_equal(folds, data.fold_of(list(reversed(ids)), 5)[::-1])
  assert data.fold_of("id7", 5) == folds[7]
  assert data.fold_of(b"id7", 5) == folds[7]
  counts = np.bincount(folds, minlength=5)
  assert counts.min() > 500 and counts.max() < 700  # 600 expected per fold
  # Tensor version agrees with the numpy one.
  np.testing.assert_array_equal(data.fold_of_tensor(tf.constant(ids), 5).numpy(), folds)


def test_fold_arguments_are_checked():
  with pytest.raises(ValueError):
    data.fold_of("x", 0)
  with pytest.raises(ValueError, match="subset"):
    data.fold_mask_tensor(tf.constant(["a"]), 3, folds=[3])
