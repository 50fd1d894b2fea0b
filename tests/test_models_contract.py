"""The contract every registered model keeps, checked for each name in `models.list_models()`, built tiny.

  - logits [B, num_classes], finite;
  - frame models: neither the content of the padding (NaN and inf included) nor its amount (the same weights at a
    longer max_frames) changes the output, also in graph mode with the batch and frame axes unknown; without
    dropout, neither does it change the training-mode output (BatchNorm moments from real frames only);
  - a few training steps on one batch lower the loss;
  - inference is batch independent (BatchNorm uses its moving statistics);
  - get_config / from_config and a .keras save and load give identical outputs and weights.

Every registered model needs an entry in TINY (a test fails otherwise); VARIANTS adds configurations that take
other code paths. Model-specific checks (numpy references, paper parameter counts, layer-by-layer specs) live
in the other test_models_*.py files.
"""

import dataclasses

import keras
import numpy as np
import pytest
from conftest import call_with_unknown_frames

from yt8m_tf import models
from yt8m_tf.data import Schema
from yt8m_tf.models.layers import MaskedBatchNormalization

NUM_CLASSES = 5
FEATURE_SIZES = (16, 8)
T = 6
NUM_FRAMES = np.array([6, 4, 1, 3, 0], np.int32)  # full, partial, one frame, short, empty
NUM_VIDEOS = 8  # video-level batch


@dataclasses.dataclass(frozen=True)
class Case:
  name: str
  params: dict
  stochastic: bool = False  # dropout in training: training-mode outputs cannot be compared

  @property
  def id(self):
    return self.name


_CENTROIDS = np.random.default_rng(3).normal(size=(4, sum(FEATURE_SIZES))).astype(np.float32)

# Tiny params per registered model. Presets keep the defaults that make them presets (dropout included).
TINY = {
  case.name: case
  for case in [
    # video level
    Case("Logistic", {}),
    Case("MoE", {"num_mixtures": 3}),
    Case("ResNetLike", {"inner_size": 8, "context_gating": True}, stochastic=True),
    Case("EarlyConcatFCN", {"inner_sizes": (8, 6), "dropout": 0.2}, stochastic=True),
    Case("AttentiveFCN", {"inner_size": 8}),
    Case("AttentiveFCN2", {"inner_size": 8, "n_heads": 3}),
    *(Case(f"AttentiveFCN{i}", {"inner_size": 8}, stochastic=True) for i in range(3, 8)),
    Case("EnsembleModel", {"width_scale": 1 / 64, "head_widths": (16, 8)}),
    # frame level: pooling
    Case("FrameLevelLogistic", {}),
    Case("DBoF", {"cluster_size": 16, "hidden_size": 8}),
    Case("SoftBoW", {"num_clusters": 6, "inner_size": 8, "bow_dropout": 0.0, "dropout": 0.0}),
    Case(
      "VLADBoW", {"num_clusters": 6, "inner_size": 8, "softmax_power": 3.0, "learnable_power": True}, True
    ),
    Case("TimeDistributedPooling", {"units": 8, "hidden_sizes": (8,)}),
    # frame level: recurrent and attention
    Case("StackedRNN", {"units": 6, "hidden_sizes": (8,), "dropout": 0.0}),
    Case("EarlyConcatLSTM", {"units": 4, "hidden_sizes": (8,)}, stochastic=True),
    Case("EarlyConcatLSTM2", {"units": 4, "hidden_sizes": (8, 8)}),
    Case("EarlyConcatGRU2", {"units": 4, "hidden_sizes": (8, 8)}),
    Case("BiLSTMAttention", {"layers_number": 2, "video_hidden": 4, "audio_hidden": 3, "hidden_sizes": (8,)}),
    Case("EarlyConcatLSTM4", {"video_hidden": 4, "audio_hidden": 3, "hidden_sizes": (8,)}),
    Case("AttentionModel", {"num_layers": 2, "hidden_size": 6, "hidden_sizes": (8,)}),
    Case("AttentionModel2", {"hidden_size": 4, "hidden_sizes": (8,)}, stochastic=True),
    Case("AttentionModel3", {"hidden_size": 4, "hidden_sizes": (8,)}),
    Case("AttentionModel4", {"hidden_size": 4, "hidden_sizes": (8,)}, stochastic=True),
    Case("SelfAttentionEncoder", {"d_model": 8, "num_heads": 2, "ff_dim": 16, "dropout": 0.0}),
    # frame level: VLAD family and cluster centroids
    Case("NetVLADModel", {"cluster_size": 4, "hidden_size": 16}),
    Case("NetRVLADModel", {"cluster_size": 4, "hidden_size": 16, "classifier": "logistic"}),
    Case("NetFVModel", {"cluster_size": 4, "hidden_size": 16, "relu": True}),
    Case(
      "NeXtVLADModel",
      {"cluster_size": 4, "hidden_size": 16, "groups": 4, "gating_reduction": 4, "drop_rate": 0.0},
    ),
    Case(
      "ClusterCentroids",
      {
        "num_clusters": 4,
        "hidden_size": 16,
        "dropout": 0.0,
        "representation": "both",
        "centroids": _CENTROIDS,
      },
    ),
  ]
}

