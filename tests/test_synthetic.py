"""Tests for yt8m_tf.data.synthetic: layout, formats, consistency, determinism, noise, learnability."""

import dataclasses
import filecmp
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from yt8m_tf.data import labels as labels_lib
from yt8m_tf.data import synthetic
from yt8m_tf.data.schema import dequantize
from yt8m_tf.data.synthetic import SyntheticConfig
from yt8m_tf.metrics import gap_at_k

TINY = SyntheticConfig(
  seed=3,
  num_videos=200,
  num_classes=50,
  num_shards=(2, 1, 1),
  min_frames=3,
  max_frames=8,
  mean_frames=5.0,
  max_shots=3,
  latent_dim=64,
  cooccurrence_rank=16,
)
NUM_SPLIT_VIDEOS = {"train": 140, "validate": 30, "test": 30}


def _read_video_level(out_dir, split):
  spec = {
    "id": tf.io.FixedLenFeature([], tf.string),
    "labels": tf.io.VarLenFeature(tf.int64),
    "mean_rgb": tf.io.FixedLenFeature([1024], tf.float32),
    "mean_audio": tf.io.FixedLenFeature([128], tf.float32),
  }
  videos = {}
  for path in sorted(tf.io.gfile.glob(os.path.join(out_dir, "video", f"{split}-*.tfrecord"))):
    for record in tf.data.TFRecordDataset(path):
      has_labels = "labels" in tf.train.Example.FromString(record.numpy()).features.feature
      parsed = tf.io.parse_single_example(record, spec)
      videos[parsed["id"].numpy().decode()] = {
        "labels": sorted(parsed["labels"].values.numpy().tolist()) if has_labels else None,
        "mean_rgb": parsed["mean_rgb"].numpy(),
        "mean_audio": parsed["mean_audio"].numpy(),
      }
  return videos


def _read_frame_level(out_dir, split):
  context = {"id": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64)}
  sequence = {name: tf.io.FixedLenSequenceFeature([], tf.string) for name in ("rgb", "audio")}
  videos = {}
  for path in sorted(tf.io.gfile.glob(os.path.join(out_dir, "frame", f"{split}-*.tfrecord"))):
    for record in tf.data.TFRecordDataset(path):
      has_labels = "labels" in tf.train.SequenceExample.FromString(record.numpy()).context.feature
      parsed_context, parsed_frames = tf.io.parse_single_sequence_example(record, context, sequence)
      videos[parsed_context["id"].numpy().decode()] = {
        "labels": sorted(parsed_context["labels"].values.numpy().tolist()) if has_labels else None,
        "rgb": tf.io.decode_raw(parsed_frames["rgb"], tf.uint8).numpy(),
        "audio": tf.io.decode_raw(parsed_frames["audio"], tf.uint8).numpy(),
      }
  return videos


def _label_dict(path):
  sets = labels_lib.load_label_sets(path)
  return {video_id: row.tolist() for video_id, row in zip(sets.ids, sets)}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
  out_dir = str(tmp_path_factory.mktemp("tiny"))
  events = []
  synthetic.generate(TINY, out_dir, progress=events.append, chunk_size=64)
  assert events and events[-1].videos_done == 200 and events[-1].videos_total == 200
  return out_dir


def test_layout_and_split_counts(tiny_dir):
  for level in ("video", "frame"):
    names = sorted(os.listdir(os.path.join(tiny_dir, level)))
    assert names == [
      "test-00000-of-00001.tfrecord",
      "train-00000-of-00002.tfrecord",
      "train-00001-of-00002.tfrecord",
      "validate-00000-of-00001.tfrecord",
    ]
  summary = json.load(open(os.path.join(tiny_dir, "synthetic_config.json")))
  assert summary["counts"]["videos"] == NUM_SPLIT_VIDEOS
  assert SyntheticConfig.from_json_dict(summary["config"]) == TINY
  ids = {}
  for split, count in NUM_SPLIT_VIDEOS.items():
    video, frame = _read_video_level(tiny_dir, split), _read_frame_level(tiny_dir, split)
    assert len(video) == count and set(video) == set(frame)
    assert all(len(video_id) == 4 for video_id in video)  # the real ids of the label file
    ids[split] = set(video)
  assert not (ids["train"] & ids["validate"] or ids["train"] & ids["test"] or ids["validate"] & ids["test"])
  assert not [name for name in os.listdir(tiny_dir) if name.startswith(".")]  # no temporary/pending file


