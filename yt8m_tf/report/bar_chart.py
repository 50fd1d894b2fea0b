"""Horizontal bar charts as PNG bytes, with nothing beyond numpy and the standard library.

Run reports must render where matplotlib and PIL are not installed, so this module draws bars and
text into a numpy RGB canvas itself (with a built-in 5x8 bitmap font) and encodes the PNG by hand.

  png = bar_chart_png([BarSection("Test GAP", [Bar("stacker", 0.7875, "0.7875")], 0.74, 0.80, (76, 120, 168))])
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

Color = Tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Bar:
  """One horizontal bar. `text` is printed after the bar end; `whisker` = (min, max) draws the spread
  (e.g. over seeds) as a thin line with end ticks over the bar."""

  label: str
  value: float
  text: str
  whisker: Optional[Tuple[float, float]] = None


@dataclasses.dataclass(frozen=True)
class BarSection:
  """A titled group of bars sharing one axis: a bar's length is (value - low) / (high - low) of the
  bar area, clipped to [0, 1], so a value at or below `low` draws no bar."""

  title: str
  bars: Sequence[Bar]
  low: float
  high: float
  color: Color


BACKGROUND: Color = (255, 255, 255)
TEXT_COLOR: Color = (33, 33, 33)
AXIS_COLOR: Color = (200, 200, 200)
WHISKER_COLOR: Color = (25, 25, 25)

# Printable ASCII 32..126 in order, one glyph per token: 8 rows (top first) of 5 pixels as two hex
# digits each, bit 4 being the leftmost pixel. Row 7 holds descenders (g, j, p, q, y, comma).
_FONT_HEX = (
  "0000000000000000 0404040404000400 0a0a0a0000000000 0a0a1f0a1f0a0a00 040f140e051e0400 1819020408130300 "  # ' !"#$%'
  "0c12140815120d00 0404080000000000 0408080808080400 0402020202020400 0004150e15040000 0004041f04040000 "  # "&'()*+"
  "00000000000c0408 0000001f00000000 00000000000c0c00 0001020408100000 0e11131519110e00 040c040404040e00 "  # ',-./01'
  "0e11010204081f00 1f02040201110e00 02060a121f020200 1f101e0101110e00 0608101e11110e00 1f01020408080800 "  # '234567'
  "0e11110e11110e00 0e11110f01020c00 000c0c000c0c0000 000c0c000c040800 0204081008040200 00001f001f000000 "  # '89:;<='
  "0804020102040800 0e11010204000400 0e11010d15150e00 0e11111f11111100 1e11111e11111e00 0e11101010110e00 "  # '>?@ABC'
  "1c12111111121c00 1f10101e10101f00 1f10101e10101000 0e11101711110f00 1111111f11111100 0e04040404040e00 "  # 'DEFGHI'
  "0702020202120c00 1112141814121100 1010101010101f00 111b151511111100 1111191513111100 0e11111111110e00 "  # 'JKLMNO'
  "1e11111e10101000 0e11111115120d00 1e11111e14121100 0f10100e01011e00 1f04040404040400 1111111111110e00 "  # 'PQRSTU'
  "11111111110a0400 1111111515150a00 11110a040a111100 11110a0404040400 1f01020408101f00 0e08080808080e00 "  # 'VWXYZ['
  "0010080402010000 0e02020202020e00 040a110000000000 000000000000001f 0804020000000000 00000e010f110f00 "  # '\\]^_`a'
  "1010161911111e00 00000e1010110e00 01010d1311110f00 00000e111f100e00 0609081c08080800 00000f11110f010e "  # 'bcdefg'
  "1010161911111100 04000c0404040e00 020006020202120c 1010121418141200 0c04040404040e00 00001a1515151500 "  # 'hijklm'
  "0000161911111100 00000e1111110e00 00001e11111e1010 00000f11110f0101 0000161910101000 00000f100e011e00 "  # 'nopqrs'
  "08081c0808090600 0000111111130d00 00001111110a0400 0000111115150a00 0000110a040a1100 00001111110f010e "  # 'tuvwxy'
  "00001f0204081f00 0204040804040200 0404040404040400 0804040204040800 0000081502000000 "  # 'z{|}~'
)
# Unknown characters draw a small box rather than vanishing, so a missing glyph stays visible.
_BOX_HEX = "00001f1111111f00"
_GLYPH_WIDTH, _GLYPH_HEIGHT = 5, 8


def _glyph_from_hex(token: str) -> np.ndarray:
  rows = [int(token[i : i + 2], 16) for i in range(0, 2 * _GLYPH_HEIGHT, 2)]
  return np.array(
    [[(row >> (_GLYPH_WIDTH - 1 - col)) & 1 for col in range(_GLYPH_WIDTH)] for row in rows], bool
  )


GLYPHS: Dict[str, np.ndarray] = {chr(32 + i): _glyph_from_hex(t) for i, t in enumerate(_FONT_HEX.split())}
_BOX = _glyph_from_hex(_BOX_HEX)


def text_width(text: str, scale: int) -> int:
  """Pixels `text` spans: one blank column between glyphs, none after the last."""
  return max(0, len(text) * (_GLYPH_WIDTH + 1) - 1) * scale


def _draw_text(
  canvas: np.ndarray, x: int, y: int, text: str, color: Color, scale: int, bold: bool = False
) -> None:
  if bold:  # a second copy one pixel to the right: titles stand out without a second font
    _draw_text(canvas, x + 1, y, text, color, scale)
  for i, char in enumerate(text):
    mask = np.kron(GLYPHS.get(char, _BOX), np.ones((scale, scale), bool))
    left = x + i * (_GLYPH_WIDTH + 1) * scale
    view = canvas[y : y + mask.shape[0], left : left + mask.shape[1]]
    view[mask[: view.shape[0], : view.shape[1]]] = color  # cropped at the canvas edge, never an error


def _fraction(value: float, low: float, high: float) -> float:
  """Share of the bar area `value` reaches; 0 for NaN or a degenerate axis rather than an error, as a
  report should still render when, say, every timing is zero."""
  span = high - low
  if not (np.isfinite(value) and np.isfinite(span) and span > 0):
    return 0.0
  return float(np.clip((value - low) / span, 0.0, 1.0))


def _chunk(kind: bytes, data: bytes) -> bytes:
  crc = zlib.crc32(kind + data) & 0xFFFFFFFF
  return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(pixels: np.ndarray) -> bytes:
  """PNG bytes of an (height, width, 3) uint8 RGB array: 8-bit RGB (color type 2), every row with
  filter type 0, so any reader (and a test) only has to inflate and strip one byte per row."""
  pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
  height, width, channels = pixels.shape
  if channels != 3 or height == 0 or width == 0:
    raise ValueError(f"expected a non-empty (height, width, 3) array, got shape {pixels.shape}")
  rows = np.concatenate([np.zeros((height, 1), np.uint8), pixels.reshape(height, width * 3)], axis=1)
  header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  return (
    b"\x89PNG\r\n\x1a\n"
    + _chunk(b"IHDR", header)
    + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
    + _chunk(b"IEND", b"")
  )


def bar_chart_png(sections: Sequence[BarSection], title: str = "", scale: int = 2) -> bytes:
  """Renders `sections` stacked vertically (each a title line, then one bar per Bar with its label
  right-aligned on the left and its text after the bar end) and returns PNG bytes. `scale` is the
  integer magnification of the 5x8 font; all spacing grows with it."""
  glyph_height = _GLYPH_HEIGHT * scale
  line = glyph_height + 3 * scale  # row pitch: a glyph-high bar plus breathing room
  margin, gap, bar_area = 6 * scale, 4 * scale, 200 * scale
  bars = [bar for section in sections for bar in section.bars]
  label_width = max([text_width(bar.label, scale) for bar in bars], default=0)
  value_width = max([text_width(bar.text, scale) for bar in bars], default=0)
  origin = margin + label_width + gap  # x where every bar starts
  width = max(
    [origin + bar_area + scale + gap + value_width + margin]  # + scale: a whisker tick
    + [2 * margin + 1 + text_width(s, scale) for s in [title] + [section.title for section in sections]]
  )
  section_gap = 2 * gap  # air above each section title, so it reads as starting a new group
  blocks = ([line] if title else []) + [line * (1 + len(section.bars)) for section in sections]
  height = 2 * margin + sum(blocks) + section_gap * max(0, len(blocks) - 1)
  canvas = np.full((height, width, 3), BACKGROUND, np.uint8)

  y = margin - section_gap  # the first section needs no air above it
  if title:
    _draw_text(canvas, margin, margin, title, TEXT_COLOR, scale, bold=True)
    y += line + section_gap
  for section in sections:
    y += section_gap
    _draw_text(canvas, margin, y, section.title, TEXT_COLOR, scale, bold=True)
    y += line
    # The axis sits one pixel column left of the origin, so bars never paint over it.
    canvas[y : y + line * len(section.bars), origin - 1] = AXIS_COLOR
    for bar in section.bars:
      bar_top = y + (line - glyph_height) // 2
      text_top = bar_top + scale // 2  # cap height is 7 of 8 rows: centre the caps on the bar
      _draw_text(canvas, origin - gap - text_width(bar.label, scale), text_top, bar.label, TEXT_COLOR, scale)
      end = origin + round(_fraction(bar.value, section.low, section.high) * bar_area)
      canvas[bar_top : bar_top + glyph_height, origin:end] = section.color
      if bar.whisker is not None:
        left, right = (
          origin + round(_fraction(v, section.low, section.high) * bar_area) for v in bar.whisker
        )
        left, right = min(left, right), max(left, right)
        middle = bar_top + glyph_height // 2
        canvas[middle - scale // 2 : middle - scale // 2 + max(1, scale // 2), left : right + 1] = (
          WHISKER_COLOR
        )
        for tick in (left, right):  # ticks overhang the bar a little so a narrow spread still shows
          canvas[bar_top - scale : bar_top + glyph_height + scale, tick : tick + max(1, scale // 2)] = (
            WHISKER_COLOR
          )
        end = max(end, right + 1)
      _draw_text(canvas, end + gap, text_top, bar.text, TEXT_COLOR, scale)
      y += line
  return encode_png(canvas)
