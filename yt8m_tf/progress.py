"""Progress of long loops, the same everywhere: a Keras progress bar with ETA on a terminal, and a plain line
at most every `interval_seconds` (plus the last one) when the output goes to a file or a pipe, so that logs
stay readable.

  progress = Progress(total=videos, label="[synth] train", unit="videos")
  for chunk in chunks:
    ...
    progress.update(done, frames=frames_done)

`keras_verbosity()` makes the same choice for `model.fit`: Keras draws its bar with carriage returns
whenever it runs on a POSIX system, terminal or not.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional

import keras

AUTO_VERBOSITY = -1  # TrainConfig.verbose: a bar on a terminal, one line per epoch otherwise


def is_terminal(stream=None) -> bool:
  stream = stream or sys.stdout
  return bool(getattr(stream, "isatty", lambda: False)())


def keras_verbosity(verbose: int = AUTO_VERBOSITY) -> int:
  """Keras' `verbose` for `fit`: `AUTO_VERBOSITY` becomes 1 (bar with ETA) on a terminal, else 2."""
  if verbose == AUTO_VERBOSITY:
    return 1 if is_terminal() else 2
  return verbose


def format_seconds(seconds: float) -> str:
  """`h:mm:ss`."""
  seconds = max(0, int(round(seconds)))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def eta_seconds(elapsed: float, done: float, total: float) -> Optional[float]:
  """Time left at the rate so far; None before anything is done."""
  if done <= 0 or total <= 0:
    return None
  return elapsed * max(total - done, 0) / done


class Progress:
  """`update(done, **values)` as work advances; the values (numbers or strings) are shown beside the count.
  `total=None`: the amount of work is not known (no percentage, no ETA, a rate instead). `bar` forces the
  display (default: a bar on a terminal)."""

  def __init__(
    self,
    total: Optional[int],
    label: str,
    unit: str = "items",
    interval_seconds: float = 10.0,
    log: Callable[[str], None] = print,
    bar: Optional[bool] = None,
    already_elapsed: float = 0.0,
  ):
    self.total = None if total is None else int(total)
    self.label = label
    self.unit = unit
    self.interval_seconds = interval_seconds
    self.log = log
    self._start = time.perf_counter() - already_elapsed  # work done before this object existed
    self._last_line = float("-inf")
    use_bar = is_terminal() if bar is None else bar
    self._bar = keras.utils.Progbar(self.total, unit_name=unit, stateless_metrics=()) if use_bar else None
    if self._bar is not None:
      log(label)

  @property
  def elapsed_seconds(self) -> float:
    return time.perf_counter() - self._start

  def line(self, done: int, **values) -> str:
    """`<label> 120/300 videos (40%), 0:00:12 so far, about 0:00:18 left, <key> <value>, ...`."""
    elapsed = self.elapsed_seconds
    if self.total is None:
      parts = [f"{self.label} {done} {self.unit}", f"{format_seconds(elapsed)} so far"]
      parts.append(f"{done / max(elapsed, 1e-9):.0f} {self.unit}/s")
    else:
      parts = [f"{self.label} {done}/{self.total} {self.unit}"]
      if self.total > 0:
        parts[0] += f" ({100 * done / self.total:.0f}%)"
      parts.append(f"{format_seconds(elapsed)} so far")
      left = eta_seconds(elapsed, done, self.total)
      if left is not None and done < self.total:
        parts.append(f"about {format_seconds(left)} left")
    parts += [f"{key.replace('_', ' ')} {value}" for key, value in values.items()]
    return ", ".join(parts)

  def update(self, done: int, **values) -> None:
    if self._bar is not None:
      self._bar.update(done, values=[(k, v) for k, v in values.items() if isinstance(v, (int, float))])
      return
    now = self.elapsed_seconds
    finished = self.total is not None and done >= self.total
    if not finished and now - self._last_line < self.interval_seconds:
      return
    self._last_line = now
    self.log(self.line(done, **values))