def test_test_split_has_no_labels_and_answers_match(tiny_dir):
  video, frame = _read_video_level(tiny_dir, "test"), _read_frame_level(tiny_dir, "test")
  assert all(v["labels"] is None for v in video.values())
  assert all(v["labels"] is None for v in frame.values())
  answers = _label_dict(os.path.join(tiny_dir, "test_labels.csv"))
  assert set(answers) == set(video)
  assert all(answers[video_id] for video_id in answers)


def test_train_labels_are_observed_noisy_labels_and_clean_labels_cover_all(tiny_dir):
  clean = _label_dict(os.path.join(tiny_dir, "clean_labels.csv"))
  assert len(clean) == 200
  train = _read_video_level(tiny_dir, "train")
  frame_train = _read_frame_level(tiny_dir, "train")
  assert all(train[i]["labels"] == frame_train[i]["labels"] for i in train)
  assert all(0 <= label < 50 for v in train.values() for label in v["labels"])
  differing = sum(train[i]["labels"] != clean[i] for i in train)
  assert 0 < differing < len(train)  # label noise acts, but not on every video


def test_video_means_are_means_of_dequantized_frames(tiny_dir):
  for split in ("train", "test"):
    video, frame = _read_video_level(tiny_dir, split), _read_frame_level(tiny_dir, split)
    for video_id, features in video.items():
      frames = frame[video_id]
      assert frames["rgb"].shape[1] == 1024 and frames["audio"].shape[1] == 128
      assert TINY.min_frames <= len(frames["rgb"]) <= TINY.max_frames
      np.testing.assert_allclose(features["mean_rgb"], dequantize(frames["rgb"]).mean(axis=0), atol=2e-6)
      np.testing.assert_allclose(features["mean_audio"], dequantize(frames["audio"]).mean(axis=0), atol=2e-6)


def test_features_look_like_quantized_pca_features(tiny_dir):
  frames = np.concatenate([v["rgb"] for v in _read_frame_level(tiny_dir, "train").values()])
  values = dequantize(frames)
  assert abs(values.mean()) < 0.1
  clipped = np.mean((frames == 0) | (frames == 255))
  assert clipped < 0.01
  std = values.std(axis=0)
  assert std[:8].mean() > 3 * std[-256:].mean()  # a few dominant dims


def test_subset_remapping_matches_the_source_labels(tiny_dir):
  source = labels_lib.load_label_sets()
  kept = labels_lib.most_frequent_classes(source, 50, 3862)
  vocabulary = labels_lib.load_vocabulary(os.path.join(tiny_dir, "vocabulary.csv"))
  np.testing.assert_array_equal(vocabulary.original_index, kept)
  full = labels_lib.load_vocabulary()
  assert vocabulary.name.tolist() == full.name[kept].tolist()
  new_index = {int(c): i for i, c in enumerate(kept)}
  source_labels = dict(zip(source.ids.tolist(), source))
  clean = _label_dict(os.path.join(tiny_dir, "clean_labels.csv"))
  for video_id, labels in clean.items():
    expected = sorted(new_index[int(c)] for c in source_labels[video_id] if int(c) in new_index)
    assert labels == expected and labels


def test_deterministic_and_independent_of_chunk_size(tiny_dir, tmp_path):
  again = str(tmp_path / "again")
  synthetic.generate(TINY, again, chunk_size=7)
  comparison = filecmp.dircmp(tiny_dir, again)
  assert not comparison.left_only and not comparison.right_only
  for sub in ("", "video", "frame"):
    names = sorted(os.listdir(os.path.join(tiny_dir, sub)))
    names = [n for n in names if os.path.isfile(os.path.join(tiny_dir, sub, n))]
    _, mismatch, errors = filecmp.cmpfiles(
      os.path.join(tiny_dir, sub), os.path.join(again, sub), names, shallow=False
    )
    assert not mismatch and not errors, (sub, mismatch, errors)


