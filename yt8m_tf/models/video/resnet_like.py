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
`heads.ResNetLikeHead`, which SoftBoW shares; its fields are the params.
"""

import dataclasses

import keras

from yt8m_tf.data.schema import Schema
from yt8m_tf.models.heads import ResNetLikeHead
from yt8m_tf.models.inputs import video_inputs
from yt8m_tf.models.registry import VIDEO, register_variant


def resnet_like(schema: Schema, **head_params) -> keras.Model:
  inputs = video_inputs(schema)
  head = ResNetLikeHead(**head_params)
  logits = head(inputs["mean_audio"], inputs["mean_rgb"], schema.num_classes)
  return keras.Model(inputs, logits, name="ResNetLike")


register_variant("ResNetLike", VIDEO, resnet_like, **dataclasses.asdict(ResNetLikeHead()))
