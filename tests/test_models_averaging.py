"""Several trained models served as one: the mean of their logits, a Keras model that saves and loads."""

import numpy as np
import pytest

from yt8m_tf import data, models
from yt8m_tf.models import averaging

from conftest import TINY_SCHEMA


def _students(count, seed=0):
  import keras

  keras.utils.set_random_seed(seed)
  return [
    models.build("EnsembleModel", TINY_SCHEMA, width_scale=1 / 64, output_bias=True) for _ in range(count)
  ]


def _batch(model, rows=5):
  rng = np.random.default_rng(1)
  return {t.name: rng.normal(size=(rows, t.shape[-1])).astype(np.float32) for t in model.inputs}


def test_the_average_is_the_mean_of_the_members_logits_and_survives_a_save(tmp_path):
  members = _students(3)
  batch = _batch(members[0])
  each = [np.asarray(m(batch)) for m in members]
  assert not np.allclose(each[0], each[1])  # different weights, so the mean is not trivially one member
  averaged = averaging.average_logits(members, name="students")
  np.testing.assert_allclose(np.asarray(averaged(batch)), np.mean(each, axis=0), rtol=1e-5, atol=1e-6)
  assert averaged.count_params() == sum(m.count_params() for m in members)
  path = str(tmp_path / "students.keras")
  averaged.save(path)
  loaded = models.load_model(path)
  np.testing.assert_allclose(np.asarray(loaded(batch)), np.asarray(averaged(batch)), rtol=1e-6, atol=1e-6)
  assert [layer.name for layer in loaded.layers if layer.name.startswith("students_")] == [
    "students_0",
    "students_1",
    "students_2",
  ]


def test_one_member_is_served_as_it_is():
  (member,) = _students(1)
  assert averaging.average_logits([member]) is member


def test_members_of_other_inputs_are_refused():
  member = _students(1)[0]
  narrower = models.build("Logistic", data.Schema(num_classes=TINY_SCHEMA.num_classes, feature_sizes=(8, 4)))
  with pytest.raises(ValueError, match="same inputs"):
    averaging.average_logits([member, narrower])
  with pytest.raises(ValueError, match="at least one"):
    averaging.average_logits([])