# Other code paths of the same builders.
VARIANTS = [
  Case(
    "DBoF",
    {"cluster_size": 16, "hidden_size": 8, "pooling": "mean", "classifier": "logistic", "batch_norm": False},
  ),
  Case(
    "TimeDistributedPooling",
    {"projection": "conv", "units": 8, "num_layers": 2, "attention_heads": 2, "hidden_sizes": (8,)},
  ),
  Case(
    "SelfAttentionEncoder", {"d_model": 8, "num_heads": 2, "num_layers": 1, "ff_dim": 16}, stochastic=True
  ),
  Case(
    "NetVLADModel",
    {"cluster_size": 4, "hidden_size": 8, "add_batch_norm": False, "probability_gating": False},
  ),
  Case(
    "NetFVModel",
    {"cluster_size": 4, "hidden_size": 8, "couple_weights": True, "gating": False, "classifier": "logistic"},
  ),
  Case(
    "ClusterCentroids", {"num_clusters": 4, "hidden_size": 8, "dropout": 0.0, "representation": "sequence"}
  ),
]

CASES = [TINY[name] for name in models.list_models() if name in TINY] + VARIANTS
CASE_IDS = [case.name for case in CASES[: -len(VARIANTS)]] + [
  f"{case.name}-variant{i}" for i, case in enumerate(VARIANTS)
]


def test_every_registered_model_has_a_tiny_case():
  assert sorted(TINY) == models.list_models()


def _build(case, max_frames=T):
  schema = Schema(feature_sizes=FEATURE_SIZES, num_classes=NUM_CLASSES, max_frames=max_frames)
  return models.build(case.name, schema, **case.params)


def frame_batch(max_frames=T, seed=0, padding="zeros"):
  """Videos with NUM_FRAMES real frames (the same ones at every max_frames); padding "zeros", "garbage"
  (large finite values) or "nonfinite" (garbage with NaN and +-inf)."""
  rng = np.random.default_rng(seed)
  noise = np.random.default_rng(seed + 1)
  features = {}
  for name, size in zip(("rgb", "audio"), FEATURE_SIZES):
    real = rng.normal(size=(len(NUM_FRAMES), T, size))
    x = np.zeros((len(NUM_FRAMES), max_frames, size))
    if padding != "zeros":
      x = noise.normal(3.0, 30.0, x.shape)
    if padding == "nonfinite":
      x[1, -1, :3] = [np.nan, np.inf, -np.inf]  # video 1 has 4 real frames: its last frame is padding
    for i, n in enumerate(NUM_FRAMES):
      x[i, :n] = real[i, :n]
    features[name] = x.astype(np.float32)
  features["num_frames"] = NUM_FRAMES.copy()
  return features


def video_batch(num=NUM_VIDEOS, seed=0):
  rng = np.random.default_rng(seed)
  return {
    name: rng.normal(size=(num, size)).astype(np.float32)
    for name, size in zip(("mean_rgb", "mean_audio"), FEATURE_SIZES)
  }


def _close(actual, expected, atol=1e-5):
  np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=1e-5, atol=atol)


