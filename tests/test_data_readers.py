"""Readers: shapes, values, labels, shuffling, epochs, folds, both formats agree."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY_SCHEMA, make_frames, make_videos, write_video_file
from yt8m_tf import data


def _collect(dataset):
  ids, feats, labels = [], {}, []
  for features, batch_labels in dataset:
    ids.extend(x.decode() for x in features["id"].numpy())
    for key, value in features.items():
      if key != "id":
        feats.setdefault(key, []).append(value.numpy())
    labels.append(batch_labels.numpy())
  return ids, {k: np.concatenate(v) for k, v in feats.items()}, np.concatenate(labels)


@pytest.fixture
def video_files(tmp_path):
  ids, labels, rgb, audio = make_videos(45)
  write_video_file(tmp_path / "train-0.tfrecord", ids[:20], labels[:20], rgb[:20], audio[:20])
  write_video_file(tmp_path / "train-1.tfrecord", ids[20:], labels[20:], rgb[20:], audio[20:])
  return str(tmp_path / "train-*.tfrecord"), ids, labels, rgb, audio


def test_video_dataset_returns_every_record_with_exact_values(video_files):
  pattern, ids, labels, rgb, audio = video_files
  got_ids, feats, got_labels = _collect(data.video_dataset(pattern, 8, schema=TINY_SCHEMA))
  assert sorted(got_ids) == sorted(ids)
  order = [ids.index(i) for i in got_ids]
  np.testing.assert_array_equal(feats["mean_rgb"], rgb[order])
  np.testing.assert_array_equal(feats["mean_audio"], audio[order])
  expected = np.zeros((len(ids), TINY_SCHEMA.num_classes), np.float32)
  for row, video in enumerate(order):
    expected[row, labels[video]] = 1
  np.testing.assert_array_equal(got_labels, expected)
  assert got_labels.dtype == np.float32


def test_video_dataset_batch_shapes_and_drop_remainder(video_files):
  pattern = video_files[0]
  sizes = [f["id"].shape[0] for f, _ in data.video_dataset(pattern, 8, schema=TINY_SCHEMA)]
  assert sizes == [8, 8, 8, 8, 8, 5]
  sizes = [
    f["id"].shape[0] for f, _ in data.video_dataset(pattern, 8, schema=TINY_SCHEMA, drop_remainder=True)
  ]
  assert sizes == [8] * 5
  features, labels = next(iter(data.video_dataset(pattern, 4, schema=TINY_SCHEMA)))
  assert features["mean_rgb"].shape == (4, 1024) and features["mean_audio"].shape == (4, 128)
  assert labels.shape == (4, TINY_SCHEMA.num_classes) and features["id"].dtype == tf.string


def test_shuffle_is_seeded_and_epochs_repeat(video_files):
  pattern, ids = video_files[0], video_files[1]
  run = lambda seed: _collect(
    data.video_dataset(pattern, 7, schema=TINY_SCHEMA, shuffle=True, seed=seed, shuffle_buffer=64)
  )[0]
  first, again, other = run(1), run(1), run(2)
  assert first == again and first != other and sorted(first) == sorted(ids)
  two = _collect(data.video_dataset(pattern, 7, schema=TINY_SCHEMA, num_epochs=2))[0]
  assert sorted(two) == sorted(ids * 2)


def test_fold_filters_partition_the_data(video_files):
  pattern, ids = video_files[0], video_files[1]
  folds = data.fold_of(ids, 3)
  seen = []
  for fold in range(3):
    held_out = _collect(data.video_dataset(pattern, 8, schema=TINY_SCHEMA, num_folds=3, folds=[fold]))[0]
    rest = _collect(data.video_dataset(pattern, 8, schema=TINY_SCHEMA, num_folds=3, exclude_folds=[fold]))[0]
    assert sorted(held_out) == sorted(i for i, f in zip(ids, folds) if f == fold)
    assert sorted(held_out + rest) == sorted(ids)
    seen += held_out
  assert sorted(seen) == sorted(ids)


def test_filtered_batches_are_full_sized(video_files):
  pattern = video_files[0]
  sizes = [
    f["id"].shape[0]
    for f, _ in data.video_dataset(pattern, 4, schema=TINY_SCHEMA, num_folds=2, exclude_folds=[0])
  ]
  assert all(s == 4 for s in sizes[:-1]) and 0 < sizes[-1] <= 4


def test_unlabeled_records_give_zero_labels(tmp_path):
  ids, _, rgb, audio = make_videos(5)
  write_video_file(tmp_path / "test.tfrecord", ids, [None] * 5, rgb, audio)
  got_ids, _, labels = _collect(data.video_dataset(str(tmp_path / "test.tfrecord"), 8, schema=TINY_SCHEMA))
  assert got_ids == ids and labels.shape == (5, TINY_SCHEMA.num_classes) and labels.sum() == 0


def test_missing_files_error_names_the_pattern(tmp_path):
  with pytest.raises(FileNotFoundError, match="nothing-here"):
    data.video_dataset(str(tmp_path / "nothing-here*.tfrecord"), 4)


def test_comma_separated_patterns(video_files, tmp_path):
  files = data.list_files(f"{tmp_path}/train-0.tfrecord, {tmp_path}/train-1.tfrecord")
  assert [f.rsplit("/", 1)[1] for f in files] == ["train-0.tfrecord", "train-1.tfrecord"]


def test_frame_dataset_dequantizes_pads_and_counts_frames(tmp_path):
  ids, labels, _, _ = make_videos(9, seed=3)
  frames = make_frames(9, seed=3)  # 1..14 frames; max_frames is 10, so some are truncated
  records = [data.frame_example(i, l, f, TINY_SCHEMA) for i, l, f in zip(ids, labels, frames)]
  data.write_records(str(tmp_path / "frames.tfrecord"), records)
  dataset = data.frame_dataset(str(tmp_path / "frames.tfrecord"), 4, schema=TINY_SCHEMA)
  # The frame axis is static (models such as NeXtVLAD reshape with it); only the batch axis is unknown.
  assert dataset.element_spec[0]["rgb"].shape.as_list() == [None, 10, 1024]
  assert dataset.element_spec[0]["audio"].shape.as_list() == [None, 10, 128]
  got_ids, feats, got_labels = _collect(dataset)
  assert got_ids == ids
  assert feats["rgb"].shape == (9, 10, 1024) and feats["audio"].shape == (9, 10, 128)
  for row, frame in enumerate(frames):
    n = min(len(frame["rgb"]), 10)
    assert feats["num_frames"][row] == n
    expected = frame["rgb"][:n].astype(np.float32) * (4 / 255) + 4 / 512 - 2
    np.testing.assert_allclose(feats["rgb"][row, :n], expected, rtol=0, atol=1e-6)
    assert not feats["rgb"][row, n:].any() and not feats["audio"][row, n:].any()
    assert set(np.flatnonzero(got_labels[row])) == set(labels[row].tolist())
  assert feats["num_frames"].dtype == np.int32


def test_video_and_frame_level_share_folds(tmp_path):
  ids, labels, rgb, audio = make_videos(30, seed=5)
  write_video_file(tmp_path / "video.tfrecord", ids, labels, rgb, audio)
  frames = make_frames(30, seed=5, max_frames=3)
  data.write_records(
    str(tmp_path / "frame.tfrecord"),
    [data.frame_example(i, l, f, TINY_SCHEMA) for i, l, f in zip(ids, labels, frames)],
  )
  for fold in range(4):
    video_ids = _collect(
      data.video_dataset(str(tmp_path / "video.tfrecord"), 8, schema=TINY_SCHEMA, num_folds=4, folds=[fold])
    )[0]
    frame_ids = _collect(
      data.frame_dataset(str(tmp_path / "frame.tfrecord"), 8, schema=TINY_SCHEMA, num_folds=4, folds=[fold])
    )[0]
    assert video_ids == frame_ids


def test_2017_schema_reads_video_id_key_and_4716_classes(tmp_path):
  schema = data.Schema.yt8m_2017()
  record = data.video_example("old", [4715], {"mean_rgb": np.ones(1024), "mean_audio": np.ones(128)}, schema)
  assert "video_id" in record.features.feature
  data.write_records(str(tmp_path / "old.tfrecord"), [record])
  features, labels = next(iter(data.video_dataset(str(tmp_path / "old.tfrecord"), 2, schema=schema)))
  assert features["id"].numpy().tolist() == [b"old"] and labels.shape == (1, 4716)
  assert labels.numpy()[0, 4715] == 1


def _graph_functions(dataset):
  graph = tf.raw_ops.DatasetToGraphV2(input_dataset=tf.data.experimental.to_variant(dataset))
  return tf.compat.v1.GraphDef.FromString(graph.numpy()).library.function


@pytest.mark.parametrize("level", ["video", "frame"])
def test_reader_functions_are_single_device_plain_calls(video_files, tmp_path, level):
  """What the readers' start-up speed rests on (BUILD_NOTES): every function of the pipeline is marked
  to be instantiated on one device, and no function is called through a (multi-device) PartitionedCall."""
  if level == "video":
    dataset = data.video_dataset(video_files[0], 8, schema=TINY_SCHEMA, exclude_folds=[0])
  else:
    ids, labels, _, _ = make_videos(3)
    records = [data.frame_example(i, l, f, TINY_SCHEMA) for i, l, f in zip(ids, labels, make_frames(3))]
    data.write_records(str(tmp_path / "frames.tfrecord"), records)
    dataset = data.frame_dataset(str(tmp_path / "frames.tfrecord"), 2, schema=TINY_SCHEMA)
  functions = _graph_functions(dataset)
  assert len(functions) >= 4
  assert all(f.attr["experimental_ints_on_device"].b for f in functions)
  assert not [n.op for f in functions for n in f.node_def if n.op.endswith("PartitionedCall")]
  assert sum(f["id"].shape[0] for f, _ in dataset) == (
    3 if level == "frame" else 45 - sum(data.fold_of(i, 5) == 0 for i in video_files[1])
  )


def test_reader_built_inside_a_tf_function_reads_every_record(video_files):
  @tf.function
  def count():
    dataset = data.video_dataset(video_files[0], 8, schema=TINY_SCHEMA)
    return dataset.reduce(tf.constant(0), lambda n, batch: n + tf.shape(batch[0]["id"])[0])

  assert int(count()) == 45
