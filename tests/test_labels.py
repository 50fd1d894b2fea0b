"""Tests for yt8m_tf.data.labels: packaged resources, parsing errors, subset remapping, writing."""

import gzip
import os

import numpy as np
import pytest

from yt8m_tf.data import labels as labels_lib
from yt8m_tf.data.labels import LabelSets


def _write_text(path, text, compress=False):
  data = text.encode()
  with open(path, "wb") as handle:
    handle.write(gzip.compress(data) if compress else data)
  return str(path)


def test_packaged_sample_is_real_and_about_50k_videos():
  sample = labels_lib.load_label_sets()
  assert len(sample) == 50_000
  assert len(set(sample.ids.tolist())) == len(sample)
  assert all(len(video_id) == 4 for video_id in sample.ids[:100])
  assert sample.counts.min() >= 1
  assert 2.8 < sample.counts.mean() < 3.2  # the full set has 3.01 labels per video
  assert sample.values.min() >= 0 and sample.values.max() < 3862
  # Class 0 ("Game") is the most frequent class, on ~20% of the videos.
  counts = sample.class_counts(3862)
  assert counts.argmax() == 0 and 0.15 < counts[0] / len(sample) < 0.25


def test_packaged_vocabulary():
  vocabulary = labels_lib.load_vocabulary()
  assert len(vocabulary) == 3862
  np.testing.assert_array_equal(vocabulary.index, np.arange(3862))
  np.testing.assert_array_equal(vocabulary.original_index, np.arange(3862))
  assert vocabulary.name[0] == "Game" and vocabulary.vertical1[0] == "Games"
  assert vocabulary.train_video_count[0] == 788288
  assert vocabulary.verticals.shape == (3862, 3)


def test_load_gzip_and_plain_agree(tmp_path):
  text = "id,labels\nabcd,1 5 7\nefgh,2\n"
  plain = labels_lib.load_label_sets(_write_text(tmp_path / "a.csv", text))
  zipped = labels_lib.load_label_sets(_write_text(tmp_path / "a.csv.gz", text, compress=True))
  for sets in (plain, zipped):
    assert sets.ids.tolist() == ["abcd", "efgh"]
    assert [row.tolist() for row in sets] == [[1, 5, 7], [2]]
    np.testing.assert_array_equal(sets.offsets, [0, 3, 4])


@pytest.mark.parametrize(
  "bad_row, message",
  [
    ("efgh 1 2", "expected 'id,label"),
    ("efgh,1 x", "labels must be integers"),
    ("efgh,1 -3", "out of range"),
    ("efgh,1,2", "expected 'id,label"),
    ("efgh,9", "out of range"),
  ],
)
def test_malformed_row_names_file_and_line(tmp_path, bad_row, message):
  path = _write_text(tmp_path / "bad.csv", f"id,labels\nabcd,1\n{bad_row}\n")
  with pytest.raises(ValueError, match=message) as error:
    labels_lib.load_label_sets(path, num_classes=5)
  assert f"{path}:3:" in str(error.value)


def test_bad_header_is_reported(tmp_path):
  path = _write_text(tmp_path / "bad.csv", "video,labels\nabcd,1\n")
  with pytest.raises(ValueError, match=r"bad\.csv:1: expected header"):
    labels_lib.load_label_sets(path)


def test_most_frequent_classes_and_remap_drop_empty_videos():
  sets = LabelSets.from_lists(["a", "b", "c", "d"], [[0, 3], [3], [1, 3, 4], [1, 2]])
  kept = labels_lib.most_frequent_classes(sets, 2, total_classes=5)
  np.testing.assert_array_equal(kept, [1, 3])  # counts: 3 -> 3 videos, 1 -> 2 videos
  remapped, dropped = labels_lib.remap_classes(sets, kept, total_classes=5)
  assert dropped == 0
  assert remapped.ids.tolist() == ["a", "b", "c", "d"]
  assert [row.tolist() for row in remapped] == [[1], [1], [0, 1], [0]]
  remapped, dropped = labels_lib.remap_classes(sets, np.array([4]), total_classes=5)
  assert dropped == 3 and remapped.ids.tolist() == ["c"] and remapped[0].tolist() == [0]


def test_most_frequent_classes_breaks_ties_by_index():
  sets = LabelSets.from_lists(["a", "b"], [[4, 2], [3]])
  np.testing.assert_array_equal(labels_lib.most_frequent_classes(sets, 2, total_classes=5), [2, 3])
  with pytest.raises(ValueError, match="num_classes"):
    labels_lib.most_frequent_classes(sets, 6, total_classes=5)


def test_select_and_dense():
  sets = LabelSets.from_lists(["a", "b", "c"], [[0, 2], [], [1]])
  picked = sets.select(np.array([2, 0]))
  assert picked.ids.tolist() == ["c", "a"] and [r.tolist() for r in picked] == [[1], [0, 2]]
  np.testing.assert_array_equal(sets.select(np.array([False, True, True])).counts, [0, 1])
  np.testing.assert_array_equal(sets.to_dense(3), [[1, 0, 1], [0, 0, 0], [0, 1, 0]])


@pytest.mark.parametrize("name", ["answers.csv", "answers.csv.gz"])
def test_write_then_load_round_trip(tmp_path, name):
  sets = LabelSets.from_lists(["abcd", "efgh", "ijkl"], [[3, 9], [0], [1, 2, 3]])
  path = str(tmp_path / "sub" / name)
  labels_lib.write_label_sets(path, sets)
  loaded = labels_lib.load_label_sets(path)
  assert loaded.ids.tolist() == sets.ids.tolist()
  np.testing.assert_array_equal(loaded.values, sets.values)
  np.testing.assert_array_equal(loaded.offsets, sets.offsets)
  assert sorted(os.listdir(tmp_path / "sub")) == [name]  # no temporary file left behind


def test_vocabulary_subset_round_trip(tmp_path):
  subset = labels_lib.load_vocabulary().select(np.array([2, 7, 100]))
  path = str(tmp_path / "vocabulary.csv")
  labels_lib.write_vocabulary(path, subset)
  loaded = labels_lib.load_vocabulary(path)
  np.testing.assert_array_equal(loaded.index, [0, 1, 2])
  np.testing.assert_array_equal(loaded.original_index, [2, 7, 100])
  assert loaded.name.tolist() == subset.name.tolist() and loaded.name[0] == "Vehicle"
  np.testing.assert_array_equal(loaded.train_video_count, subset.train_video_count)
