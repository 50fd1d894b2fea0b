"""Several trained models of the same inputs as one Keras model that averages their logits.

The pipeline's students: N copies of one architecture trained with different seeds, exported as one
graph. The mean is over logits, as the seed averaged its fold models.
"""

from __future__ import annotations

from typing import Sequence

import keras


def average_logits(members: Sequence[keras.Model], name: str = "averaged") -> keras.Model:
  """A functional model on the members' inputs (they must share names and shapes) whose output is the
  mean of their logits. One member is returned as it is. The members are renamed `<name>_<i>`, since a
  functional model needs unique layer names and copies of one architecture share theirs."""
  if not members:
    raise ValueError("average_logits needs at least one model")
  if len(members) == 1:
    return members[0]
  specs = [{t.name: tuple(t.shape[1:]) for t in m.inputs} for m in members]
  if any(spec != specs[0] for spec in specs[1:]):
    raise ValueError(f"models to average must take the same inputs, got {specs}")
  inputs = {key: keras.Input(shape=shape, name=key) for key, shape in specs[0].items()}
  for index, member in enumerate(members):
    member.name = f"{name}_{index}"
  logits = keras.layers.Average(name="mean_logits")([member(inputs) for member in members])
  return keras.Model(inputs, logits, name=name)
