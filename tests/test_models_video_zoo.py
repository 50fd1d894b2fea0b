"""Video-level model zoo (EarlyConcatFCN, AttentiveFCN*) and the ResNetLike structure against the seed spec
(seed_method.md §2.1): numpy reference forwards, parameter counts, layer structure. (Shapes, round trips, a
short fit and batch-independent inference of every model: test_models_contract.py.)
"""

import keras
import numpy as np
import pytest

from yt8m_tf import models

C = 5  # tiny number of classes
INNER = 16
FULL_C = 3862


def _features(num=16, seed=0):
  rng = np.random.default_rng(seed)
  return {
    "mean_rgb": rng.normal(size=(num, 1024)).astype(np.float32),
    "mean_audio": rng.normal(size=(num, 128)).astype(np.float32),
  }


def _randomize_batch_norm(model, seed=0):
  """Non-trivial BN statistics and affine parameters, so inference checks exercise them."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      width = layer.moving_mean.shape[0]
      layer.moving_mean.assign(rng.normal(size=width).astype(np.float32))
      layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=width).astype(np.float32))
      layer.gamma.assign(rng.uniform(0.5, 1.5, size=width).astype(np.float32))
      layer.beta.assign(rng.normal(size=width).astype(np.float32) * 0.1)


# ---------------------------------------------------------------------------------------------------------
# numpy reference forwards (inference mode), written from the spec, reading weights by layer name


def _dense(model, name, x):
  layer = model.get_layer(name)
  return x @ layer.kernel.numpy() + layer.bias.numpy()


def _bn(model, name, x):
  layer = model.get_layer(name)
  normalized = (x - layer.moving_mean.numpy()) / np.sqrt(layer.moving_variance.numpy() + 1e-5)
  return normalized * layer.gamma.numpy() + layer.beta.numpy()


def _relu(x):
  return np.maximum(x, 0.0)


def _leaky(x):
  return np.where(x > 0, x, 0.01 * x)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _concat(f):
  return np.concatenate([f["mean_rgb"], f["mean_audio"]], axis=1).astype(np.float64)


def _gate(m, x, act=_sigmoid):
  return x * act(_dense(m, "gate", x))


def ref_early_concat_fcn(m, f):
  x = _concat(f)
  x = _relu(_dense(m, "fc1", x))
  x = _relu(_dense(m, "fc2", x))
  return _dense(m, "logits", x)


def ref_attentive_fcn(m, f):
  x = _relu(_dense(m, "fc1", _concat(f)))
  return _dense(m, "logits", _gate(m, x))


def ref_attentive_fcn2(m, f):
  x = _relu(_dense(m, "fc1", _concat(f)))
  x = _relu(_dense(m, "fc2", x))
  x = _relu(_dense(m, "fc3", x))
  x = x.reshape(x.shape[0], -1, 3)  # n_heads = 3 below; torch's view(-1, C, n_heads)
  x = _gate(m, x)
  return _dense(m, "head_output", x)[..., 0]


def _ref_fcn3_like(act):
  def forward(m, f):
    x = _relu(_dense(m, "fc1", _concat(f)))
    x = _relu(_dense(m, "fc2", x))
    return _dense(m, "logits", _gate(m, x, act))

  return forward


def ref_attentive_fcn5(m, f):
  x = _dense(m, "fc1", _concat(f))
  x = np.sort(x, axis=1)
  x = _relu(_dense(m, "fc2", x))
  return _dense(m, "logits", _gate(m, x))


def ref_attentive_fcn6(m, f):
  x = _relu(_dense(m, "fc1", _concat(f)))
  x = _relu(_bn(m, "bn1", _dense(m, "fc2", x)))
  x = _relu(_dense(m, "fc4", x) + x)
  return _dense(m, "logits", _gate(m, x))


def ref_attentive_fcn7(m, f):
  x = _relu(_dense(m, "fc1", _concat(f)))
  x = _relu(_bn(m, "bn1", _dense(m, "fc2", x)))
  x = _relu(_bn(m, "bn2", _dense(m, "fc4", x) + x))
  x = _relu(_bn(m, "bn3", _dense(m, "fc5", x) + x))
  return _dense(m, "logits", _gate(m, x))


def _d(i, o):
  """Parameters of a Dense(i -> o) with bias."""
  return i * o + o


F = 1152
# name, tiny params, numpy reference, tiny parameter count (closed form; BN counts 4 per feature).
ZOO = [
  (
    "EarlyConcatFCN",
    {"inner_sizes": (INNER, 12), "dropout": 0.2},
    ref_early_concat_fcn,
    _d(F, INNER) + _d(INNER, 12) + _d(12, C),
  ),
  ("AttentiveFCN", {"inner_size": INNER}, ref_attentive_fcn, _d(F, INNER) + _d(INNER, INNER) + _d(INNER, C)),
  (
    "AttentiveFCN2",
    {"inner_size": INNER, "n_heads": 3},
    ref_attentive_fcn2,
    _d(F, INNER) + _d(INNER, INNER) + _d(INNER, 3 * C) + _d(3, 3) + _d(3, 1),
  ),
  (
    "AttentiveFCN3",
    {"inner_size": INNER, "dropout": 0.3},
    _ref_fcn3_like(_sigmoid),
    _d(F, INNER) + 2 * _d(INNER, INNER) + _d(INNER, C),
  ),
  (
    "AttentiveFCN4",
    {"inner_size": INNER, "dropout": 0.3},
    _ref_fcn3_like(_softmax),
    _d(F, INNER) + 2 * _d(INNER, INNER) + _d(INNER, C),
  ),
  (
    "AttentiveFCN5",
    {"inner_size": INNER, "dropout": 0.3},
    ref_attentive_fcn5,
    _d(F, INNER) + 2 * _d(INNER, INNER) + _d(INNER, C),
  ),
  (
    "AttentiveFCN6",
    {"inner_size": INNER, "dropout": 0.3},
    ref_attentive_fcn6,
    _d(F, INNER) + 3 * _d(INNER, INNER) + 4 * INNER + _d(INNER, C),
  ),
  (
    "AttentiveFCN7",
    {"inner_size": INNER, "dropout": 0.3},
    ref_attentive_fcn7,
    _d(F, INNER) + 4 * _d(INNER, INNER) + 3 * 4 * INNER + _d(INNER, C),
  ),
]
ZOO_IDS = [z[0] for z in ZOO]


@pytest.mark.parametrize("name,params,reference,num_params", ZOO, ids=ZOO_IDS)
def test_zoo_model_matches_reference_and_parameter_count(name, params, reference, num_params):
  keras.utils.set_random_seed(1)
  model = models.build(name, num_classes=C, **params)
  assert models.get(name).kind == models.VIDEO
  assert model.count_params() == num_params
  _randomize_batch_norm(model)
  features = _features()
  logits = model(features, training=False)
  assert tuple(logits.shape) == (16, C)
  np.testing.assert_allclose(logits, reference(model, features), rtol=1e-4, atol=1e-4)


def test_early_concat_fcn_applies_dropout_before_relu_and_concats_rgb_first():
  model = models.build("EarlyConcatFCN", num_classes=C, inner_sizes=(8, 4, 6), dropout=0.1)
  widths = [model.get_layer(f"fc{i}").units for i in (1, 2, 3)]
  assert widths == [8, 4, 6] and model.get_layer("logits").units == C
  for i in (1, 2, 3):
    relu_input = model.get_layer(f"fc{i}_relu").input._keras_history.operation
    assert relu_input.name == f"fc{i}_dropout"
    assert model.get_layer(f"fc{i}_dropout").input._keras_history.operation.name == f"fc{i}"
  concat = model.get_layer("concat_features")
  assert [t._keras_history.operation.name for t in concat.input] == ["mean_rgb", "mean_audio"]
  # dropout 0 (the default) leaves no Dropout layers at all
  default = models.build("EarlyConcatFCN", num_classes=C, inner_sizes=(8,))
  assert not any(isinstance(layer, keras.layers.Dropout) for layer in default.layers)


def test_zoo_defaults_follow_the_spec():
  assert models.get("EarlyConcatFCN").params["inner_sizes"] == (1024, 1024)
  assert models.get("EarlyConcatFCN").params["dropout"] == 0.0
  assert models.get("AttentiveFCN").params["inner_size"] == 4096
  assert models.get("AttentiveFCN2").params["inner_size"] == 2048
  assert models.get("AttentiveFCN2").params["n_heads"] == 5
  for name in ("AttentiveFCN3", "AttentiveFCN4", "AttentiveFCN5", "AttentiveFCN6", "AttentiveFCN7"):
    assert models.get(name).params["inner_size"] == 4096
    assert models.get(name).params["dropout"] == 0.3
  for name in ZOO_IDS:  # the data's features come from the schema, not from a model param
    assert models.get(name).any_features and "feature_sizes" not in models.get(name).params


@pytest.mark.parametrize("name", ["AttentiveFCN6", "AttentiveFCN7"])
def test_zoo_batch_norm_uses_pytorch_defaults(name):
  model = models.build(name, num_classes=C, inner_size=8)
  norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
  assert len(norms) == {"AttentiveFCN6": 1, "AttentiveFCN7": 3}[name]
  assert all(n.momentum == pytest.approx(0.9) and n.epsilon == pytest.approx(1e-5) for n in norms)


# ---------------------------------------------------------------------------------------------------------
# ResNetLike against seed_method.md §2.1


def _resnet_like_count(
  inner=2048,
  av=1,
  cc=1,
  video_part=1,
  audio_part=1,
  context_gating=False,
  num_classes=FULL_C,
  moving_statistics=True,
):
  """Closed-form parameter count of ResNetLike, BN moving mean/variance included (Keras counts them).

  FCBlock(i->o) = Dense(i*o + o) + BN(4*o: gamma, beta, moving mean, moving variance);
  Identity(outer, inner) = FCBlock(outer->inner) + Dense(inner*outer + outer);
  total = FCBlock(128->a_w) + av*Identity(a_w, a_w) + FCBlock(1024->v_w) + av*Identity(v_w, v_w)
        + cc*Identity(2*inner, inner) + FCBlock(2*inner->inner) + Dense(inner->C) [+ Dense(C->C)].
  At the defaults (inner 2048, a_w = v_w = 2048, C = 3862):
    264,192 + 8,192  +  (4,196,352 + 8,192 + 4,196,352)           audio
  + 2,099,200 + 8,192  +  (4,196,352 + 8,192 + 4,196,352)         video
  + (8,390,656 + 8,192 + 8,392,704)                               concat identity
  + 8,390,656 + 8,192  +  7,913,238                               head, logits
  = 52,285,206 (52,244,246 trainable: PyTorch's parameters(); + 40,960 BN moving statistics).
  With moving_statistics=False, BN counts 2 per feature (PyTorch's parameters()).
  """
  a_w = 2 * inner * audio_part // (video_part + audio_part)
  v_w = 2 * inner * video_part // (video_part + audio_part)

  def fc_block(i, o):
    return _d(i, o) + (4 if moving_statistics else 2) * o

  def identity(outer, width):
    return fc_block(outer, width) + _d(width, outer)

  total = (
    fc_block(128, a_w)
    + av * identity(a_w, a_w)
    + fc_block(1024, v_w)
    + av * identity(v_w, v_w)
    + cc * identity(2 * inner, inner)
    + fc_block(2 * inner, inner)
    + _d(inner, num_classes)
  )
  return total + (_d(num_classes, num_classes) if context_gating else 0)


def test_resnet_like_closed_form_matches_the_spec_figures():
  assert _resnet_like_count() == 52_285_206
  # The spec's table (in M, rounded to 0.1) is consistent with either count: av4/cc4 is 153.07 M with the
  # BN moving statistics and 153.00 M without; the default is 52.29 M with them and 52.24 M without.
  for kwargs, millions in [
    ({}, 52.3),
    ({"av": 4, "cc": 4}, 153.0),
    ({"av": 5, "cc": 5}, 186.6),
    ({"av": 3, "cc": 3}, 119.4),
    ({"inner": 4096}, 188.4),
  ]:
    counts = {
      round(_resnet_like_count(**kwargs, moving_statistics=stats) / 1e6, 1) for stats in (True, False)
    }
    assert millions in counts, (kwargs, counts)


@pytest.mark.parametrize(
  "params,expected",
  [
    ({}, 52_285_206),
    ({"av_id_block_num": 4, "concat_id_block_num": 4}, 153_065_238),
    ({"inner_size": 4096}, 188_452_630),
  ],
)
def test_resnet_like_full_size_parameter_counts(params, expected):
  av, cc = params.get("av_id_block_num", 1), params.get("concat_id_block_num", 1)
  inner = params.get("inner_size", 2048)
  assert expected == _resnet_like_count(inner, av, cc)
  keras.backend.clear_session()
  model = models.build("ResNetLike", **params)
  try:
    assert model.count_params() == expected
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == _resnet_like_count(inner, av, cc, moving_statistics=False)
    # the non-trainable weights are exactly the BN moving mean and variance of every FCBlock
    # (audio_fc, video_fc, head_fc and one per identity block; a_w = v_w = inner)
    bn_features = 2 * inner * (1 + av) + inner * (cc + 1)
    assert expected - trainable == 2 * bn_features
  finally:
    del model
    keras.backend.clear_session()


def _tiny_resnet(**overrides):
  params = {
    "num_classes": C,
    "inner_size": 8,
    "av_id_block_num": 2,
    "concat_id_block_num": 2,
    "dropout": 0.5,
    "context_gating": True,
    "video_part": 10,
    "audio_part": 6,
  }
  params.update(overrides)
  return models.build("ResNetLike", **params)


def _producer(tensor):
  return tensor._keras_history.operation


def _source_inputs(tensor):
  """Names of the model inputs a tensor depends on."""
  op = _producer(tensor)
  if isinstance(op, keras.layers.InputLayer):
    return {op.name}
  node = op._inbound_nodes[tensor._keras_history.node_index]
  return set().union(*(_source_inputs(t) for t in node.input_tensors))


def test_resnet_like_activations_and_batch_norm_use_pytorch_defaults():
  model = _tiny_resnet()
  leaky = [layer for layer in model.layers if isinstance(layer, keras.layers.LeakyReLU)]
  # one per FCBlock and one after each identity add: FCBlocks = 2 branch inputs + 2*av + cc + head.
  assert len(leaky) == (2 + 2 * 2 + 2 + 1) + (2 * 2 + 2)
  assert all(layer.negative_slope == pytest.approx(0.01) for layer in leaky)
  assert not any(isinstance(layer, keras.layers.ReLU) for layer in model.layers)
  norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
  assert len(norms) == 2 + 2 * 2 + 2 + 1  # exactly one per FCBlock
  assert all(n.momentum == pytest.approx(0.9) and n.epsilon == pytest.approx(1e-5) for n in norms)
  assert all(layer.rate == 0.5 for layer in model.layers if isinstance(layer, keras.layers.Dropout))


def test_resnet_like_concatenates_audio_first():
  model = _tiny_resnet()
  concat = model.get_layer("concat_audio_video")
  first, second = concat.input
  assert _source_inputs(first) == {"mean_audio"}
  assert _source_inputs(second) == {"mean_rgb"}
  # and numerically: the first a_w columns of the concat depend on the audio only
  probe = keras.Model(model.inputs, concat.output)
  f = _features(4)
  base = probe(f, training=False).numpy()
  g = dict(f, mean_rgb=f["mean_rgb"] + 1.0)
  moved = probe(g, training=False).numpy()
  np.testing.assert_allclose(moved[:, :6], base[:, :6])
  assert np.abs(moved[:, 6:] - base[:, 6:]).max() > 1e-3


def test_resnet_like_part_widths():
  model = _tiny_resnet(av_id_block_num=1, concat_id_block_num=1)  # inner 8, video/audio parts 10/6
  assert model.get_layer("audio_fc_dense").units == 6  # 6 * 2 * 8 / 16
  assert model.get_layer("video_fc_dense").units == 10  # 10 * 2 * 8 / 16
  assert model.get_layer("audio_id0_fc_dense").units == 6 and model.get_layer("audio_id0_out").units == 6
  assert model.get_layer("video_id0_fc_dense").units == 10 and model.get_layer("video_id0_out").units == 10
  assert model.get_layer("concat_audio_video").output.shape[-1] == 16
  assert model.get_layer("concat_id0_fc_dense").units == 8 and model.get_layer("concat_id0_out").units == 16
  assert model.get_layer("head_fc_dense").units == 8
  assert model.get_layer("logits").kernel.shape == (8, C)


def test_resnet_like_identity_block_has_no_batch_norm_after_its_second_dense():
  model = _tiny_resnet()
  blocks = (
    [f"audio_id{i}" for i in range(2)]
    + [f"video_id{i}" for i in range(2)]
    + [f"concat_id{i}" for i in range(2)]
  )
  for block in blocks:
    add = model.get_layer(f"{block}_add")
    shortcut, residual = add.input
    out_dense = _producer(residual)
    assert out_dense.name == f"{block}_out" and isinstance(out_dense, keras.layers.Dense)
    assert out_dense.activation is keras.activations.linear
    # the second Dense reads the FCBlock's (dropout) output directly
    assert _producer(out_dense.input).name == f"{block}_fc_dropout"
    assert _producer(model.get_layer(f"{block}_fc_dropout").input).name == f"{block}_fc_act"
    assert _producer(model.get_layer(f"{block}_fc_act").input).name == f"{block}_fc_bn"
    assert _producer(model.get_layer(f"{block}_fc_bn").input).name == f"{block}_fc_dense"
    # the shortcut is the block input, and LeakyReLU follows the add
    assert _producer(model.get_layer(f"{block}_fc_dense").input) is _producer(shortcut)
    assert _producer(model.get_layer(f"{block}_act").input).name == f"{block}_add"


def test_resnet_like_context_gating_is_a_class_by_class_dense_on_the_logits():
  keras.utils.set_random_seed(3)
  gated = _tiny_resnet()
  plain = _tiny_resnet(context_gating=False)
  assert gated.count_params() - plain.count_params() == C * C + C
  gate = gated.get_layer("context_gate")
  assert gate.kernel.shape == (C, C)
  assert _producer(gate.input).name == "logits"
  _randomize_batch_norm(gated)
  f = _features(4)
  raw = keras.Model(gated.inputs, gated.get_layer("logits").output)(f, training=False).numpy()
  expected = raw * _sigmoid(raw @ gate.kernel.numpy() + gate.bias.numpy())
  np.testing.assert_allclose(gated(f, training=False), expected, rtol=1e-5, atol=1e-6)


def test_resnet_like_matches_a_numpy_reference_in_inference_mode():
  keras.utils.set_random_seed(4)
  model = _tiny_resnet(av_id_block_num=1, concat_id_block_num=1)
  _randomize_batch_norm(model)
  f = _features(6)

  def fc(name, x):
    return _leaky(_bn(model, f"{name}_bn", _dense(model, f"{name}_dense", x)))

  def identity(name, x):
    return _leaky(x + _dense(model, f"{name}_out", fc(f"{name}_fc", x)))

  a = identity("audio_id0", fc("audio_fc", f["mean_audio"].astype(np.float64)))
  v = identity("video_id0", fc("video_fc", f["mean_rgb"].astype(np.float64)))
  x = identity("concat_id0", np.concatenate([a, v], axis=1))
  y = _dense(model, "logits", fc("head_fc", x))
  y = y * _sigmoid(_dense(model, "context_gate", y))
  np.testing.assert_allclose(model(f, training=False), y, rtol=1e-4, atol=1e-5)
