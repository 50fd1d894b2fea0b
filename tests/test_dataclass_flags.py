"""Flags generated from experiment dataclasses: types, defaults, help, parsing and errors."""

import dataclasses
from typing import Dict, Optional, Tuple

import pytest
from absl import flags

from yt8m_tf.configs import dataclass_flags
from yt8m_tf.configs.dataclass_flags import setting
from yt8m_tf.data.synthetic import SyntheticConfig
from yt8m_tf.stacking.stacker import StackerConfig
from yt8m_tf.training.experiment import TrainConfig


@dataclasses.dataclass(frozen=True)
class _Example:
  name: str = setting(help="Required: no default.")
  count: int = setting(3, "An int.")
  rate: float = setting(0.5, "A float.")
  enabled: bool = setting(True, "A bool.")
  mode: str = setting("a", "An enum.", choices=("a", "b"))
  limit: Optional[int] = setting(None, "An optional int.")
  params: Dict[str, object] = setting({"x": 1}, "A dict.")
  sizes: Tuple[int, int] = setting((8, 2), "Ints.")
  words: Tuple[str, ...] = setting(("p", "q"), "Strings.")


def _parsed(*args) -> flags.FlagValues:
  values = flags.FlagValues()
  dataclass_flags.define_flags(_Example, values)
  values(["prog", *args])
  return values


def test_flags_carry_the_fields_types_defaults_and_help():
  values = _parsed("--name=n")
  assert dataclass_flags.values_from_flags(_Example, values) == dataclasses.asdict(_Example(name="n"))
  assert values["mode"].help.endswith("An enum.") and values["count"].help == "An int."
  assert [s.kind for s in dataclass_flags.flag_specs(_Example)] == [
    "string", "integer", "float", "bool", "enum", "integer", "json", "list", "list"
  ]  # fmt: skip


def test_command_line_values_become_field_values():
  values = _parsed(
    "--name=n", "--count=7", "--rate=2", "--noenabled", "--mode=b", "--limit=4", '--params={"y": [1]}',
    "--sizes=1,2", "--words=a,b,c",
  )  # fmt: skip
  config = _Example(**dataclass_flags.values_from_flags(_Example, values))
  assert config == _Example("n", 7, 2.0, False, "b", 4, {"y": [1]}, (1, 2), ("a", "b", "c"))


def test_bad_values_are_refused_naming_the_flag():
  with pytest.raises(flags.IllegalFlagValueError):
    _parsed("--name=n", "--mode=c")
  with pytest.raises(ValueError, match=r"--params='\[1\]' is not valid JSON|--params must be a JSON object"):
    dataclass_flags.values_from_flags(_Example, _parsed("--name=n", "--params=[1]"))
  with pytest.raises(ValueError, match=r"--params='\{' is not valid JSON"):
    dataclass_flags.values_from_flags(_Example, _parsed("--name=n", "--params={"))
  with pytest.raises(ValueError, match=r"--sizes=1,x: expected int items"):
    dataclass_flags.values_from_flags(_Example, _parsed("--name=n", "--sizes=1,x"))
  values = flags.FlagValues()
  dataclass_flags.define_flags(_Example, values)
  with pytest.raises(flags.IllegalFlagValueError, match="name"):  # a field without default is required
    values(["prog"])
    values.validate_all_flags()


def test_parse_value_reads_a_flagfile_string_as_the_flag_would():
  assert dataclass_flags.parse_value(_Example, "count", "12") == 12
  assert dataclass_flags.parse_value(_Example, "enabled", "false") is False
  assert dataclass_flags.parse_value(_Example, "limit", "None") is None
  assert dataclass_flags.parse_value(_Example, "sizes", "3,4") == (3, 4)
  assert dataclass_flags.parse_value(_Example, "params", '{"k": 2}') == {"k": 2}
  with pytest.raises(ValueError, match=r"--count=1.5: invalid literal for int"):
    dataclass_flags.parse_value(_Example, "count", "1.5")
  with pytest.raises(KeyError):
    dataclass_flags.parse_value(_Example, "nope", "1")


@pytest.mark.parametrize("config_class", [TrainConfig, StackerConfig, SyntheticConfig])
def test_every_experiment_setting_is_a_documented_flag_with_the_fields_default(config_class):
  values = flags.FlagValues()
  names = dataclass_flags.define_flags(config_class, values, mark_required=False)
  assert names == [f.name for f in dataclasses.fields(config_class)]
  for spec in dataclass_flags.flag_specs(config_class):
    assert spec.help, f"{config_class.__name__}.{spec.name} has no help text"
  required = {"model": "Logistic", "train_dir": "d", "train_data_pattern": "p"}
  required = {k: v for k, v in required.items() if k in names}
  values(["prog", *(f"--{k}={v}" for k, v in required.items()), "--seed=3"])
  read = dataclass_flags.values_from_flags(config_class, values)
  fold = {"fold": 0} if config_class is TrainConfig else {}  # TrainConfig needs a fold or eval data
  assert config_class(**{**read, **fold}) == config_class(**required, **fold, seed=3)
