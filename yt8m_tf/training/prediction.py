"""Out-of-fold and test predictions of a K-fold model, written to prediction stores (`yt8m_tf.stores`)."""

from __future__ import annotations

import os
from typing import List, Optional, Sequence

import keras
import tensorflow as tf

from yt8m_tf import models
from yt8m_tf.stores.predictions import STORE_TOP_K, PredictionWriter, is_complete, read_index
from yt8m_tf.training.evaluation import predict_batches
from yt8m_tf.training.inputs import dataset_for


def predict_to_store(
  fold_models: Sequence[keras.Model],
  dataset: tf.data.Dataset,
  out_dir: str,
  num_classes: int,
  store_top_k: Optional[int] = STORE_TOP_K,
) -> dict:
  """Writes the predictions of the mean logits of `fold_models` on `dataset` (which keeps `id`).

  One model: its out-of-fold predictions. K models: the test predictions averaged over folds (the
  seed averaged logits, not probabilities).
  """

  # One trace per call, the last (smaller) batch included: with shape-relaxing retraces, the OOF folds
  # and the test set of each member added up to TF's "frequent retracing" warning in multi-run processes.
  feature_spec = {k: v for k, v in dataset.element_spec[0].items() if k != "id"}

  @tf.function(input_signature=[feature_spec])
  def mean_probabilities(features):
    logits = tf.add_n([model(features, training=False) for model in fold_models]) / len(fold_models)
    return tf.sigmoid(logits)

  writer = PredictionWriter(out_dir, num_classes, store_top_k)
  for features, _ in dataset:
    ids = features["id"].numpy()
    inputs = {k: v for k, v in features.items() if k != "id"}
    writer.add(ids, mean_probabilities(inputs).numpy())
  return writer.close()


def fold_dirs(model_dir: str, num_folds: int) -> List[str]:
  return [os.path.join(model_dir, f"fold_{k}") for k in range(num_folds)]


def predict_kfold(
  model_dir: str,
  num_folds: int,
  test_data_pattern: Optional[str] = None,
  out_dir: Optional[str] = None,
  store_top_k: Optional[int] = STORE_TOP_K,
  batch_size: int = 512,
  log=print,
) -> dict:
  """OOF predictions (each fold's best model on its held-out fold) into `out_dir/oof`, and test
  predictions (mean logits of the K best models) into `out_dir/test`. Finished stores are kept.

  `model_dir/fold_k/` are train_main runs made with `--fold=k --num_folds=num_folds`.
  """
  from yt8m_tf.training import experiment  # local: experiment imports this module's siblings

  out_dir = out_dir or os.path.join(model_dir, "predictions")
  configs = []
  for k, directory in enumerate(fold_dirs(model_dir, num_folds)):
    config = experiment.read_config(directory)
    if config.fold != k or config.num_folds != num_folds:
      raise ValueError(
        f"{directory} was trained with fold={config.fold}, num_folds={config.num_folds}; "
        f"expected fold={k}, num_folds={num_folds}"
      )
    configs.append(config)
  first = configs[0]
  if any(
    (c.model, c.train_data_pattern, c.num_classes)
    != (first.model, first.train_data_pattern, first.num_classes)
    for c in configs
  ):
    raise ValueError(f"the folds under {model_dir} differ in model, data or classes")

  def load(k):
    return models.load_model(os.path.join(fold_dirs(model_dir, num_folds)[k], "best.keras"))

  if store_top_k is not None:
    store_top_k = min(store_top_k, first.num_classes)
  results = {}
  oof_dir = os.path.join(out_dir, "oof")
  if not is_complete(oof_dir):
    writer = PredictionWriter(oof_dir, first.num_classes, store_top_k)
    for k in range(num_folds):
      model = load(k)
      dataset = dataset_for(
        first.kind,
        first.train_data_pattern,
        batch_size,
        schema=first.schema,
        keep_ids=True,
        num_folds=num_folds,
        folds=[k],
      )
      for ids, probabilities, _ in predict_batches(model, dataset):
        writer.add(ids, probabilities)
      log(f"  oof: fold {k} done")
    writer.close()
  results["oof"] = read_index(oof_dir)
  if test_data_pattern:
    test_dir = os.path.join(out_dir, "test")
    if not is_complete(test_dir):
      dataset = dataset_for(first.kind, test_data_pattern, batch_size, schema=first.schema, keep_ids=True)
      predict_to_store([load(k) for k in range(num_folds)], dataset, test_dir, first.num_classes, store_top_k)
    results["test"] = read_index(test_dir)
  return results
