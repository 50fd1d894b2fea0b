"""The "large ensemble": the L1 fold models and the GBT stacker in ONE SavedModel.

The seed could not submit this (LightGBM is no TF graph). Here the serving graph repeats, per batch,
exactly what the offline pipeline did to the test set:
  each L1 model: mean logits of its K fold models -> sigmoid -> top-K -> scores rounded to float16 (the
  precision of the prediction stores the stacker was trained on)
  -> `stacking.candidates.candidate_features` (the same TF function as offline)
  -> mean probability of the K stacker fold models per candidate row
  -> scattered into [B, classes]; non-candidates score 0.
The stacker runs as TF-DF's custom ops: loading the export needs them (`import tensorflow_decision_forests`
before `tf.saved_model.load`, or `tf.load_op_library` of TF-DF's inference.so; TF Serving >= 2.11 ships
them).

With frame-level L1 members the export serves serialized SequenceExamples (`from_sequence_examples`, also
its serving_default): frame members read the frames, video members the per-video means computed in the
graph from the same frames, exactly as the data defines its video-level features. Without, it serves
video-level features and Examples as any export.
"""

from __future__ import annotations

import os
from typing import Dict, List, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from yt8m_tf.data.schema import Schema
from yt8m_tf.models.inputs import NUM_FRAMES
from yt8m_tf.export.saved_model import ExportResult, KerasScorer, export_scorer
from yt8m_tf.export.size import ComponentSize
from yt8m_tf.stacking import candidates


class LargeEnsembleScorer(tf.Module):
  """Probabilities [B, classes] of the stacker over the L1 models' candidates."""

  def __init__(
    self,
    l1_models: Mapping[str, Sequence[keras.Model]],
    stackers: Sequence[object],
    prior: np.ndarray,
    store_top_k: int,
    top_n: int = candidates.TOP_N,
    storage_dtype=tf.float32,
  ):
    super().__init__(name="large_ensemble")
    self.model_names = list(l1_models)
    self.l1 = {
      name: [
        KerasScorer(m, storage_dtype, apply_sigmoid=False, name=f"{name}_fold_{k}")
        for k, m in enumerate(fold_models)
      ]
      for name, fold_models in l1_models.items()
    }
    self.stackers = list(stackers)
    self.prior = tf.constant(prior, tf.float32)
    self.num_classes = len(prior)
    self.store_top_k = min(store_top_k, len(prior))
    self.top_n = top_n

  @property
  def l1_sizes(self) -> List[ComponentSize]:
    return [scorer.size for fold_scorers in self.l1.values() for scorer in fold_scorers]

  def compute_policies(self) -> Dict[str, str]:
    """{L1 fold model: the Keras dtype policy it computes under}, for the size report."""
    return {
      k: v for scorers in self.l1.values() for scorer in scorers for k, v in scorer.compute_policies().items()
    }

  def __call__(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
    top_classes, top_scores = [], []
    for name in self.model_names:
      fold_scorers = self.l1[name]
      logits = tf.add_n([scorer(features) for scorer in fold_scorers]) / len(fold_scorers)
      top = tf.math.top_k(tf.sigmoid(logits), k=self.store_top_k)
      top_classes.append(top.indices)
      top_scores.append(tf.cast(tf.cast(top.values, tf.float16), tf.float32))
    row_video, class_id, row_features = candidates.candidate_features(
      top_classes, top_scores, self.model_names, self.prior, self.top_n
    )
    row_probabilities = tf.add_n(
      [tf.reshape(stacker(row_features, training=False), [-1]) for stacker in self.stackers]
    ) / len(self.stackers)
    batch = tf.shape(top_classes[0], out_type=tf.int64)[0]
    return tf.scatter_nd(
      tf.stack([row_video, class_id], axis=1),
      row_probabilities,
      tf.stack([batch, tf.constant(self.num_classes, tf.int64)]),
    )


def export_large_ensemble(
  l1_models: Mapping[str, Sequence[keras.Model]],
  stacker_dirs: Sequence[str],
  prior: np.ndarray,
  store_top_k: int,
  export_base: str,
  model_name: str,
  schema: Schema,
  top_n: int = candidates.TOP_N,
  fp16: bool = False,
  **export_kwargs,
) -> ExportResult:
  """Exports L1 fold models ({name: [fold models]}) plus the stacker fold models saved in
  `stacker_dirs` (stacking.stacker's fold_k/model) as one SavedModel."""
  from yt8m_tf.stacking import stacker as stacker_lib  # TF-DF is imported only on use

  stacker_lib._tfdf()
  import tf_keras

  stackers = [tf_keras.models.load_model(path) for path in stacker_dirs]
  scorer = LargeEnsembleScorer(
    l1_models, stackers, prior, store_top_k, top_n, storage_dtype=tf.float16 if fp16 else tf.float32
  )
  components = scorer.l1_sizes + [
    ComponentSize.from_directory(f"stacker_fold_{k}", os.path.join(path, "assets"))
    for k, path in enumerate(stacker_dirs)
  ]
  return export_scorer(
    scorer,
    {"large_ensemble": scorer},
    components,
    export_base,
    model_name,
    schema,
    frame_level=reads_frames(l1_models),
    **export_kwargs,
  )


def reads_frames(l1_models: Mapping[str, Sequence[keras.Model]]) -> bool:
  """Whether any L1 model is frame-level (takes `num_frames`)."""
  return any(
    NUM_FRAMES in [t.name for t in m.inputs] for fold_models in l1_models.values() for m in fold_models
  )


def l1_fold_models(model_dirs: Mapping[str, str], num_folds: int) -> Dict[str, List[keras.Model]]:
  """{name: [best.keras of fold_0..fold_{K-1}]} for zoo members trained by `training.zoo`."""
  from yt8m_tf import models

  return {
    name: [models.load_model(os.path.join(directory, f"fold_{k}", "best.keras")) for k in range(num_folds)]
    for name, directory in model_dirs.items()
  }
