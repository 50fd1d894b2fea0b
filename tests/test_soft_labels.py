"""Soft-label store: building from rows, the .npz file, the tf.data target transform, training with it."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY_SCHEMA, make_videos, write_video_file
from yt8m_tf.stores.soft_labels import SoftLabelStore, SoftLabelStoreBuilder
from yt8m_tf.training import experiment, soft_targets
from yt8m_tf.training.inputs import dataset_for

NUM_CLASSES = TINY_SCHEMA.num_classes  # 12


def random_rows(num_videos=30, num_classes=NUM_CLASSES, seed=0, empty_every=7):
  """Shuffled flat rows plus the dense oracle; every `empty_every`-th video has no candidates."""
  rng = np.random.default_rng(seed)
  ids = [f"v{i:03d}" for i in range(num_videos)]
  oracle = np.zeros((num_videos, num_classes), np.float32)
  video_ids, class_ids, scores = [], [], []
  for i, video_id in enumerate(ids):
    count = 0 if i % empty_every == 0 else rng.integers(1, 6)
    classes = rng.choice(num_classes, count, replace=False)
    values = rng.random(count).astype(np.float32)
    oracle[i, classes] = values
    video_ids += [video_id] * count
    class_ids += list(classes)
    scores += list(values)
  order = rng.permutation(len(video_ids))
  rows = np.array(video_ids)[order], np.array(class_ids)[order], np.array(scores, np.float32)[order]
  return ids, rows, oracle


def test_from_rows_lookup_matches_dense_oracle():
  ids, rows, oracle = random_rows()
  store = SoftLabelStore.from_rows(*rows, NUM_CLASSES, all_video_ids=ids)
  assert len(store) == len(ids) and store.nnz == len(rows[0]) and store.num_classes == NUM_CLASSES
  assert "v001" in store and b"v001" in store and "nope" not in store
  query = np.random.default_rng(1).integers(0, len(ids), 50)  # any order, repeats
  np.testing.assert_array_equal(store.lookup([ids[i] for i in query]), oracle[query])
  with pytest.raises(KeyError, match="nope"):
    store.lookup(["v001", "nope"])


def test_without_all_video_ids_the_store_covers_videos_with_rows():
  ids, rows, oracle = random_rows()
  store = SoftLabelStore.from_rows(*rows, NUM_CLASSES)
  assert "v000" not in store and len(store) == sum(oracle.any(axis=1))  # v000 had no candidates
  with pytest.raises(ValueError, match="'other'.*not in all_video_ids"):
    SoftLabelStore.from_rows(["other"], [1], [0.5], NUM_CLASSES, all_video_ids=ids)


def test_builder_in_chunks_equals_from_rows():
  ids, (video_ids, class_ids, scores), _ = random_rows()
  builder = SoftLabelStoreBuilder(NUM_CLASSES)
  for chunk in np.array_split(np.arange(len(video_ids)), 3):
    builder.add(video_ids[chunk], class_ids[chunk], scores[chunk])
  assert builder.num_rows == len(video_ids)
  built = builder.build(all_video_ids=ids)
  direct = SoftLabelStore.from_rows(video_ids, class_ids, scores, NUM_CLASSES, all_video_ids=ids)
  for field in ("ids", "row_splits", "classes", "scores"):
    np.testing.assert_array_equal(getattr(built, field), getattr(direct, field))
  builder.add(video_ids[:1], class_ids[:1], scores[:1])  # the same pair again, in another chunk
  with pytest.raises(ValueError, match="more than one row"):
    builder.build()


@pytest.mark.parametrize(
  "video_ids, class_ids, scores, message",
  [
    (["a", "b", "a"], [3, 3, 3], [0.1, 0.2, 0.3], "video 'a' has more than one row for class 3"),
    (["a", "b"], [3, NUM_CLASSES], [0.1, 0.2], r"video 'b': class id 12 is outside \[0, 12\)"),
    (["a", "b"], [-1, 2], [0.1, 0.2], "video 'a': class id -1"),
    (["a", "b"], [1, 2], [0.1, float("nan")], "video 'b': score nan"),
    (["a", "b"], [1, 2], [1.5, 0.2], r"video 'a': score 1.5 .* outside \[0, 1\]"),
    (["a", "b"], [1], [0.1, 0.2], "one length"),
  ],
)
def test_bad_rows_are_rejected_naming_the_video(video_ids, class_ids, scores, message):
  with pytest.raises(ValueError, match=message):
    SoftLabelStore.from_rows(video_ids, class_ids, scores, NUM_CLASSES)


@pytest.mark.parametrize("score_dtype", [np.float32, np.float16])
def test_save_load_round_trip_leaves_no_temporary_file(tmp_path, score_dtype):
  ids, rows, oracle = random_rows()
  store = SoftLabelStore.from_rows(*rows, NUM_CLASSES, all_video_ids=ids, score_dtype=score_dtype)
  path = str(tmp_path / "soft.npz")
  store.save(path)
  assert os.listdir(tmp_path) == ["soft.npz"]
  loaded = SoftLabelStore.load(path)
  assert loaded.num_classes == NUM_CLASSES and loaded.source == path
  for field in ("ids", "row_splits", "classes", "scores"):
    np.testing.assert_array_equal(getattr(loaded, field), getattr(store, field))
    assert getattr(loaded, field).dtype == getattr(store, field).dtype
  tolerance = 1e-3 if score_dtype == np.float16 else 0
  np.testing.assert_allclose(loaded.lookup(ids), oracle, atol=tolerance)


def _rewrite(source, target, **changes):
  fields = dict(np.load(source))
  fields.update(changes)
  np.savez(target, **{k: v for k, v in fields.items() if v is not None})


def test_load_errors_name_the_file_and_the_field(tmp_path):
  ids, rows, _ = random_rows()
  good = str(tmp_path / "good.npz")
  SoftLabelStore.from_rows(*rows, NUM_CLASSES, all_video_ids=ids).save(good)
  cases = {
    "no_scores.npz": (dict(scores=None), "field 'scores' is missing"),
    "short_splits.npz": (dict(row_splits=np.array([0, 1])), "field 'row_splits' has 2 entries"),
    "unsorted.npz": (dict(ids=np.array(ids[::-1], np.bytes_)), "field 'ids' must be sorted"),
    "bad_class.npz": (dict(num_classes=np.int64(3)), r"field 'classes' has class ids outside \[0, 3\)"),
    "future.npz": (dict(format_version=np.int64(99)), "field 'format_version' is 99"),
  }
  for name, (changes, message) in cases.items():
    path = str(tmp_path / name)
    _rewrite(good, path, **changes)
    with pytest.raises(ValueError, match=f"{path}: {message}"):
      SoftLabelStore.load(path)
  garbage = tmp_path / "garbage.npz"
  garbage.write_bytes(b"not a zip file")
  with pytest.raises(ValueError, match=f"{garbage}: not a soft-label store"):
    SoftLabelStore.load(str(garbage))
  with pytest.raises(tf.errors.NotFoundError):
    SoftLabelStore.load(str(tmp_path / "absent.npz"))


def test_constructor_checks_the_csr_arrays():
  def store(ids=(b"a", b"b"), row_splits=(0, 2, 3), classes=(1, 4, 0), scores=(0.5, 0.5, 0.5)):
    arrays = [np.array(ids, np.bytes_), np.array(row_splits), np.array(classes), np.array(scores, np.float32)]
    return SoftLabelStore(*arrays, NUM_CLASSES, source="s.npz")

  np.testing.assert_array_equal(store().lookup([b"b"])[0], np.eye(NUM_CLASSES)[0] * 0.5)
  with pytest.raises(ValueError, match="s.npz: field 'classes' must rise within each video"):
    store(classes=(4, 4, 0))
  with pytest.raises(ValueError, match="s.npz: field 'row_splits' must rise from 0"):
    store(row_splits=(0, 3, 2))
  with pytest.raises(ValueError, match="s.npz: field 'scores' has values outside"):
    store(scores=(0.5, -0.1, 0.5))
  with pytest.raises(ValueError, match="s.npz: field 'ids' must be sorted and unique"):
    store(ids=(b"b", b"b"))
  empty = SoftLabelStoreBuilder(NUM_CLASSES).build(all_video_ids=["a"])
  assert len(empty) == 1 and empty.nnz == 0 and not empty.lookup(["a"]).any()


def _hard_labels(num_rows, rng):
  hard = (rng.random((num_rows, NUM_CLASSES)) < 0.3).astype(np.float32)
  hard[:, 0] = 1.0  # some positives are not stacker candidates: they get 1 - w
  return hard


def _batches(ids, hard, batch_size=5):
  features = {"id": np.array(ids, np.bytes_), "mean_rgb": np.arange(len(ids), dtype=np.float32)}
  return tf.data.Dataset.from_tensor_slices((features, hard)).batch(batch_size)


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_target_transform_mixes_soft_and_hard_rows_by_id(weight):
  ids, rows, oracle = random_rows()
  store = SoftLabelStore.from_rows(*rows, NUM_CLASSES, all_video_ids=ids)
  rng = np.random.default_rng(2)
  order = rng.permutation(len(ids))  # batches hold ids in arbitrary order, incl. videos without rows
  hard = _hard_labels(len(ids), rng)
  dataset = _batches([ids[i] for i in order], hard).map(
    soft_targets.target_transform(store, weight), num_parallel_calls=tf.data.AUTOTUNE
  )
  got_ids, got_rgb, targets = [], [], []
  for features, labels in dataset:
    assert set(features) == {"id", "mean_rgb"} and labels.dtype == tf.float32
    got_ids += [i.decode() for i in features["id"].numpy()]
    got_rgb.append(features["mean_rgb"].numpy())
    targets.append(labels.numpy())
  assert got_ids == [ids[i] for i in order]  # features pass through unchanged
  np.testing.assert_array_equal(np.concatenate(got_rgb), np.arange(len(ids)))
  expected = weight * oracle[order] + (1 - weight) * hard
  np.testing.assert_allclose(np.concatenate(targets), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_missing_video_fails_by_default_or_keeps_its_hard_labels(weight):
  ids, rows, oracle = random_rows()
  store = SoftLabelStore.from_rows(*rows, NUM_CLASSES, all_video_ids=ids)
  hard = _hard_labels(4, np.random.default_rng(3))
  dataset = _batches(["v003", "stranger", "v005", "v000"], hard, batch_size=4)
  with pytest.raises(tf.errors.InvalidArgumentError, match="no soft labels for these video ids.*stranger"):
    list(dataset.map(soft_targets.target_transform(store, weight)))
  ((_, labels),) = list(dataset.map(soft_targets.target_transform(store, weight, on_missing="hard")))
  expected = weight * oracle[[3, 0, 5, 0]] + (1 - weight) * hard
  expected[1] = hard[1]
  np.testing.assert_allclose(labels.numpy(), expected, rtol=1e-6)


def test_target_transform_argument_and_shape_checks():
  ids, rows, _ = random_rows()
  store = SoftLabelStore.from_rows(*rows, NUM_CLASSES, all_video_ids=ids)
  with pytest.raises(ValueError, match=r"weight must be in \[0, 1\]"):
    soft_targets.target_transform(store, 1.5)
  with pytest.raises(ValueError, match="on_missing"):
    soft_targets.target_transform(store, 0.5, on_missing="zeros")
  wide = _batches(ids[:2], np.zeros((2, NUM_CLASSES + 1), np.float32))
  with pytest.raises(ValueError, match="labels have 13 classes.*has 12"):
    wide.map(soft_targets.target_transform(store, 0.5))
  no_ids = tf.data.Dataset.from_tensors(({"mean_rgb": [1.0]}, np.zeros((1, NUM_CLASSES), np.float32)))
  with pytest.raises(ValueError, match="keep_ids=True"):
    no_ids.map(soft_targets.target_transform(store, 0.5))
  tensors = soft_targets.tensor_store(store)  # built by the transforms above: one table per store
  soft_targets.target_transform(store, 1.0)
  soft_targets.target_transform(store, 0.1)
  assert soft_targets.tensor_store(store) is tensors
  other = SoftLabelStore.from_rows(*rows, NUM_CLASSES, all_video_ids=ids)
  assert soft_targets.tensor_store(other) is not tensors


@pytest.fixture(scope="module")
def tiny_records(tmp_path_factory):
  directory = tmp_path_factory.mktemp("records")
  train = make_videos(48, seed=5, prefix="train")
  write_video_file(directory / "train-0.tfrecord", *train)
  write_video_file(directory / "eval-0.tfrecord", *make_videos(16, seed=6, prefix="eval"))
  rng = np.random.default_rng(7)
  train_ids = train[0]
  video_ids = np.repeat(train_ids, 4)
  class_ids = np.concatenate([rng.choice(NUM_CLASSES, 4, replace=False) for _ in train_ids])
  scores = rng.random(len(video_ids)).astype(np.float32)
  store_path = str(directory / "soft.npz")
  SoftLabelStore.from_rows(video_ids, class_ids, scores, NUM_CLASSES).save(store_path)
  return directory, store_path, train


def test_training_pipeline_uses_the_store(tiny_records, tmp_path):
  directory, store_path, (ids, labels, _, _) = tiny_records
  config = experiment.TrainConfig(
    model="Logistic",
    train_dir=str(tmp_path / "run"),
    train_data_pattern=str(directory / "train-*.tfrecord"),
    eval_data_pattern=str(directory / "eval-*.tfrecord"),
    num_classes=NUM_CLASSES,
    max_frames=TINY_SCHEMA.max_frames,
    batch_size=8,
    soft_labels=store_path,
    soft_label_weight=0.5,
  )
  base = dataset_for("video", config.train_data_pattern, 8, schema=config.schema, keep_ids=True, shuffle=True)
  store = SoftLabelStore.load(store_path)
  hard = np.zeros((len(ids), NUM_CLASSES), np.float32)
  for row, positives in enumerate(labels):
    hard[row, positives] = 1.0
  row_of = {video_id: row for row, video_id in enumerate(ids)}
  seen = 0
  for features, targets in experiment.apply_training_transforms(base, config):
    batch_ids = [i.decode() for i in features["id"].numpy()]
    rows = [row_of[i] for i in batch_ids]
    expected = 0.5 * store.lookup(batch_ids) + 0.5 * hard[rows]
    np.testing.assert_allclose(targets.numpy(), expected, rtol=1e-6)
    seen += len(batch_ids)
  assert seen == len(ids)


def _one_epoch_config(directory, store_path, tmp_path, **overrides):
  """A one-epoch Logistic run on the tiny records, targets 0.5 * soft + 0.5 * hard."""
  return experiment.TrainConfig(
    model="Logistic",
    train_dir=str(tmp_path / "run"),
    train_data_pattern=str(directory / "train-*.tfrecord"),
    eval_data_pattern=str(directory / "eval-*.tfrecord"),
    num_classes=NUM_CLASSES,
    max_frames=TINY_SCHEMA.max_frames,
    batch_size=8,
    epochs=1,
    shuffle_buffer=64,
    soft_labels=store_path,
    soft_label_weight=0.5,
    verbose=0,
    **overrides,
  )


def test_run_training_with_soft_labels(tiny_records, tmp_path):
  directory, store_path, _ = tiny_records
  config = _one_epoch_config(directory, store_path, tmp_path)
  logs = experiment.run_training(config)
  assert len(logs) == 1 and math.isfinite(logs[0]["loss"]) and logs[0]["loss"] > 0
  history = json.loads((tmp_path / "run" / "history.json").read_text())
  assert history[0]["epoch"] == 1


def test_missed_positives_hard_keeps_positives_the_teacher_did_not_score():
  ids, rows, oracle = random_rows()
  store = SoftLabelStore.from_rows(*rows, NUM_CLASSES, all_video_ids=ids)
  hard = _hard_labels(len(ids), np.random.default_rng(4))
  dataset = _batches(ids, hard, batch_size=len(ids))
  ((_, labels),) = list(dataset.map(soft_targets.target_transform(store, 0.5, missed_positives="hard")))
  candidate = np.zeros_like(oracle)
  candidate[[ids.index(v) for v in rows[0]], rows[1]] = 1
  expected = np.where(candidate == 1, 0.5 * oracle + 0.5 * hard, hard)
  np.testing.assert_allclose(labels.numpy(), expected, rtol=1e-6, atol=1e-7)
  assert ((candidate == 0) & (hard == 1)).any()  # the case under test occurs
  # at weight 1 a missed positive still trains on 1 (the seed's formula gives 0)
  ((_, labels),) = list(dataset.map(soft_targets.target_transform(store, 1.0, missed_positives="hard")))
  np.testing.assert_allclose(labels.numpy(), np.where(candidate == 1, oracle, hard), rtol=1e-6, atol=1e-7)
  # "max": every hard positive keeps 1, the teacher only lifts negatives
  ((_, labels),) = list(dataset.map(soft_targets.target_transform(store, 0.5, missed_positives="max")))
  np.testing.assert_allclose(labels.numpy(), np.maximum(hard, 0.5 * oracle), rtol=1e-6, atol=1e-7)
  assert ((candidate == 1) & (hard == 1)).any() and ((candidate == 1) & (hard == 0)).any()
  with pytest.raises(ValueError, match="missed_positives must be one of"):
    soft_targets.target_transform(store, 0.5, missed_positives="drop")


def test_temperature_softens_the_teacher_probabilities():
  ids = ["a", "b"]
  store = SoftLabelStore.from_rows(["a", "a", "b"], [0, 1, 2], [0.9, 0.1, 1.0], NUM_CLASSES)
  hard = np.zeros((2, NUM_CLASSES), np.float32)
  ((_, labels),) = list(
    _batches(ids, hard, batch_size=2).map(soft_targets.target_transform(store, 1.0, temperature=2.0))
  )
  labels = labels.numpy()
  logit = lambda p: math.log(p / (1 - p))  # noqa: E731
  sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
  assert labels[0, 0] == pytest.approx(sigmoid(logit(0.9) / 2), rel=1e-5)  # 0.75
  assert labels[0, 1] == pytest.approx(sigmoid(logit(0.1) / 2), rel=1e-5)  # 0.25
  assert labels[1, 2] == pytest.approx(sigmoid(logit(1 - 1e-6) / 2), rel=1e-4)  # clipped: a finite logit
  assert labels.sum() == pytest.approx(0.75 + 0.25 + labels[1, 2], rel=1e-5)  # nothing else is set
  with pytest.raises(ValueError, match="temperature must be positive"):
    soft_targets.target_transform(store, 1.0, temperature=0.0)


def test_transductive_batches_train_unlabeled_videos_on_the_teacher_alone(tiny_records, tmp_path):
  directory, store_path, _ = tiny_records
  eval_ids = make_videos(16, seed=6, prefix="eval")[0]
  teacher_path = str(tmp_path / "test_soft.npz")
  # The teacher scores only class 0 of the eval videos, at 0.25: their batches are easy to tell apart
  # (and their own labels, present in these records, must not leak into the targets).
  SoftLabelStore.from_rows(eval_ids, [0] * len(eval_ids), [0.25] * len(eval_ids), NUM_CLASSES).save(
    teacher_path
  )
  config = _one_epoch_config(
    directory,
    store_path,
    tmp_path,
    transductive_data_pattern=str(directory / "eval-*.tfrecord"),
    transductive_soft_labels=teacher_path,
  )
  teacher_row = np.zeros(NUM_CLASSES, np.float32)
  teacher_row[0] = 0.25
  kinds = []
  for features, targets in experiment.training_dataset(config):
    assert "id" not in features
    teacher_only = [np.array_equal(row, teacher_row) for row in targets.numpy()]
    assert len(set(teacher_only)) == 1  # whole batches of one kind
    kinds.append(teacher_only[0])
  assert kinds.count(True) == 16 // 8 and kinds.count(False) == 48 // 8
  logs = experiment.run_training(config)
  assert len(logs) == 1 and math.isfinite(logs[0]["loss"])
  with pytest.raises(ValueError, match="go together"):
    experiment.TrainConfig(**{**config.to_json(), "transductive_soft_labels": None})
