"""tf.data readers for YouTube-8M video-level and frame-level TFRecords.

Both readers yield `(features, labels)`: `features` is a dict with `id` [B] string plus the feature
tensors, `labels` is multi-hot float32 [B, num_classes] (all zeros for unlabeled test files).

Every record carries a name `"<file>:<record index>"` through the pipeline, and every field is
validated in the graph, so bad input stops with an error naming the file, the record and the field:
a truncated or corrupt file (detected by comparing the bytes read with the file size, because
TFRecordDataset's own DataLossError does not name the file), a missing key, a feature of the wrong
length, a label id outside [0, num_classes), a frame byte string of the wrong size. With
`on_bad_record="skip"` the bad records (and the unreadable tail of a damaged file) are dropped instead,
logged to stderr and counted in a `BadRecordCounter`.
"""

from __future__ import annotations

import concurrent.futures
from typing import List, Optional, Sequence

import tensorflow as tf

from yt8m_tf.data.folds import check_fold_arguments, fold_mask_tensor
from yt8m_tf.data.schema import Schema, dequantize

_RAISE, _SKIP = "raise", "skip"
# Bytes of framing around each TFRecord payload: length (8) + length CRC (4) + data CRC (4).
_RECORD_OVERHEAD = 16
# Records are read per file in blocks of this size, so the integrity bookkeeping is per block.
_FILE_BLOCK = 256


class BadRecordCounter:
  """Counts what `on_bad_record="skip"` dropped; read `.skipped_records` / `.damaged_files` after a pass."""

  def __init__(self):
    self._records = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_records")
    self._files = tf.Variable(0, dtype=tf.int64, trainable=False, name="damaged_files")

  @property
  def skipped_records(self) -> int:
    return int(self._records.numpy())

  @property
  def damaged_files(self) -> int:
    return int(self._files.numpy())

  def _add_records(self, count):
    return self._records.assign_add(tf.cast(count, tf.int64))

  def _add_file(self, damaged):
    return self._files.assign_add(tf.cast(damaged, tf.int64))


def list_files(file_pattern: str) -> List[str]:
  """Sorted files matching a glob, or a comma-separated list of globs (local or gs://)."""
  patterns = [p.strip() for p in str(file_pattern).split(",") if p.strip()]
  files = sorted({f for p in patterns for f in tf.io.gfile.glob(p)})
  if not files:
    raise FileNotFoundError(f"no files match {file_pattern!r}")
  return files


def _file_sizes(files: Sequence[str]) -> List[int]:
  # Stats are cheap locally but one round trip each on GCS, hence the thread pool.
  with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
    return list(pool.map(lambda f: tf.io.gfile.stat(f).length, files))


def _named_records(
  files: Sequence[str],
  shuffle: bool,
  seed: Optional[int],
  num_epochs: Optional[int],
  on_bad_record: str,
  counter: Optional[BadRecordCounter],
  cycle_length: int,
) -> tf.data.Dataset:
  """Blocks `(paths [n], indices [n], records [n])` from all files, interleaved, with a per-file integrity check."""
  sizes = _file_sizes(files)
  files_ds = tf.data.Dataset.from_tensor_slices((list(files), tf.constant(sizes, tf.int64)))
  if shuffle:
    files_ds = files_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
  files_ds = files_ds.repeat(num_epochs)

  def read_file(path, size):
    # ignore_errors ends the file at its first unreadable record; comparing the bytes read with the
    # file size then tells a clean end from truncation or corruption.
    blocks = tf.data.TFRecordDataset(path, buffer_size=1 << 20).ignore_errors().batch(_FILE_BLOCK)
    end_marker = tf.data.Dataset.from_tensors(tf.zeros([0], tf.string))
    blocks = blocks.concatenate(end_marker)

    def step(state, records):
      count, consumed = state
      num = tf.shape(records, out_type=tf.int64)[0]
      is_end = tf.equal(num, 0)
      damaged = is_end & tf.not_equal(consumed, size)
      message = lambda: tf.strings.join(
        [
          path,
          ": truncated or corrupt TFRecord file after record ",
          tf.strings.as_string(count - 1),
          " (read ",
          tf.strings.as_string(consumed),
          " of ",
          tf.strings.as_string(size),
          " bytes)",
        ]
      )
      check = _report(
        damaged, message, on_bad_record, counter._add_file(tf.cast(damaged, tf.int64)) if counter else None
      )
      with tf.control_dependencies(check):
        indices = count + tf.range(num)
      payload = tf.reduce_sum(tf.cast(tf.strings.length(records), tf.int64))
      new_state = (count + num, consumed + payload + _RECORD_OVERHEAD * num)
      return new_state, (tf.fill([num], path), indices, records)

    scanned = blocks.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), step)
    return scanned.filter(lambda paths, indices, records: tf.size(records) > 0)

  return files_ds.interleave(
    read_file,
    cycle_length=min(cycle_length, len(files)),
    num_parallel_calls=tf.data.AUTOTUNE,
    deterministic=_deterministic(shuffle, seed),
  )


