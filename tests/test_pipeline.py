"""The main job on the tiny preset: every stage runs, the levels agree with each other, the exports
reload in a fresh process, finished stages skip, and the binary prints the report."""

import dataclasses
import html
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from yt8m_tf import models, pipeline
from yt8m_tf.data import synthetic
from yt8m_tf.export import large_ensemble, submission
from yt8m_tf.files import load_npy
from yt8m_tf.models.video.ensemble import ensemble_parameter_count
from yt8m_tf.stores import candidates as candidate_store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("pipeline") / "work")
  logs = []
  config = pipeline.preset("tiny", workdir)
  report = pipeline.Pipeline(config, log=logs.append).run()
  return config, report, logs


def _gap(report, name):
  return next(row for row in report["gap@20"] if row["name"].startswith(name))


def test_every_stage_runs_and_reports(finished):
  config, report, logs = finished
  assert set(report["wall_seconds"]) == set(pipeline.STAGES) | {"total"}
  started = [line for line in logs if line.endswith(" running")]
  assert [line.split("]")[0][1:] for line in started] == list(pipeline.STAGES)
  assert started[0].startswith("[data] stage 1/7, 0:00:0") and "[stacker] stage 4/7, " in started[3]
  # From the second stage on, the time left (the stage times so far, scaled by the demo's shares).
  assert "left" not in started[0] and all(" left, running" in line for line in started[1:])
  # The L1 zoo counts its training runs with the time left, naming the next one; so do the students.
  # Video-level members first, then the frame-level ones (each level reads its own records).
  runs = len(config.l1_members) * config.num_folds
  frame_runs = len(pipeline.FRAME_MEMBERS) * config.num_folds
  zoo = [line for line in logs if line.startswith("[zoo] ") and "training runs" in line]
  assert zoo[0].startswith(f"[zoo] 0/{runs - frame_runs} training runs (0%)")
  assert any(line.startswith(f"[zoo] {runs - frame_runs}/{runs - frame_runs}") for line in zoo)
  assert zoo[-1].startswith(f"[zoo] {frame_runs}/{frame_runs}")
  assert "next logistic fold 0 (Logistic)" in zoo[0] and "left" in zoo[1]
  # One hard-label student, then the soft ones whose mean is submitted (two in the tiny preset, as in the demo).
  assert config.distill_students == 2
  assert any(line.startswith("[distill] 1/3 students") and "next soft 1/2" in line for line in logs)
  for member in config.l1_members:
    row = _gap(report, member)
    assert 0.0 < row["oof_gap"] <= 1.0 and 0.0 < row["test_gap"] <= 1.0
  for name in ("mean of L1", "TF-DF GBT stacker"):
    assert 0.0 < _gap(report, name)["oof_gap"] <= 1.0
  for name in (
    "EnsembleModel, hard",
    "EnsembleModel, soft",
    "export: distilled fp32",
    "export: L1 + stacker",
  ):
    assert 0.0 < _gap(report, name)["test_gap"] <= 1.0
  with open(os.path.join(config.workdir, "report.json")) as f:
    assert json.load(f)["gap@20"] == report["gap@20"]
  assert set(report["sizes"]) == {"distilled", "distilled_fp16", "large_ensemble"}
  with open(
    os.path.join(config.workdir, "export", pipeline.TFDF_LOG)
  ) as f:  # TF-DF's C++ lines, off the console
    assert "Engine" in f.read()
  assert report["sizes"]["distilled_fp16"]["stored_bytes"] * 2 == report["sizes"]["distilled"]["stored_bytes"]


