"""Model registry: `build(name, num_classes=..., **params)` returns a Keras model.

Every model takes the readers' feature dict (video level: `mean_rgb`, `mean_audio`; frame level:
`rgb`, `audio`, `num_frames`) and returns logits [B, num_classes]. A builder registers itself with
`@register("Name", kind="video"|"frame")`; `kind` tells training which reader and inputs to use.
A family of models that differ only in numbers is one builder plus a table of `register_variant` calls.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Mapping

import keras

from yt8m_tf.data.schema import NUM_CLASSES_2018

VIDEO, FRAME = "video", "frame"


@dataclasses.dataclass(frozen=True)
class ModelEntry:
  name: str
  kind: str
  builder: Callable[..., keras.Model]

  @property
  def params(self) -> dict[str, object]:
    """The builder's keyword parameters and their defaults."""
    signature = inspect.signature(self.builder)
    return {
      p.name: p.default for p in signature.parameters.values() if p.default is not inspect.Parameter.empty
    }


_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}  # other names of a model (the starter's class names), resolved by `get`


def register(name: str, kind: str, aliases: tuple[str, ...] = ()):
  if kind not in (VIDEO, FRAME):
    raise ValueError(f"kind must be {VIDEO!r} or {FRAME!r}, got {kind!r}")

  def decorator(builder):
    for key in (name, *aliases):
      if key in _REGISTRY or key in _ALIASES:
        raise ValueError(f"model {key!r} is already registered")
    _REGISTRY[name] = ModelEntry(name, kind, builder)
    _ALIASES.update({alias: name for alias in aliases})
    return builder

  return decorator


def register_variant(
  name: str,
  kind: str,
  builder: Callable[..., keras.Model],
  fixed: Mapping[str, object] | None = None,
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

  def variant(**params):
    return builder(**fixed, **{**defaults, **params})

  variant.__signature__ = signature.replace(parameters=parameters)  # what ModelEntry.params reads
  variant.__name__ = variant.__qualname__ = f"{builder.__name__}[{name}]"
  variant.__doc__, variant.__module__ = builder.__doc__, builder.__module__
  return register(name, kind)(variant)


def get(name: str) -> ModelEntry:
  """The entry of a registered name or alias (`get("LogisticModel").name == "Logistic"`)."""
  try:
    return _REGISTRY[_ALIASES.get(name, name)]
  except KeyError:
    close = difflib.get_close_matches(name, _REGISTRY, n=3)
    hint = f"; did you mean {close}?" if close else ""
    raise KeyError(f"unknown model {name!r}{hint} Known models: {sorted(_REGISTRY)}") from None


def build(name: str, num_classes: int = NUM_CLASSES_2018, **params) -> keras.Model:
  """Builds the registered model `name`; unknown params are an error naming the valid ones."""
  entry = get(name)
  unknown = set(params) - set(entry.params)
  if unknown:
    raise TypeError(
      f"model {name!r} got unknown params {sorted(unknown)}; valid params: {sorted(entry.params)}"
    )
  return _inputs_by_name(entry.builder(num_classes=num_classes, **params))


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
