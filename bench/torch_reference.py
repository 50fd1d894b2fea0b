"""PyTorch reference of ResNetLike, for bench_training.py --torch only: the library never imports torch.

The graph is that of `yt8m_tf.models.heads.ResNetLikeHead` (see yt8m_tf/models/video/resnet_like.py), built
from the same hyperparameters, so a Keras build and this one have the same layers, widths and parameters:

  FCBlock(o)      = Linear(o) -> BatchNorm1d -> LeakyReLU(0.01) -> Dropout(p)
  Identity(o, i)  = LeakyReLU(x + Linear(o)(FCBlock(i)(x)))
  audio: FCBlock(a_w) -> Identity blocks; video likewise; concat([audio, video]) -> Identity(2*inner, inner)
         blocks -> FCBlock(inner) -> Linear(num_classes) [-> logits * sigmoid(Linear(logits))]

The training set-up is `trainer.compile_model`'s: BCE-with-logits (mean), Adam, gradient global-norm clip 10.
Requires `pip install torch==2.13.0` (CPU wheel).
"""

from __future__ import annotations

import torch
from torch import nn

from yt8m_tf.models.heads import LEAKY_SLOPE, ResNetLikeHead

# Keras Adam's epsilon (PyTorch's default is 1e-8), as trainer.make_optimizer builds it.
KERAS_ADAM_EPSILON = 1e-7


class FCBlock(nn.Sequential):
  def __init__(self, fan_in: int, units: int, dropout: float, bn_momentum: float):
    # nn.Linear and nn.BatchNorm1d defaults are what torch_dense / torch_batch_norm reproduce in Keras;
    # PyTorch's momentum weighs the new batch (1 - Keras' momentum).
    batch_norm = nn.BatchNorm1d(units, momentum=1.0 - bn_momentum)
    layers = [nn.Linear(fan_in, units), batch_norm, nn.LeakyReLU(LEAKY_SLOPE)]
    if dropout > 0:  # the Keras fc_block has no Dropout layer at 0 either
      layers.append(nn.Dropout(dropout))
    super().__init__(*layers)


class Identity(nn.Module):
  def __init__(self, outer: int, inner: int, dropout: float, bn_momentum: float):
    super().__init__()
    self.residual = nn.Sequential(FCBlock(outer, inner, dropout, bn_momentum), nn.Linear(inner, outer))
    self.activation = nn.LeakyReLU(LEAKY_SLOPE)

  def forward(self, x):
    return self.activation(x + self.residual(x))


class ResNetLike(nn.Module):
  """forward(mean_rgb [B, 1024], mean_audio [B, 128]) -> logits [B, num_classes]."""

  def __init__(self, head: ResNetLikeHead, num_classes: int, rgb_size: int = 1024, audio_size: int = 128):
    super().__init__()
    inner, dropout, momentum = head.inner_size, head.dropout, head.bn_momentum
    parts = head.video_part + head.audio_part
    audio_width = round(2 * inner * head.audio_part / parts)
    video_width = round(2 * inner * head.video_part / parts)
    self.audio = nn.Sequential(
      FCBlock(audio_size, audio_width, dropout, momentum),
      *(Identity(audio_width, audio_width, dropout, momentum) for _ in range(head.av_id_block_num)),
    )
    self.video = nn.Sequential(
      FCBlock(rgb_size, video_width, dropout, momentum),
      *(Identity(video_width, video_width, dropout, momentum) for _ in range(head.av_id_block_num)),
    )
    self.head = nn.Sequential(
      *(
        Identity(audio_width + video_width, inner, dropout, momentum) for _ in range(head.concat_id_block_num)
      ),
      FCBlock(audio_width + video_width, inner, dropout, momentum),
      nn.Linear(inner, num_classes),
    )
    self.context_gate = nn.Linear(num_classes, num_classes) if head.context_gating else None

  def forward(self, mean_rgb, mean_audio):
    x = torch.cat([self.audio(mean_audio), self.video(mean_rgb)], dim=1)  # audio first, as the Keras head
    logits = self.head(x)
    if self.context_gate is not None:
      logits = logits * torch.sigmoid(self.context_gate(logits))
    return logits


def build(num_classes: int, **head_params) -> ResNetLike:
  """The PyTorch twin of `models.build("ResNetLike", num_classes=..., **head_params)`; unknown params raise
  as they do there (ResNetLikeHead's fields and defaults are shared)."""
  return ResNetLike(ResNetLikeHead(**head_params), num_classes)


def weight_counts(model: nn.Module) -> tuple[int, int]:
  """(all, trainable) as Keras counts them: BatchNorm's running mean and variance are weights there
  (non-trainable), PyTorch keeps them as buffers; num_batches_tracked has no Keras counterpart."""
  trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
  running_stats = sum(
    b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var"))
  )
  return trainable + running_stats, trainable


class Trainer:
  """One training step and one prediction of `model` on fixed tensors, set up as trainer.compile_model."""

  def __init__(self, model: nn.Module, learning_rate: float = 1e-3, clip_norm: float = 10.0):
    self.model, self.clip_norm = model, clip_norm
    self.optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, eps=KERAS_ADAM_EPSILON)
    self.loss = nn.BCEWithLogitsLoss()  # mean over examples and classes, as Keras' BinaryCrossentropy

  def train_step(self, mean_rgb, mean_audio, labels):
    self.model.train()
    self.optimizer.zero_grad(set_to_none=True)
    loss = self.loss(self.model(mean_rgb, mean_audio), labels)
    loss.backward()
    nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)  # global norm, as global_clipnorm
    self.optimizer.step()
    return loss

  def predict(self, mean_rgb, mean_audio):
    self.model.eval()
    with torch.inference_mode():
      return self.model(mean_rgb, mean_audio).numpy()
