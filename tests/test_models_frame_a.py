"""Frame-level pooling, recurrent and self-attention models: shapes, masking, round trips, a short fit.

Masking is checked two ways for every model: (1) filling the padding with garbage leaves every output unchanged,
and (2) the same videos padded to a longer max_frames (same weights) give the same outputs, which catches zero
padding entering a mean, a softmax, a max, a convolution or an RNN state.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import call_with_unknown_frames
from yt8m_tf import models
from yt8m_tf.models.frame import pooling_models, recurrent

NUM_CLASSES = 5
SIZES = (16, 8)
T = 8
NUM_FRAMES = np.array([8, 5, 1, 3, 0], np.int32)  # full, partial, one frame, short, empty

# (name, tiny params, deterministic in training mode: no dropout, so BN batch moments can be compared)
CASES = [
  ("FrameLevelLogistic", {}, True),
  ("DBoF", {"cluster_size": 16, "hidden_size": 8}, True),
  (
    "DBoF",
    {"cluster_size": 16, "hidden_size": 8, "pooling": "mean", "classifier": "logistic", "batch_norm": False},
    True,
  ),
  ("SoftBoW", {"num_clusters": 6, "inner_size": 8, "bow_dropout": 0.0, "dropout": 0.0}, True),
  (
    "VLADBoW",
    {
      "num_clusters": 6,
      "inner_size": 8,
      "softmax_power": 3.0,
      "learnable_power": True,
      "bow_dropout": 0.2,
      "dropout": 0.1,
    },
    False,
  ),
  ("TimeDistributedPooling", {"units": 8, "hidden_sizes": (8,)}, True),
  (
    "TimeDistributedPooling",
    {"projection": "conv", "units": 8, "num_layers": 2, "attention_heads": 2, "hidden_sizes": (8,)},
    True,
  ),
  ("StackedRNN", {"units": 6, "hidden_sizes": (8,), "dropout": 0.0}, True),
  ("StackedRNN", {"cell": "gru", "num_layers": 3, "units": 6, "hidden_sizes": (8, 8), "dropout": 0.1}, False),
  ("BiLSTMAttention", {"layers_number": 2, "video_hidden": 6, "audio_hidden": 4, "hidden_sizes": (8,)}, True),
  ("AttentionModel", {"num_layers": 2, "hidden_size": 6, "hidden_sizes": (8,)}, True),
  ("SelfAttentionEncoder", {"d_model": 8, "num_heads": 2, "ff_dim": 16, "dropout": 0.0}, True),
  ("SelfAttentionEncoder", {"d_model": 8, "num_heads": 2, "num_layers": 1, "ff_dim": 16}, False),
]


def _batch(max_frames=T, seed=0, garbage=False):
  """Videos with NUM_FRAMES real frames; the padding is zeros, or garbage when asked."""
  rng = np.random.default_rng(seed)
  real = {
    "rgb": rng.normal(size=(len(NUM_FRAMES), T, SIZES[0])),
    "audio": rng.normal(size=(len(NUM_FRAMES), T, SIZES[1])),
  }
  noise = np.random.default_rng(seed + 1)
  features = {}
  for name, x in real.items():
    padded = np.zeros((len(NUM_FRAMES), max_frames, x.shape[-1]))
    if garbage:
      padded = noise.normal(3.0, 10.0, padded.shape)
    for i, n in enumerate(NUM_FRAMES):
      padded[i, :n] = x[i, :n]
    features[name] = padded.astype(np.float32)
  features["num_frames"] = NUM_FRAMES.copy()
  labels = (rng.random((len(NUM_FRAMES), NUM_CLASSES)) < 0.4).astype(np.float32)
  return features, labels


def _build(name, params, max_frames=T):
  return models.build(name, num_classes=NUM_CLASSES, feature_sizes=SIZES, max_frames=max_frames, **params)


@pytest.mark.parametrize(
  "name,params,deterministic", CASES, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(CASES)]
)
def test_frame_model(name, params, deterministic, tmp_path):
  keras.utils.set_random_seed(3)
  model = _build(name, params)
  features, labels = _batch()
  logits = np.asarray(model(features, training=False))
  assert logits.shape == (len(NUM_FRAMES), NUM_CLASSES)
  assert np.isfinite(logits).all()

  # Padding content never matters.
  garbage, _ = _batch(garbage=True)
  np.testing.assert_allclose(model(garbage, training=False), logits, atol=1e-5)

  # Nor does the amount of padding: the same weights at max_frames 12 give the same outputs.
  longer = _build(name, params, max_frames=12)
  longer.set_weights(model.get_weights())
  for junk in (False, True):
    np.testing.assert_allclose(longer(_batch(12, garbage=junk)[0], training=False), logits, atol=1e-5)

  # Graph mode with the batch and frame axes unknown gives the same outputs.
  np.testing.assert_allclose(call_with_unknown_frames(model, features), logits, atol=1e-5)

  # Graph mode (tf.function, unknown batch size) gives the same outputs.
  np.testing.assert_allclose(
    model.predict(features, batch_size=len(NUM_FRAMES), verbose=0), logits, atol=1e-5
  )

  clone = keras.Model.from_config(model.get_config())
  clone.set_weights(model.get_weights())
  np.testing.assert_allclose(clone(features, training=False), logits, atol=1e-6)

  path = str(tmp_path / "model.keras")
  model.save(path)
  np.testing.assert_allclose(keras.models.load_model(path)(features, training=False), logits, atol=1e-6)

  if deterministic:  # training mode: BatchNorm's batch moments come from real frames only
    np.testing.assert_allclose(model(garbage, training=True), model(features, training=True), atol=1e-4)

  model.compile(
    optimizer=keras.optimizers.Adam(0.01),
    loss=keras.losses.BinaryCrossentropy(from_logits=True),
    run_eagerly=True,
  )  # eager: tracing the train step costs more than 5 tiny steps
  history = model.fit(features, labels, epochs=5, batch_size=len(NUM_FRAMES), verbose=0).history["loss"]
  assert np.isfinite(history).all() and history[-1] < history[0]


def test_frame_level_logistic_is_the_mean_over_real_frames():
  model = _build("FrameLevelLogistic", {})
  features, _ = _batch(garbage=True)
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
    "EarlyConcatLSTM2", num_classes=3, feature_sizes=SIZES, max_frames=T, units=4, hidden_sizes=(6,)
  )
  assert [layer.name for layer in model.layers if isinstance(layer, keras.layers.LSTM)] == [
    "lstm0",
    "lstm1",
    "lstm2",
  ]
