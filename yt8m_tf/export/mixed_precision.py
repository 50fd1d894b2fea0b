"""Exports that compute in mixed precision: 16-bit layers on float32 weights, the class scores in float32.

Training's `--mixed_precision` (`TrainConfig.mixed_precision`) builds a model under Keras' mixed policy,
and its saved model computes that way; this module gives a float32-trained model the same computation for
serving. A Keras config cannot do it: every layer serializes its dtype policy, so the output layers (made
with `models.layers.OUTPUT_DTYPE`) and the hidden ones all read "float32" in a float32 model's config. The
registry builder can: built under the mixed policy it makes the hidden layers mixed and keeps the class
scores float32, so the model is rebuilt from its (name, params) and given the float32 weights.

The weights stay float32 under a mixed policy (Keras casts them to the compute dtype in each call), so the
export stores, and its size account counts, exactly what a float32 export does.
"""

from __future__ import annotations

from typing import Mapping, Optional, Tuple, Union

import keras

from yt8m_tf import models
from yt8m_tf.data.schema import Schema

FLOAT32 = "float32"
MIXED_POLICIES = ("mixed_bfloat16", "mixed_float16")

# A registry model's name and builder params, as in TrainConfig.model and TrainConfig.model_params.
Build = Tuple[str, Mapping[str, object]]


def compute_policy(model: keras.Model) -> str:
  """The mixed policy some layer of `model` computes under, or "float32" when none computes in 16 bits."""
  for layer in model._flatten_layers(include_self=False):
    if layer.dtype_policy.name in MIXED_POLICIES:
      return layer.dtype_policy.name
  return FLOAT32


def resolve_policy(mixed_precision: Union[bool, str]) -> Optional[str]:
  """None for False; this machine's policy for True (as training picks it: float16 where a GPU is
  visible, bfloat16 on CPUs); a policy name as given (to export on one machine for another)."""
  if mixed_precision is False or mixed_precision is None:
    return None
  if mixed_precision is True:
    from yt8m_tf.training import experiment  # training imports models, data...: only when asked

    return experiment.mixed_precision_policy()
  if mixed_precision not in MIXED_POLICIES:
    raise ValueError(f"mixed_precision must be a bool or one of {MIXED_POLICIES}, got {mixed_precision!r}")
  return mixed_precision


def rebuild_under_policy(model: keras.Model, build: Build, schema: Schema, policy: str) -> keras.Model:
  """The registry model `build` = (name, params) built for `schema` under the Keras dtype policy
  `policy`, holding `model`'s weights (which must be those of the same architecture)."""
  from yt8m_tf.training import experiment

  name, params = build
  with experiment.dtype_policy(policy):
    rebuilt = models.build(name, schema, **dict(params))
  expected = [tuple(v.shape) for v in model.weights]
  got = [tuple(v.shape) for v in rebuilt.weights]
  if expected != got:
    raise ValueError(
      f"model {name!r} rebuilt with params {dict(params)} does not have the weights of {model.name!r} "
      f"({len(got)} weights vs {len(expected)}, shapes differ); give the (name, params) it was built with"
    )
  rebuilt.set_weights(model.get_weights())
  return rebuilt


def with_policy(
  model: keras.Model, mixed_precision: Union[bool, str], build: Optional[Build], schema: Schema
) -> keras.Model:
  """`model` computing under the mixed policy `mixed_precision` asks for (see `resolve_policy`): the model
  itself when it already does (trained with --mixed_precision) or when nothing is asked, else rebuilt by
  `build`. A model that computes mixed is never turned back to float32 here: it serves as it trained."""
  policy = resolve_policy(mixed_precision)
  if policy is None or compute_policy(model) == policy:
    return model
  if build is None:
    raise ValueError(
      f"exporting {model.name!r} to compute in {policy} rebuilds it from its registry name and params: "
      "give build=(name, params) (TrainConfig.model and model_params)"
    )
  return rebuild_under_policy(model, build, schema, policy)
