"""Model registry: `build(name, schema, **params)` returns a Keras model.

Every model takes the readers' feature dict (video level: `mean_rgb`, `mean_audio`; frame level:
`rgb`, `audio`, `num_frames`) and returns logits [B, num_classes]. A builder is `builder(schema, **params)`:
the data's Schema (feature names and sizes, class count, frame count) shapes its inputs and output, the
params are its own hyperparameters. It registers itself with `@register("Name", kind="video"|"frame")`;
`kind` tells training which reader and inputs to use, `any_features=True` that it concatenates whatever
features the schema names (the others read rgb and audio by name). A family of models that differ only in
numbers is one builder plus a table of `register_variant` calls.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Mapping

import keras

from yt8m_tf.data.schema import Schema

VIDEO, FRAME = "video", "frame"
# Schema fields `build` takes as keywords, for a schema that differs from the default in a few of them.
SCHEMA_FIELDS = ("num_classes", "feature_names", "feature_sizes", "max_frames")
_NAMED_FEATURES = Schema().feature_names  # what a model that reads features by name expects


@dataclasses.dataclass(frozen=True)
class ModelEntry:
  name: str
  kind: str
  builder: Callable[..., keras.Model]
  any_features: bool = False

  @property
  def params(self) -> dict[str, object]:
    """The builder's keyword parameters and their defaults."""
    signature = inspect.signature(self.builder)
    return {
      p.name: p.default for p in signature.parameters.values() if p.default is not inspect.Parameter.empty
    }


_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}  # other names of a model (the starter's class names), resolved by `get`


def register(name: str, kind: str, aliases: tuple[str, ...] = (), any_features: bool = False):
  if kind not in (VIDEO, FRAME):
    raise ValueError(f"kind must be {VIDEO!r} or {FRAME!r}, got {kind!r}")

  def decorator(builder):
    for key in (name, *aliases):
      if key in _REGISTRY or key in _ALIASES:
        raise ValueError(f"model {key!r} is already registered")
    _REGISTRY[name] = ModelEntry(name, kind, builder, any_features)
    _ALIASES.update({alias: name for alias in aliases})
    return builder

  return decorator


def register_variant(
  name: str,
  kind: str,
  builder: Callable[..., keras.Model],
  fixed: Mapping[str, object] | None = None,
  any_features: bool = False,
  **defaults,
) -> Callable[..., keras.Model]:
  """Registers `builder` under `name` with the arguments in `fixed` bound (they are not params of the
  variant) and `defaults` as the defaults of its other params. A builder taking **kwargs gets the
  `defaults` it does not name as new keyword params, so each variant lists exactly the params it accepts.
  """
  fixed = dict(fixed or {})
  signature = inspect.signature(builder)
  new = dict(defaults)
  parameters, takes_kwargs = [], False
  for parameter in signature.parameters.values():
    if parameter.kind is inspect.Parameter.VAR_KEYWORD:
      takes_kwargs = True
    elif parameter.name not in fixed:
      if parameter.name in new:
        parameter = parameter.replace(default=new.pop(parameter.name))
      parameters.append(parameter)
  if new and not takes_kwargs:
    raise TypeError(f"{builder.__name__} has no params {sorted(new)}")
  parameters += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in new.items()]

  def variant(schema, **params):
    return builder(schema, **fixed, **{**defaults, **params})

  variant.__signature__ = signature.replace(parameters=parameters)  # what ModelEntry.params reads
  variant.__name__ = variant.__qualname__ = f"{builder.__name__}[{name}]"
  variant.__doc__, variant.__module__ = builder.__doc__, builder.__module__
  return register(name, kind, any_features=any_features)(variant)


def get(name: str) -> ModelEntry:
  """The entry of a registered name or alias (`get("LogisticModel").name == "Logistic"`)."""
  try:
    return _REGISTRY[_ALIASES.get(name, name)]
  except KeyError:
    close = difflib.get_close_matches(name, _REGISTRY, n=3)
    hint = f"; did you mean {close}?" if close else ""
    raise KeyError(f"unknown model {name!r}{hint} Known models: {sorted(_REGISTRY)}") from None


def build(name: str, schema: Schema | None = None, **params) -> keras.Model:
  """Builds the registered model `name` for `schema` (default: the 2018 data's). Keywords naming a Schema
  field (`num_classes=10`, `max_frames=5`, ...) replace that field; unknown params are an error naming the
  valid ones."""
  entry = get(name)
  overrides = {key: params.pop(key) for key in SCHEMA_FIELDS if key in params}
  overrides.update({k: tuple(overrides[k]) for k in ("feature_names", "feature_sizes") if k in overrides})
  schema = dataclasses.replace(schema or Schema(), **overrides)
  unknown = set(params) - set(entry.params)
  if unknown:
    raise TypeError(
      f"model {name!r} got unknown params {sorted(unknown)}; valid params: {sorted(entry.params)}"
    )
  check_features(name, schema)
  return _inputs_by_name(entry.builder(schema, **params))


def check_features(name: str, schema: Schema) -> None:
  """Refuses features other than rgb and audio for a model that reads those two by name."""
  entry = get(name)
  if entry.any_features or tuple(schema.feature_names) == _NAMED_FEATURES:
    return
  able = [n for n in list_models(entry.kind) if _REGISTRY[n].any_features]
  raise ValueError(
    f"model {entry.name} reads rgb and audio by name; feature_names={','.join(schema.feature_names)} "
    f"needs a model that concatenates its inputs: {', '.join(able)}"
  )


def _inputs_by_name(model: keras.Model) -> keras.Model:
  """The same model (same layers and weights) taking its inputs as a list of named tensors.

  Keras picks each input of such a model from a feature dict by name and ignores other keys, so the
  readers' batches (which carry the string `id`) go to `fit`, `evaluate` and `predict` as they are; a model
  built on a dict of inputs would need exactly its own keys.
  """
  if not isinstance(model.input, dict):
    return model
  return keras.Model(list(model.input.values()), model.output, name=model.name)


def list_models(kind: str | None = None) -> list[str]:
  return sorted(n for n, e in _REGISTRY.items() if kind is None or e.kind == kind)
