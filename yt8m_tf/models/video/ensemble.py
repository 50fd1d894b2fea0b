"""EnsembleModel: the seed's distilled TensorFlow model, towers A-F trained jointly (seed_method.md §5.3).

  x = L2-normalize(concat(mean_rgb, mean_audio))   one norm over all 1152 dims, inside the model
  v = x[:, :1024], a = x[:, 1024:]                  (the actual feature sizes)
  block(n, act) = Dense(n) -> BN -> act             out(n) = Dense(n) -> ReLU (no BN)

  Tower A: x -> block(1024, swish) x2 -> out(1024)
  Tower B: x -> block(1024, ReLU) -> out(1024)
  Tower C: concat(v -> block(1024, LeakyReLU), a -> block(256, LeakyReLU)) -> out(1024)
  Tower D: concat(v -> block(1024, swish) x2, a -> block(256, swish) x2) -> out(1024)
  Tower E: x -> block(4096, ReLU) x4 -> out(2048)
  Tower F: x -> block(2048, ReLU) x5 -> out(2048)
  Head:    concat(A, B, C, D, E, F, x) (9344) -> block(8192, ReLU) -> block(6000, ReLU) -> Dense(num_classes)

As in the seed's slim code: every Dense is bias-free with Glorot-uniform weights; every BN has center and
scale, momentum 0.999 (slim's decay) and epsilon 1e-3; swish = x * sigmoid(x); LeakyReLU slope 0.2
(tf.nn.leaky_relu's default). The towers are embeddings, not classifiers, so the model is one Keras graph
trained end to end, which is what the seed trained and exported.

Deliberate differences from the seed:
- The model returns logits, like every registered model; the seed's final sigmoid belongs to the loss and
  to prediction.
- BN normalizes with its moving statistics at inference (Keras with training=False). The seed ran every BN
  in training mode at eval and export too (its `is_training` flag was ignored), so a video's prediction
  depended on the other videos in its inference batch; that was a bug (seed_method.md §9 item 4).

Options beyond the seed, off by default so that `EnsembleModel` with no params is the seed's model:
- `output_bias=True` gives the last Dense a bias. The seed's bias-free head starts every class at
  probability 0.5 for a task with ~3 positives in thousands of classes; the first hundreds of steps go to
  pulling every output down. With a bias, training can start it at the class prior's log-odds
  (`TrainConfig.output_bias_init="prior"`); the bias adds `num_classes` parameters.
- `input_normalization`: "l2" (the seed's single L2 norm over the 1152 dims) or "none".

Size at the seed's widths with the 2018 classes: 247,233,888 parameters (Dense weights plus BN gamma, beta,
moving mean and moving variance), 0.989 GB in float32. `ensemble_parameter_count` computes the count by
arithmetic, without allocating weights. For small runs, `width_scale` multiplies every hidden width and
`head_widths` overrides the head's hidden widths.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from yt8m_tf.data.schema import Schema
from yt8m_tf.models.inputs import concat_video_inputs
from yt8m_tf.models.layers import OUTPUT_DTYPE
from yt8m_tf.models.registry import VIDEO, register

LEAKY_SLOPE = 0.2
BN_MOMENTUM = 0.999
BN_EPSILON = 1e-3
# The seed's hidden widths: towers A-D and their outputs, the audio branches of C and D, tower E's
# blocks, tower F's blocks and the outputs of E and F.
SEED_WIDTHS = {"tower": 1024, "audio": 256, "wide": 4096, "deep": 2048}
SEED_HEAD_WIDTHS = (8192, 6000)
WIDE_DEPTH, DEEP_DEPTH = 4, 5
# Parameters per BN unit: gamma, beta, moving mean, moving variance.
BN_PARAMS_PER_UNIT = 4


@keras.saving.register_keras_serializable(package="yt8m_tf")
class ColumnSlice(keras.layers.Layer):
  """x[:, start:stop] of a [B, D] tensor, as a layer so that the functional model serializes."""

  def __init__(self, start: int, stop: int, **kwargs):
    super().__init__(**kwargs)
    self.start = start
    self.stop = stop

  def call(self, x):
    return x[:, self.start : self.stop]

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.stop - self.start)

  def get_config(self):
    return {**super().get_config(), "start": self.start, "stop": self.stop}


def ensemble_widths(width_scale: float = 1.0, head_widths: Sequence[int] | None = None) -> dict[str, object]:
  """The hidden widths used by `ensemble_model`: the seed's, times `width_scale` (at least 1)."""
  if width_scale <= 0:
    raise ValueError(f"width_scale must be positive, got {width_scale}")

  def scaled(width):
    return max(1, round(width * width_scale))

  widths = {key: scaled(width) for key, width in SEED_WIDTHS.items()}
  head = [scaled(w) for w in SEED_HEAD_WIDTHS] if head_widths is None else [int(w) for w in head_widths]
  if not head or min(head) <= 0:
    raise ValueError(f"head_widths must be a non-empty list of positive widths, got {head_widths}")
  widths["head"] = head
  return widths


