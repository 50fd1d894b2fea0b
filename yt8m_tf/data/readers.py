"""tf.data readers for YouTube-8M video-level and frame-level TFRecords.

Both readers yield `(features, labels)`: `features` is a dict with `id` [B] string plus the feature
tensors, `labels` is multi-hot float32 [B, num_classes] (all zeros for unlabeled test files).

Every record carries a name `"<file>:<record index>"` through the pipeline, and every field is
validated in the graph, so bad input stops with an error naming the file, the record and the field:
a truncated or corrupt file (detected by comparing the bytes read with the file size, because
TFRecordDataset's own DataLossError does not name the file), a record that does not parse (not a protocol
buffer, or a key stored as another list type than the schema's), a missing key, a feature of the wrong
length, a non-finite (NaN/Inf) video-level value, a label id outside [0, num_classes), a frame byte string
of the wrong size. With `on_bad_record="skip"` the bad records (and the unreadable tail of a damaged file)
are dropped instead, logged to stderr and counted in a `BadRecordCounter`.
"""

from __future__ import annotations

import concurrent.futures
from typing import Callable, List, Optional, Sequence, Tuple

import tensorflow as tf

from yt8m_tf.data.folds import check_fold_arguments, fold_mask_tensor
from yt8m_tf.data.schema import Schema, dequantize

_RAISE, _SKIP = "raise", "skip"
# Bytes of framing around each TFRecord payload: length (8) + length CRC (4) + data CRC (4).
_RECORD_OVERHEAD = 16
# Records are read per file in blocks of this size, so the integrity bookkeeping is per block.
_FILE_BLOCK = 256
# A key no record holds: parsing only it tells whether a record is a protocol buffer of the right kind at all.
_ABSENT_KEY = "yt8m_tf/absent key"
_LIST_TYPES = {tf.string: "bytes_list", tf.float32: "float_list", tf.int64: "int64_list"}
# How a reader's records parse: (parse of a block of records [n], which raises when one does not parse;
# record -> scalar string saying why it does not).
_Parsing = Tuple[Callable, Callable]


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
  parsing: _Parsing,
) -> tf.data.Dataset:
  """Blocks `(paths [n], indices [n], records [n])` from all files, interleaved, with a per-file integrity
  check, and without the records that do not parse (see `_unparsable_dropped`)."""
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
      damaged = tf.equal(num, 0) & tf.not_equal(consumed, size)  # at the end marker only
      payload = tf.reduce_sum(tf.cast(tf.strings.length(records), tf.int64))
      new_state = (count + num, consumed + payload + _RECORD_OVERHEAD * num)
      # (paths, indices, records, first index; then what `checked` needs: damaged, records and bytes read)
      return new_state, (
        tf.fill([num], path),
        count + tf.range(num),
        records,
        count,
        damaged,
        count,
        consumed,
      )

    def checked(paths, indices, records, damaged, count, consumed):
      # After the parse attempts, whose ignore_errors would swallow this error if it were raised before.
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
      count_op = counter._add_file(tf.cast(damaged, tf.int64)) if counter else None
      with tf.control_dependencies(_report(damaged, message, on_bad_record, count_op)):
        return paths, tf.identity(indices), records

    scanned = blocks.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), step)
    parsable = _unparsable_dropped(scanned, path, parsing, on_bad_record, counter).map(checked)
    return parsable.filter(lambda paths, indices, records: tf.size(records) > 0)

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
    about = ["field ", field, " "] if field is not None else []  # None: the problem is the whole record
    return tf.strings.join(
      [self.paths[row], ":", tf.strings.as_string(self.indices[row]), ": ", *about, problem, detail]
    )

  def enforce(self, on_bad_record: str, counter: Optional[BadRecordCounter]) -> list:
    ops = []
    for ok, field, problem, detail_fn in self._checks:
      message = lambda ok=ok, f=field, p=problem, d=detail_fn: self._message(ok, f, p, d)
      ops += _report(tf.logical_not(tf.reduce_all(ok)), message, on_bad_record)
    if on_bad_record == _SKIP and counter is not None:
      ops.append(counter._add_records(tf.reduce_sum(tf.cast(~self.valid, tf.int64))))
    return ops


