"""The stacker on YDF's distributed GBT (engine ydf_distributed): config and flags, the CSV shards, the
early-stopping rule against TF-DF's own, K-fold stacking on two local workers next to the tfdf engine, and
an interrupted fold."""

import dataclasses
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from test_stacking import NUM_CLASSES, _fixture
from yt8m_tf.configs import dataclass_flags
from yt8m_tf.data import folds
from yt8m_tf.stacking import candidates, distributed, stacker, ydf_local
from yt8m_tf.stores import candidates as candidate_store

SMALL = dict(num_trees=40, shrinkage=0.2, max_depth=4, early_stopping_trees=8, inner_split=4)


@pytest.fixture(scope="module")
def train_candidates(tmp_path_factory):
  """A labeled candidate set of 360 videos in several part files."""
  tmp_path = tmp_path_factory.mktemp("candidates")
  _, labels, stores, _ = _fixture(tmp_path, num_videos=360)
  prior = candidates.class_prior(labels, NUM_CLASSES)
  out = str(tmp_path / "train")
  candidates.build_candidates(stores, out, prior, labels, chunk_videos=64, part_videos=100)
  return out


@pytest.fixture(scope="module")
def ydf_workers(tmp_path_factory):
  """Two YDF workers in their own processes on free local ports (the tests' trainings share them, as
  folds do); stopped when the tests end, passed or not."""
  logs = tmp_path_factory.mktemp("workers")
  ports = _free_ports(2)
  processes = []
  try:
    for port in ports:
      with open(logs / f"worker_{port}.log", "w") as log:
        command = [sys.executable, "-m", "ydf.learner.worker_main", f"--port={port}"]
        processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    yield tuple(f"localhost:{port}" for port in ports)
  finally:
    for process in processes:
      process.terminate()
    for process in processes:
      try:
        process.wait(timeout=10)
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  try:
    for s in sockets:  # all bound at once: distinct ports
      s.bind(("localhost", 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def test_engine_and_workers_are_checked_and_parse_as_flags():
  with pytest.raises(ValueError, match="at least 2 workers"):
    stacker.StackerConfig(engine="ydf_distributed")
  with pytest.raises(ValueError, match="at least 2 workers"):
    stacker.StackerConfig(engine="ydf_distributed", workers=("localhost:1234",))
  with pytest.raises(ValueError, match="host:port"):
    stacker.StackerConfig(engine="ydf_distributed", workers=("localhost", "localhost:1235"))
  with pytest.raises(ValueError, match="ydf_distributed' only"):
    stacker.StackerConfig(workers=("localhost:1234", "localhost:1235"))
  with pytest.raises(ValueError, match="numerical"):
    stacker.StackerConfig(engine="ydf_distributed", workers=("a:1", "b:2"), class_id_semantic="categorical")
  with pytest.raises(ValueError, match="engine must be"):
    stacker.StackerConfig(engine="spark")
  assert stacker.StackerConfig(engine="ydf_distributed", workers="a:1, b:2").workers == ("a:1", "b:2")

  values = flags.FlagValues()
  dataclass_flags.define_flags(stacker.StackerConfig, values)
  values(["stack_main", "--engine=ydf_distributed", "--workers=localhost:1234,localhost:1235"])
  config = stacker.StackerConfig(**dataclass_flags.values_from_flags(stacker.StackerConfig, values))
  assert config.engine == "ydf_distributed" and config.workers == ("localhost:1234", "localhost:1235")
  default = flags.FlagValues()
  dataclass_flags.define_flags(stacker.StackerConfig, default)
  default(["stack_main"])
  read = dataclass_flags.values_from_flags(stacker.StackerConfig, default)
  assert stacker.StackerConfig(**read) == stacker.StackerConfig()  # tfdf, no workers


def test_shards_hold_the_tfdf_engines_rows_exactly(train_candidates, tmp_path, monkeypatch):
  monkeypatch.setattr(distributed, "SHARD_ROWS", 150)  # several sets of shards
  monkeypatch.setattr(stacker, "ROW_BATCH", 100)  # several batches a part
  ids = np.concatenate(candidate_store.read_video_ids(train_candidates))
  names = candidate_store.read_index(train_candidates)["features"]
  config = stacker.StackerConfig(engine="ydf_distributed", workers=("a:1", "b:2"), inner_split=4)
  train = folds.fold_of(ids, 2) != 0
  inner = stacker.inner_split_mask(ids, config.inner_split)
  fit, valid = train & ~inner, train & inner
  shards = str(tmp_path / "shards")
  manifest = distributed._write_shards(train_candidates, fit, valid, names, shards, config, {"x": 1})
  assert candidate_store.read_index(shards)["fit"] == manifest["fit"]  # the index is written last

  for split, videos in (("fit", fit), ("valid", valid)):
    expected = list(stacker._row_batches(train_candidates, videos, names, with_target=True))
    expected_features = {n: np.concatenate([f[n] for f, _ in expected]) for n in names}
    expected_target = np.concatenate([t for _, t in expected])
    assert len(manifest[split]) > 2 and manifest[f"{split}_rows"] == len(expected_target)
    tables = [_read_csv(os.path.join(shards, name)) for name in manifest[split]]
    assert all(len(table[distributed.LABEL]) for table in tables)  # no header-only shard
    # Shards split batches across workers: compare as sets of rows.
    got = np.column_stack([np.concatenate([t[n] for t in tables]) for n in [*names, distributed.LABEL]])
    want = np.column_stack([*(expected_features[n] for n in names), expected_target])
    assert np.isnan(want).any()  # missing scores travel as missing values
    np.testing.assert_array_equal(_sorted_rows(got), _sorted_rows(want))


def _read_csv(path):
  with open(path) as f:
    header = f.readline().strip().split(",")
  values = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
  return {name: values[:, i].astype(np.float32) for i, name in enumerate(header)}


def _sorted_rows(matrix):
  keys = np.nan_to_num(matrix, nan=-1e30)
  return matrix[np.lexsort(keys.T[::-1])]


def test_early_stopped_trees_follows_ydf_rule_and_tfdf_training(train_candidates):
  rule = distributed.early_stopped_trees
  falling_then_rising = [1.0 - 0.01 * i for i in range(15)] + [0.86 + 0.01 * i for i in range(25)]
  assert rule(falling_then_rising, look_ahead=5) == 15  # cut to the lowest loss
  assert rule([0.1] + [1.0 - 0.01 * i for i in range(30)], look_ahead=5) == 31  # not before iteration 10
  assert rule([1.0 - 0.01 * i for i in range(8)], look_ahead=5) == 8  # too short to cut
  # A later, lower minimum past the look-ahead is not reached: training would have stopped.
  assert rule([1.0 - 0.01 * i for i in range(12)] + [2.0] * 5 + [0.1], look_ahead=5) == 12

  # TF-DF's own early stopping keeps what the rule picks from its logged inner-split losses.
  ids = np.concatenate(candidate_store.read_video_ids(train_candidates))
  names = candidate_store.read_index(train_candidates)["features"]
  config = stacker.StackerConfig(**{**SMALL, "shrinkage": 0.5, "num_trees": 60}, local_trainer="tfdf_keras")
  model, info = stacker.train_fold(train_candidates, ids, folds.fold_of(ids, 2) != 0, config, names)
  logs = model.make_inspector().training_logs()
  assert [log.num_trees for log in logs] == list(range(1, len(logs) + 1))
  assert len(logs) < config.num_trees  # it did stop early
  assert rule([log.evaluation.loss for log in logs], config.early_stopping_trees) == info["trees"]


def test_kfold_stacking_on_two_workers_matches_the_tfdf_engine(train_candidates, tmp_path, ydf_workers):
  tfdf_config = stacker.StackerConfig(**SMALL)
  tfdf_report = stacker.run_stacking(
    train_candidates,
    str(tmp_path / "tfdf"),
    num_folds=2,
    num_classes=NUM_CLASSES,
    config=tfdf_config,
    log=lambda *_: None,
  )
  config = dataclasses.replace(tfdf_config, engine="ydf_distributed", workers=ydf_workers)
  out = str(tmp_path / "ydf")
  report = stacker.run_stacking(
    train_candidates, out, num_folds=2, num_classes=NUM_CLASSES, config=config, log=lambda *_: None
  )

  # The class prior alone ranks each video's candidates: the baseline the stacker must clear.
  prior_gap = candidate_store.RowsGap()
  for part in candidate_store.read_candidates(train_candidates, ["prior"]):
    prior_gap.add(part, part.features["prior"])
  assert report["oof"]["stacker"] > prior_gap.result() + 0.3  # measured: 0.82 against 0.17
  assert report["oof"]["stacker"] == pytest.approx(tfdf_report["oof"]["stacker"], abs=0.05)
  # Row by row too: the same rows and hyperparameters grow nearly the same trees (measured: 2e-4).
  oof, tfdf_oof = (np.load(os.path.join(tmp_path, d, "oof_scores.npy")) for d in ("ydf", "tfdf"))
  assert np.mean(np.abs(oof - tfdf_oof)) < 0.01

  ids = np.concatenate(candidate_store.read_video_ids(train_candidates))
  video_fold = folds.fold_of(ids, 2)
  names = candidate_store.read_index(train_candidates)["features"]
  stacker._tfdf()  # the TF-DF ops a fold model needs
  import tf_keras

  for k in range(2):
    fold_dir = os.path.join(out, f"fold_{k}")
    with open(os.path.join(fold_dir, "info.json")) as f:
      info = json.load(f)
    with open(os.path.join(tmp_path, "tfdf", f"fold_{k}", "info.json")) as f:
      tfdf_info = json.load(f)
    # The same rows as the tfdf engine; every tree trained, those past the inner split's best cut.
    assert (info["fit_rows"], info["fit_videos"], info["inner_videos"]) == (
      tfdf_info["fit_rows"],
      tfdf_info["fit_videos"],
      tfdf_info["inner_videos"],
    )
    assert info["trained_trees"] == config.num_trees and 1 <= info["trees"] <= config.num_trees
    # Shards, the learner's cache and checkpoints, the converted copy: all gone; the model stays.
    assert sorted(os.listdir(fold_dir)) == ["info.json", "model", "scores.npz", stacker.TRAINING_LOG]
    model = tf_keras.models.load_model(os.path.join(fold_dir, "model"))
    held_out = video_fold == k
    batch = next(stacker._row_batches(train_candidates, held_out, names, with_target=False))
    probabilities = np.asarray(model(batch, training=False))
    assert probabilities.shape == (len(batch["prior"]), 1)
    assert np.all((probabilities >= 0) & (probabilities <= 1)) and len(np.unique(probabilities)) > 10
    # The saved model is the one that scored the fold's OOF rows.
    oof = np.load(os.path.join(fold_dir, "scores.npz"))["oof"]
    np.testing.assert_allclose(probabilities[:, 0], oof[: len(probabilities)], rtol=1e-6, atol=1e-7)


def test_an_interrupted_fold_reuses_its_complete_shards(train_candidates, tmp_path, ydf_workers, monkeypatch):
  ids = np.concatenate(candidate_store.read_video_ids(train_candidates))
  names = candidate_store.read_index(train_candidates)["features"]
  config = stacker.StackerConfig(**SMALL, engine="ydf_distributed", workers=ydf_workers)
  train = folds.fold_of(ids, 2) != 0
  fold_dir = str(tmp_path / "fold_0")
  root = os.path.join(fold_dir, distributed.FOLD_FILES)

  def interrupted(*_):
    raise KeyboardInterrupt

  with monkeypatch.context() as patch:  # stopped once the shards are written
    patch.setattr(distributed, "_train", interrupted)
    with pytest.raises(KeyboardInterrupt):
      distributed.train_fold(train_candidates, ids, train, config, names, fold_dir)
  assert candidate_store.is_complete(os.path.join(root, "shards"))
  with monkeypatch.context() as patch:  # the same inputs: the shards are not written again
    patch.setattr(distributed, "_write_shards", lambda *_: pytest.fail("complete shards rewritten"))
    model, info = distributed.train_fold(train_candidates, ids, train, config, names, fold_dir)
  assert os.listdir(root) == ["keras"] and 1 <= info["trees"] <= config.num_trees
  ydf_local.remove_fold_files(fold_dir)  # as run_stacking does once the fold's model is saved
  assert not os.path.exists(root)

  # Other inputs (another seed) start over.
  other = dataclasses.replace(config, seed=1)
  with monkeypatch.context() as patch:
    patch.setattr(distributed, "_train", interrupted)
    written = []
    original = distributed._write_shards
    patch.setattr(distributed, "_write_shards", lambda *args: written.append(1) or original(*args))
    for run_config in (config, other):
      with pytest.raises(KeyboardInterrupt):
        distributed.train_fold(train_candidates, ids, train, run_config, names, fold_dir)
  assert len(written) == 2


def test_an_unreachable_worker_is_an_error_naming_it(ydf_workers):
  distributed._wait_for_workers(ydf_workers, timeout_s=30)  # both answer
  (nobody,) = [f"localhost:{port}" for port in _free_ports(1)]
  with pytest.raises(ConnectionError, match=nobody):
    distributed._wait_for_workers((*ydf_workers, nobody), timeout_s=1)
