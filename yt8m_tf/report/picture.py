"""The main job's report as a PNG picture (`report.png`): the method's ladder, the time per stage and the
exports' sizes; and the ladder over seeds (mean bars, [min, max] whiskers) for `bench/method_ladder.py`."""

from __future__ import annotations

from typing import Dict, List, Sequence

from yt8m_tf.report.bar_chart import Bar, BarSection, bar_chart_png

_LADDER_COLOR, _TIME_COLOR, _SIZE_COLOR = (76, 120, 168), (245, 133, 24), (84, 162, 75)
_AXIS_MARGIN = 0.02  # GAP axes start this far below the lowest bar, so that differences stay visible


def _gap_axis(values: Sequence[float]) -> float:
  return max(0.0, min(values) - _AXIS_MARGIN)


def png_image(report: dict) -> bytes:
  """`report` is the dict the pipeline writes to report.json."""
  sections: List[BarSection] = []
  ladder = [step for step in report.get("ladder", []) if step["test_gap"] is not None]
  if ladder:
    values = [step["test_gap"] for step in ladder]
    low = _gap_axis(values)
    bars = [
      Bar(
        step["step"],
        step["test_gap"],
        f"{step['test_gap']:.4f}" + ("" if step["delta"] is None else f" ({step['delta']:+.4f})"),
      )
      for step in ladder
    ]
    sections.append(BarSection(f"Test GAP@20 (axis from {low:.2f})", bars, low, max(values), _LADDER_COLOR))
  seconds = {k: v for k, v in report.get("wall_seconds", {}).items() if k != "total"}
  if seconds:
    total = report["wall_seconds"].get("total", sum(seconds.values()))
    bars = [Bar(stage, value, f"{value:,.0f} s") for stage, value in seconds.items()]
    sections.append(BarSection(f"Wall time: {total:,.0f} s", bars, 0.0, max(seconds.values()), _TIME_COLOR))
  sizes = {name: s["saved_model_bytes_on_disk"] / 1e6 for name, s in report.get("sizes", {}).items()}
  if sizes:
    bars = [Bar(name, value, f"{value:,.1f} MB") for name, value in sizes.items()]
    sections.append(BarSection("SavedModel size", bars, 0.0, max(sizes.values()), _SIZE_COLOR))
  return bar_chart_png(sections, title=f"yt8m_tf report: {report.get('workdir', '')}")


def ladder_over_seeds_png(ladders: Dict[int, Dict[str, float]], steps: Sequence[str]) -> bytes:
  """`ladders[seed][step]` = test GAP@20: one bar per step at the mean, whiskers from min to max."""
  bars = []
  for step in steps:
    values = [ladders[seed][step] for seed in ladders if ladders[seed].get(step) is not None]
    if values:
      mean = sum(values) / len(values)
      text = f"{mean:.4f} [{min(values):.4f}, {max(values):.4f}]"
      bars.append(Bar(step, mean, text, whisker=(min(values), max(values))))
  if not bars:
    return bar_chart_png([], title="no finished seeds")
  low = _gap_axis([bar.whisker[0] for bar in bars])
  high = max(bar.whisker[1] for bar in bars)
  title = f"Test GAP@20 over seeds {', '.join(map(str, sorted(ladders)))}: mean [min, max]"
  return bar_chart_png([BarSection(f"axis from {low:.2f}", bars, low, high, _LADDER_COLOR)], title=title)
