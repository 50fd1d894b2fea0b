"""Registry errors and the MoE formula (shapes, round trips and fits of every model: test_models_contract.py)."""

import numpy as np
import pytest

from yt8m_tf import models

NUM_CLASSES = 7


def test_moe_probabilities_follow_the_starter_formula():
  model = models.build("MoE", num_classes=NUM_CLASSES, num_mixtures=2, normalize_input=False)
  rng = np.random.default_rng(0)
  features = {
    "mean_rgb": rng.normal(size=(4, 1024)).astype(np.float32),
    "mean_audio": rng.normal(size=(4, 128)).astype(np.float32),
  }
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


def test_the_starters_model_names_are_aliases():
  assert models.get("LogisticModel").name == "Logistic" and models.get("MoeModel").name == "MoE"
  assert models.get("DbofModel").name == "DBoF" and models.get("LstmModel").name == "StackedRNN"
  assert models.get("FrameLevelLogisticModel").name == "FrameLevelLogistic"
  assert "LogisticModel" not in models.list_models()
  model = models.build("MoeModel", num_classes=7, num_mixtures=1)
  assert model.output_shape == (None, 7)
