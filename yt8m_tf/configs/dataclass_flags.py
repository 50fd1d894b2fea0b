"""absl flags generated from experiment dataclasses, so a setting is declared once.

A dataclass field declared with `setting(default, "help text", choices=...)` becomes a flag of the same
name, type, default and help (`define_flags`); `values_from_flags` reads them back as field values, and
`parse_value` converts one `--name=value` string the same way (a flagfile line). Presets are instances
of the same dataclasses and the saved run config is their JSON, so flags, flagfiles, presets and
config.json cannot disagree on a name, a type or a default.

Field types map to flags as follows: int, float, bool, str (an enum when the field has `choices`),
Optional[...] of those (default None), dicts (a JSON object on the command line), tuples of str, int or
float (a comma-separated list).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Dict, Iterable, List, Optional, Tuple

from absl import flags

_KINDS = {int: "integer", float: "float", bool: "bool", str: "string"}


def setting(default=dataclasses.MISSING, help: str = "", *, choices: Optional[Iterable[str]] = None, **field):
  """A dataclass field with the help text (and allowed values) its flag will show."""
  metadata = {"help": help}
  if choices is not None:
    metadata["choices"] = tuple(choices)
  if isinstance(default, (dict, list)):  # mutable defaults need a factory
    value = default
    return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata, **field)
  return dataclasses.field(default=default, metadata=metadata, **field)


@dataclasses.dataclass(frozen=True)
class FlagSpec:
  """How one dataclass field appears on the command line."""

  name: str
  kind: str  # "integer", "float", "bool", "string", "enum", "json" or "list"
  default: object  # the field's default (None when the field has none)
  help: str
  choices: tuple = ()
  required: bool = False  # the field has no default
  optional: bool = False  # Optional[...]: "None" (or nothing) in a flagfile means None
  element: type = str  # the item type of a "list" field


def flag_specs(cls, include: Optional[Iterable[str]] = None) -> List[FlagSpec]:
  """The flag of each field of `cls` (of those in `include` if given; other fields may have any type)."""
  include = None if include is None else set(include)
  hints = typing.get_type_hints(cls)
  specs = []
  for field in dataclasses.fields(cls):
    if not field.init or (include is not None and field.name not in include):
      continue
    hint = hints[field.name]
    kind, element = _kind(hint, field.name, cls)
    optional = typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)
    choices = tuple(field.metadata.get("choices", ()))
    if choices and kind == "string":
      kind = "enum"
    if field.default is not dataclasses.MISSING:
      default, required = field.default, False
    elif field.default_factory is not dataclasses.MISSING:
      default, required = field.default_factory(), False
    else:
      default, required = None, True
    specs.append(
      FlagSpec(
        field.name, kind, default, field.metadata.get("help", ""), choices, required, optional, element
      )
    )
  return specs


def _kind(hint, name: str, cls) -> Tuple[str, type]:
  """(flag kind, item type of a list) of a field's type hint."""
  if typing.get_origin(hint) is typing.Union:  # Optional[X]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(args) != 1:
      raise TypeError(f"{cls.__name__}.{name}: only Optional[X] unions become flags, got {hint}")
    hint = args[0]
  origin = typing.get_origin(hint) or hint
  if origin in (dict, Dict):
    return "json", str
  if origin in (tuple, list):
    items = {a for a in typing.get_args(hint) if a is not Ellipsis} or {str}
    if len(items) != 1 or next(iter(items)) not in (str, int, float):
      raise TypeError(f"{cls.__name__}.{name}: list flags hold one of str, int, float, got {hint}")
    return "list", items.pop()
  if hint in _KINDS:
    return _KINDS[hint], str
  raise TypeError(f"{cls.__name__}.{name}: no flag type for {hint}")