def _unparsable_dropped(blocks, path, parsing: _Parsing, on_bad_record: str, counter) -> tf.data.Dataset:
  """One file's blocks `(paths, indices, records, first index, *rest)` -> `(paths, indices, records, *rest)`
  with only the records that parse; the others are reported (or skipped and counted) like any other bad
  record.

  A record that does not parse fails the parse of its whole batch with an error naming neither record nor
  field (raw bytes in its text can even make it undecodable in Python). So each block is parsed once here,
  under ignore_errors: a dropped block shows as a gap in the record numbers, and only then are its records
  read again and tried one at a time, eagerly in a py_function. Graph alternatives (nested datasets in the
  per-block function, even in an untaken tf.cond branch, or a flat_map per block) cost 30-50% of the
  reader's throughput, measured; this costs a good block one more parse.
  """
  parse, why = parsing
  tried = blocks.map(lambda *block: (*block, _needs_all(parse(block[2])))).ignore_errors()

  def try_again(path, start, end):
    """Eager: the records [start, end) of `path`, whether each parses, and why not ("" if it does)."""
    paths, indices, records = _read_again(path, start, end)
    ok = _rows_that_run(lambda record: parse(record[None]), records)
    reasons = [tf.constant("") if good else why(record) for good, record in zip(ok.numpy(), records)]
    return paths, indices, records, ok, tf.stack(reasons)

  def step(expected, block):
    paths, indices, records, first, *integrity, _ = block

    def with_the_dropped():
      dropped = tf.py_function(
        try_again, [path, expected, first], [tf.string, tf.int64, tf.string, tf.bool, tf.string]
      )
      *dropped, ok, reasons = [tf.ensure_shape(t, [None]) for t in dropped]
      kept = _kept(*dropped, ok, lambda row: reasons[row], on_bad_record, counter)
      return tuple(tf.concat([before, now], 0) for before, now in zip(kept, (paths, indices, records)))

    kept = tf.cond(first > expected, with_the_dropped, lambda: (paths, indices, records))
    return first + tf.size(records, out_type=tf.int64), (*kept, *integrity)

  return tried.scan(tf.constant(0, tf.int64), step)


def _read_again(path, first, end):
  """(paths, indices, records) of the records [first, end) of the TFRecord file `path`."""
  count = end - first
  records = tf.data.TFRecordDataset(path).skip(first).take(count).batch(count).get_single_element()
  return tf.fill([count], path), first + tf.range(count), records


def _kept(paths, indices, records, ok, reason_fn, on_bad_record: str, counter):
  """The rows where `ok`; the others are reported (raise), or logged and counted. `reason_fn(row)`: why not."""
  checks = _Checks(paths, indices)
  checks.require(ok, None, "", reason_fn)
  with tf.control_dependencies(checks.enforce(on_bad_record, counter)):
    ok = tf.identity(ok)
  return paths[ok], indices[ok], records[ok]


def _needs_all(outputs) -> tf.Tensor:
  """A scalar computed from every tensor of `outputs`: tf.data prunes ops that only a control dependency
  needs, so an attempt must output something made from its results for their errors to surface."""
  return tf.add_n([tf.size(t, out_type=tf.int64) for t in tf.nest.flatten(outputs, expand_composites=True)])


def _runs(fn, record) -> tf.Tensor:
  """Scalar bool: `fn(record)` completes without an error."""
  ran = tf.data.Dataset.from_tensors(record).map(lambda record: _needs_all(fn(record))).ignore_errors()
  return ran.reduce(False, lambda ok, _: True)


def _rows_that_run(fn, records) -> tf.Tensor:
  """[B] bool: `fn(records[j])` completes without an error."""
  count = tf.size(records, out_type=tf.int64)
  ran = tf.data.Dataset.range(count).map(lambda j: (j, _needs_all(fn(records[j])))).ignore_errors()
  return ran.reduce(
    tf.zeros([count], tf.bool), lambda ok, row: tf.tensor_scatter_nd_update(ok, [[row[0]]], [True])
  )


def _why_unparsable(record, kind: str, probe, fields) -> tf.Tensor:
  """Scalar string saying why `record` does not parse: not a `kind` at all, or the first of `fields`
  ((key, dtype) pairs; `probe(key, dtype)` parses that key alone) stored as another list type."""
  reason = tf.constant(f"record does not parse as a tf.train.{kind}")
  for key, dtype in reversed(fields):
    found = tf.constant("data that does not parse as such")
    for other, name in _LIST_TYPES.items():
      if other != dtype:
        found = tf.where(_runs(probe(key, other), record), name, found)
    wrong = f"field {key} must be of type {_LIST_TYPES[dtype]}, found "
    reason = tf.where(_runs(probe(key, dtype), record), reason, tf.strings.join([wrong, found]))
  is_kind = _runs(probe(_ABSENT_KEY, tf.string), record)
  return tf.where(is_kind, reason, f"record is not a serialized tf.train.{kind}")


def _example_parsing(spec) -> _Parsing:
  fields = [(key, feature.dtype) for key, feature in spec.items()]

  def probe(key, dtype):
    return lambda record: tf.io.parse_example(record[None], {key: tf.io.RaggedFeature(dtype)})

  return (
    lambda records: tf.io.parse_example(records, spec),
    lambda record: _why_unparsable(record, "Example", probe, fields),
  )


def _parse_examples(paths, indices, serialized, spec, on_bad_record: str, counter):
  """`tf.io.parse_example` of a batch that no reader checked (the SavedModel's input) -> (paths, indices,
  parsed) of the records that parse, the others reported. The batch is tried whole in a one-element dataset
  under ignore_errors (a try/except in the graph), then record by record if that fails: fine per request,
  too slow per training batch (hence `_unparsable_dropped` in the readers)."""
  parsing = _example_parsing(spec)

  def parse(paths, indices, serialized):
    return paths, indices, tf.io.parse_example(serialized, spec)

  def parse_the_parsable(paths, indices, serialized):
    ok = _rows_that_run(lambda record: parsing[0](record[None]), serialized)
    why = lambda row: parsing[1](serialized[row])
    return parse(*_kept(paths, indices, serialized, ok, why, on_bad_record, counter))

  args = (paths, indices, serialized)
  tried = tf.data.Dataset.from_tensors(args).map(parse).ignore_errors()
  rescue = tf.data.Dataset.from_tensors(args).map(parse_the_parsable)
  return tried.concatenate(rescue).take(1).get_single_element()


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


