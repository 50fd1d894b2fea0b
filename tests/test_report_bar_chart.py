"""Tests for yt8m_tf.report.bar_chart: the hand-written PNG encoder, bar geometry, text and whiskers."""

import struct
import zlib

import numpy as np
import pytest

from yt8m_tf.report import bar_chart
from yt8m_tf.report.bar_chart import Bar, BarSection, bar_chart_png

RED = (200, 30, 30)


def _decode_png(data):
  """(height, width, 3) uint8 pixels of an 8-bit RGB, filter-0, non-interlaced PNG; asserts every
  structural detail on the way (signature, chunk CRCs, IHDR fields, one filter byte per row)."""
  assert data[:8] == b"\x89PNG\r\n\x1a\n"
  pos, chunks = 8, []
  while pos < len(data):
    (length,) = struct.unpack(">I", data[pos : pos + 4])
    kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
    (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
    assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
    chunks.append((kind, body))
    pos += 12 + length
  assert pos == len(data)
  assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
  width, height, depth, color_type, compression, filtering, interlace = struct.unpack(
    ">IIBBBBB", chunks[0][1]
  )
  assert (depth, color_type, compression, filtering, interlace) == (8, 2, 0, 0, 0)
  raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
  rows = np.frombuffer(raw, np.uint8).reshape(height, 1 + 3 * width)
  assert (rows[:, 0] == 0).all()  # filter type 0 (None) on every row
  return rows[:, 1:].reshape(height, width, 3)


def _mask(pixels, color):
  return (pixels == np.array(color, np.uint8)).all(axis=-1)


def _dark(pixels):
  return (pixels < 100).all(axis=-1)


def _bar_runs(pixels, color=RED):
  """(first row, last row + 1, pixel length) of each bar of `color`, top to bottom."""
  counts = _mask(pixels, color).sum(axis=1)
  runs, start = [], None
  for y, count in enumerate(list(counts) + [0]):
    if count and start is None:
      start = y
    elif not count and start is not None:
      runs.append((start, y, int(counts[start:y].max())))
      start = None
  return runs


def _chart(bars, low=0.0, high=1.0, title=""):
  return _decode_png(bar_chart_png([BarSection("section", bars, low, high, RED)], title=title))


def test_encode_png_round_trips_pixels_and_rejects_bad_shapes():
  pixels = np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
  decoded = _decode_png(bar_chart.encode_png(pixels))
  assert decoded.shape == (7, 5, 3)
  np.testing.assert_array_equal(decoded, pixels)
  with pytest.raises(ValueError):
    bar_chart.encode_png(np.zeros((4, 4, 4), np.uint8))


def test_corrupted_chunk_fails_the_crc_check():
  data = bytearray(bar_chart_png([BarSection("s", [Bar("a", 0.5, "x")], 0, 1, RED)]))
  data[40] ^= 0xFF  # inside the IDAT payload
  with pytest.raises(AssertionError):
    _decode_png(bytes(data))


def test_chart_size_follows_the_layout():
  one, two, three = (_chart([Bar("label", 0.5, "0.5")] * n) for n in (1, 2, 3))
  row_pitch = two.shape[0] - one.shape[0]
  assert row_pitch > 0 and three.shape[0] - two.shape[0] == row_pitch
  assert one.shape[1] == two.shape[1] == three.shape[1]
  # One more label character widens the image by one glyph advance: 6 font pixels at scale 2.
  longer = _chart([Bar("label+", 0.5, "0.5")])
  assert longer.shape[:2] == (one.shape[0], one.shape[1] + 12)
  # Scale 1 halves every dimension (up to rounding of the odd paddings).
  small = _decode_png(bar_chart_png([BarSection("section", [Bar("label", 0.5, "0.5")], 0, 1, RED)], scale=1))
  assert abs(small.shape[0] * 2 - one.shape[0]) <= 2 and abs(small.shape[1] * 2 - one.shape[1]) <= 2


def test_bar_length_is_proportional_and_clipped():
  pixels = _chart(
    [Bar("top", 1.0, "1"), Bar("half", 0.5, "0.5"), Bar("zero", 0.0, "0"), Bar("below", -3, "-3")]
  )
  runs = _bar_runs(pixels)
  assert len(runs) == 2  # the bars at and below `low` draw nothing
  full, half = runs[0][2], runs[1][2]
  assert full > half and abs(half - full / 2) <= 2
  assert _bar_runs(_chart([Bar("above", 7.0, "7")]))[0][2] == full  # clipped at `high`
  assert not _mask(_chart([Bar("zero", 0.0, "0"), Bar("below", -1, "-1")]), RED).any()
  assert not _mask(_chart([Bar("nan", float("nan"), "nan")]), RED).any()
  # The axis is offset: a bar at 0.53 of a [0.5, 0.6] axis is 30% long.
  offset = _bar_runs(_chart([Bar("a", 0.6, ""), Bar("b", 0.53, "")], low=0.5, high=0.6))
  assert abs(offset[1][2] - 0.3 * offset[0][2]) <= 2


def _label_column(pixels):
  """The part of the bar's rows left of the bar origin, where its label is drawn."""
  top, bottom, _ = _bar_runs(pixels)[0]
  origin = int(np.argmax(_mask(pixels, RED).any(axis=0)))
  return pixels[top:bottom, :origin]


def test_labels_are_drawn_and_differ_by_text():
  alpha, omega = (_label_column(_chart([Bar(label, 1.0, "1")])) for label in ("alpha", "omega"))
  assert _dark(alpha).sum() > 20 and _dark(omega).sum() > 20
  assert alpha.shape == omega.shape and not np.array_equal(alpha, omega)
  # Characters outside the font draw the same small box, not nothing.
  snowman, euro = (_label_column(_chart([Bar(label, 1.0, "1")])) for label in ("\u2603", "\u20ac"))
  assert _dark(snowman).sum() > 0 and np.array_equal(snowman, euro)


def test_font_covers_printable_ascii_with_distinct_glyphs():
  assert sorted(bar_chart.GLYPHS) == [chr(code) for code in range(32, 127)]
  shapes = {glyph.tobytes() for glyph in bar_chart.GLYPHS.values()}
  assert len(shapes) == 95 and all(glyph.shape == (8, 5) for glyph in bar_chart.GLYPHS.values())
  assert not bar_chart.GLYPHS[" "].any() and bar_chart.GLYPHS["g"][7].any()  # blank space, descender row


def test_whisker_marks_its_min_and_max():
  def draw(whisker):
    return _chart([Bar("ref", 1.0, ""), Bar("spread", 0.5, "", whisker=whisker)])

  plain, with_whisker = draw(None), draw((0.25, 0.75))
  (_, _, full), (top, bottom, _) = _bar_runs(plain)
  origin = int(np.argmax(_mask(plain, RED).any(axis=0)))
  for value in (0.25, 0.75):
    x = origin + round(value * full)
    columns = slice(x - 1, x + 2)
    assert _dark(with_whisker[top:bottom, columns]).any(), value
    assert not _dark(plain[top:bottom, columns]).any(), value
    assert _dark(with_whisker[top - 2 : top, columns]).any(), value  # the end tick overhangs the bar
  middle = origin + round(0.6 * full)  # the horizontal line joins the ticks beyond the bar end
  assert _dark(with_whisker[top:bottom, middle]).any() and not _dark(plain[top:bottom, middle]).any()


def test_empty_chart_is_a_small_valid_image():
  empty = _decode_png(bar_chart_png([]))
  assert 0 < empty.shape[0] <= 40 and empty.shape[1] > 0
  assert (empty == 255).all()
  titled = _decode_png(bar_chart_png([], title="Nothing yet"))
  assert titled.shape[0] > empty.shape[0] and _dark(titled).any()
  no_bars = _decode_png(bar_chart_png([BarSection("empty section", [], 0, 1, RED)]))
  assert _dark(no_bars).any() and not _mask(no_bars, RED).any()
