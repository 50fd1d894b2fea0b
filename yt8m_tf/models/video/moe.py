"""Mixture of experts over video-level features (the starter's MoeModel); the layer is in models/heads.py."""

import keras

from yt8m_tf.models.heads import MixtureOfExperts
from yt8m_tf.models.inputs import VIDEO_FEATURES, concat_video_inputs
from yt8m_tf.models.registry import VIDEO, register


@register("MoE", kind=VIDEO, aliases=("MoeModel",))
def moe(
  num_classes: int,
  feature_sizes=(1024, 128),
  num_mixtures: int = 2,
  l2_penalty: float = 1e-8,
  normalize_input: bool = True,
  feature_names=VIDEO_FEATURES,
) -> keras.Model:
  inputs, x = concat_video_inputs(feature_sizes, feature_names, normalize=normalize_input)
  logits = MixtureOfExperts(num_classes, num_mixtures, l2_penalty, name="moe")(x)
  return keras.Model(inputs, logits, name="MoE")