def _report(is_bad, message_fn, on_bad_record: str, count_op=None) -> list:
  """Ops that raise (mode raise) or log (mode skip) `message_fn()` when the scalar `is_bad` holds.

  The message is only built in the failing branch, so valid input never pays for string formatting.
  """

  def fail():
    message = message_fn()
    if on_bad_record == _RAISE:
      with tf.control_dependencies([tf.debugging.Assert(False, [message], summarize=1)]):
        return tf.constant(True)
    return _print_skip(message)

  flagged = tf.cond(is_bad, fail, lambda: tf.constant(False))
  return [flagged] + ([count_op] if count_op is not None else [])


def _print_skip(message):
  tf.print("yt8m_tf: skipping bad input:", message, output_stream="file:///dev/stderr")
  return tf.constant(True)


def _batched(
  records: tf.data.Dataset, batch_size: int, shuffle: bool, shuffle_buffer: int, seed: Optional[int]
) -> tf.data.Dataset:
  """Record blocks -> shuffled (optionally) batches of `(paths [B], indices [B], records [B])`."""
  if shuffle:
    return records.unbatch().shuffle(shuffle_buffer, seed=seed).batch(batch_size)
  return records.rebatch(batch_size)


class _Checks:
  """Per-record validity conditions, each with the message to show for its first failing record."""

  def __init__(self, paths: tf.Tensor, indices: tf.Tensor):
    self.paths = paths
    self.indices = indices
    self.valid = tf.ones_like(indices, tf.bool)
    self._checks = []

  def require(self, ok: tf.Tensor, field: str, problem: str, detail_fn=None):
    """`ok` [B] bool; `detail_fn(row)` -> scalar string describing the failing row (built lazily)."""
    self.valid &= ok
    self._checks.append((ok, field, problem, detail_fn))

  def _message(self, ok, field, problem, detail_fn):
    row = tf.argmin(tf.cast(ok, tf.int32))
    detail = detail_fn(row) if detail_fn is not None else ""
    return tf.strings.join(
      [self.paths[row], ":", tf.strings.as_string(self.indices[row]), ": field ", field, " ", problem, detail]
    )

  def enforce(self, on_bad_record: str, counter: Optional[BadRecordCounter]) -> list:
    ops = []
    for ok, field, problem, detail_fn in self._checks:
      message = lambda ok=ok, f=field, p=problem, d=detail_fn: self._message(ok, f, p, d)
      ops += _report(tf.logical_not(tf.reduce_all(ok)), message, on_bad_record)
    if on_bad_record == _SKIP and counter is not None:
      ops.append(counter._add_records(tf.reduce_sum(tf.cast(~self.valid, tf.int64))))
    return ops