def test_video_level_records_do_not_depend_on_frame_level(tmp_path):
  config = dataclasses.replace(TINY, seed=4, frame_level=False)
  video_only = str(tmp_path / "video_only")
  synthetic.generate(config, video_only)
  assert not os.path.exists(os.path.join(video_only, "frame"))
  with_frames = str(tmp_path / "with_frames")
  synthetic.generate(dataclasses.replace(config, frame_level=True), with_frames)
  for split_file in ("train-00000-of-00002.tfrecord", "test-00000-of-00001.tfrecord"):
    assert filecmp.cmp(
      os.path.join(video_only, "video", split_file),
      os.path.join(with_frames, "video", split_file),
      shallow=False,
    )


def test_seed_changes_features_of_the_same_videos(tiny_dir, tmp_path):
  # The tiny set's clean labels and 50-class vocabulary as the source: every run uses the same 200 videos.
  sources = {
    "label_sets_path": os.path.join(tiny_dir, "clean_labels.csv"),
    "vocabulary_path": os.path.join(tiny_dir, "vocabulary.csv"),
  }
  features = []
  for seed in (3, 9):
    config = dataclasses.replace(TINY, seed=seed, num_videos=None, num_classes=None, frame_level=False)
    out_dir = str(tmp_path / f"seed{seed}")
    summary = synthetic.generate(config, out_dir, **sources)
    assert summary["counts"]["classes"] == 50
    features.append(
      {i: v["mean_rgb"] for split in synthetic.SPLITS for i, v in _read_video_level(out_dir, split).items()}
    )
  assert set(features[0]) == set(features[1]) and len(features[0]) == 200
  assert all(not np.allclose(features[0][i], features[1][i], atol=0.05) for i in features[0])


def test_finished_directory_is_reused_and_other_config_refused(tiny_dir):
  path = os.path.join(tiny_dir, "video", "train-00000-of-00002.tfrecord")
  before = os.stat(path).st_mtime_ns
  summary = synthetic.generate(TINY, tiny_dir)
  assert summary["counts"]["videos"] == NUM_SPLIT_VIDEOS
  assert os.stat(path).st_mtime_ns == before
  with pytest.raises(ValueError, match="another config"):
    synthetic.generate(dataclasses.replace(TINY, difficulty=2.0), tiny_dir)


def test_label_noise_rates_match_config():
  clean = labels_lib.load_label_sets()
  counts = synthetic.cooccurrence_counts(clean, 3862)
  neighbours, cdf = synthetic._neighbour_tables(counts, 16)
  frequency = np.diag(counts) + 1e-3
  class_cdf = np.cumsum(frequency) / frequency.sum()
  for drop_rate, add_rate in ((0.1, 0.2), (0.3, 0.05)):
    observed = synthetic.observe_labels(
      clean, neighbours, cdf, class_cdf, drop_rate, add_rate, np.random.default_rng(0)
    )
    true_keys = clean.rows * 3862 + clean.values
    observed_keys = observed.rows * 3862 + observed.values
    measured_drop = 1 - np.isin(true_keys, observed_keys).mean()
    measured_add = np.sum(~np.isin(observed_keys, true_keys)) / len(true_keys)
    # Drops fall short of the rate by the rescued last labels (a video keeps one): ~10% of drops here.
    assert 0.85 * drop_rate < measured_drop <= drop_rate + 0.005
    assert add_rate - 0.02 < measured_add <= add_rate + 0.005
    assert observed.counts.min() >= 1
  # Added labels are related: far more often a co-occurring class than chance.
  observed = synthetic.observe_labels(clean, neighbours, cdf, class_cdf, 0.0, 0.5, np.random.default_rng(1))
  extra = [
    set(o.tolist()) - set(c.tolist())
    for o, c in zip(observed.select(np.arange(2000)), clean.select(np.arange(2000)))
  ]
  related = [
    any(counts[a, t] > 0 for t in c.tolist()) for e, c in zip(extra, clean.select(np.arange(2000))) for a in e
  ]
  assert np.mean(related) > 0.9