def _check_padding(case, model, features, logits):
  """Frame models: the padding's content and amount never change an output."""
  _close(model(frame_batch(padding="nonfinite"), training=False), logits)
  longer = _build(case, max_frames=T + 3)
  longer.set_weights(model.get_weights())
  for padding in ("zeros", "nonfinite"):
    _close(longer(frame_batch(T + 3, padding=padding), training=False), logits)
  _close(call_with_unknown_frames(model, features), logits)
  if not case.stochastic:  # training mode: BatchNorm's batch moments come from real frames only
    _close(model(frame_batch(padding="garbage"), training=True), model(features, training=True), atol=1e-4)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_model_contract(case, tmp_path):
  keras.utils.set_random_seed(3)
  frame_level = models.get(case.name).kind == models.FRAME
  model = _build(case)
  features = frame_batch() if frame_level else video_batch()
  batch = len(features["num_frames"] if frame_level else features["mean_rgb"])
  labels = (np.random.default_rng(1).random((batch, NUM_CLASSES)) < 0.4).astype(np.float32)

  logits = np.asarray(model(features, training=False))
  assert logits.shape == (batch, NUM_CLASSES) and np.isfinite(logits).all()
  # The readers' batches as they are: keys the model does not take (the string id) are ignored.
  _close(model({**features, "id": np.array([b"v"] * batch)}, training=False), logits, atol=0)
  if frame_level:
    _check_padding(case, model, features, logits)

  # A few eager steps on one batch (tracing a train step costs more); each loss is the one before its update.
  model.compile(
    keras.optimizers.Adam(0.01), keras.losses.BinaryCrossentropy(from_logits=True), run_eagerly=True
  )
  losses = [float(model.train_on_batch(features, labels)) for _ in range(3)]
  assert np.isfinite(losses).all() and losses[-1] < losses[0], losses

  # On the trained model: inference does not depend on the other videos in the batch.
  logits = np.asarray(model(features, training=False))
  alone = model({name: value[1:2] for name, value in features.items()}, training=False)
  _close(alone[0], logits[1])

  clone = keras.Model.from_config(model.get_config())
  clone.set_weights(model.get_weights())
  _close(clone(features, training=False), logits, atol=1e-6)

  path = str(tmp_path / "model.keras")
  model.save(path)
  loaded = models.load_model(path)
  _close(loaded(features, training=False), logits, atol=1e-6)
  assert len(loaded.weights) == len(model.weights)
  for saved, restored in zip(model.weights, loaded.weights):
    np.testing.assert_array_equal(np.asarray(saved), np.asarray(restored))


# Every BatchNorm's momentum by default, as before `bn_momentum` existed: PyTorch's BatchNorm1d (0.9 in Keras
# terms, `torch_batch_norm`) in the seed's models, EnsembleModel's 0.999, Keras' 0.99 in the others.
TORCH_BN_MODELS = (
  "ResNetLike",
  "AttentiveFCN6",
  "AttentiveFCN7",
  "SoftBoW",
  "VLADBoW",
  "BiLSTMAttention",
  "EarlyConcatLSTM4",
  "AttentionModel",
  "AttentionModel2",
  "AttentionModel3",
  "AttentionModel4",
)
DEFAULT_BN_MOMENTUM = {**{name: 0.9 for name in TORCH_BN_MODELS}, "EnsembleModel": 0.999}


def _batch_norms(model):
  """Every BatchNorm of `model`, those inside custom layers (ContextGating's gate_bn, ...) included."""
  return [
    layer
    for layer in model._flatten_layers(include_self=False)
    if isinstance(layer, (keras.layers.BatchNormalization, MaskedBatchNormalization))
  ]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bn_momentum_sets_every_batch_norm(case):
  """A model with BatchNorms takes `bn_momentum`, the momentum of all of them (short runs want less than
  0.99: BUILD_NOTES "Known issues"); its default keeps every BN at the momentum it always had."""
  default_norms = _batch_norms(_build(case))
  if not default_norms:
    return
  default = DEFAULT_BN_MOMENTUM.get(case.name, 0.99)
  assert models.get(case.name).params.get("bn_momentum") == default, (
    f"{case.name} needs bn_momentum={default}"
  )
  assert [bn.momentum for bn in default_norms] == pytest.approx([default] * len(default_norms))

  model = _build(dataclasses.replace(case, params={**case.params, "bn_momentum": 0.77}))
  clone = keras.Model.from_config(model.get_config())  # the custom layers' configs carry it
  for built in (model, clone):
    norms = _batch_norms(built)
    assert [bn.name for bn in norms] == [bn.name for bn in default_norms]
    assert [bn.momentum for bn in norms] == pytest.approx([0.77] * len(norms))
  if case.name == "NetVLADModel":  # the walk reaches the BNs nested in custom layers
    names = {bn.name for bn in default_norms}
    assert {"rgb_input_bn", "cluster_bn", "gate_bn", "gating_prob_bn"} <= names, names


