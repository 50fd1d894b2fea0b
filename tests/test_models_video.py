"""Registry and video-level models: shapes, config and .keras round trips, a short fit."""

import keras
import numpy as np
import pytest

from yt8m_tf import models

NUM_CLASSES = 7


def _batch(num=16, seed=0):
  rng = np.random.default_rng(seed)
  features = {
    "mean_rgb": rng.normal(size=(num, 1024)).astype(np.float32),
    "mean_audio": rng.normal(size=(num, 128)).astype(np.float32),
  }
  labels = (rng.random((num, NUM_CLASSES)) < 0.3).astype(np.float32)
  return features, labels


@pytest.mark.parametrize("name,params", [("Logistic", {}), ("MoE", {"num_mixtures": 3})])
def test_video_model_shapes_roundtrip_and_fit(name, params, tmp_path):
  keras.utils.set_random_seed(1)
  model = models.build(name, num_classes=NUM_CLASSES, **params)
  features, labels = _batch()
  logits = model(features)
  assert tuple(logits.shape) == (16, NUM_CLASSES)

  clone = keras.Model.from_config(model.get_config())
  clone.set_weights(model.get_weights())
  np.testing.assert_allclose(clone(features), logits, atol=1e-6)

  path = str(tmp_path / "model.keras")
  model.save(path)
  np.testing.assert_allclose(keras.models.load_model(path)(features), logits, atol=1e-6)

  model.compile(optimizer=keras.optimizers.Adam(0.01), loss=keras.losses.BinaryCrossentropy(from_logits=True))
  history = model.fit(features, labels, epochs=5, batch_size=8, verbose=0).history["loss"]
  assert history[-1] < history[0]


def test_moe_probabilities_follow_the_starter_formula():
  model = models.build("MoE", num_classes=NUM_CLASSES, num_mixtures=2, normalize_input=False)
  features, _ = _batch(4)
  x = np.concatenate([features["mean_rgb"], features["mean_audio"]], axis=1)
  layer = model.get_layer("moe")
  gates = x @ layer.gates.kernel.numpy()
  experts = x @ layer.experts.kernel.numpy() + layer.experts.bias.numpy()
  gates = gates.reshape(4, NUM_CLASSES, 3)
  gates = np.exp(gates - gates.max(-1, keepdims=True))
  gates /= gates.sum(-1, keepdims=True)
  expected = (gates[..., :2] / (1 + np.exp(-experts.reshape(4, NUM_CLASSES, 2)))).sum(-1)
  got = 1 / (1 + np.exp(-model(features).numpy()))
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_registry_errors_name_the_choices():
  with pytest.raises(KeyError, match="Logistic"):
    models.build("Logistc")
  with pytest.raises(TypeError, match="valid params"):
    models.build("Logistic", num_classes=3, hidden=4)
  assert {"Logistic", "MoE"} <= set(models.list_models("video"))
  assert models.get("MoE").params["num_mixtures"] == 2
