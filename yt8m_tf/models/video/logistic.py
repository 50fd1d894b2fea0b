"""Logistic regression on the concatenated video-level features (the starter's LogisticModel)."""

import keras

from yt8m_tf.models.heads import logistic_head
from yt8m_tf.models.inputs import VIDEO_FEATURES, concat_video_inputs
from yt8m_tf.models.registry import VIDEO, register


@register("Logistic", kind=VIDEO, aliases=("LogisticModel",))
def logistic(
  num_classes: int,
  feature_sizes=(1024, 128),
  l2_penalty: float = 1e-8,
  normalize_input: bool = True,
  feature_names=VIDEO_FEATURES,
) -> keras.Model:
  """logits = W x + b, x = concat(mean_rgb, mean_audio), L2-normalized like the starter's input."""
  inputs, x = concat_video_inputs(feature_sizes, feature_names, normalize=normalize_input)
  logits = logistic_head(x, num_classes, l2_penalty)
  return keras.Model(inputs, logits, name="Logistic")
