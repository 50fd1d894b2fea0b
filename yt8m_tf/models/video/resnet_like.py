"""ResNetLike: the seed's residual MLP over separate audio and video branches (seed_method.md §2.1).

  FCBlock(o)      = Dense(o) -> BatchNorm -> LeakyReLU(0.01) -> Dropout(p)
  Identity(o, i)  = LeakyReLU(x + Dense(o)(FCBlock(i)(x)))        (no BN after the second Dense)
  audio: FCBlock(a_w) -> av_id_block_num x Identity(a_w, a_w)
  video: FCBlock(v_w) -> av_id_block_num x Identity(v_w, v_w)
  head:  concat([audio, video]) -> concat_id_block_num x Identity(2*inner, inner)
         -> FCBlock(inner) -> Dense(num_classes) [-> logits * sigmoid(Dense(logits)) if context_gating]

with a_w = 2*inner*audio_part/(audio_part+video_part), v_w likewise. PyTorch defaults are kept explicitly:
LeakyReLU slope 0.01 (Keras' default is 0.3), BatchNorm momentum 0.9 / epsilon 1e-5, and nn.Linear's
U(+-1/sqrt(fan_in)) initialization of weights and biases. 52.3M parameters at the defaults. The graph is
`heads.resnet_like_head`, which SoftBoW shares.
"""

import keras

from yt8m_tf.models.heads import resnet_like_head
from yt8m_tf.models.inputs import video_inputs
from yt8m_tf.models.registry import VIDEO, register


@register("ResNetLike", kind=VIDEO)
def resnet_like(
  num_classes: int,
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
