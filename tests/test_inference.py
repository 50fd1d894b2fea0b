"""Inference from an exported SavedModel to the Kaggle CSV: library, binaries end to end, CSV reader and GAP."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY_SCHEMA, make_videos, write_video_file
from yt8m_tf import data, export, metrics, models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = (25, 18)  # videos per test file


def _randomized_logistic(seed=0):
  model = models.build("Logistic", num_classes=TINY_SCHEMA.num_classes)
  rng = np.random.default_rng(seed)
  model.set_weights([rng.normal(scale=3.0, size=w.shape).astype(np.float32) for w in model.weights])
  return model


def _probabilities(model, rgb, audio):
  inputs = {"mean_rgb": tf.constant(rgb), "mean_audio": tf.constant(audio)}
  return tf.sigmoid(model(inputs, training=False)).numpy()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("inference")
  model = _randomized_logistic()
  base = str(root / "serving")
  export.export_keras_model(model, base, "logistic", TINY_SCHEMA)
  videos = {}
  for shard, num in enumerate(SIZES):
    ids, labels, rgb, audio = make_videos(num, seed=10 + shard, prefix=f"test{shard}_")
    write_video_file(
      root / f"test-{shard}.tfrecord", ids, [None] * num, rgb, audio
    )  # unlabeled, like Kaggle's
    write_video_file(root / f"labeled-{shard}.tfrecord", ids, labels, rgb, audio)
    for i, video_id in enumerate(ids):
      videos[video_id] = (labels[i].tolist(), _probabilities(model, rgb[i : i + 1], audio[i : i + 1])[0])
  return {"root": root, "base": base, "model": model, "videos": videos}


def _read_csv_lines(path):
  with open(path) as f:
    return f.read().splitlines()


def _check_rows(lines, videos, top_k):
  assert lines[0] == "VideoId,LabelConfidencePairs"
  rows = {}
  for line in lines[1:]:
    video_id, pairs = line.split(",")
    fields = pairs.split(" ")
    classes = [int(c) for c in fields[0::2]]
    scores = [float(s) for s in fields[1::2]]
    assert len(classes) == top_k and all(a >= b for a, b in zip(scores, scores[1:]))
    rows[video_id] = (classes, scores)
  assert sorted(rows) == sorted(videos) and len(lines) == len(videos) + 1
  for video_id, (classes, scores) in rows.items():
    expected = videos[video_id][1]
    np.testing.assert_allclose(scores, expected[classes], rtol=1e-5)  # %g keeps 6 significant digits
    assert set(classes) == set(np.argsort(-expected, kind="stable")[:top_k])
  return rows


def test_run_inference_writes_complete_csv(setup):
  out_dir = setup["root"] / "out"
  output = str(out_dir / "submission.csv")
  counts = export.run_inference(
    os.path.join(setup["base"], "logistic"), str(setup["root"] / "test-*.tfrecord"), output, batch_size=10
  )
  assert (counts.num_videos, counts.num_files, counts.num_batches) == (sum(SIZES), 2, 5)
  # top-k is min(20, 12 classes) = 12 pairs per row.
  _check_rows(_read_csv_lines(output), setup["videos"], top_k=12)
  assert os.listdir(out_dir) == ["submission.csv"]  # no temporary left behind


def test_top_k_above_the_export_is_refused(setup):
  export.export_keras_model(setup["model"], setup["base"], "top5", TINY_SCHEMA, top_k=5)
  output = str(setup["root"] / "refused" / "submission.csv")
  with pytest.raises(ValueError, match=r"top_k must be in \[1, 5\]"):
    export.run_inference(os.path.join(setup["base"], "top5"), str(setup["root"] / "test-*.tfrecord"), output)
  assert not os.path.exists(os.path.dirname(output))  # checked before the output is opened


def test_evaluate_export_gap_equals_in_process_gap(setup):
  result = export.evaluate_export(
    os.path.join(setup["base"], "logistic", "1"), str(setup["root"] / "labeled-*.tfrecord"), TINY_SCHEMA
  )
  ids = sorted(setup["videos"])
  scores = np.stack([setup["videos"][i][1] for i in ids])
  labels = np.zeros_like(scores)
  for row, video_id in enumerate(ids):
    labels[row, setup["videos"][video_id][0]] = 1
  assert result["num_videos"] == len(ids)
  assert result["gap"] == pytest.approx(metrics.gap_at_k(scores, labels, k=20), abs=1e-6)


def test_export_and_inference_binaries_end_to_end(setup):
  """export_main on a .keras file (fp16), then inference_main on the model directory, as subprocesses."""
  root = setup["root"]
  keras_path = str(root / "best.keras")
  setup["model"].save(keras_path)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
  output = str(root / "binary" / "submission.csv")
  script = (
    f"{sys.executable} -m binaries.export_main --model_path={keras_path} --export_base={root}/binary_serving "
    f"--model_name=tiny --fp16 && {sys.executable} -m binaries.inference_main "
    f"--model_dir={root}/binary_serving/tiny --input_data_pattern='{root}/test-*.tfrecord' "
    f"--output_file={output} --batch_size=7 --top_k=5"
  )
  run = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, cwd=ROOT, timeout=180)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "Logistic" in run.stdout and "float16" in run.stdout and "budget 1,000,000,000 bytes" in run.stdout
  assert f"{root}/binary_serving/tiny/1" in run.stdout
  assert f"{sum(SIZES)} videos from 2 files" in run.stdout
  assert "inference: wrote 43 videos" in run.stderr  # progress log lines
  lines = _read_csv_lines(output)
  assert lines[0] == export.HEADER and len(lines) == sum(SIZES) + 1
  for line in lines[1:]:
    video_id, pairs = line.split(",")
    fields = pairs.split(" ")
    scores = [float(s) for s in fields[1::2]]
    assert len(fields) == 10 and all(a >= b for a, b in zip(scores, scores[1:]))
    np.testing.assert_allclose(scores, np.sort(setup["videos"][video_id][1])[::-1][:5], atol=2e-3)
  assert os.listdir(root / "binary") == ["submission.csv"]


def _test_file(path, ids, seed=0):
  """Unlabeled video-level records with these ids (bytes ids are written as they are)."""
  _, _, rgb, audio = make_videos(len(ids), seed=seed)
  data.write_records(
    str(path),
    [
      data.video_example(i, None, {"mean_rgb": r, "mean_audio": a}, TINY_SCHEMA)
      for i, r, a in zip(ids, rgb, audio)
    ],
  )
  return str(path)


def _inference_refuses(setup, tmp_path, pattern, message):
  output = str(tmp_path / "out" / "submission.csv")
  with pytest.raises(ValueError, match=re.escape(message)):
    export.run_inference(os.path.join(setup["base"], "logistic"), pattern, output, batch_size=4)
  assert not os.path.exists(output)


def test_inference_refuses_duplicate_ids_naming_both_records(setup, tmp_path):
  first = _test_file(tmp_path / "a.tfrecord", [f"a{i}" for i in range(6)])
  second = _test_file(tmp_path / "b.tfrecord", ["b0", "a4", "b2"])
  message = f"{second}:1: duplicate video id 'a4', also at {first}:4"
  _inference_refuses(setup, tmp_path, str(tmp_path / "*.tfrecord"), message)


def test_inference_refuses_non_utf8_id_naming_the_record(setup, tmp_path):
  path = _test_file(tmp_path / "a.tfrecord", ["a0", "a1", b"a\xff\xfe", "a3", "a4"])
  _inference_refuses(setup, tmp_path, path, f"{path}:2: video id b'a\\xff\\xfe' is not UTF-8 text")


def test_inference_names_the_file_and_record_the_export_refuses(setup, tmp_path):
  _test_file(tmp_path / "a.tfrecord", ["a0", "a1", "a2"])  # the bad record is in the 2nd file, 3rd batch
  records = [
    data.video_example(f"b{i}", None, {"mean_rgb": np.zeros(1024), "mean_audio": np.zeros(128)}, TINY_SCHEMA)
    for i in range(6)
  ]
  records[5] = np.random.default_rng(7).bytes(200)
  bad = str(tmp_path / "b.tfrecord")
  data.write_records(bad, records)
  message = f"{bad}:5: record is not a serialized tf.train.Example"
  _inference_refuses(setup, tmp_path, str(tmp_path / "*.tfrecord"), message)


def test_submission_roundtrip_and_gap_match_the_metric(tmp_path):
  rng = np.random.default_rng(5)
  num_videos, num_classes = 40, 30
  # Scores with 5 significant digits print exactly under %g, so the CSV round trip is lossless.
  scores = rng.integers(1, 100_000, size=(num_videos, num_classes)) / 100_000.0
  labels = (rng.random((num_videos, num_classes)) < 0.1).astype(np.float32)
  ids = [f"v{i:03d}" for i in range(num_videos)]
  classes, top_scores = metrics.top_k_per_video(scores, k=20)
  path = str(tmp_path / "sub.csv")
  assert export.write_submission(path, ids, classes, top_scores) == num_videos
  predictions = export.read_submission(path)
  assert list(predictions) == ids
  np.testing.assert_array_equal(predictions["v007"][0], classes[7])
  np.testing.assert_array_equal(predictions["v007"][1], top_scores[7])
  label_lists = {i: np.flatnonzero(row).tolist() for i, row in zip(ids, labels)}
  assert export.submission_gap(predictions, label_lists) == pytest.approx(
    metrics.gap_at_k(scores, labels), 1e-12
  )
  # A missing video still counts its positives in the denominator.
  del predictions["v000"]
  dropped = np.delete(np.arange(num_videos), 0)
  labels_without = labels.copy()
  labels_without[0] = 0
  expected = metrics.gap_at_k(scores[dropped], labels[dropped]) * labels_without.sum() / labels.sum()
  assert export.submission_gap(predictions, label_lists) == pytest.approx(expected, 1e-12)


def test_submission_is_atomic_and_validated(tmp_path):
  path = tmp_path / "sub.csv"
  with pytest.raises(RuntimeError):
    with export.open_submission(str(path)) as writer:
      writer.write_batch(["a"], np.array([[1, 0]]), np.array([[0.9, 0.1]]))
      raise RuntimeError("interrupted")
  assert os.listdir(tmp_path) == []
  with pytest.raises(ValueError, match="descending"):
    export.write_submission(str(path), ["a"], np.array([[1, 0]]), np.array([[0.1, 0.9]]))
  with pytest.raises(ValueError, match="cannot be written"):
    export.write_submission(str(path), ["a,b"], np.array([[1]]), np.array([[0.5]]))
  path.write_text("Id,Labels\na,1 0.5\n")
  with pytest.raises(ValueError, match="header"):
    export.read_submission(str(path))
