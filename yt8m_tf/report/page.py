"""The main job's report as one self-contained HTML page: the method's ladder drawn as bars (inline SVG, no
script, no external file), every model's GAP@20, the exports' sizes and the time each stage took.

`html_page(report)` takes the dict the pipeline writes to report.json.
"""

from __future__ import annotations

import html
from typing import List, Optional, Sequence, Tuple

_BAR_HEIGHT, _GAP, _LABEL_WIDTH, _PLOT_WIDTH, _VALUE_WIDTH = 22, 8, 230, 420, 120
_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
svg text { font-size: 13px; }
"""


def _number(value: Optional[float], digits: int = 4) -> str:
  return "-" if value is None else f"{value:.{digits}f}"


def _bars(items: Sequence[Tuple[str, float, str]], low: float, high: float, color: str) -> str:
  """Horizontal bars: (label, value, text shown after the bar), the axis from `low` to `high`."""
  height = len(items) * (_BAR_HEIGHT + _GAP) + _GAP
  width = _LABEL_WIDTH + _PLOT_WIDTH + _VALUE_WIDTH
  span = max(high - low, 1e-9)
  parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
  for i, (label, value, text) in enumerate(items):
    y = _GAP + i * (_BAR_HEIGHT + _GAP)
    length = max(0.0, min(1.0, (value - low) / span)) * _PLOT_WIDTH
    middle = y + _BAR_HEIGHT * 0.7
    parts += [
      f'<text x="{_LABEL_WIDTH - 8}" y="{middle:.1f}" text-anchor="end">{html.escape(label)}</text>',
      f'<rect x="{_LABEL_WIDTH}" y="{y}" width="{length:.1f}" height="{_BAR_HEIGHT}" fill="{color}"/>',
      f'<text x="{_LABEL_WIDTH + length + 6:.1f}" y="{middle:.1f}">{html.escape(text)}</text>',
    ]
  parts.append("</svg>")
  return "\n".join(parts)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int) -> str:
  """An HTML table; columns from `numeric_from` on are right-aligned numbers."""
  head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
  body = []
  for row in rows:
    cells = [
      f'<td class="number">{html.escape(c)}</td>' if i >= numeric_from else f"<td>{html.escape(c)}</td>"
      for i, c in enumerate(row)
    ]
    body.append(f"<tr>{''.join(cells)}</tr>")
  return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def html_page(report: dict) -> str:
  ladder = [step for step in report.get("ladder", []) if step["test_gap"] is not None]
  sections: List[str] = [f"<h1>yt8m_tf: the method, step by step</h1><p>{html.escape(report['workdir'])}</p>"]
  if ladder:
    values = [step["test_gap"] for step in ladder]
    low = max(0.0, min(values) - 0.02)
    items = [
      (
        step["step"],
        step["test_gap"],
        f"{step['test_gap']:.4f}" + ("" if step["delta"] is None else f" ({step['delta']:+.4f})"),
      )
      for step in ladder
    ]
    sections.append(f"<h2>Test GAP@20 (axis from {low:.2f})</h2>")
    sections.append(_bars(items, low, max(values), "#4c78a8"))
  rows = [
    (row["level"], row["name"], _number(row["oof_gap"]), _number(row["test_gap"])) for row in report["gap@20"]
  ]
  sections.append("<h2>Every model</h2>")
  sections.append(_table(("level", "model", "OOF GAP@20", "test GAP@20"), rows, numeric_from=2))
  sizes = [
    (
      name,
      f"{s['params']:,}",
      f"{s['stored_bytes'] / 1e6:.1f}",
      f"{s['saved_model_bytes_on_disk'] / 1e6:.1f}",
    )
    for name, s in report.get("sizes", {}).items()
  ]
  if sizes:
    sections.append("<h2>Exports</h2>")
    sections.append(
      _table(("export", "parameters", "weights (MB)", "SavedModel (MB)"), sizes, numeric_from=1)
    )
  seconds = {k: v for k, v in report.get("wall_seconds", {}).items() if k != "total"}
  if seconds:
    total = report["wall_seconds"].get("total", sum(seconds.values()))
    sections.append(f"<h2>Wall time: {total:,.0f} s</h2>")
    items = [(stage, value, f"{value:,.0f} s") for stage, value in seconds.items()]
    sections.append(_bars(items, 0.0, max(seconds.values()), "#f58518"))
  return (
    '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>yt8m_tf report</title>'
    f"<style>{_STYLE}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
  )
