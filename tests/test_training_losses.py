"""Losses against literal numpy re-statements of the seed/starter formulas; registry; target mixing."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import run_with_two_cpus
from yt8m_tf.training import losses

B, C = 6, 40  # 30*B = 180 hardest negatives out of ~220: the selection matters


def _data(seed=0, soft=False, b=B, c=C):
  rng = np.random.default_rng(seed)
  logits = (3 * rng.normal(size=(b, c))).astype(np.float32)
  y = (rng.random((b, c)) < 0.1).astype(np.float32)
  y[:, 0] = 1.0  # every example has a positive
  if soft:
    y = (y * rng.uniform(0.2, 1.0, size=y.shape)).astype(np.float32)
    y[rng.random((b, c)) < 0.05] = 0.03  # small soft scores also count as positives (y > 0)
  return y, logits


# --- numpy references, written after the seed's torch code / the starter's TF1 code ---------------


def _softplus(x):
  return np.logaddexp(0.0, x)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def ref_bce(y, x):
  y, x = y.astype(np.float64), x.astype(np.float64)
  return np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x))))


def ref_starter_ce(y, x, eps=1e-5):
  y, p = y.astype(np.float64), _sigmoid(x.astype(np.float64))
  return np.mean(np.sum(-(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)), axis=1))


def ref_starter_hinge(y, x, b=1.0):
  p = _sigmoid(x.astype(np.float64))
  return np.mean(np.sum(np.maximum(0.0, b - (2 * y - 1) * p), axis=1))


def ref_starter_softmax(y, z):
  y = y / np.maximum(y.sum(1, keepdims=True), 1e-7)
  z = z.astype(np.float64)
  log_softmax = z - z.max(1, keepdims=True)
  log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
  return np.mean(-np.sum(y * log_softmax, axis=1))


def ref_diff(y, x, top_neg_count=30):
  """seed _get_pos_neg_scores_diff: masked_select positives / negatives, topk(negatives, 30*B)."""
  s, t = x.reshape(-1).astype(np.float64), y.reshape(-1)
  pos, neg = s[t > 0], s[~(t > 0)]
  top_neg = np.sort(neg)[::-1][: top_neg_count * x.shape[0]]
  return top_neg[None, :] - pos[:, None]


def ref_soft_ranking(y, x, margin=1.0):
  diff = ref_diff(y, x)
  diff = diff[diff != 0]  # torch.nonzero(diff)
  return np.mean(_softplus(diff + margin))


def ref_sigmoid_ranking(y, x):
  return np.mean(np.log(1 + _sigmoid(ref_diff(y, x))))


def ref_lsep(y, x):
  return np.log1p(np.mean(np.exp(ref_diff(y, x))))


def ref_hinge_ranking(y, x, margin=1.0):
  return np.mean(np.maximum(0.0, ref_diff(y, x) + margin))


REFERENCES = {
  "bce": ref_bce,
  "starter_ce": ref_starter_ce,
  "starter_hinge": ref_starter_hinge,
  "starter_softmax": ref_starter_softmax,
  "soft_ranking": ref_soft_ranking,
  "sigmoid_ranking": ref_sigmoid_ranking,
  "lsep": ref_lsep,
  "hinge_ranking": ref_hinge_ranking,
  "bce_soft_rank": lambda y, x: ref_bce(y, x) + 0.1 * ref_soft_ranking(y, x),
  "mse": lambda y, x: np.mean((x.astype(np.float64) - y) ** 2),
}


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_loss_matches_numpy_reference(name, soft):
  y, x = _data(seed=1, soft=soft)
  got = float(losses.get_loss(name)(y, x))
  np.testing.assert_allclose(got, REFERENCES[name](y, x), rtol=2e-5, atol=1e-6)


def test_labels_tags_bce_weights_the_two_column_blocks():
  y, x = _data(seed=2)
  loss = losses.get_loss("bce_with_logits_labels1_tags2", num_labels=30)
  want = ref_bce(y[:, :30], x[:, :30]) + 2.0 * ref_bce(y[:, 30:], x[:, 30:])
  np.testing.assert_allclose(float(loss(y, x)), want, rtol=1e-5)


def test_starter_softmax_on_probabilities_and_mse_on_probabilities():
  y, x = _data(seed=3)
  np.testing.assert_allclose(
    float(losses.StarterSoftmax(on_probabilities=True)(y, x)),
    ref_starter_softmax(y, _sigmoid(x.astype(np.float64))),
    rtol=1e-5,
  )
  np.testing.assert_allclose(
    float(losses.MSE(on_probabilities=True)(y, x)),
    np.mean((_sigmoid(x.astype(np.float64)) - y) ** 2),
    rtol=1e-5,
  )


def test_bce_is_the_mean_over_all_elements_and_keras_equivalent():
  y, x = _data(seed=4, soft=True)
  ours = float(losses.BinaryCrossEntropy()(y, x))
  theirs = float(keras.losses.BinaryCrossentropy(from_logits=True)(y, x))
  np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_starter_ce_is_a_per_example_sum():
  y, x = _data(seed=5)
  per_example = losses.StarterCrossEntropy(reduction="none")(y, x).numpy()
  assert per_example.shape == (B,)
  np.testing.assert_allclose(per_example.mean(), ref_starter_ce(y, x), rtol=1e-5)
  # C times the mean-over-classes BCE up to the epsilon: the sum, not a mean
  assert per_example.mean() > 0.5 * C * ref_bce(y, x)


def test_rank_losses_use_only_the_30b_hardest_negatives():
  y, x = _data(seed=6)
  # Lowering an easy negative (outside the 30*B hardest) changes nothing.
  flat = x.reshape(-1).copy()
  negatives = np.flatnonzero(y.reshape(-1) == 0)
  easiest = negatives[np.argmin(flat[negatives])]
  flat[easiest] -= 50.0
  x2 = flat.reshape(x.shape)
  for name in ("soft_ranking", "sigmoid_ranking", "hinge_ranking", "lsep"):
    loss = losses.get_loss(name)
    np.testing.assert_allclose(float(loss(y, x2)), float(loss(y, x)), rtol=1e-6)


def test_rank_losses_with_fewer_negatives_than_30b_use_all_of_them():
  y, x = _data(seed=7, b=4, c=12)  # 48 entries < 120: the seed's topk would raise
  got = float(losses.SoftRankingLoss()(y, x))
  np.testing.assert_allclose(got, ref_soft_ranking(y, x), rtol=1e-5)


def test_soft_ranking_ties_rule_and_degenerate_batches():
  y, _ = _data(seed=8)
  zeros = np.zeros_like(y)
  assert float(losses.SoftRankingLoss()(y, zeros)) == 0.0  # seed drops diff == 0 pairs (torch.nonzero)
  np.testing.assert_allclose(
    float(losses.SoftRankingLoss(ignore_ties=False)(y, zeros)), np.log1p(np.e), rtol=1e-6
  )
  np.testing.assert_allclose(float(losses.HingeRankingLoss()(y, zeros)), 1.0, rtol=1e-6)
  x = np.random.default_rng(0).normal(size=y.shape).astype(np.float32)
  no_positives = np.zeros_like(y)
  for name in ("soft_ranking", "sigmoid_ranking", "hinge_ranking", "lsep"):
    assert float(losses.get_loss(name)(no_positives, x)) == 0.0
  all_positive = np.ones_like(y)
  assert float(losses.get_loss("soft_ranking")(all_positive, x)) == 0.0


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_gradients_finite_for_extreme_logits(name):
  rng = np.random.default_rng(9)
  y, _ = _data(seed=9, soft=True)
  x = tf.Variable(rng.choice([-100.0, 100.0, 0.0, 30.0], size=y.shape).astype(np.float32))
  params = {"num_labels": 30} if name == "bce_labels_tags" else {}
  with tf.GradientTape() as tape:
    value = losses.get_loss(name, **params)(y, x)
  grad = tape.gradient(value, x)
  assert np.isfinite(float(value))
  assert grad is not None and np.all(np.isfinite(grad.numpy()))


def test_rank_loss_gradient_is_nonzero_and_pushes_positives_up():
  y, x = _data(seed=10)
  xv = tf.Variable(x)
  with tf.GradientTape() as tape:
    value = losses.SoftRankingLoss()(y, xv)
  grad = tape.gradient(value, xv).numpy()
  assert np.all(grad[y > 0] <= 0) and np.any(grad[y > 0] < 0)
  assert np.all(grad[y == 0] >= 0) and np.any(grad[y == 0] > 0)


def test_losses_compute_in_float32_for_half_precision_logits():
  y, x = _data(seed=11)
  for name in ("bce", "starter_ce", "soft_ranking"):
    value = losses.get_loss(name)(y, tf.constant(x, tf.float16))
    assert value.dtype == tf.float32


NON_DEFAULT_PARAMS = {
  "bce": {},
  "starter_ce": {"epsilon": 1e-6},
  "starter_hinge": {"b": 0.5},
  "starter_softmax": {"on_probabilities": True},
  "soft_ranking": {"top_neg_count": 5, "margin": 0.5, "ignore_ties": False},
  "sigmoid_ranking": {"top_neg_count": 7},
  "hinge_ranking": {"margin": 2.0, "positive_threshold": 0.5},
  "lsep": {"top_neg_count": 3},
  "bce_soft_rank": {"alpha": 0.3, "margin": 2.0},
  "bce_labels_tags": {"num_labels": 30, "tags_weight": 5.0},
  "mse": {"on_probabilities": True},
}


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_config_round_trip(name):
  loss = losses.get_loss(name, **NON_DEFAULT_PARAMS[name])
  restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
  assert type(restored) is type(loss)
  assert restored.get_config() == loss.get_config()
  y, x = _data(seed=12, soft=True)
  np.testing.assert_allclose(float(restored(y, x)), float(loss(y, x)), rtol=1e-6)


def test_registry_errors_and_aliases():
  with pytest.raises(ValueError, match="unknown loss 'soft_rank'.*soft_ranking.*Known losses"):
    losses.get_loss("soft_rank")
  with pytest.raises(TypeError, match="bad parameters.*margn"):
    losses.get_loss("soft_ranking", margn=1.0)
  assert isinstance(losses.get_loss("CrossEntropyLoss"), losses.StarterCrossEntropy)
  assert isinstance(losses.get_loss("bce_with_soft_rank_with_logits"), losses.BCEWithSoftRank)
  assert isinstance(losses.get_loss("sigmoid_ranking_loss_with_logits"), losses.SigmoidRankingLoss)
  assert not losses.loss_supports_jit(losses.get_loss("soft_ranking"))
  assert losses.loss_supports_jit(losses.get_loss("bce"))
  assert losses.loss_supports_jit(keras.losses.BinaryCrossentropy())


def test_sample_weight_per_example_ok_batch_level_rejected():
  y, x = _data(seed=13)
  w = np.array([1, 0, 0, 0, 0, 0], np.float32)
  per_example = losses.StarterCrossEntropy(reduction="none")(y, x).numpy()
  np.testing.assert_allclose(
    float(losses.StarterCrossEntropy(reduction="sum")(y, x, sample_weight=w)), per_example[0], rtol=1e-6
  )
  with pytest.raises(ValueError, match="batch-level"):
    losses.SoftRankingLoss()(y, x, sample_weight=w)


def test_keras_fit_with_rank_loss_and_model_save(tmp_path):
  keras.utils.set_random_seed(0)
  y, _ = _data(seed=14, b=32)
  features = np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32)
  model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(C)])
  loss = losses.get_loss("bce_soft_rank")
  model.compile(optimizer="adam", loss=loss, jit_compile=losses.loss_supports_jit(loss))
  history = model.fit(features, y, batch_size=16, epochs=2, verbose=0)
  assert np.all(np.isfinite(history.history["loss"]))
  path = str(tmp_path / "m.keras")
  model.save(path)
  restored = keras.models.load_model(path)
  assert isinstance(restored.loss, losses.BCEWithSoftRank)


def test_xla_compiles_the_per_example_losses():
  y, x = _data(seed=15)
  for name in ("bce", "starter_ce"):
    loss = losses.get_loss(name)
    value = tf.function(lambda a, b: loss(a, b), jit_compile=True)(y, x)
    np.testing.assert_allclose(float(value), REFERENCES[name](y, x), rtol=1e-5)


# --- tf.distribute: a fresh process with 2 logical CPUs (they must be configured before TF starts) -

MIRRORED_SCRIPT = r"""
import keras
from yt8m_tf.training import losses

