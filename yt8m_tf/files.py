"""Atomic file output through tf.io.gfile (local paths and gs:// alike).

A file appears under its final name only once it is complete: writers write to a temporary sibling
and rename it, so an interrupted run never leaves a half-written file that a later stage would trust.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import tempfile
import uuid
from typing import Dict, Iterator, List

import numpy as np
import tensorflow as tf


def temporary_sibling(path: str, suffix: str = "") -> str:
  """A hidden name next to `path`. It ends in `.tmp-<random><suffix>`, so a crashed writer's
  leftover never matches a data glob such as `train-*.tfrecord`."""
  head, tail = os.path.split(path)
  return os.path.join(head, f".{tail}.tmp-{uuid.uuid4().hex[:8]}{suffix}")


_TEMPORARY_NAME = re.compile(r"^\..+\.tmp-[0-9a-f]{8}")


def remove_temporary_siblings(directory: str) -> List[str]:
  """Removes what killed writers left in `directory` (names made by `temporary_sibling`; files or
  directories); returns their names. Call it where a run restarts, before it writes again."""
  if not tf.io.gfile.isdir(directory):
    return []
  removed = sorted(name.rstrip("/") for name in tf.io.gfile.listdir(directory) if _TEMPORARY_NAME.match(name))
  for name in removed:
    path = os.path.join(directory, name)
    if tf.io.gfile.isdir(path):
      tf.io.gfile.rmtree(path)
    else:
      tf.io.gfile.remove(path)
  return removed


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
  """Yields a temporary path to write; renames it to `path` on success, deletes it on error.

  `suffix` is appended to the temporary name for writers that insist on an extension (Keras `.keras`).
  """
  parent = os.path.dirname(path)
  if parent:
    tf.io.gfile.makedirs(parent)
  tmp = temporary_sibling(path, suffix)
  try:
    yield tmp
    tf.io.gfile.rename(tmp, path, overwrite=True)
  finally:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w"):
  """`open`-like context manager whose file appears at `path` only after a clean close."""
  with atomic_path(path) as tmp:
    with tf.io.gfile.GFile(tmp, mode) as handle:
      yield handle


@contextlib.contextmanager
def atomic_tfrecord_writer(path: str, compression: str = ""):
  """A tf.io.TFRecordWriter whose file appears at `path` only after it closed cleanly."""
  with atomic_path(path) as tmp:
    with tf.io.TFRecordWriter(tmp, options=compression or None) as writer:
      yield writer


def atomic_save_npz(path: str, **arrays) -> None:
  """`np.savez` to any gfile path, appearing only once complete."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  with atomic_open(path, "wb") as f:
    f.write(buffer.getvalue())


@contextlib.contextmanager
def open_npz(path: str):
  """An `.npz` at any gfile path, its arrays by name, each read from the file only when asked for."""
  with tf.io.gfile.GFile(path, "rb") as handle:
    with np.load(handle, allow_pickle=False) as archive:
      yield archive


def load_npz(path: str) -> Dict[str, np.ndarray]:
  """The arrays of an `.npz` at any gfile path (no pickles), read whole."""
  with tf.io.gfile.GFile(path, "rb") as f:
    with np.load(io.BytesIO(f.read()), allow_pickle=False) as archive:
      return dict(archive)


# A directory of parts (prediction stores, candidate sets) is complete once its index, written last, exists.
INDEX_FILE = "index.json"


def write_index(directory: str, index: dict) -> None:
  with atomic_open(os.path.join(directory, INDEX_FILE)) as f:
    json.dump(index, f, indent=1)


def has_index(directory: str) -> bool:
  return tf.io.gfile.exists(os.path.join(directory, INDEX_FILE))


def read_index(directory: str, what: str) -> dict:
  """The directory's index; FileNotFoundError saying it is not a complete `what` when there is none."""
  path = os.path.join(directory, INDEX_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{directory} is not a complete {what} (no {INDEX_FILE})")
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def atomic_save_npy(path: str, array) -> None:
  """`np.save` to any gfile path, appearing only once complete."""
  buffer = io.BytesIO()
  np.save(buffer, array)
  with atomic_open(path, "wb") as f:
    f.write(buffer.getvalue())


def load_npy(path: str) -> np.ndarray:
  """The array of an `.npy` at any gfile path (no pickles)."""
  with tf.io.gfile.GFile(path, "rb") as f:
    return np.load(io.BytesIO(f.read()), allow_pickle=False)


@contextlib.contextmanager
def console_to_file(path: str) -> Iterator[None]:
  """Everything this process writes to stdout and stderr while the block runs, Python and C++ alike (TF-DF's
  YDF logs at length from C++), is appended to `path` instead of the console; the console comes back
  afterwards, also when the block raises."""
  sys.stdout.flush()
  sys.stderr.flush()
  with tempfile.TemporaryFile() as capture:
    saved = [os.dup(1), os.dup(2)]
    os.dup2(capture.fileno(), 1)
    os.dup2(capture.fileno(), 2)
    try:
      yield
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      os.dup2(saved[0], 1)
      os.dup2(saved[1], 2)
      os.close(saved[0])
      os.close(saved[1])
      capture.seek(0)
      with tf.io.gfile.GFile(path, "ab") as f:
        f.write(capture.read())
