"""The main job's report in the forms people read it: an HTML page, a PNG picture, TensorBoard summaries
(report.json and the console table are written by the pipeline)."""

from yt8m_tf.report.bar_chart import Bar, BarSection, bar_chart_png
from yt8m_tf.report.page import html_page
from yt8m_tf.report.picture import ladder_over_seeds_png, png_image
from yt8m_tf.report.summaries import write_summaries

__all__ = [
  "Bar",
  "BarSection",
  "bar_chart_png",
  "html_page",
  "ladder_over_seeds_png",
  "png_image",
  "write_summaries",
]
