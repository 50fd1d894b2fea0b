"""Logistic regression on the concatenated video-level features (the starter's LogisticModel)."""

import keras

from yt8m_tf.models.heads import logistic_head
from yt8m_tf.data.schema import Schema
from yt8m_tf.models.inputs import concat_video_inputs
from yt8m_tf.models.registry import VIDEO, register


@register("Logistic", kind=VIDEO, aliases=("LogisticModel",), any_features=True)
def logistic(schema: Schema, l2_penalty: float = 1e-8, normalize_input: bool = True) -> keras.Model:
  """logits = W x + b, x = concat(mean_rgb, mean_audio), L2-normalized like the starter's input."""
  inputs, x = concat_video_inputs(schema, normalize=normalize_input)
  logits = logistic_head(x, schema.num_classes, l2_penalty)
  return keras.Model(inputs, logits, name="Logistic")