rng = np.random.default_rng(0)
x = rng.normal(size=(32, 8)).astype(np.float32)
y = (rng.random((32, 20)) < 0.15).astype(np.float32)
logits = (2 * rng.normal(size=(32, 20))).astype(np.float32)
halves = [slice(0, 16), slice(16, 32)]
out = {}
for name in ["soft_ranking", "hinge_ranking", "bce_soft_rank", "bce"]:
  loss = losses.get_loss(name)
  y_parts, logit_parts = (
    strategy.experimental_distribute_values_from_function(lambda c, a=a: a[halves[c.replica_id_in_sync_group]])
    for a in (y, logits)
  )
  shares = tf.function(lambda a, b: strategy.run(loss, args=(a, b)))(y_parts, logit_parts)
  summed = strategy.reduce(tf.distribute.ReduceOp.SUM, shares, axis=None)
  out[name] = [float(summed), float(np.mean([loss(y[h], logits[h]) for h in halves]))]

# One SGD step of fit under the strategy = one step on the mean of the two halves' losses.
loss = losses.get_loss("soft_ranking")
def make_model():
  return keras.Sequential([keras.Input((8,)), keras.layers.Dense(20, kernel_initializer="glorot_uniform")])
single = make_model()
with strategy.scope():
  mirrored = make_model()
  mirrored.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss, jit_compile=False)