def test_the_report_is_the_ladder(finished):
  """best L1 (chosen by OOF GAP) -> L1 mean -> stacker -> hard student -> soft student -> submitted CSV,
  each with its test GAP and the change from the step before."""
  _, report, _ = finished
  ladder = report["ladder"]
  assert [s["step"] for s in ladder] == [step for step, _, _ in pipeline.LADDER]
  l1 = [r for r in report["gap@20"] if r["level"] == "L1" and "mean" not in r["name"]]
  assert ladder[0]["name"] == max(l1, key=lambda r: r["oof_gap"])["name"]
  assert ladder[2]["test_gap"] == _gap(report, "TF-DF GBT stacker")["test_gap"]
  assert ladder[5]["test_gap"] == _gap(report, "export: distilled fp32")["test_gap"]
  assert ladder[0]["delta"] is None
  for before, step in zip(ladder, ladder[1:]):
    assert step["delta"] == pytest.approx(step["test_gap"] - before["test_gap"])
  assert "the method, step by step" in pipeline.format_report(report)
  config, _, _ = finished
  with open(os.path.join(config.workdir, pipeline.REPORT_PAGE)) as f:  # the same report as a page
    page = f.read()
  assert page.count("<svg") == 2 and page.rstrip().endswith("</html>")
  for step in ladder:  # each step drawn as a bar with its value, every model in the table
    assert f">{step['step']}</text>" in page and f"{step['test_gap']:.4f}" in page
  for row in report["gap@20"]:
    assert html.escape(row["name"]) in page
  with open(os.path.join(config.workdir, pipeline.REPORT_PICTURE), "rb") as f:  # and as a picture
    picture = tf.io.decode_png(f.read()).numpy()
  ladder_blue = np.all(picture == (76, 120, 168), axis=-1)
  assert picture.shape[2] == 3 and ladder_blue.any(axis=1).sum() >= len(ladder) * 10  # six bars drawn
  # TensorBoard: the ladder as a curve over its steps, every model's GAP at the run's seed.
  accumulator = event_accumulator.EventAccumulator(
    os.path.join(config.workdir, pipeline.REPORT_SUMMARIES), size_guidance={event_accumulator.TENSORS: 0}
  )
  accumulator.Reload()
  curve = accumulator.Tensors("ladder/test_gap")
  assert [e.step for e in curve] == list(range(len(ladder)))
  assert [float(tf.make_ndarray(e.tensor_proto)) for e in curve] == pytest.approx(
    [s["test_gap"] for s in ladder]
  )
  stacker = accumulator.Tensors("test_gap/L2: TF-DF GBT stacker")
  assert [e.step for e in stacker] == [config.seed]


def test_levels_agree(finished):
  config, report, _ = finished
  # The exported distilled model scores what the in-process model scored, both from float32 scores (the CSV
  # rounds them to 6 digits; scored through a float16 store, the in-process figure once differed by 0.0020).
  assert _gap(report, "export: distilled fp32")["test_gap"] == pytest.approx(
    _gap(report, "EnsembleModel, soft labels, mean of")["test_gap"], abs=1e-4
  )
  # The L1 + stacker graph reproduces the offline stacker on the test set.
  assert _gap(report, "export: L1 + stacker")["test_gap"] == pytest.approx(
    _gap(report, "TF-DF GBT stacker")["test_gap"], abs=1e-4
  )
  # The soft labels cover every training video with the stacker's OOF probabilities.
  stores = json.load(open(os.path.join(config.workdir, "stages", "stacker.json")))
  assert (
    stores["soft_labels"]["videos"]
    == candidate_store.read_index(os.path.join(config.workdir, "candidates", "train"))["videos"]
  )
  # The CSV is in Kaggle's format: every test video, 20 pairs by descending score.
  rows = submission.read_submission(os.path.join(config.workdir, "submission.csv"))
  assert len(rows) == json.load(open(os.path.join(config.workdir, "stages", "inference.json")))["videos"]
  classes, scores = next(iter(rows.values()))
  assert len(classes) == 20 and np.all(np.diff(scores) <= 0)