def _video_spec(schema: Schema) -> dict:
  spec = {schema.id_key: tf.io.RaggedFeature(tf.string), schema.labels_key: tf.io.RaggedFeature(tf.int64)}
  for name in schema.video_feature_names:
    spec[name] = tf.io.RaggedFeature(tf.float32)
  return spec


def _parse_video_batch(
  paths,
  indices,
  serialized,
  schema: Schema,
  on_bad_record: str,
  counter: Optional[BadRecordCounter],
  fold_filter,
  known_to_parse: bool = False,
):
  """known_to_parse: the records come from a reader, which parsed each of them once already."""
  spec = _video_spec(schema)
  if known_to_parse:
    parsed = tf.io.parse_example(serialized, spec)
  else:
    paths, indices, parsed = _parse_examples(paths, indices, serialized, spec, on_bad_record, counter)
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
  _check_finite(checks, parsed, schema.video_feature_names)
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


def _check_finite(checks: _Checks, parsed, names: Sequence[str]):
  """No NaN/Inf in the float features `names`. The failing rows are found from the positions of the
  non-finite values (usually none): a ragged reduce_all, a cumsum, or a message reading the values cost
  10-80% of the batch's parse time (measured)."""
  for name in names:
    values = parsed[name]
    positions = tf.where(~tf.math.is_finite(values.flat_values))[:, 0]
    splits = values.row_splits
    rows = tf.searchsorted(splits, tf.cast(positions, splits.dtype), side="right") - 1
    ok = tf.tensor_scatter_nd_update(
      tf.ones_like(checks.indices, tf.bool), rows[:, None], tf.zeros_like(rows, tf.bool)
    )
    checks.require(
      ok,
      name,
      "must hold finite values, found ",
      lambda row, values=values, positions=positions, rows=rows: _first_non_finite(
        values, positions, rows, row
      ),
    )


def _first_non_finite(values: tf.RaggedTensor, positions, rows, row):
  """ "<value> at position <i>": the first non-finite value of `row` (`positions`: flat positions of the
  non-finite values, `rows`: their rows). Runs only when the check fails."""
  first = tf.boolean_mask(positions, tf.equal(rows, tf.cast(row, rows.dtype)))[0]
  start = tf.cast(values.row_splits[row], first.dtype)
  value = tf.strings.as_string(values.flat_values[first])
  return tf.strings.join([value, " at position ", tf.strings.as_string(first - start)])


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
  parsing = _example_parsing(_video_spec(schema))
  records = _named_records(
    list_files(file_pattern),
    shuffle,
    seed,
    num_epochs,
    on_bad_record,
    bad_record_counter,
    cycle_length,
    parsing,
  )
  batches = _batched(records, batch_size, shuffle, shuffle_buffer, seed)
  dataset = batches.map(
    lambda paths, indices, serialized: _parse_video_batch(
      paths, indices, serialized, schema, on_bad_record, bad_record_counter, fold_filter, known_to_parse=True
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


def _frame_specs(schema: Schema) -> tuple:
  context_spec = {
    schema.id_key: tf.io.RaggedFeature(tf.string),
    schema.labels_key: tf.io.RaggedFeature(tf.int64),
  }
  sequence_spec = {
    feature: tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True)
    for feature in schema.feature_names
  }
  return context_spec, sequence_spec


def _sequence_example_parsing(context_spec, sequence_spec) -> _Parsing:
  fields = [(key, f.dtype) for key, f in context_spec.items()] + [(key, tf.string) for key in sequence_spec]

  def probe(key, dtype):
    if key in sequence_spec:
      # The reader's own spec for its type; any number of values per frame for the others (to name them).
      feature = sequence_spec[key] if dtype == sequence_spec[key].dtype else tf.io.RaggedFeature(dtype)
      return lambda record: tf.io.parse_single_sequence_example(record, sequence_features={key: feature})
    return lambda record: tf.io.parse_single_sequence_example(record, {key: tf.io.RaggedFeature(dtype)})

  return (
    lambda records: tf.io.parse_sequence_example(records, context_spec, sequence_spec),
    lambda record: _why_unparsable(record, "SequenceExample", probe, fields),
  )


def _parse_frame_record(
  path, index, serialized, schema: Schema, on_bad_record: str, counter: Optional[BadRecordCounter]
):
  """One SequenceExample (known to parse) -> (valid, id [1], labels [n], {feature: frame byte strings})."""
  context_spec, sequence_spec = _frame_specs(schema)
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
  parsing = _sequence_example_parsing(*_frame_specs(schema))
  records = _named_records(
    list_files(file_pattern),
    shuffle,
    seed,
    num_epochs,
    on_bad_record,
    bad_record_counter,
    cycle_length,
    parsing,
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