INPUT_NORMALIZATIONS = ("l2", "none")


def _dense(units: int, name: str, use_bias: bool = False, dtype=None) -> keras.layers.Dense:
  return keras.layers.Dense(
    units, use_bias=use_bias, kernel_initializer="glorot_uniform", name=name, dtype=dtype
  )


def _activation(kind: str, name: str) -> keras.layers.Layer:
  if kind == "relu":
    return keras.layers.ReLU(name=name)
  if kind == "swish":
    return keras.layers.Activation("silu", name=name)  # silu(x) = x * sigmoid(x)
  if kind == "leaky_relu":
    return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=name)
  raise ValueError(f"unknown activation {kind!r}")


def _block(x, units: int, activation: str, prefix: str, index: int, bn_momentum: float):
  """Dense -> BN -> activation, named {prefix}_dense_{index}, {prefix}_bn_{index}, ..."""
  x = _dense(units, f"{prefix}_dense_{index}")(x)
  x = keras.layers.BatchNormalization(
    momentum=bn_momentum, epsilon=BN_EPSILON, center=True, scale=True, name=f"{prefix}_bn_{index}"
  )(x)
  return _activation(activation, f"{prefix}_{activation}_{index}")(x)


def _blocks(x, widths: Sequence[int], activation: str, prefix: str, bn_momentum: float):
  for index, units in enumerate(widths, start=1):
    x = _block(x, units, activation, prefix, index, bn_momentum)
  return x


def _tower_output(x, units: int, prefix: str):
  """Every tower ends in Dense -> ReLU without BN: a non-negative embedding for the head."""
  x = _dense(units, f"{prefix}_dense_out")(x)
  return _activation("relu", f"{prefix}_relu_out")(x)


def _two_branch_tower(v, a, widths, depth: int, activation: str, prefix: str, bn_momentum: float):
  """Towers C and D: separate video and audio stacks, concatenated, then the output layer."""
  v = _blocks(v, [widths["tower"]] * depth, activation, f"{prefix}_video", bn_momentum)
  a = _blocks(a, [widths["audio"]] * depth, activation, f"{prefix}_audio", bn_momentum)
  x = keras.layers.Concatenate(name=f"{prefix}_concat")([v, a])
  return _tower_output(x, widths["tower"], prefix)


def _check_features(schema: Schema):
  if len(schema.feature_sizes) != 2:
    raise ValueError(
      "EnsembleModel takes exactly two features (video, audio); "
      f"got feature_sizes={list(schema.feature_sizes)}, feature_names={list(schema.feature_names)}"
    )