def test_large_ensemble_export_reloads_in_a_fresh_process(finished, tmp_path):
  """The teacher as ONE SavedModel, run in a fresh process on raw records, equals the offline stacker's
  test scores: with its frame-level member it serves SequenceExamples (`from_sequence_examples`); the
  same export of the video-level members alone serves Examples (`from_examples`)."""
  config, _, _ = finished
  job = pipeline.Pipeline(config, log=lambda line: None)
  video_members = job.members(models.VIDEO)
  large_ensemble.export_large_ensemble(
    large_ensemble.l1_fold_models({m: job.l1_dir(m) for m in video_members}, config.num_folds),
    [job.path("stacker", pipeline.VIDEO_MEMBERS_DIR, f"fold_{k}", "model") for k in range(config.num_folds)],
    load_npy(job.path("l1", "class_prior.npy")),
    config.store_top_k,
    str(tmp_path / "export"),
    "video_members",
    job.schema(),
    version=1,
  )
  runs = {
    "frames": (
      os.path.join(config.workdir, "export", "large_ensemble", "1"),
      "from_sequence_examples",
      "sequence_example_bytes",
      job.test_pattern(models.FRAME),
      job.path("candidates"),
      job.path("stacker"),
    ),
    "video": (
      str(tmp_path / "export" / "video_members" / "1"),
      "from_examples",
      "example_bytes",
      job.test_pattern(models.VIDEO),
      job.path("candidates", pipeline.VIDEO_MEMBERS_DIR),
      job.path("stacker", pipeline.VIDEO_MEMBERS_DIR),
    ),
  }
  script = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ["TFDF_DISABLE_WELCOME_MESSAGE"] = "1"
    import numpy as np, tensorflow as tf
    import tensorflow_decision_forests  # registers the stacker's ops
    export_dir, signature, input_name, pattern, out = sys.argv[1:]
    loaded = tf.saved_model.load(export_dir)
    assert signature in loaded.signatures, sorted(loaded.signatures)
    records = tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern)))
    ids, probabilities = [], []
    for batch in records.batch(256):
      result = loaded.signatures[signature](**{input_name: batch})
      ids.append(result["id"].numpy().astype(bytes)); probabilities.append(result["probabilities"].numpy())
    np.savez(out, ids=np.concatenate(ids), probabilities=np.concatenate(probabilities))
    """
  )
  for name, (export_dir, signature, input_name, pattern, candidates_dir, stacker_dir) in runs.items():
    out = str(tmp_path / f"{name}.npz")
    result = subprocess.run(
      [sys.executable, "-c", script, export_dir, signature, input_name, pattern, out],
      capture_output=True,
      text=True,
      timeout=300,
      cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    exported = np.load(out)
    rows = candidate_store.load_candidates(os.path.join(candidates_dir, "test"))
    offline = np.load(os.path.join(stacker_dir, "test_scores.npy"))
    order = {video_id: i for i, video_id in enumerate(exported["ids"])}
    at_rows = exported["probabilities"][[order[v] for v in rows.ids[rows.row_video]], rows.class_id]
    np.testing.assert_allclose(at_rows, offline, atol=1e-5, err_msg=name)
    # Non-candidates score exactly 0.
    assert np.count_nonzero(exported["probabilities"]) == np.count_nonzero(offline), name


def test_the_frame_level_member_has_its_row_and_the_stacker_without_it(finished):
  config, report, _ = finished
  dbof = _gap(report, "frame_dbof (DBoF)")
  assert 0.0 < dbof["oof_gap"] <= 1.0 and 0.0 < dbof["test_gap"] <= 1.0
  without = _gap(report, f"TF-DF GBT stacker, {pipeline.VIDEO_MEMBERS_ONLY}")
  assert without["level"] == "L2" and 0.0 < without["oof_gap"] <= 1.0 and 0.0 < without["test_gap"] <= 1.0
  assert report["ladder"][2]["name"] == "TF-DF GBT stacker"  # the ladder's stacker has every member
  full = candidate_store.read_index(os.path.join(config.workdir, "candidates", "train"))
  video_only = candidate_store.read_index(
    os.path.join(config.workdir, "candidates", pipeline.VIDEO_MEMBERS_DIR, "train")
  )
  assert "score_frame_dbof" in full["features"] and "score_frame_dbof" not in video_only["features"]
  assert full["videos"] == video_only["videos"] and full["rows"] >= video_only["rows"]
  assert f"stacker, {pipeline.VIDEO_MEMBERS_ONLY}" in pipeline.format_report(report)


def test_a_frame_level_member_without_frame_records_is_refused_before_any_work(tmp_path):
  workdir = str(tmp_path / "work")
  config = pipeline.preset(
    "tiny", workdir, synthetic=synthetic.SyntheticConfig(num_videos=50, frame_level=False)
  )
  with pytest.raises(ValueError, match=r"\['frame_dbof'\] are frame-level.*synthetic.frame_level=True"):
    pipeline.Pipeline(config).run()
  assert not os.path.exists(workdir)
  own = pipeline.preset("tiny", workdir, train_data_pattern="a*", test_data_pattern="b*")
  with pytest.raises(ValueError, match="set frame_train_data_pattern and frame_test_data_pattern"):
    pipeline.Pipeline(own).run()


def test_finished_stages_skip_and_the_binary_prints_the_report(finished):
  config, report, _ = finished
  logs = []
  pipeline.Pipeline(config, log=logs.append).run()
  assert sum("already done" in line for line in logs) == len(pipeline.STAGES)

  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run(
    [sys.executable, "-m", "binaries.pipeline_main", f"--workdir={config.workdir}", "--preset=tiny"],
    capture_output=True,
    text=True,
    env=env,
    timeout=300,
    cwd=REPO,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert "TF-DF GBT stacker" in result.stdout and "test GAP@20" in result.stdout
  stacker_row = _gap(report, "TF-DF GBT stacker")
  assert f"{stacker_row['test_gap']:.4f}" in result.stdout


def test_the_binary_refuses_other_settings_on_a_finished_workdir(finished):
  """Run again with another seed and fold count, a finished workdir is refused (it used to print the old
  report), naming each changed setting and the way out; the report stays as it was."""
  config, report, _ = finished
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "binaries.pipeline_main",
      f"--workdir={config.workdir}",
      "--preset=tiny",
      "--seed=7",
      "--num_folds=3",
      "--distill_students=3",
    ],
    capture_output=True,
    text=True,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    timeout=300,
    cwd=REPO,
  )
  assert result.returncode != 0
  assert "num_folds: 2 -> 3 (stage l1); seed: 0 -> 7 (stage l1)" in result.stderr
  assert "distill_students: 2 -> 3 (stage distill)" in result.stderr
  assert "--redo_from=l1" in result.stderr and "TF-DF GBT stacker" not in result.stdout
  with open(os.path.join(config.workdir, "report.json")) as f:
    assert json.load(f)["gap@20"] == report["gap@20"]


def test_a_finished_student_is_kept_not_trained_again(finished):
  """After a kill in a later stage, a rerun of the distill stage keeps the students already trained
  (their best.keras and the test GAP measured on it)."""
  config, report, _ = finished
  job = pipeline.Pipeline(config, log=lambda line: None)
  student = job.distill_config("hard")
  best = os.path.join(student.train_dir, "best.keras")
  before = os.stat(best).st_mtime_ns
  entry = job.train_student(student)
  assert os.stat(best).st_mtime_ns == before
  first = job.result("distill")["hard"]
  assert entry["test_gap"] == pytest.approx(first["test_gap"], abs=1e-12)


def test_the_submitted_model_is_the_mean_of_soft_students_of_their_own_seeds(finished):
  config, report, _ = finished
  job = pipeline.Pipeline(config, log=lambda line: None)
  students = [job.distill_config("soft", i) for i in range(config.distill_students)]
  assert len({s.seed for s in students}) == len({s.train_dir for s in students}) == config.distill_students
  entry = job.result("distill")["soft"]
  assert [s["epochs"] for s in entry["students"]] == [config.distill_epochs] * config.distill_students
  # The submitted row is the students' mean, which differs from each student alone; the export serves it.
  assert all(s["test_gap"] != entry["test_gap"] for s in entry["students"])
  submitted = _gap(report, "EnsembleModel, soft labels, mean of 2 (submitted)")
  assert submitted["test_gap"] == entry["test_gap"]
  assert report["sizes"]["distilled"]["params"] == sum(s["params"] for s in entry["students"])
  # Soft and hard compare one student with one at the same budget: the hard baseline trains one,
  # with the seed of the first soft student.
  hard = job.result("distill")["hard"]
  assert "students" not in hard and len(job.student_models("hard")) == 1
  assert job.distill_config("hard").seed == students[0].seed
  assert _gap(report, "EnsembleModel, soft labels")["test_gap"] == entry["students"][0]["test_gap"]
  assert _gap(report, "EnsembleModel, hard labels")["test_gap"] == hard["test_gap"]
  steps = {step["step"]: step["name"] for step in report["ladder"]}
  assert steps["student, soft labels"] == "EnsembleModel, soft labels"


def test_transductive_students_train_on_the_test_videos_too(finished, tmp_path):
  """--transductive adds a third variant (its own row, never submitted): one student, as the baseline."""
  config, _, _ = finished
  workdir = str(tmp_path / "work")
  shutil.copytree(config.workdir, workdir)  # the finished students are kept, the fixture's run untouched
  job = pipeline.Pipeline(dataclasses.replace(config, workdir=workdir, transductive=True), log=lambda l: None)
  result = job.stage_distill()
  assert list(result) == ["hard", "soft", "transductive"]
  assert job.distill_config("transductive").transductive_data_pattern == job.test_pattern()
  assert "students" not in result["transductive"] and len(job.student_models("transductive")) == 1
  assert 0.0 < result["transductive"]["test_gap"] <= 1.0
  assert result["soft"] == job.result("distill")["soft"]  # kept, not trained again


def test_a_missing_student_is_named_with_the_way_out(finished):
  config, _, _ = finished
  more = dataclasses.replace(config, distill_students=config.distill_students + 1)
  job = pipeline.Pipeline(more, log=lambda line: None)
  missing = f"student_{config.distill_students}/best.keras: run the job with --redo_from=distill"
  with pytest.raises(FileNotFoundError, match=missing):
    job.student_models("soft")


@pytest.mark.parametrize(
  "change, named",
  [
    ({"num_folds": 1}, "num_folds must be >= 2"),
    ({"num_folds": 0}, "num_folds must be >= 2"),
    ({"distill_batch_size": 0}, "distill_batch_size must be >= 1"),
    ({"l1_members": ()}, "l1_members must name"),
    ({"soft_label_weight": 1.5}, r"soft_label_weight must be in \[0, 1\]"),
    ({"train_data_pattern": "x"}, "go together"),
  ],
)
def test_settings_that_make_no_sense_are_refused_before_any_work(tmp_path, change, named):
  with pytest.raises(ValueError, match=named):
    pipeline.preset("tiny", str(tmp_path / "work"), **change)
  assert not (tmp_path / "work").exists()


def test_the_binary_names_a_bad_flag(tmp_path):
  result = subprocess.run(
    [sys.executable, "-m", "binaries.pipeline_main", f"--workdir={tmp_path}/work", "--num_folds=1"],
    capture_output=True,
    text=True,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    timeout=300,
    cwd=REPO,
  )
  assert result.returncode != 0 and "num_folds must be >= 2, got 1" in result.stderr
  assert not (tmp_path / "work").exists()


@pytest.mark.paper  # opt-in: ~13 min and ~18 GB peak memory on 2 cores, beyond the suite's budget
def test_paper_preset_wiring_runs_end_to_end_with_capped_steps(tmp_path):
  """The paper preset's wiring on tiny data, every training capped at 2 steps: the full-size ResNetLike
  (one of the preset's members) K=5, the preset's stacker settings, the full-size EnsembleModel students
  and their export under the 10^9-byte budget. Batch sizes are the preset's except the students' (128
  instead of 1024: one step of the 247M-parameter model at 1024 takes ~20 s on 2 cores)."""
  config = pipeline.preset(
    "paper",
    str(tmp_path / "work"),
    synthetic=synthetic.SyntheticConfig(num_videos=600, num_shards=(2, 1, 1), frame_level=False),
    l1_members=("resnet_like",),
    max_steps=2,
    distill_batch_size=128,
  )
  paper = pipeline.preset("paper", "unused")
  assert config.num_folds == 5 and config.stacker == paper.stacker and config.stacker.num_trees == 3000
  report = pipeline.Pipeline(config, log=lambda *_: None).run()
  row = _gap(report, "resnet_like (ResNetLike)")
  assert row["oof_gap"] > 0
  job = pipeline.Pipeline(config)
  assert job.result("l1")["members"]["resnet_like"]["oof_videos"] == len(job.labels("train"))
  distilled = report["sizes"]["distilled"]
  assert distilled["params"] == ensemble_parameter_count(output_bias=True)  # 247,233,888 + 3,862
  assert 0.98e9 < distilled["stored_bytes"] <= 10**9
  assert report["sizes"]["large_ensemble"]["params"] > 5 * 52_000_000  # five full ResNetLike fold models
  for name in ("EnsembleModel, hard labels", "EnsembleModel, soft labels", "export: distilled fp32 (CSV)"):
    assert _gap(report, name)["test_gap"] is not None