def _check_id_and_labels(checks: _Checks, ids: tf.RaggedTensor, labels: tf.RaggedTensor, schema: Schema):
  num_ids = ids.row_lengths()
  checks.require(
    tf.equal(num_ids, 1),
    schema.id_key,
    "must hold exactly one id, found ",
    lambda row: tf.strings.as_string(num_ids[row]),
  )
  low = tf.reduce_min(labels, axis=1, keepdims=False)
  high = tf.reduce_max(labels, axis=1, keepdims=False)
  has = labels.row_lengths() > 0
  in_range = ~has | ((low >= 0) & (high < schema.num_classes))
  checks.require(
    in_range,
    schema.labels_key,
    f"has a class id outside [0, {schema.num_classes}): ",
    lambda row: tf.strings.reduce_join(tf.strings.as_string(labels[row]), separator=" "),
  )


def _multi_hot(labels: tf.RaggedTensor, num_classes: int) -> tf.Tensor:
  rows = tf.shape(labels.row_lengths(), out_type=tf.int64)[0]
  indices = tf.stack([tf.cast(labels.value_rowids(), tf.int64), labels.flat_values], axis=1)
  updates = tf.ones_like(labels.flat_values, tf.float32)
  return tf.tensor_scatter_nd_update(tf.zeros([rows, num_classes], tf.float32), indices, updates)


def _parse_video_batch(
  paths,
  indices,
  serialized,
  schema: Schema,
  on_bad_record: str,
  counter: Optional[BadRecordCounter],
  fold_filter,
):
  spec = {schema.id_key: tf.io.RaggedFeature(tf.string), schema.labels_key: tf.io.RaggedFeature(tf.int64)}
  for name in schema.video_feature_names:
    spec[name] = tf.io.RaggedFeature(tf.float32)
  parsed = tf.io.parse_example(serialized, spec)
  checks = _Checks(paths, indices)
  _check_id_and_labels(checks, parsed[schema.id_key], parsed[schema.labels_key], schema)
  for name, size in zip(schema.video_feature_names, schema.feature_sizes):
    length = parsed[name].row_lengths()
    checks.require(
      tf.equal(length, size),
      name,
      f"must have {size} float values, found ",
      lambda row, length=length: tf.strings.as_string(length[row]),
    )
  with tf.control_dependencies(checks.enforce(on_bad_record, counter)):
    valid = tf.identity(checks.valid)
  all_valid = tf.reduce_all(valid)
  ids = tf.reshape(_valid_rows(parsed[schema.id_key], valid, all_valid).flat_values, [-1])
  features = {"id": ids}
  for name, size in zip(schema.video_feature_names, schema.feature_sizes):
    values = _valid_rows(parsed[name], valid, all_valid).flat_values
    features[name] = tf.reshape(values, [-1, size])
  labels = _multi_hot(_valid_rows(parsed[schema.labels_key], valid, all_valid), schema.num_classes)
  if fold_filter is not None:
    in_folds = fold_filter(ids)
    features = {k: tf.boolean_mask(v, in_folds) for k, v in features.items()}
    labels = tf.boolean_mask(labels, in_folds)
  return features, labels


def _valid_rows(ragged: tf.RaggedTensor, valid, all_valid) -> tf.RaggedTensor:
  # ragged.boolean_mask costs ~5x the parse itself, so it only runs for batches with a bad record.
  return tf.cond(all_valid, lambda: ragged, lambda: tf.ragged.boolean_mask(ragged, valid))


def _fold_filter(num_folds: int, folds, exclude_folds):
  if folds is None and not exclude_folds:
    return None
  check_fold_arguments(num_folds, folds, exclude_folds)  # fail at construction, not mid-iteration
  return lambda ids: fold_mask_tensor(ids, num_folds, folds, exclude_folds)


def _deterministic(shuffle: bool, seed: Optional[int]) -> bool:
  """Unseeded shuffling may reorder parallel work for speed; a seed promises a reproducible order."""
  return not shuffle or seed is not None


def _check_mode(on_bad_record: str):
  if on_bad_record not in (_RAISE, _SKIP):
    raise ValueError(f"on_bad_record must be 'raise' or 'skip', got {on_bad_record!r}")


