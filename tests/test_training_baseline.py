"""The fit loop around Keras on tiny learnable data: GAP improves, best model saved, resume works."""

import json
import os

import keras
import numpy as np
import pytest

from conftest import TINY_SCHEMA, write_video_file
from yt8m_tf import metrics, models, training


def _learnable_videos(num, seed):
  """Labels determined by the features, so a logistic model can learn them."""
  rng = np.random.default_rng(seed)
  centers = np.random.default_rng(99).normal(size=(TINY_SCHEMA.num_classes, 1152)).astype(np.float32)
  labels = [np.sort(rng.choice(TINY_SCHEMA.num_classes, 2, replace=False)) for _ in range(num)]
  features = np.stack([centers[l].sum(0) for l in labels]) + 0.5 * rng.normal(size=(num, 1152))
  ids = [f"s{seed}v{i}" for i in range(num)]
  return ids, labels, features[:, :1024].astype(np.float32), features[:, 1024:].astype(np.float32)


@pytest.fixture(scope="module")
def tiny_splits(tmp_path_factory):
  root = tmp_path_factory.mktemp("splits")
  write_video_file(root / "train.tfrecord", *_learnable_videos(256, seed=1))
  write_video_file(root / "validate.tfrecord", *_learnable_videos(96, seed=2))
  return str(root / "train.tfrecord"), str(root / "validate.tfrecord")


def test_fit_learns_saves_best_model_and_resumes(tiny_splits, tmp_path):
  train_file, val_file = tiny_splits
  keras.utils.set_random_seed(0)
  model = models.build("Logistic", num_classes=TINY_SCHEMA.num_classes)
  training.compile_model(model, learning_rate=0.05)
  train_ds = training.dataset_for(
    "video", train_file, 32, schema=TINY_SCHEMA, shuffle=True, seed=0, num_epochs=None
  )
  val_ds = training.dataset_for("video", val_file, 32, schema=TINY_SCHEMA)
  train_dir = str(tmp_path / "run")
  history = training.fit(model, train_ds, val_ds, train_dir=train_dir, epochs=3, steps_per_epoch=8, verbose=0)
  assert [e["epoch"] for e in history] == [1, 2, 3]
  assert history[-1]["val_gap"] > 0.8 and history[-1]["loss"] < history[0]["loss"]
  assert {"learning_rate", "val_loss"} <= set(history[0])

  best = keras.models.load_model(os.path.join(train_dir, training.BEST_MODEL))
  eval_ds = training.dataset_for("video", val_file, 32, schema=TINY_SCHEMA, keep_ids=True)
  result = training.evaluate(best, eval_ds)
  assert result["videos"] == 96
  assert result["gap@20"] == pytest.approx(max(e["val_gap"] for e in history), abs=1e-4)

  # Asking for 5 epochs in the same train_dir continues from epoch 4, not from scratch.
  training.fit(model, train_ds, val_ds, train_dir=train_dir, epochs=5, steps_per_epoch=8, verbose=0)
  with open(os.path.join(train_dir, "history.json")) as f:
    assert [e["epoch"] for e in json.load(f)] == [1, 2, 3, 4, 5]
  assert not [n for n in os.listdir(train_dir) if ".tmp-" in n]


def test_evaluate_equals_gap_of_full_predictions(tiny_splits):
  _, val_file = tiny_splits
  model = models.build("MoE", num_classes=TINY_SCHEMA.num_classes, num_mixtures=2)
  eval_ds = training.dataset_for("video", val_file, 40, schema=TINY_SCHEMA, keep_ids=True)
  ids, scores, labels = zip(*training.predict_batches(model, eval_ds))
  expected = metrics.gap_at_k(np.concatenate(scores), np.concatenate(labels))
  assert training.evaluate(model, eval_ds)["gap@20"] == pytest.approx(expected, abs=1e-9)
  assert len(np.concatenate(ids)) == 96
