"""Model registry: `build(name, num_classes=..., **params)` returns a Keras model.

Every model takes the readers' feature dict (video level: `mean_rgb`, `mean_audio`; frame level:
`rgb`, `audio`, `num_frames`) and returns logits [B, num_classes]. A builder registers itself with
`@register("Name", kind="video"|"frame")`; `kind` tells training which reader and inputs to use.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Callable, Dict, List

import keras

VIDEO, FRAME = "video", "frame"


@dataclasses.dataclass(frozen=True)
class ModelEntry:
  name: str
  kind: str
  builder: Callable[..., keras.Model]

  @property
  def params(self) -> Dict[str, object]:
    """The builder's keyword parameters and their defaults."""
    signature = inspect.signature(self.builder)
    return {
      p.name: p.default for p in signature.parameters.values() if p.default is not inspect.Parameter.empty
    }


_REGISTRY: Dict[str, ModelEntry] = {}


def register(name: str, kind: str):
  if kind not in (VIDEO, FRAME):
    raise ValueError(f"kind must be {VIDEO!r} or {FRAME!r}, got {kind!r}")

  def decorator(builder):
    if name in _REGISTRY:
      raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = ModelEntry(name, kind, builder)
    return builder

  return decorator


def get(name: str) -> ModelEntry:
  try:
    return _REGISTRY[name]
  except KeyError:
    close = difflib.get_close_matches(name, _REGISTRY, n=3)
    hint = f"; did you mean {close}?" if close else ""
    raise KeyError(f"unknown model {name!r}{hint} Known models: {sorted(_REGISTRY)}") from None


def build(name: str, num_classes: int = 3862, **params) -> keras.Model:
  """Builds the registered model `name`; unknown params are an error naming the valid ones."""
  entry = get(name)
  unknown = set(params) - set(entry.params)
  if unknown:
    raise TypeError(
      f"model {name!r} got unknown params {sorted(unknown)}; valid params: {sorted(entry.params)}"
    )
  return entry.builder(num_classes=num_classes, **params)


def list_models(kind: str | None = None) -> List[str]:
  return sorted(n for n, e in _REGISTRY.items() if kind is None or e.kind == kind)