def video_dataset(
  file_pattern: str,
  batch_size: int,
  *,
  schema: Schema = Schema(),
  shuffle: bool = False,
  shuffle_buffer: int = 10_000,
  seed: Optional[int] = None,
  num_epochs: Optional[int] = 1,
  num_folds: int = 5,
  folds: Optional[Sequence[int]] = None,
  exclude_folds: Optional[Sequence[int]] = None,
  drop_remainder: bool = False,
  on_bad_record: str = _RAISE,
  bad_record_counter: Optional[BadRecordCounter] = None,
  cycle_length: int = 8,
  prefetch: bool = True,
) -> tf.data.Dataset:
  """Video-level records -> `({"id", "mean_rgb" [B,1024], "mean_audio" [B,128]}, labels [B,C])`.

  Args:
    file_pattern: glob (or comma-separated globs) of TFRecord files; gs:// works.
    batch_size: videos per batch (the last batch may be smaller unless `drop_remainder`).
    schema: keys, sizes and class count (default: the 2018 release).
    shuffle: shuffle file order each epoch and records within `shuffle_buffer`.
    seed: makes the shuffle reproducible.
    num_epochs: passes over the data; None repeats forever.
    num_folds, folds, exclude_folds: keep only videos whose `fold_of(id, num_folds)` is in `folds`
      and not in `exclude_folds` (the same folds for video- and frame-level data).
    on_bad_record: "raise" (default) or "skip" (drop, log and count in `bad_record_counter`).
  """
  _check_mode(on_bad_record)
  fold_filter = _fold_filter(num_folds, folds, exclude_folds)
  records = _named_records(
    list_files(file_pattern), shuffle, seed, num_epochs, on_bad_record, bad_record_counter, cycle_length
  )
  batches = _batched(records, batch_size, shuffle, shuffle_buffer, seed)
  dataset = batches.map(
    lambda paths, indices, serialized: _parse_video_batch(
      paths, indices, serialized, schema, on_bad_record, bad_record_counter, fold_filter
    ),
    num_parallel_calls=tf.data.AUTOTUNE,
    deterministic=_deterministic(shuffle, seed),
  )
  # Filtering makes batches smaller than asked; rebatch restores the size without an element-wise copy.
  if fold_filter is not None or on_bad_record == _SKIP or drop_remainder:
    dataset = dataset.rebatch(batch_size, drop_remainder=drop_remainder)
  return dataset.prefetch(tf.data.AUTOTUNE) if prefetch else dataset


def _first_wrong_length(lengths, size):
  wrong = tf.not_equal(lengths, size)
  return tf.cond(tf.reduce_any(wrong), lambda: tf.boolean_mask(lengths, wrong)[0], lambda: 0)


def _as_ragged_row(values):
  """A [n] vector as a ragged [1, n] batch, so the batched checks apply to single records."""
  return tf.RaggedTensor.from_row_lengths(values, tf.reshape(tf.size(values, out_type=tf.int64), [1]))


def _parse_frame_record(
  path, index, serialized, schema: Schema, on_bad_record: str, counter: Optional[BadRecordCounter]
):
  """One SequenceExample -> (valid, id [1], labels [n], {feature: frame byte strings [frames]})."""
  context_spec = {
    schema.id_key: tf.io.RaggedFeature(tf.string),
    schema.labels_key: tf.io.RaggedFeature(tf.int64),
  }
  sequence_spec = {
    feature: tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True)
    for feature in schema.feature_names
  }
  context, sequences = tf.io.parse_single_sequence_example(serialized, context_spec, sequence_spec)
  checks = _Checks(tf.reshape(path, [1]), tf.reshape(index, [1]))
  _check_id_and_labels(
    checks, _as_ragged_row(context[schema.id_key]), _as_ragged_row(context[schema.labels_key]), schema
  )
  first_count = None
  for feature, size in zip(schema.feature_names, schema.feature_sizes):
    frames = sequences[feature]
    count = tf.size(frames, out_type=tf.int64)
    lengths = tf.strings.length(frames)
    checks.require(tf.reshape(count > 0, [1]), feature, "has no frames")
    checks.require(
      tf.reshape(tf.reduce_all(tf.equal(lengths, size)), [1]),
      feature,
      f"must have {size} bytes per frame, found ",
      lambda row, lengths=lengths, size=size: tf.strings.as_string(_first_wrong_length(lengths, size)),
    )
    if first_count is None:
      first_count = count
    else:
      checks.require(
        tf.reshape(tf.equal(count, first_count), [1]),
        feature,
        f"must have as many frames as {schema.feature_names[0]}, found ",
        lambda row, count=count: tf.strings.as_string(count),
      )
  with tf.control_dependencies(checks.enforce(on_bad_record, counter)):
    valid = tf.identity(checks.valid[0])
  return valid, context[schema.id_key], context[schema.labels_key], sequences


