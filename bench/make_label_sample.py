"""Makes the packaged label-set sample and vocabulary from the real YouTube-8M 2018 label dump.

Sampling: the rows of `video_labels.csv.gz` (766,871 videos) are numbered from 0 in file order; a
`numpy.random.default_rng(SAMPLE_SEED).choice(num_rows, SAMPLE_SIZE, replace=False)` picks 50,000 of them
uniformly without replacement, and they are written back in file order (same `id,labels` format, gzip
with mtime 0, so reruns give identical bytes). The vocabulary is copied as is, gzipped.

  .venv/bin/python bench/make_label_sample.py [--source_dir ../shared/data/yt8m2018_labels]
"""

from __future__ import annotations

import gzip
import os

import numpy as np
from absl import app, flags

SAMPLE_SEED = 2018
SAMPLE_SIZE = 50_000
RESOURCES = os.path.join(os.path.dirname(__file__), "..", "yt8m_tf", "data", "resources")

FLAGS = flags.FLAGS
flags.DEFINE_string(
  "source_dir",
  os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "yt8m2018_labels"),
  "Folder holding the label dump's video_labels.csv.gz and vocabulary.csv.",
)
flags.DEFINE_string(
  "out_dir", RESOURCES, "Where video_labels_sample.csv.gz and vocabulary.csv.gz are written."
)


def sample_rows(lines: list, sample_size: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED) -> list:
  """Uniform sample without replacement, kept in input order."""
  chosen = np.sort(np.random.default_rng(seed).choice(len(lines), sample_size, replace=False))
  return [lines[i] for i in chosen]


def write_gzip(path: str, data: bytes) -> None:
  with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as out:
    out.write(data)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  with gzip.open(os.path.join(FLAGS.source_dir, "video_labels.csv.gz"), "rt") as handle:
    header, *lines = handle.read().splitlines()
  if header != "id,labels":
    raise ValueError(f"unexpected header {header!r}")
  sample = sample_rows(lines)
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  write_gzip(
    os.path.join(FLAGS.out_dir, "video_labels_sample.csv.gz"), ("\n".join([header] + sample) + "\n").encode()
  )
  with open(os.path.join(FLAGS.source_dir, "vocabulary.csv"), "rb") as handle:
    write_gzip(os.path.join(FLAGS.out_dir, "vocabulary.csv.gz"), handle.read())
  print(f"sampled {len(sample)} of {len(lines)} videos into {os.path.abspath(FLAGS.out_dir)}")


if __name__ == "__main__":
  app.run(main)
