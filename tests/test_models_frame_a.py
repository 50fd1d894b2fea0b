"""Frame-level pooling, recurrent and attention models against their formulas: the masked mean, the
bidirectional masking, the seed's global-context attention, the signed soft-assignment power, the presets.
(Shapes, masking, round trips and a short fit of every model: test_models_contract.py.)
"""

import keras
import numpy as np
import tensorflow as tf
from test_models_contract import FEATURE_SIZES, NUM_FRAMES, T, frame_batch

from yt8m_tf import models
from yt8m_tf.models.frame import pooling_models, recurrent

NUM_CLASSES = 5


def test_frame_level_logistic_is_the_mean_over_real_frames():
  model = models.build(
    "FrameLevelLogistic", num_classes=NUM_CLASSES, feature_sizes=FEATURE_SIZES, max_frames=T
  )
  features = frame_batch(padding="garbage")
  x = np.concatenate([features["rgb"], features["audio"]], -1)
  kernel, bias = model.get_layer("logits").get_weights()
  for i, n in enumerate(NUM_FRAMES):
    mean = x[i, :n].mean(0) if n else np.zeros(x.shape[-1])
    np.testing.assert_allclose(model(features)[i], mean @ kernel + bias, rtol=1e-5, atol=1e-5)


def test_bidirectional_masking_starts_backward_at_last_real_frame():
  keras.utils.set_random_seed(0)
  layer = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True))
  x = np.random.default_rng(0).normal(size=(1, T, 4)).astype(np.float32)
  n = 5
  mask = np.arange(T)[None] < n
  x[:, n:] = 7.0
  padded = np.asarray(layer(x, mask=mask))
  unpadded = np.asarray(layer(x[:, :n]))
  np.testing.assert_allclose(padded[:, :n], unpadded, atol=1e-6)


def test_global_context_attention_matches_the_seed_formula():
  keras.utils.set_random_seed(0)
  layer = recurrent.GlobalContextAttention(num_layers=3, hidden_size=4)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, T, 5)).astype(np.float32)
  mask = (np.arange(T)[None] < np.array([[T], [3]])).astype(np.float32)
  got = np.asarray(layer(x, mask))

  def masked_softmax(s, m):
    s = np.where(m > 0, s, -np.inf)
    e = np.exp(s - s.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)

  big = x  # the seed's growing [B, T, D + i*H] tensor
  for i in range(3):
    kernel = layer.frame_dense[i].kernel.numpy()
    if i:
      kernel = np.concatenate([kernel, layer.context_dense[i - 1].kernel.numpy()], 0)
    v = np.maximum(big @ kernel + layer.frame_dense[i].bias.numpy(), 0)
    score = (v @ layer.score_dense[i].kernel.numpy() + layer.score_dense[i].bias.numpy())[..., 0]
    pooled = (masked_softmax(score, mask)[..., None] * v).sum(1)
    big = np.concatenate([big, np.repeat(pooled[:, None], T, 1)], -1)
  expected = (big * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_soft_assignment_power_is_finite_for_negative_logits():
  layer = pooling_models.SoftAssignment(4, power=2.5, learnable_power=True)
  x = tf.constant(np.random.default_rng(0).normal(size=(3, T, 6)).astype(np.float32) * 3)
  with tf.GradientTape() as tape:
    s = layer(x)
    loss = keras.ops.sum(s[..., 0] ** 2)
  grads = tape.gradient(loss, layer.trainable_weights)
  assert np.isfinite(s.numpy()).all() and all(np.isfinite(g.numpy()).all() for g in grads)
  np.testing.assert_allclose(s.numpy().sum(-1), 1.0, rtol=1e-5)
  # For an odd integer power the signed power is the seed's plain z ** p.
  cube = pooling_models.SoftAssignment(4, power=3.0)
  s = cube(x).numpy()
  z = x.numpy() @ cube.logits.kernel.numpy() + cube.logits.bias.numpy()
  e = np.exp(z**3 - (z**3).max(-1, keepdims=True))
  np.testing.assert_allclose(s, e / e.sum(-1, keepdims=True), rtol=1e-4, atol=1e-6)


def test_registry_presets():
  frame = set(models.list_models("frame"))
  assert {
    "FrameLevelLogistic",
    "DBoF",
    "SoftBoW",
    "VLADBoW",
    "TimeDistributedPooling",
    "StackedRNN",
    "EarlyConcatLSTM",
    "EarlyConcatLSTM2",
    "EarlyConcatGRU2",
    "BiLSTMAttention",
    "EarlyConcatLSTM4",
    "AttentionModel",
    "AttentionModel2",
    "SelfAttentionEncoder",
  } <= frame
  gru2 = models.get("EarlyConcatGRU2").params
  assert (gru2["cell"], gru2["num_layers"], gru2["units"], gru2["hidden_sizes"]) == (
    "gru",
    3,
    1024,
    (1024, 1024),
  )
  assert models.get("AttentionModel4").params["hidden_size"] == 768
  model = models.build(
    "EarlyConcatLSTM2", num_classes=3, feature_sizes=FEATURE_SIZES, max_frames=T, units=4, hidden_sizes=(6,)
  )
  assert [layer.name for layer in model.layers if isinstance(layer, keras.layers.LSTM)] == [
    "lstm0",
    "lstm1",
    "lstm2",
  ]