def define_flags(
  cls,
  flag_values: flags.FlagValues = flags.FLAGS,
  *,
  include: Optional[Iterable[str]] = None,
  exclude: Iterable[str] = (),
  mark_required: bool = True,
  defaults_from: Optional[str] = None,
) -> List[str]:
  """Defines a flag per field of `cls` (those in `include` if given, less `exclude`); returns their names.

  Fields without a default become required flags unless `mark_required=False` (e.g. a scratch
  FlagValues). With `defaults_from` (e.g. "the preset's"), every flag defaults to unset and its help says
  where the default comes from instead: for configs whose defaults depend on another choice.
  """
  names = []
  for spec in _selected(cls, include, exclude):
    help_text = spec.help or spec.name.replace("_", " ")
    default = spec.default
    if defaults_from is not None:
      default, help_text = None, f"{help_text} Default: {defaults_from}."
    args = dict(flag_values=flag_values)
    if spec.kind == "enum":
      flags.DEFINE_enum(spec.name, default, list(spec.choices), help_text, **args)
    elif spec.kind == "json":
      default = None if default is None else json.dumps(default)
      flags.DEFINE_string(spec.name, default, f"{help_text} (a JSON object)", **args)
    elif spec.kind == "list":
      default = None if default is None else [str(item) for item in default]
      flags.DEFINE_list(spec.name, default, help_text, **args)
    else:
      getattr(flags, f"DEFINE_{spec.kind}")(spec.name, default, help_text, **args)
    if spec.required and mark_required and defaults_from is None:
      flags.mark_flag_as_required(spec.name, flag_values=flag_values)
    names.append(spec.name)
  return names


def values_from_flags(
  cls,
  flag_values: flags.FlagValues = flags.FLAGS,
  *,
  include: Optional[Iterable[str]] = None,
  exclude: Iterable[str] = (),
  skip_unset: bool = False,
) -> dict:
  """The field values the flags hold (every selected field that has a flag), converted to the field
  types; with `skip_unset`, only the flags that hold a value. A JSON flag that does not parse is a
  ValueError naming the flag."""
  values = {}
  for spec in _selected(cls, include, exclude):
    if spec.name not in flag_values:
      continue
    value = flag_values[spec.name].value
    if value is None and skip_unset:
      continue
    values[spec.name] = _from_flag(spec, value)
  return values


def _selected(cls, include: Optional[Iterable[str]], exclude: Iterable[str]) -> List[FlagSpec]:
  known = {field.name for field in dataclasses.fields(cls) if field.init}
  unknown = (set(include or ()) | set(exclude)) - known
  if unknown:
    raise KeyError(f"{cls.__name__} has no fields {sorted(unknown)}")
  return flag_specs(cls, (known if include is None else set(include)) - set(exclude))


def json_object(name: str, raw: str) -> dict:
  """The JSON object a flag `--name` holds; a ValueError naming the flag otherwise."""
  try:
    value = json.loads(raw)
  except json.JSONDecodeError as e:
    raise ValueError(f"--{name}={raw!r} is not valid JSON: {e}") from None
  if not isinstance(value, dict):
    raise ValueError(f"--{name} must be a JSON object, got {value!r}")
  return value


def _from_flag(spec: FlagSpec, value):
  if spec.kind == "json" and isinstance(value, str):
    value = json_object(spec.name, value)
  elif spec.kind == "list" and value is not None:
    try:
      value = tuple(spec.element(item) for item in value)
    except ValueError:
      raise ValueError(f"--{spec.name}={','.join(value)}: expected {spec.element.__name__} items") from None
  return value


def parse_value(cls, name: str, raw: str):
  """One `--name=value` string as the field's value, parsed as the flag would parse it."""
  if name not in {field.name for field in dataclasses.fields(cls)}:
    raise KeyError(name)
  (spec,) = flag_specs(cls, {name})
  if spec.optional and raw in ("", "None"):
    return None
  scratch = flags.FlagValues()
  define_flags(cls, scratch, include={name}, mark_required=False)
  try:
    scratch[name].parse(raw)
  except flags.Error as e:  # IllegalFlagValueError and kin: the message says what was expected
    raise ValueError(str(e)) from None
  return _from_flag(spec, scratch[name].value)
