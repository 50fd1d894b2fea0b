"""Mixture of experts over video-level features (the starter's MoeModel); the layer is in models/heads.py."""

import keras

from yt8m_tf.models.heads import MixtureOfExperts
from yt8m_tf.data.schema import Schema
from yt8m_tf.models.inputs import concat_video_inputs
from yt8m_tf.models.layers import OUTPUT_DTYPE
from yt8m_tf.models.registry import VIDEO, register


@register("MoE", kind=VIDEO, aliases=("MoeModel",), any_features=True)
def moe(
  schema: Schema, num_mixtures: int = 2, l2_penalty: float = 1e-8, normalize_input: bool = True
) -> keras.Model:
  inputs, x = concat_video_inputs(schema, normalize=normalize_input)
  logits = MixtureOfExperts(schema.num_classes, num_mixtures, l2_penalty, name="moe", dtype=OUTPUT_DTYPE)(x)
  return keras.Model(inputs, logits, name="MoE")