mirrored.set_weights(single.get_weights())
with tf.GradientTape() as tape:
  value = tf.add_n([loss(y[h], single(x[h])) for h in halves]) / 2
grads = tape.gradient(value, single.trainable_weights)
expected = [w.numpy() - 0.5 * g.numpy() for w, g in zip(single.trainable_weights, grads)]
history = mirrored.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
out["fit_logged_loss"] = [history.history["loss"][0], float(value)]
out["fit_max_weight_error"] = max(float(np.abs(w - e).max()) for w, e in zip(mirrored.get_weights(), expected))
out["step_size"] = max(float(np.abs(0.5 * g.numpy()).max()) for g in grads)
"""


def test_batch_losses_are_replica_means_under_mirrored_strategy(tmp_path):
  out = run_with_two_cpus(tmp_path, MIRRORED_SCRIPT)
  # Replica shares sum to the mean of the per-replica losses, for batch-level and per-example losses alike.
  for name in ["soft_ranking", "hinge_ranking", "bce_soft_rank", "bce"]:
    summed, mean = out[name]
    assert mean > 0 and summed == pytest.approx(mean, rel=1e-5), name
  logged, expected = out["fit_logged_loss"]
  assert logged == pytest.approx(expected, rel=1e-4)
  # Without the 1/replicas share the step would be twice as long (error ~ step size).
  assert out["step_size"] > 1e-3
  assert out["fit_max_weight_error"] < 1e-3 * out["step_size"] + 1e-6
