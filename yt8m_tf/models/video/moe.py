"""Mixture of experts over video-level features (the starter's MoeModel)."""

import keras

from yt8m_tf.models.layers import class_summed_l2
from keras import ops

from yt8m_tf.models.inputs import video_inputs
from yt8m_tf.models.registry import VIDEO, register


@keras.saving.register_keras_serializable(package="yt8m_tf")
class MixtureOfExperts(keras.layers.Layer):
  """Per class c: p_c = sum_m softmax(gates_c)_m * sigmoid(expert_c,m), with M experts plus a dummy
  expert (gate M+1) that always predicts 0. Returns logit(p_c), so every model emits logits.
  """

  def __init__(self, num_classes, num_mixtures=2, l2_penalty=1e-8, epsilon=1e-7, **kwargs):
    super().__init__(**kwargs)
    self.num_classes = num_classes
    self.num_mixtures = num_mixtures
    self.l2_penalty = l2_penalty
    self.epsilon = epsilon
    regularizer = class_summed_l2(l2_penalty, num_classes)
    self.gates = keras.layers.Dense(
      num_classes * (num_mixtures + 1), use_bias=False, kernel_regularizer=regularizer, name="gates"
    )
    self.experts = keras.layers.Dense(
      num_classes * num_mixtures, kernel_regularizer=regularizer, name="experts"
    )

  def build(self, input_shape):
    self.gates.build(input_shape)
    self.experts.build(input_shape)

  def call(self, x):
    gates = ops.softmax(ops.reshape(self.gates(x), [-1, self.num_classes, self.num_mixtures + 1]))
    experts = ops.sigmoid(ops.reshape(self.experts(x), [-1, self.num_classes, self.num_mixtures]))
    probabilities = ops.sum(gates[..., : self.num_mixtures] * experts, axis=-1)
    probabilities = ops.clip(probabilities, self.epsilon, 1.0 - self.epsilon)
    return ops.log(probabilities) - ops.log1p(-probabilities)

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.num_classes)

  def get_config(self):
    return {
      **super().get_config(),
      "num_classes": self.num_classes,
      "num_mixtures": self.num_mixtures,
      "l2_penalty": self.l2_penalty,
      "epsilon": self.epsilon,
    }


@register("MoE", kind=VIDEO)
def moe(
  num_classes: int = 3862,
  feature_sizes=(1024, 128),
  num_mixtures: int = 2,
  l2_penalty: float = 1e-8,
  normalize_input: bool = True,
) -> keras.Model:
  inputs = video_inputs(feature_sizes)
  x = keras.layers.Concatenate(name="concat_features")(list(inputs.values()))
  if normalize_input:
    x = keras.layers.UnitNormalization(name="l2_normalize")(x)
  logits = MixtureOfExperts(num_classes, num_mixtures, l2_penalty, name="moe")(x)
  return keras.Model(inputs, logits, name="MoE")
