"""The one progress display: lines with counts, rate and ETA when not on a terminal, at most one per
interval and always the last; Keras' verbosity chosen the same way."""

import io
import sys

import pytest

from yt8m_tf import progress


def test_lines_show_the_count_the_time_so_far_and_the_time_left(monkeypatch):
  clock = [100.0]
  monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
  lines = []
  shown = progress.Progress(10, "[job]", "videos", interval_seconds=5.0, log=lines.append, bar=False)
  clock[0] += 4.0
  shown.update(2, split="train")  # the first line is due at once
  clock[0] += 1.0
  shown.update(3)  # within the interval: nothing
  clock[0] += 5.0
  shown.update(5)
  clock[0] += 0.5
  shown.update(10)  # the last one always shows
  assert lines == [
    "[job] 2/10 videos (20%), 0:00:04 so far, about 0:00:16 left, split train",
    "[job] 5/10 videos (50%), 0:00:10 so far, about 0:00:10 left",
    "[job] 10/10 videos (100%), 0:00:10 so far",
  ]


def test_unknown_totals_show_a_rate_and_no_eta(monkeypatch):
  clock = [0.0]
  monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
  lines = []
  shown = progress.Progress(None, "inference:", "videos", 30.0, lines.append, bar=False, already_elapsed=3.0)
  clock[0] += 1.0
  shown.update(800)
  assert lines == ["inference: 800 videos, 0:00:04 so far, 200 videos/s"]


def test_a_terminal_gets_a_keras_bar_with_eta(monkeypatch):
  out = io.StringIO()
  monkeypatch.setattr(sys, "stdout", out)
  shown = progress.Progress(4, "[job]", "steps", log=lambda line: print(line), bar=True)
  for done in range(1, 5):
    shown.update(done, loss=0.5)
  text = out.getvalue()
  assert text.startswith("[job]\n") and "4/4" in text and "loss: 0.5" in text


@pytest.mark.parametrize("terminal, expected", [(True, 1), (False, 2)])
def test_keras_verbosity_is_a_bar_on_a_terminal_only(monkeypatch, terminal, expected):
  monkeypatch.setattr(progress, "is_terminal", lambda stream=None: terminal)
  assert progress.keras_verbosity(progress.AUTO_VERBOSITY) == expected
  assert progress.keras_verbosity(0) == 0 and progress.keras_verbosity(2) == 2


def test_format_seconds_and_eta():
  assert progress.format_seconds(3725.4) == "1:02:05"
  assert progress.format_seconds(-3) == "0:00:00"
  assert progress.eta_seconds(10.0, 0, 5) is None
  assert progress.eta_seconds(10.0, 2, 5) == pytest.approx(15.0)
