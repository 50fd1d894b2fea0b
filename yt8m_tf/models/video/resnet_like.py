"""ResNetLike: the seed's residual MLP over separate audio and video branches (seed_method.md §2.1).

  FCBlock(o)      = Dense(o) -> BatchNorm -> LeakyReLU(0.01) -> Dropout(p)
  Identity(o, i)  = LeakyReLU(x + Dense(o)(FCBlock(i)(x)))        (no BN after the second Dense)
  audio: FCBlock(a_w) -> av_id_block_num x Identity(a_w, a_w)
  video: FCBlock(v_w) -> av_id_block_num x Identity(v_w, v_w)
  head:  concat([audio, video]) -> concat_id_block_num x Identity(2*inner, inner)
         -> FCBlock(inner) -> Dense(num_classes) [-> logits * sigmoid(Dense(logits)) if context_gating]

with a_w = 2*inner*audio_part/(audio_part+video_part), v_w likewise. PyTorch defaults are kept explicitly:
LeakyReLU slope 0.01 (Keras' default is 0.3), BatchNorm momentum 0.9 / epsilon 1e-5, and nn.Linear's
U(+-1/sqrt(fan_in)) initialization of weights and biases. 52.3M parameters at the defaults.
"""

import math

import keras

from yt8m_tf.models.inputs import video_inputs
from yt8m_tf.models.registry import VIDEO, register

LEAKY_SLOPE = 0.01


def torch_dense(units: int, fan_in: int, name: str, use_bias: bool = True) -> keras.layers.Dense:
  """Dense initialized like PyTorch's nn.Linear: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  limit = 1.0 / math.sqrt(fan_in)
  return keras.layers.Dense(
    units,
    use_bias=use_bias,
    name=name,
    kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
    bias_initializer=keras.initializers.RandomUniform(-limit, limit),
  )


def fc_block(x, units: int, dropout: float, name: str):
  x = torch_dense(units, x.shape[-1], name=f"{name}_dense")(x)
  x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
  x = keras.layers.LeakyReLU(LEAKY_SLOPE, name=f"{name}_act")(x)
  return keras.layers.Dropout(dropout, name=f"{name}_dropout")(x) if dropout > 0 else x


def identity_block(x, inner: int, dropout: float, name: str):
  outer = x.shape[-1]
  residual = fc_block(x, inner, dropout, name=f"{name}_fc")
  residual = torch_dense(outer, inner, name=f"{name}_out")(residual)
  x = keras.layers.Add(name=f"{name}_add")([x, residual])
  return keras.layers.LeakyReLU(LEAKY_SLOPE, name=f"{name}_act")(x)


def resnet_like_head(
  audio,
  video,
  num_classes: int,
  inner_size: int = 2048,
  av_id_block_num: int = 1,
  concat_id_block_num: int = 1,
  dropout: float = 0.5,
  context_gating: bool = False,
  video_part: float = 1.0,
  audio_part: float = 1.0,
):
  """The ResNetLike graph on two [B, *] tensors; reused by frame-level models that pool first."""
  parts = video_part + audio_part
  audio_width = int(round(2 * inner_size * audio_part / parts))
  video_width = int(round(2 * inner_size * video_part / parts))
  a = fc_block(audio, audio_width, dropout, name="audio_fc")
  for i in range(av_id_block_num):
    a = identity_block(a, audio_width, dropout, name=f"audio_id{i}")
  v = fc_block(video, video_width, dropout, name="video_fc")
  for i in range(av_id_block_num):
    v = identity_block(v, video_width, dropout, name=f"video_id{i}")
  x = keras.layers.Concatenate(name="concat_audio_video")([a, v])  # audio first, as in the seed
  for i in range(concat_id_block_num):
    x = identity_block(x, inner_size, dropout, name=f"concat_id{i}")
  x = fc_block(x, inner_size, dropout, name="head_fc")
  logits = torch_dense(num_classes, inner_size, name="logits")(x)
  if context_gating:
    gates = torch_dense(num_classes, num_classes, name="context_gate")(logits)
    logits = keras.layers.Multiply(name="gated_logits")([logits, keras.layers.Activation("sigmoid")(gates)])
  return logits


@register("ResNetLike", kind=VIDEO)
def resnet_like(
  num_classes: int = 3862,
  feature_sizes=(1024, 128),
  inner_size: int = 2048,
  av_id_block_num: int = 1,
  concat_id_block_num: int = 1,
  dropout: float = 0.5,
  context_gating: bool = False,
  video_part: float = 1.0,
  audio_part: float = 1.0,
) -> keras.Model:
  inputs = video_inputs(feature_sizes)
  rgb, audio = inputs["mean_rgb"], inputs["mean_audio"]
  logits = resnet_like_head(
    audio,
    rgb,
    num_classes,
    inner_size,
    av_id_block_num,
    concat_id_block_num,
    dropout,
    context_gating,
    video_part,
    audio_part,
  )
  return keras.Model(inputs, logits, name="ResNetLike")
