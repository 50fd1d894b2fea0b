"""Logistic regression on the concatenated video-level features (the starter's LogisticModel)."""

import keras

from yt8m_tf.models.layers import class_summed_l2

from yt8m_tf.models.inputs import video_inputs
from yt8m_tf.models.registry import VIDEO, register


@register("Logistic", kind=VIDEO)
def logistic(
  num_classes: int = 3862, feature_sizes=(1024, 128), l2_penalty: float = 1e-8, normalize_input: bool = True
) -> keras.Model:
  """logits = W x + b, x = concat(mean_rgb, mean_audio), L2-normalized like the starter's input."""
  inputs = video_inputs(feature_sizes)
  x = keras.layers.Concatenate(name="concat_features")(list(inputs.values()))
  if normalize_input:
    x = keras.layers.UnitNormalization(name="l2_normalize")(x)
  logits = keras.layers.Dense(
    num_classes, kernel_regularizer=class_summed_l2(l2_penalty, num_classes), name="logits"
  )(x)
  return keras.Model(inputs, logits, name="Logistic")