@register("EnsembleModel", kind=VIDEO, any_features=True)
def ensemble_model(
  schema: Schema,
  width_scale: float = 1.0,
  head_widths: Sequence[int] | None = None,
  bn_momentum: float = BN_MOMENTUM,
  output_bias: bool = False,
  input_normalization: str = "l2",
  name: str = "EnsembleModel",
) -> keras.Model:
  """The joint EnsembleModel (towers A-F + head) returning logits [B, num_classes].

  The first feature is the video one (v), the second the audio one (a). `width_scale` multiplies every
  hidden width of the towers and, unless `head_widths` is given, of the head. `bn_momentum` 0.999 (the
  seed's) suits millions of steps; a run of a few hundred steps needs ~0.99, or the moving statistics
  used at inference are still mostly their initial values. `output_bias` and `input_normalization`: see
  the module docstring.
  """
  _check_features(schema)
  if input_normalization not in INPUT_NORMALIZATIONS:
    raise ValueError(
      f"input_normalization must be one of {INPUT_NORMALIZATIONS}, got {input_normalization!r}"
    )
  widths = ensemble_widths(width_scale, head_widths)
  inputs, x = concat_video_inputs(schema, normalize=input_normalization == "l2")
  video_size, total_size = schema.feature_sizes[0], schema.total_feature_size
  v = ColumnSlice(0, video_size, name="video_slice")(x)
  a = ColumnSlice(video_size, total_size, name="audio_slice")(x)

  tower, wide, deep = widths["tower"], widths["wide"], widths["deep"]
  towers = [
    _tower_output(_blocks(x, [tower] * 2, "swish", "tower_a", bn_momentum), tower, "tower_a"),
    _tower_output(_blocks(x, [tower], "relu", "tower_b", bn_momentum), tower, "tower_b"),
    _two_branch_tower(v, a, widths, 1, "leaky_relu", "tower_c", bn_momentum),
    _two_branch_tower(v, a, widths, 2, "swish", "tower_d", bn_momentum),
    _tower_output(_blocks(x, [wide] * WIDE_DEPTH, "relu", "tower_e", bn_momentum), deep, "tower_e"),
    _tower_output(_blocks(x, [deep] * DEEP_DEPTH, "relu", "tower_f", bn_momentum), deep, "tower_f"),
  ]
  h = keras.layers.Concatenate(name="head_concat")([*towers, x])
  h = _blocks(h, widths["head"], "relu", "head", bn_momentum)
  logits = _dense(schema.num_classes, "logits", use_bias=output_bias, dtype=OUTPUT_DTYPE)(h)
  return keras.Model(inputs, logits, name=name)


def ensemble_parameter_count(
  schema: Schema = Schema(),
  width_scale: float = 1.0,
  head_widths: Sequence[int] | None = None,
  output_bias: bool = False,
) -> int:
  """Parameters of `ensemble_model(...)` with these arguments, by arithmetic: a bias-free Dense has
  fan_in * units weights, a BN 4 * units (gamma, beta, moving mean, moving variance); the optional
  output bias adds num_classes."""
  _check_features(schema)
  num_classes = schema.num_classes
  widths = ensemble_widths(width_scale, head_widths)

  def stack(fan_in, block_widths, out_width=None):
    """(Dense -> BN) per block width, then an optional bias-free Dense; returns (count, fan_out)."""
    count = 0
    for units in block_widths:
      count += fan_in * units + BN_PARAMS_PER_UNIT * units
      fan_in = units
    if out_width is not None:
      count += fan_in * out_width
      fan_in = out_width
    return count, fan_in

  video_size, audio_size = schema.feature_sizes
  input_size = video_size + audio_size
  tower, audio, wide, deep = widths["tower"], widths["audio"], widths["wide"], widths["deep"]

  def two_branch(depth):
    video_count, video_out = stack(video_size, [tower] * depth)
    audio_count, audio_out = stack(audio_size, [audio] * depth)
    out_count, out = stack(video_out + audio_out, [], tower)
    return video_count + audio_count + out_count, out

  towers = [
    stack(input_size, [tower] * 2, tower),
    stack(input_size, [tower], tower),
    two_branch(1),
    two_branch(2),
    stack(input_size, [wide] * WIDE_DEPTH, deep),
    stack(input_size, [deep] * DEEP_DEPTH, deep),
  ]
  head_count, _ = stack(sum(out for _, out in towers) + input_size, widths["head"], num_classes)
  return sum(count for count, _ in towers) + head_count + (num_classes if output_bias else 0)