def test_cooccurrence_counts():
  sets = labels_lib.LabelSets.from_lists(["a", "b", "c"], [[0, 2], [2], [0, 1, 2]])
  expected = np.array([[2, 1, 2], [1, 1, 1], [2, 1, 3]])
  np.testing.assert_array_equal(synthetic.cooccurrence_counts(sets, 3), expected)


def test_config_validation():
  with pytest.raises(ValueError, match="split_fractions"):
    SyntheticConfig(split_fractions=(0.5, 0.2, 0.2))
  with pytest.raises(ValueError, match="max_frames"):
    SyntheticConfig(max_frames=301)
  with pytest.raises(ValueError, match="label_drop_rate"):
    SyntheticConfig(label_drop_rate=1.5)


def test_video_level_features_are_learnable(tmp_path):
  """Nearest class centroid on train beats the class-prior ranking by a wide GAP margin."""
  config = dataclasses.replace(TINY, num_videos=800, num_classes=20, frame_level=False, seed=5)
  out_dir = str(tmp_path / "learn")
  synthetic.generate(config, out_dir)

  def arrays(split, answers=None):
    videos = _read_video_level(out_dir, split)
    ids = sorted(videos)
    x = np.stack([np.concatenate([videos[i]["mean_rgb"], videos[i]["mean_audio"]]) for i in ids])
    y = np.zeros([len(ids), 20], np.float32)
    for row, video_id in enumerate(ids):
      y[row, answers[video_id] if answers else videos[video_id]["labels"]] = 1
    return x / np.linalg.norm(x, axis=1, keepdims=True), y

  x_train, y_train = arrays("train")
  x_test, y_test = arrays("test", _label_dict(os.path.join(out_dir, "test_labels.csv")))
  centroids = (y_train.T @ x_train) / np.maximum(y_train.sum(axis=0), 1)[:, None]
  centroids -= x_train.mean(axis=0)
  scores = (x_test - x_train.mean(axis=0)) @ centroids.T
  prior = np.tile(y_train.mean(axis=0), (len(x_test), 1))
  gap_centroid, gap_prior = gap_at_k(scores, y_test), gap_at_k(prior, y_test)
  assert gap_centroid > gap_prior + 0.2, (gap_centroid, gap_prior)


def test_overwrite_with_another_layout_leaves_no_stale_shards(tmp_path):
  out_dir = str(tmp_path / "relayout")
  small = dataclasses.replace(TINY, num_videos=60, num_shards=(3, 2, 1))
  synthetic.generate(small, out_dir)
  assert len(os.listdir(os.path.join(out_dir, "frame"))) == 6
  synthetic.generate(
    dataclasses.replace(small, num_shards=(1, 1, 1), frame_level=False), out_dir, overwrite=True
  )
  assert sorted(os.listdir(os.path.join(out_dir, "video"))) == [
    "test-00000-of-00001.tfrecord",
    "train-00000-of-00001.tfrecord",
    "validate-00000-of-00001.tfrecord",
  ]
  assert os.listdir(os.path.join(out_dir, "frame")) == []
  assert len(_read_video_level(out_dir, "train")) == 42


def test_interrupted_run_resumes_keeping_finished_shards(tiny_dir, tmp_path):
  out_dir = str(tmp_path / "resumed")

  def interrupt_in_second_shard(progress):
    if progress.videos_done > 80:
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    synthetic.generate(TINY, out_dir, progress=interrupt_in_second_shard, chunk_size=10)
  assert synthetic.load_summary(out_dir) is None  # not complete
  assert sorted(os.listdir(os.path.join(out_dir, "video"))) == ["train-00000-of-00002.tfrecord"]
  first_shard = os.path.join(out_dir, "video", "train-00000-of-00002.tfrecord")
  before = os.stat(first_shard).st_mtime_ns
  synthetic.generate(TINY, out_dir)
  assert os.stat(first_shard).st_mtime_ns == before
  assert synthetic.load_summary(out_dir)["counts"]["videos"] == NUM_SPLIT_VIDEOS
  for level in ("video", "frame"):
    names = sorted(os.listdir(os.path.join(tiny_dir, level)))
    _, mismatch, errors = filecmp.cmpfiles(
      os.path.join(tiny_dir, level), os.path.join(out_dir, level), names, shallow=False
    )
    assert not mismatch and not errors
