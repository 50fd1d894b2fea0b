"""Training: datasets shaped for a model, the fit loop around Keras, streaming evaluation."""

from yt8m_tf.training.evaluation import ValidationMetrics, evaluate, predict_batches
from yt8m_tf.training.inputs import dataset_for, input_keys
from yt8m_tf.training.trainer import BEST_MODEL, LAST_MODEL, compile_model, fit

__all__ = [
  "BEST_MODEL",
  "ValidationMetrics",
  "LAST_MODEL",
  "compile_model",
  "dataset_for",
  "evaluate",
  "fit",
  "input_keys",
  "predict_batches",
]