def test_families_keep_their_own_params():
  """Variants registered from one builder list exactly the params they accept."""
  assert {"couple_weights", "coupling_factor"} <= set(models.get("NetFVModel").params)
  assert "couple_weights" not in models.get("NetVLADModel").params
  with pytest.raises(TypeError, match="valid params"):
    models.build("NetVLADModel", couple_weights=True)
  assert "dropout" not in models.get("AttentiveFCN").params
  assert models.get("AttentiveFCN5").params["dropout"] == 0.3
  for name in ("NetVLADModel", "NetRVLADModel", "NetFVModel", "AttentiveFCN", "AttentiveFCN7"):
    assert {"name", "trunk", "pooling"}.isdisjoint(models.get(name).params), name


OTHER_FEATURES = [
  Schema(feature_names=("visual", "sound"), feature_sizes=(12, 4), num_classes=NUM_CLASSES, max_frames=T),
  Schema(feature_names=("rgb",), feature_sizes=(12,), num_classes=NUM_CLASSES, max_frames=T),
]


@pytest.mark.parametrize("name", [n for n in models.list_models() if models.get(n).any_features])
def test_models_that_take_any_features_are_built_on_the_schemas_features(name):
  """A model registered with any_features builds its inputs from the schema: other names, sizes and counts."""
  kind = models.get(name).kind
  params = {k: v for k, v in TINY[name].params.items() if k != "centroids"}
  for schema in OTHER_FEATURES:
    if name == "EnsembleModel" and len(schema.feature_names) != 2:
      with pytest.raises(ValueError, match="exactly two features"):
        models.build(name, schema, **params)
      continue
    model = models.build(name, schema, **params)
    rng = np.random.default_rng(0)
    if kind == models.FRAME:
      features = {
        n: rng.normal(size=(2, T, d)).astype(np.float32)
        for n, d in zip(schema.feature_names, schema.feature_sizes)
      }
      features["num_frames"] = np.array([T, 2], np.int32)
    else:
      features = {
        n: rng.normal(size=(2, d)).astype(np.float32)
        for n, d in zip(schema.video_feature_names, schema.feature_sizes)
      }
    assert sorted(i.name for i in model.inputs) == sorted(features)
    logits = np.asarray(model(features, training=False))
    assert logits.shape == (2, NUM_CLASSES) and np.isfinite(logits).all()


def test_models_that_read_rgb_and_audio_by_name_refuse_other_features():
  schema = OTHER_FEATURES[0]
  for name in ("ResNetLike", "SoftBoW", "BiLSTMAttention"):
    assert not models.get(name).any_features
    with pytest.raises(ValueError, match=f"model {name} reads rgb and audio by name.*Logistic"):
      models.build(name, schema)


@pytest.mark.parametrize("case", CASES[: len(TINY)], ids=CASE_IDS[: len(TINY)])
def test_mixed_precision_keeps_the_class_scores_float32(case):
  """Built under mixed_bfloat16, every model returns float32 logits close to those of the same weights in
  float32: the class scores compute in float32 (models.layers.OUTPUT_DTYPE), the rest in bfloat16."""
  keras.utils.set_random_seed(3)
  reference = _build(case)
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy("mixed_bfloat16")
  try:
    model = _build(case)
  finally:
    keras.config.set_dtype_policy(previous)
  model.set_weights(reference.get_weights())
  frame_level = models.get(case.name).kind == models.FRAME
  features = frame_batch() if frame_level else video_batch()
  assert model.output.dtype == "float32"
  logits = np.asarray(model(features, training=False))
  assert logits.dtype == np.float32 and np.isfinite(logits).all()
  np.testing.assert_allclose(logits, reference(features, training=False), atol=0.05)
