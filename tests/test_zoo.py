"""Zoo flagfiles, store GAP, and a 2-member K-fold zoo run end to end."""

import os

import numpy as np
import pytest

from yt8m_tf import metrics, settings_record, stores
from yt8m_tf.data import Schema, synthetic
from yt8m_tf.training import zoo

DEMO_ZOO = os.path.join(os.path.dirname(zoo.__file__), "..", "configs", "zoo", "demo")


def test_parse_flagfile_types_json_and_errors(tmp_path):
  path = tmp_path / "m.flags"
  path.write_text(
    '# comment\n--model=ResNetLike\n--model_params={"inner_size": 8}\n--epochs=3\n'
    "--mixup_alpha=0.4\n--early_stopping_patience=None\n"
  )
  values = zoo.parse_flagfile(str(path))
  assert values == {
    "model": "ResNetLike",
    "model_params": {"inner_size": 8},
    "epochs": 3,
    "mixup_alpha": 0.4,
    "early_stopping_patience": None,
  }
  path.write_text("--model=Logistic\n--fold=2\n")
  with pytest.raises(ValueError, match=r"m.flags:2: --fold is set by the zoo run"):
    zoo.parse_flagfile(str(path))
  path.write_text("--model=Logistic\n--epochs=three\n")
  with pytest.raises(ValueError, match=r"m.flags:2: --epochs"):
    zoo.parse_flagfile(str(path))
  path.write_text("--model=Logistic\n--hidden=3\n")
  with pytest.raises(ValueError, match="not a train_main flag"):
    zoo.parse_flagfile(str(path))


def test_demo_zoo_flagfiles_parse_and_name_registered_models():
  names = zoo.member_names(DEMO_ZOO)
  assert {"logistic", "resnet_like", "resnet_like_mixup", "frame_logistic", "nextvlad"} <= set(names)
  for name in names:
    zoo.member_config(DEMO_ZOO, name, "/tmp/unused", 0, 3, "unused", Schema())


def test_store_gap_counts_positives_outside_the_stored_top_k(tmp_path):
  rng = np.random.default_rng(0)
  # Distinct multiples of 1/2048 are exact in float16: the store's rounding creates no ties.
  scores = (rng.permutation(1500).reshape(50, 30) / 2048).astype(np.float32)
  labels = (rng.random((50, 30)) < 0.1).astype(np.float32)
  labels[0, np.argmin(scores[0])] = 1  # a positive no top-K list holds
  ids = np.array([f"v{i}".encode() for i in range(50)])
  truth = {i: np.flatnonzero(l) for i, l in zip(ids, labels)}
  for top_k in (30, 25):
    writer = stores.PredictionWriter(str(tmp_path / f"s{top_k}"), 30, store_top_k=top_k)
    writer.add(ids, scores)
    writer.close()
    got = stores.store_gap(str(tmp_path / f"s{top_k}"), truth)
    assert got == pytest.approx(metrics.gap_at_k(scores, labels), abs=1e-12)


def test_zoo_runs_video_and_frame_members_kfold(tmp_path):
  data_dir = str(tmp_path / "data")
  synthetic.generate(
    synthetic.SyntheticConfig(
      num_videos=240, num_classes=20, min_frames=2, max_frames=4, mean_frames=3, num_shards=(2, 1, 1)
    ),
    data_dir,
  )
  zoo_dir = tmp_path / "zoo"
  zoo_dir.mkdir()
  (zoo_dir / "video.flags").write_text("--model=Logistic\n--epochs=1\n--batch_size=32\n--verbose=0\n")
  (zoo_dir / "frames.flags").write_text(
    "--model=FrameLevelLogistic\n--epochs=1\n--batch_size=32\n--verbose=0\n"
  )
  test_labels = stores.labels_from_csv(f"{data_dir}/test_labels.csv")
  results = {}
  for name, level in (("video", "video"), ("frames", "frame")):
    results.update(
      zoo.run_zoo(
        str(zoo_dir),
        str(tmp_path / "work"),
        f"{data_dir}/{level}/train-*.tfrecord",
        Schema(num_classes=20, max_frames=4),
        num_folds=2,
        test_data_pattern=f"{data_dir}/{level}/test-*.tfrecord",
        members=[name],
        test_labels=test_labels,
        log=lambda *_: None,
      )
    )
  assert set(results) == {"video", "frames"}
  for name, result in results.items():
    assert 0 < result["oof_gap"] <= 1 and result["oof_videos"] == 240 * 0.7
    test_store = str(tmp_path / "work" / name / "predictions" / "test")
    assert stores.is_complete(test_store)
    assert 0 < result["test_gap"] <= 1 and result["test_gap"] == stores.store_gap(test_store, test_labels)
    assert result["seconds"] > 0
  # A finished member is not reused under other settings: the refusal names each change.
  with pytest.raises(settings_record.SettingsChanged, match=r"epochs: 1 -> 2; num_folds: 2 -> 3"):
    zoo.run_zoo(
      str(zoo_dir),
      str(tmp_path / "work"),
      f"{data_dir}/video/train-*.tfrecord",
      Schema(num_classes=20, max_frames=4),
      num_folds=3,
      test_data_pattern=f"{data_dir}/video/test-*.tfrecord",
      members=["video"],
      epochs=2,
    )
