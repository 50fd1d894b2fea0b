"""Bad input stops with an error naming file, record and field, or is skipped and counted."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY_SCHEMA, make_frames, make_videos, write_video_file
from yt8m_tf import data


def _read_all(dataset):
  return [features["id"].numpy().tolist() for features, _ in dataset]


def _good_and_bad(tmp_path, mutate, position=3, total=6):
  """A file of `total` good records where record `position` is passed through `mutate` (changed in place,
  or replaced by the bytes `mutate` returns)."""
  ids, labels, rgb, audio = make_videos(total)
  records = [
    data.video_example(i, l, {"mean_rgb": r, "mean_audio": a}, TINY_SCHEMA)
    for i, l, r, a in zip(ids, labels, rgb, audio)
  ]
  replacement = mutate(records[position])
  if isinstance(replacement, bytes):
    records[position] = replacement
  path = str(tmp_path / "mixed.tfrecord")
  data.write_records(path, records)
  return path


def _drop(key):
  return lambda record: record.features.feature.pop(key)


def _shorten(key, keep):
  def mutate(record):
    del record.features.feature[key].float_list.value[keep:]

  return mutate


def _add_label(value):
  return lambda record: record.features.feature["labels"].int64_list.value.append(value)


def _random_bytes(record):
  return np.random.default_rng(7).bytes(200)


def _retype(features, key, to):
  """`features[key]` stored as the list type `to` ("float_list", "int64_list", "bytes_list")."""
  values = {"float_list": [1.0, 2.0], "int64_list": [1, 2], "bytes_list": [b"a"]}[to]
  del features[key]
  getattr(features[key], to).value.extend(values)


def _set_value(key, position, value):
  def mutate(record):
    record.features.feature[key].float_list.value[position] = value

  return mutate


CASES = [
  ("missing_feature", _drop("mean_rgb"), "mean_rgb"),
  ("missing_id", _drop("id"), "id"),
  ("short_feature", _shorten("mean_audio", 100), "mean_audio must have 128 float values, found 100"),
  ("label_too_big", _add_label(TINY_SCHEMA.num_classes), "labels has a class id outside"),
  ("negative_label", _add_label(-1), "labels has a class id outside"),
  ("not_a_protocol_buffer", _random_bytes, "3: record is not a serialized tf.train.Example"),
  (
    "float_labels",
    lambda record: _retype(record.features.feature, "labels", "float_list"),
    "3: field labels must be of type int64_list, found float_list",
  ),
  (
    "int64_id",
    lambda record: _retype(record.features.feature, "id", "int64_list"),
    "3: field id must be of type bytes_list, found int64_list",
  ),
  (
    "nan_feature",
    _set_value("mean_rgb", 5, float("nan")),
    "3: field mean_rgb must hold finite values, found nan at position 5",
  ),
  (
    "inf_feature",
    _set_value("mean_audio", 127, float("-inf")),
    "3: field mean_audio must hold finite values, found -inf at position 127",
  ),
]


@pytest.mark.parametrize("name,mutate,message", CASES, ids=[c[0] for c in CASES])
def test_bad_video_record_raises_naming_file_record_and_field(tmp_path, name, mutate, message):
  path = _good_and_bad(tmp_path, mutate, position=3)
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    _read_all(data.video_dataset(path, 4, schema=TINY_SCHEMA))
  assert f"{path}:3" in str(error.value)
  assert message in str(error.value)


def test_unparsable_and_non_finite_records_in_one_batch_are_all_skipped(tmp_path, capfd):
  """The per-record fallback drops exactly the records that do not parse; the others are still checked."""
  ids, labels, rgb, audio = make_videos(8)
  records = [
    data.video_example(i, l, {"mean_rgb": r, "mean_audio": a}, TINY_SCHEMA)
    for i, l, r, a in zip(ids, labels, rgb, audio)
  ]
  records[1] = _random_bytes(None)
  _retype(records[2].features.feature, "labels", "float_list")
  records[5].features.feature["mean_rgb"].float_list.value[0] = float("inf")
  path = str(tmp_path / "mixed.tfrecord")
  data.write_records(path, records)
  counter = data.BadRecordCounter()
  dataset = data.video_dataset(path, 8, schema=TINY_SCHEMA, on_bad_record="skip", bad_record_counter=counter)
  batches = list(dataset)
  got = sum((features["id"].numpy().tolist() for features, _ in batches), [])
  assert got == [f"vid000{i}".encode() for i in (0, 3, 4, 6, 7)]
  np.testing.assert_array_equal(batches[0][0]["mean_rgb"].numpy()[1], rgb[3])
  assert counter.skipped_records == 3 and counter.damaged_files == 0
  err = capfd.readouterr().err
  assert f"{path}:1: record is not a serialized tf.train.Example" in err
  assert f"{path}:5: field mean_rgb must hold finite values, found inf at position 0" in err


@pytest.mark.parametrize("name,mutate,message", CASES, ids=[c[0] for c in CASES])
def test_bad_video_record_is_skipped_and_counted_on_request(tmp_path, capfd, name, mutate, message):
  path = _good_and_bad(tmp_path, mutate, position=3)
  counter = data.BadRecordCounter()
  ids = sum(
    _read_all(
      data.video_dataset(path, 4, schema=TINY_SCHEMA, on_bad_record="skip", bad_record_counter=counter)
    ),
    [],
  )
  assert len(ids) == 5 and b"vid0003" not in ids
  assert counter.skipped_records == 1 and counter.damaged_files == 0
  assert f"{path}:3" in capfd.readouterr().err


def _damage(path, how):
  content = open(path, "rb").read()
  if how == "truncated":
    content = content[:-37]
  else:  # flip one payload byte in the middle: the record CRC no longer matches
    content = bytearray(content)
    content[len(content) // 2] ^= 0xFF
    content = bytes(content)
  open(path, "wb").write(content)


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
def test_damaged_file_raises_naming_the_file(tmp_path, how):
  ids, labels, rgb, audio = make_videos(12)
  good = tmp_path / "a-good.tfrecord"
  bad = tmp_path / "b-bad.tfrecord"
  write_video_file(good, ids[:6], labels[:6], rgb[:6], audio[:6])
  write_video_file(bad, ids[6:], labels[6:], rgb[6:], audio[6:])
  _damage(str(bad), how)
  with pytest.raises(tf.errors.InvalidArgumentError, match="truncated or corrupt") as error:
    _read_all(data.video_dataset(str(tmp_path / "*.tfrecord"), 4, schema=TINY_SCHEMA))
  assert str(bad) in str(error.value) and str(good) not in str(error.value)


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
def test_damaged_file_tail_is_skipped_and_counted_on_request(tmp_path, how):
  ids, labels, rgb, audio = make_videos(12)
  write_video_file(tmp_path / "a.tfrecord", ids[:6], labels[:6], rgb[:6], audio[:6])
  write_video_file(tmp_path / "b.tfrecord", ids[6:], labels[6:], rgb[6:], audio[6:])
  _damage(str(tmp_path / "b.tfrecord"), how)
  counter = data.BadRecordCounter()
  got = sum(
    _read_all(
      data.video_dataset(
        str(tmp_path / "*.tfrecord"), 4, schema=TINY_SCHEMA, on_bad_record="skip", bad_record_counter=counter
      )
    ),
    [],
  )
  assert set(i.encode() for i in ids[:6]) <= set(got)  # the intact file is complete
  assert 6 <= len(got) < 12  # the damaged file lost at least its damaged record
  assert counter.damaged_files == 1


def _frame_file(tmp_path, mutate):
  ids, labels, _, _ = make_videos(5, seed=1)
  frames = make_frames(5, seed=1, min_frames=2, max_frames=4)
  records = [data.frame_example(i, l, f, TINY_SCHEMA) for i, l, f in zip(ids, labels, frames)]
  replacement = mutate(records[2])
  if isinstance(replacement, bytes):
    records[2] = replacement
  path = str(tmp_path / "frames.tfrecord")
  data.write_records(path, records)
  return path


def _short_frame(record):
  frame = record.feature_lists.feature_list["rgb"].feature[1].bytes_list
  frame.value[0] = frame.value[0][:1000]


def _no_audio(record):
  del record.feature_lists.feature_list["audio"].feature[:]


def _frame_label(record):
  record.context.feature["labels"].int64_list.value.append(99)


def _float_frames(record):
  frames = record.feature_lists.feature_list["audio"].feature
  for frame in frames:
    frame.ClearField("bytes_list")
    frame.float_list.value.extend([0.5] * 128)


FRAME_CASES = [
  ("frame_wrong_size", _short_frame, "rgb must have 1024 bytes per frame, found 1000"),
  ("no_audio_frames", _no_audio, "audio has no frames"),
  ("frame_label_too_big", _frame_label, "labels has a class id outside"),
  ("frame_not_a_protocol_buffer", _random_bytes, "2: record is not a serialized tf.train.SequenceExample"),
  (
    "frame_float_labels",
    lambda record: _retype(record.context.feature, "labels", "float_list"),
    "2: field labels must be of type int64_list, found float_list",
  ),
  ("frame_float_frames", _float_frames, "2: field audio must be of type bytes_list, found float_list"),
]


@pytest.mark.parametrize("name,mutate,message", FRAME_CASES, ids=[c[0] for c in FRAME_CASES])
def test_bad_frame_record_raises_or_skips(tmp_path, name, mutate, message):
  path = _frame_file(tmp_path, mutate)
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    _read_all(data.frame_dataset(path, 2, schema=TINY_SCHEMA))
  assert f"{path}:2" in str(error.value) and message in str(error.value)
  counter = data.BadRecordCounter()
  ids = sum(
    _read_all(
      data.frame_dataset(path, 2, schema=TINY_SCHEMA, on_bad_record="skip", bad_record_counter=counter)
    ),
    [],
  )
  assert len(ids) == 4 and b"vid0002" not in ids and counter.skipped_records == 1


def test_unknown_mode_is_rejected(tmp_path):
  with pytest.raises(ValueError, match="on_bad_record"):
    data.video_dataset(str(tmp_path / "x"), 2, on_bad_record="ignore")


def test_writer_refuses_bad_content():
  with pytest.raises(ValueError, match="mean_rgb has 3 values"):
    data.video_example("x", [1], {"mean_rgb": np.zeros(3), "mean_audio": np.zeros(128)}, TINY_SCHEMA)
  with pytest.raises(ValueError, match="outside"):
    data.video_example("x", [12], {"mean_rgb": np.zeros(1024), "mean_audio": np.zeros(128)}, TINY_SCHEMA)
