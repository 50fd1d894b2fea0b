"""EnsembleModel (the seed's distilled towers A-F): the L2 norm inside the model, the structure and size of the
full model, the parameter arithmetic, and one training run. (Shapes, round trips, a short fit and
batch-independent inference: test_models_contract.py.)"""

import gc

import keras
import numpy as np
import pytest
from conftest import TINY_SCHEMA, make_videos, write_video_file

from yt8m_tf import models
from yt8m_tf.data import Schema
from yt8m_tf.models.video.ensemble import ensemble_parameter_count
from yt8m_tf.training import experiment

NUM_CLASSES = 7
TINY = {"width_scale": 1 / 64}
SEED_PARAMETER_COUNT = 247_233_888


def _tiny_model(seed=1, **params):
  keras.utils.set_random_seed(seed)
  return models.build("EnsembleModel", num_classes=NUM_CLASSES, **{**TINY, **params})


def test_one_l2_norm_over_both_features_inside_the_model():
  model = _tiny_model()
  rng = np.random.default_rng(0)
  features = {
    "mean_rgb": rng.normal(size=(32, 1024)).astype(np.float32),
    "mean_audio": rng.normal(size=(32, 128)).astype(np.float32),
  }
  logits = model(features, training=False).numpy()
  scaled = {k: 3.0 * v for k, v in features.items()}
  np.testing.assert_allclose(model(scaled, training=False), logits, atol=1e-5)

  normalized = keras.Model(model.inputs, model.get_layer("l2_normalize").output)(features).numpy()
  x = np.concatenate([features["mean_rgb"], features["mean_audio"]], axis=1)
  np.testing.assert_allclose(normalized, x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
  # Scaling only the video feature changes the output: the norm is joint, not per feature.
  video_scaled = {**features, "mean_rgb": 3.0 * features["mean_rgb"]}
  assert np.abs(model(video_scaled, training=False).numpy() - logits).max() > 1e-3


def _token(layer):
  """A short description of a layer, in the notation of seed_method.md §5.3."""
  if isinstance(layer, keras.layers.Dense):
    return f"fc{layer.units}"
  if isinstance(layer, keras.layers.BatchNormalization):
    return "bn"
  if isinstance(layer, keras.layers.LeakyReLU):
    return f"lrelu{layer.negative_slope:g}"
  if isinstance(layer, keras.layers.ReLU):
    return "relu"
  if isinstance(layer, keras.layers.Activation):
    return {"silu": "swish"}.get(layer.activation.__name__, layer.activation.__name__)
  if isinstance(layer, keras.layers.Concatenate):
    return "concat"
  return type(layer).__name__


def _swish(width):
  return [f"fc{width}", "bn", "swish"]


def _relu(width):
  return [f"fc{width}", "bn", "relu"]


# Each tower and branch of seed_method.md §5.3 at the seed's widths, layer by layer.
SEED_STRUCTURE = {
  "tower_a": _swish(1024) * 2 + ["fc1024", "relu"],
  "tower_b": _relu(1024) + ["fc1024", "relu"],
  "tower_c_video": ["fc1024", "bn", "lrelu0.2"],
  "tower_c_audio": ["fc256", "bn", "lrelu0.2"],
  "tower_c": ["concat", "fc1024", "relu"],
  "tower_d_video": _swish(1024) * 2,
  "tower_d_audio": _swish(256) * 2,
  "tower_d": ["concat", "fc1024", "relu"],
  "tower_e": _relu(4096) * 4 + ["fc2048", "relu"],
  "tower_f": _relu(2048) * 5 + ["fc2048", "relu"],
  "head": ["concat"] + _relu(8192) + _relu(6000),
  "logits": ["fc3862"],
}


def _group(name):
  """The tower or branch a layer belongs to: the longest SEED_STRUCTURE key prefixing its name."""
  matches = [g for g in SEED_STRUCTURE if name == g or name.startswith(g + "_")]
  return max(matches, key=len) if matches else None


def test_full_size_model_matches_the_seed_structure_and_parameter_count():
  assert ensemble_parameter_count() == SEED_PARAMETER_COUNT
  keras.utils.set_random_seed(0)
  model = models.build("EnsembleModel")  # ~1 GB of float32 weights; builds in a few seconds
  try:
    assert model.count_params() == SEED_PARAMETER_COUNT
    assert model.output_shape == (None, 3862)
    structure = {}
    for layer in model.layers:
      group = _group(layer.name)
      if group:
        structure.setdefault(group, []).append(_token(layer))
    assert structure == SEED_STRUCTURE

    # What each tower reads: the normalized 1152-d input, or its video / audio part.
    for name, fan_in in [
      ("tower_a_dense_1", 1152),
      ("tower_b_dense_1", 1152),
      ("tower_c_video_dense_1", 1024),
      ("tower_c_audio_dense_1", 128),
      ("tower_c_dense_out", 1280),
      ("tower_d_video_dense_1", 1024),
      ("tower_d_audio_dense_1", 128),
      ("tower_e_dense_1", 1152),
      ("tower_f_dense_1", 1152),
      ("head_dense_1", 9344),
    ]:
      assert model.get_layer(name).kernel.shape[0] == fan_in, name

    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert len(dense) == 3 + 2 + 3 + 5 + 5 + 6 + 3
    for layer in dense:
      assert not layer.use_bias and layer.bias is None, layer.name
      assert isinstance(layer.kernel_initializer, keras.initializers.GlorotUniform), layer.name
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 2 + 1 + 2 + 4 + 4 + 5 + 2
    for layer in norms:
      assert (layer.momentum, layer.epsilon, layer.center, layer.scale) == (0.999, 1e-3, True, True)
  finally:
    del model
    keras.backend.clear_session()
    gc.collect()


@pytest.mark.parametrize(
  "params",
  [
    {"width_scale": 1 / 64},
    {"width_scale": 0.03, "num_classes": 11},
    {"width_scale": 1 / 32, "head_widths": [20, 10, 5]},
    {"width_scale": 1 / 64, "feature_sizes": [40, 8], "feature_names": ["rgb_v2", "audio_v2"]},
  ],
)
def test_parameter_count_arithmetic_matches_keras(params):
  schema_fields = {k: tuple(params.pop(k)) for k in ("feature_sizes", "feature_names") if k in params}
  schema = Schema(num_classes=params.pop("num_classes", NUM_CLASSES), **schema_fields)
  model = models.build("EnsembleModel", schema, **params)
  assert model.count_params() == ensemble_parameter_count(schema, **params)


def test_feature_names_sizes_and_bad_arguments():
  model = _tiny_model(feature_sizes=[40, 8], feature_names=["rgb_v2", "audio_v2"])
  rng = np.random.default_rng(0)
  features = {"mean_rgb_v2": rng.normal(size=(3, 40)), "mean_audio_v2": rng.normal(size=(3, 8))}
  assert tuple(model(features).shape) == (3, NUM_CLASSES)
  assert model.get_layer("tower_c_audio_dense_1").kernel.shape[0] == 8
  with pytest.raises(ValueError, match="exactly two features"):
    models.build("EnsembleModel", feature_sizes=[1024, 128, 7], feature_names=["a", "b", "c"], **TINY)
  with pytest.raises(ValueError, match="width_scale"):
    models.build("EnsembleModel", width_scale=0)


def test_train_main_trains_a_tiny_ensemble(tmp_path):
  for split, num, seed in (("train", 96, 0), ("eval", 32, 1)):
    write_video_file(tmp_path / f"{split}.tfrecord", *make_videos(num, seed=seed, prefix=split))
  train_dir = tmp_path / "run"
  logs = experiment.run_training(
    experiment.TrainConfig(
      model="EnsembleModel",
      model_params={"width_scale": 1 / 64, "head_widths": [32, 24]},
      train_dir=str(train_dir),
      train_data_pattern=str(tmp_path / "train.tfrecord"),
      eval_data_pattern=str(tmp_path / "eval.tfrecord"),
      num_classes=TINY_SCHEMA.num_classes,
      batch_size=32,
      epochs=2,
      learning_rate=0.01,
      verbose=0,
    )
  )
  assert len(logs) == 2 and all(np.isfinite(e["loss"]) for e in logs)
  model = models.load_model(str(train_dir / "best.keras"))
  assert model.output_shape == (None, TINY_SCHEMA.num_classes)
  assert model.get_layer("head_dense_2").units == 24
