"""Prediction stores and K-fold OOF/test prediction."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from yt8m_tf import data, stores
from yt8m_tf.data import synthetic
from yt8m_tf.training import experiment, inputs, prediction

NUM_CLASSES = 25
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_store_roundtrip_top_k_and_full_rows(tmp_path):
  rng = np.random.default_rng(0)
  probabilities = rng.random((23, NUM_CLASSES)).astype(np.float32)
  ids = np.array([f"v{i}".encode() for i in range(23)])
  for top_k in (5, None):
    out = str(tmp_path / f"store{top_k}")
    writer = stores.PredictionWriter(out, NUM_CLASSES, store_top_k=top_k, part_size=10)
    writer.add(ids[:7], probabilities[:7])
    writer.add(ids[7:], probabilities[7:])
    index = writer.close()
    assert index["num_videos"] == 23 and len(index["parts"]) == 3
    chunks = list(stores.read_predictions(out))
    assert [len(c.ids) for c in chunks] == [10, 10, 3]
    got_ids = np.concatenate([c.ids for c in chunks])
    dense = np.concatenate([c.dense(NUM_CLASSES) for c in chunks])
    np.testing.assert_array_equal(got_ids, ids)
    if top_k is None:
      np.testing.assert_allclose(dense, probabilities, atol=1e-3)
    else:
      for row in range(23):
        top = np.argsort(-probabilities[row])[:top_k]
        assert set(np.flatnonzero(dense[row])) == set(top)
        np.testing.assert_allclose(dense[row, top], probabilities[row, top], atol=1e-3)
      assert chunks[0].classes.dtype == np.uint16 and chunks[0].scores.dtype == np.float16


def test_incomplete_store_is_refused(tmp_path):
  with pytest.raises(FileNotFoundError, match="not a complete prediction store"):
    list(stores.read_predictions(str(tmp_path)))


@pytest.fixture(scope="module")
def kfold_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("kfold")
  data_dir = str(root / "data")
  synthetic.generate(
    synthetic.SyntheticConfig(
      num_videos=300, num_classes=NUM_CLASSES, min_frames=2, max_frames=4, mean_frames=3, num_shards=(2, 1, 1)
    ),
    data_dir,
  )
  model_dir = str(root / "Logistic")
  for fold in range(3):
    experiment.run_training(
      experiment.TrainConfig(
        model="Logistic",
        train_dir=os.path.join(model_dir, f"fold_{fold}"),
        train_data_pattern=f"{data_dir}/video/train-*.tfrecord",
        num_classes=NUM_CLASSES,
        num_folds=3,
        fold=fold,
        batch_size=32,
        epochs=1,
        learning_rate=0.05,
        verbose=0,
      )
    )
  return data_dir, model_dir


def test_predict_kfold_oof_covers_each_video_once_with_its_held_out_model(kfold_run):
  data_dir, model_dir = kfold_run
  results = prediction.predict_kfold(
    model_dir,
    3,
    f"{data_dir}/test-*.tfrecord".replace("/test-", "/video/test-"),
    store_top_k=10,
    batch_size=64,
    log=lambda *_: None,
  )
  schema = data.Schema(num_classes=NUM_CLASSES)
  train_ids = [
    i
    for f, _ in data.video_dataset(f"{data_dir}/video/train-*.tfrecord", 64, schema=schema)
    for i in f["id"].numpy()
  ]
  chunks = list(stores.read_predictions(os.path.join(model_dir, "predictions", "oof")))
  oof_ids = np.concatenate([c.ids for c in chunks])
  assert sorted(oof_ids.tolist()) == sorted(train_ids) and results["oof"]["num_videos"] == len(train_ids)

  # Each OOF row equals the prediction of the model that did not train on that video.
  oof = dict(zip(oof_ids.tolist(), np.concatenate([c.dense(NUM_CLASSES) for c in chunks])))
  fold = 2
  model = keras.models.load_model(os.path.join(model_dir, f"fold_{fold}", "best.keras"))
  held_out = inputs.dataset_for(
    "video", f"{data_dir}/video/train-*.tfrecord", 64, schema=schema, keep_ids=True, num_folds=3, folds=[fold]
  )
  features, _ = next(iter(held_out))
  expected = 1 / (1 + np.exp(-model({k: v for k, v in features.items() if k != "id"}).numpy()))
  for row, video in enumerate(features["id"].numpy()):
    top = np.argsort(-expected[row])[:10]
    np.testing.assert_allclose(oof[video][top], expected[row, top], rtol=2e-3, atol=1e-4)

  # Test predictions average the logits of the 3 fold models.
  test_chunks = list(stores.read_predictions(os.path.join(model_dir, "predictions", "test")))
  test_ids = np.concatenate([c.ids for c in test_chunks])
  test_ds = inputs.dataset_for(
    "video", f"{data_dir}/video/test-*.tfrecord", 1000, schema=schema, keep_ids=True
  )
  features, labels = next(iter(test_ds))
  assert sorted(test_ids.tolist()) == sorted(features["id"].numpy().tolist()) and labels.numpy().sum() == 0
  models = [keras.models.load_model(os.path.join(model_dir, f"fold_{k}", "best.keras")) for k in range(3)]
  x = {k: v for k, v in features.items() if k != "id"}
  mean = 1 / (1 + np.exp(-np.mean([m(x).numpy() for m in models], axis=0)))
  dense = dict(zip(test_ids.tolist(), np.concatenate([c.dense(NUM_CLASSES) for c in test_chunks])))
  first = features["id"].numpy()[0]
  top = np.argsort(-mean[0])[:10]
  np.testing.assert_allclose(dense[first][top], mean[0, top], rtol=2e-3, atol=1e-4)


def test_predict_main_binary_reuses_finished_stores(kfold_run):
  data_dir, model_dir = kfold_run
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "binaries.predict_main",
      f"--model_dir={model_dir}",
      "--num_folds=3",
      f"--test_data_pattern={data_dir}/video/test-*.tfrecord",
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    timeout=300,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert "oof:" in result.stdout and "test:" in result.stdout
