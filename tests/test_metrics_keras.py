"""GapMetric (Keras 3) vs gap_at_k: eager, tf.function, XLA, fit/evaluate, MirroredStrategy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import run_with_two_cpus
from yt8m_tf.metrics import GapMetric, gap_at_k


def random_problem(seed, num_videos=400, num_classes=30, decimals=None):
  rng = np.random.default_rng(seed)
  labels = (rng.random((num_videos, num_classes)) < 3 / num_classes).astype(np.float32)
  logits = rng.normal(size=(num_videos, num_classes)) + 1.5 * labels
  if decimals is not None:
    logits = np.round(logits, decimals)  # ties
  labels[::13] = 0.0  # videos without positives
  return logits.astype(np.float32), labels


def feed(metric, labels, scores, batch_sizes, step=None):
  """Feeds consecutive batches of the given sizes (all rows) and returns the float result."""
  start = 0
  for size in batch_sizes:
    (step or metric.update_state)(labels[start : start + size], scores[start : start + size])
    start += size
  assert start == len(scores)
  return float(metric.result())


def test_eager_updates_equal_gap_at_k_with_ties():
  logits, labels = random_problem(0, decimals=1)
  metric = GapMetric(max_videos=1000)
  value = feed(metric, labels, logits, [100, 1, 99, 200])
  # Same tie rule as gap_at_k (class id within a video, then arrival order): float32 rounding only.
  assert value == pytest.approx(gap_at_k(logits, labels), rel=1e-6)
  assert metric.name == "gap"
  assert int(metric.videos_seen.numpy()) == 400


@pytest.mark.parametrize("jit_compile", [False, True])
def test_inside_tf_function_and_xla(jit_compile):
  logits, labels = random_problem(1, decimals=2)
  metric = GapMetric(max_videos=500)

  @tf.function(jit_compile=jit_compile)
  def step(y_true, y_pred):
    metric.update_state(y_true, y_pred)
    return metric.result()

  value = feed(metric, labels, logits, [128, 128, 128, 16], step=step)
  assert value == pytest.approx(gap_at_k(logits, labels), rel=1e-6)
  metric.reset_state()
  assert float(metric.result()) == 0.0
  value = feed(metric, labels[:200], logits[:200], [200], step=step)
  assert value == pytest.approx(gap_at_k(logits[:200], labels[:200]), rel=1e-6)


def test_logits_and_probabilities_give_same_value():
  logits, labels = random_problem(2, decimals=2)
  from_logits = feed(GapMetric(max_videos=400), labels, logits, [400])
  probabilities = tf.sigmoid(logits).numpy()
  from_probabilities = feed(GapMetric(max_videos=400), labels, probabilities, [400])
  assert from_logits == pytest.approx(from_probabilities, abs=1e-7)
  assert from_logits == pytest.approx(gap_at_k(probabilities, labels), rel=1e-6)


@pytest.mark.parametrize("label_dtype", [np.int32, bool, np.float64])
def test_k_larger_than_num_classes_and_label_dtypes(label_dtype):
  logits, labels = random_problem(3, num_classes=7)
  metric = GapMetric(k=20, max_videos=400)
  value = feed(metric, labels.astype(label_dtype), logits, [150, 250])
  assert value == pytest.approx(gap_at_k(logits, labels, k=20), rel=1e-6)


def test_zero_sample_weight_masks_videos():
  logits, labels = random_problem(4)
  weights = np.ones(400, np.float32)
  weights[50:120] = 0.0
  metric = GapMetric(max_videos=400)
  metric.update_state(labels[:200], logits[:200], sample_weight=weights[:200])
  metric.update_state(labels[200:], logits[200:], sample_weight=weights[200:])
  keep = weights > 0
  assert float(metric.result()) == pytest.approx(gap_at_k(logits[keep], labels[keep]), rel=1e-6)
  assert float(metric.result()) != pytest.approx(gap_at_k(logits, labels), rel=1e-4)


def test_all_zero_labels_give_zero():
  logits, labels = random_problem(5)
  assert feed(GapMetric(max_videos=400), np.zeros_like(labels), logits, [400]) == 0.0


def test_overflow_raises_eagerly_and_is_nan_under_xla():
  logits, labels = random_problem(6)
  metric = GapMetric(max_videos=300)
  metric.update_state(labels[:300], logits[:300])
  with pytest.raises(tf.errors.InvalidArgumentError, match="max_videos=300"):
    metric.update_state(labels[300:], logits[300:])

  xla_metric = GapMetric(max_videos=300)
  step = tf.function(xla_metric.update_state, jit_compile=True)
  step(labels[:200], logits[:200])
  assert not np.isnan(float(xla_metric.result()))
  step(labels[200:], logits[200:])
  assert np.isnan(float(xla_metric.result()))


def test_window_mode_keeps_last_max_videos():
  logits, labels = random_problem(7)  # no ties, so the ring order cannot matter
  metric = GapMetric(max_videos=150, on_overflow="window")
  value = feed(metric, labels, logits, [50] * 8)
  assert value == pytest.approx(gap_at_k(logits[-150:], labels[-150:]), rel=1e-6)


def test_config_round_trip_and_argument_checks():
  metric = GapMetric(k=10, max_videos=1234, on_overflow="window", name="val_gap_10")
  restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
  assert isinstance(restored, GapMetric)
  assert (restored.k, restored.max_videos, restored.on_overflow, restored.name) == (
    10,
    1234,
    "window",
    "val_gap_10",
  )
  with pytest.raises(ValueError):
    GapMetric(on_overflow="drop")
  with pytest.raises(ValueError):
    GapMetric(k=0)
  with pytest.raises(ValueError):
    GapMetric(max_videos=0)


# ---------------------------------------------------------------- inside model.fit / evaluate


def make_data(seed, num_videos, num_features=16, num_classes=30):
  rng = np.random.default_rng(seed)
  features = rng.normal(size=(num_videos, num_features)).astype(np.float32)
  projection = np.random.default_rng(99).normal(size=(num_features, num_classes))
  labels = features @ projection + rng.normal(size=(num_videos, num_classes)) > 2.5
  return features, labels.astype(np.float32)


def make_model(learning_rate, jit_compile=False):
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(30, activation="sigmoid")])
  model.compile(
    optimizer=keras.optimizers.SGD(learning_rate),
    loss="binary_crossentropy",
    metrics=[GapMetric(max_videos=1000)],
    jit_compile=jit_compile,
  )
  return model


def test_fit_and_evaluate_match_gap_at_k_of_predict():
  x_train, y_train = make_data(0, 320)
  x_val, y_val = make_data(1, 200)
  model = make_model(learning_rate=0.5)
  history = model.fit(x_train, y_train, batch_size=64, epochs=2, validation_data=(x_val, y_val), verbose=0)
  expected = gap_at_k(model.predict(x_val, batch_size=64, verbose=0), y_val)
  assert 0.2 < expected < 1.0
  assert history.history["val_gap"][-1] == pytest.approx(expected, rel=1e-5)
  evaluated = model.evaluate(x_val, y_val, batch_size=48, return_dict=True, verbose=0)
  assert evaluated["gap"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_training_gap_with_frozen_weights_matches(jit_compile):
  # learning_rate=0 keeps the weights fixed, so the GAP fit reports over all training batches equals
  # gap_at_k of predict on the training set.
  x_train, y_train = make_data(2, 256)
  model = make_model(learning_rate=0.0, jit_compile=jit_compile)
  assert model.jit_compile == jit_compile  # XLA (on CPU) really used when asked
  history = model.fit(x_train, y_train, batch_size=48, epochs=1, shuffle=False, verbose=0)
  expected = gap_at_k(model.predict(x_train, batch_size=48, verbose=0), y_train)
  assert history.history["gap"][0] == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- tf.distribute (subprocess: 2 logical CPUs)

DISTRIBUTED_SCRIPT = r'''
import keras
from yt8m_tf.metrics import GapMetric, gap_at_k

rng = np.random.default_rng(0)
scores = rng.normal(size=(70, 12)).astype(np.float32)
labels = (rng.random((70, 12)) < 0.2).astype(np.float32)
with strategy.scope():
  metric = GapMetric(max_videos=100)


def shards(bounds):  # replica r gets rows bounds[r]; the sizes differ on purpose
  def value_fn(context):
    start, stop = bounds[context.replica_id_in_sync_group]
    return labels[start:stop], scores[start:stop]
  return strategy.experimental_distribute_values_from_function(value_fn)


@tf.function
def step(batch):
  strategy.run(metric.update_state, args=batch)


step(shards([(0, 17), (17, 33)]))
step(shards([(33, 52), (52, 70)]))
out = {"uneven": float(metric.result()), "uneven_expected": gap_at_k(scores, labels),
       "videos": int(metric.videos_seen.numpy())}

x = rng.normal(size=(256, 16)).astype(np.float32)
y = (x @ rng.normal(size=(16, 30)) + rng.normal(size=(256, 30)) > 2.5).astype(np.float32)
with strategy.scope():
  model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(30, activation="sigmoid")])
  model.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy",
                metrics=[GapMetric(max_videos=1000)])
history = model.fit(x[:128], y[:128], batch_size=32, epochs=1, validation_data=(x[128:], y[128:]), verbose=0)
out["val_gap"] = history.history["val_gap"][-1]
out["evaluate"] = model.evaluate(x[128:], y[128:], batch_size=64, return_dict=True, verbose=0)["gap"]
out["expected"] = gap_at_k(model.predict(x[128:], batch_size=32, verbose=0), y[128:])
'''


def test_mirrored_strategy_two_replicas(tmp_path):
  out = run_with_two_cpus(tmp_path, DISTRIBUTED_SCRIPT)
  assert out["videos"] == 70
  assert out["uneven"] == pytest.approx(out["uneven_expected"], rel=1e-6)  # uneven shards, all-gathered
  assert out["val_gap"] == pytest.approx(out["expected"], rel=1e-5)
  assert out["evaluate"] == pytest.approx(out["expected"], rel=1e-5)