def _decode_frames(video_id, labels, sequences, schema: Schema):
  """Frame byte strings -> dequantized float32 [max_frames, size] per feature, zero-padded."""
  features = {"id": tf.reshape(video_id, [])}
  num_frames = None
  for feature, size in zip(schema.feature_names, schema.feature_sizes):
    frames = sequences[feature][: schema.max_frames]  # truncate before decoding: less work
    values = dequantize(tf.io.decode_raw(frames, tf.uint8, fixed_length=size))
    values = tf.reshape(values, [-1, size])
    num_frames = tf.shape(values)[0]
    # Padding is exact zeros after dequantization, as in the starter code, not dequantize(0).
    padded = tf.pad(values, [[0, schema.max_frames - num_frames], [0, 0]])
    features[feature] = tf.ensure_shape(padded, [schema.max_frames, size])  # static T for the models
  features["num_frames"] = tf.cast(num_frames, tf.int32)
  multi_hot = tf.scatter_nd(labels[:, None], tf.ones_like(labels, tf.float32), [schema.num_classes])
  return features, tf.minimum(multi_hot, 1.0)


def frame_dataset(
  file_pattern: str,
  batch_size: int,
  *,
  schema: Schema = Schema(),
  shuffle: bool = False,
  shuffle_buffer: int = 2_000,
  seed: Optional[int] = None,
  num_epochs: Optional[int] = 1,
  num_folds: int = 5,
  folds: Optional[Sequence[int]] = None,
  exclude_folds: Optional[Sequence[int]] = None,
  drop_remainder: bool = False,
  on_bad_record: str = _RAISE,
  bad_record_counter: Optional[BadRecordCounter] = None,
  cycle_length: int = 8,
  prefetch: bool = True,
) -> tf.data.Dataset:
  """Frame-level records -> `({"id", "rgb" [B,T,1024], "audio" [B,T,128], "num_frames" [B]}, labels)`.

  T = `schema.max_frames` (300). Frames are dequantized exactly as the starter code and zero-padded;
  `num_frames` = min(frames in the record, T). Arguments as in `video_dataset`. Records are parsed one
  at a time: for SequenceExamples that measured faster here than batched parsing.
  """
  _check_mode(on_bad_record)
  fold_filter = _fold_filter(num_folds, folds, exclude_folds)
  records = _named_records(
    list_files(file_pattern), shuffle, seed, num_epochs, on_bad_record, bad_record_counter, cycle_length
  ).unbatch()
  if shuffle:
    records = records.shuffle(shuffle_buffer, seed=seed)
  parsed = records.map(
    lambda path, index, serialized: _parse_frame_record(
      path, index, serialized, schema, on_bad_record, bad_record_counter
    ),
    num_parallel_calls=tf.data.AUTOTUNE,
    deterministic=_deterministic(shuffle, seed),
  )
  if on_bad_record == _SKIP:
    parsed = parsed.filter(lambda valid, *_: valid)
  if fold_filter is not None:
    parsed = parsed.filter(lambda valid, video_id, *_: tf.reshape(fold_filter(video_id), []))
  dataset = parsed.map(
    lambda valid, video_id, labels, sequences: _decode_frames(video_id, labels, sequences, schema),
    num_parallel_calls=tf.data.AUTOTUNE,
    deterministic=_deterministic(shuffle, seed),
  )
  dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
  return dataset.prefetch(tf.data.AUTOTUNE) if prefetch else dataset
