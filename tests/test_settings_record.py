"""A work directory records the settings that made it: the pipeline, zoo members and stack_main refuse
a run with other settings, naming each change; the pipeline redoes the affected stages on request."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from yt8m_tf import pipeline, settings_record

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_changes_are_listed_by_dotted_name_with_both_values():
  recorded = {"seed": 0, "stacker": {"num_trees": 10, "shrinkage": 0.3}, "gone": 1}
  current = {"seed": 7, "stacker": {"num_trees": 20, "shrinkage": 0.3}, "new": [1, 2]}
  found = settings_record.changes(recorded, current)
  assert [str(c) for c in found] == [
    "gone: 1 -> None",
    "new: None -> [1, 2]",
    "seed: 0 -> 7",
    "stacker.num_trees: 10 -> 20",
  ]
  assert settings_record.changes(recorded, recorded) == []


def test_check_and_record_records_then_refuses_other_settings(tmp_path):
  directory = str(tmp_path / "run")
  settings_record.check_and_record(directory, {"k": (1, 2), "lr": 0.1}, remedy="do X")
  with open(os.path.join(directory, settings_record.SETTINGS_FILE)) as f:
    assert json.load(f) == {"k": [1, 2], "lr": 0.1}  # human-readable JSON; tuples compare as lists
  settings_record.check_and_record(directory, {"k": (1, 2), "lr": 0.1}, remedy="do X")
  with pytest.raises(settings_record.SettingsChanged, match=r"\(lr: 0.1 -> 0.2\); do X") as caught:
    settings_record.check_and_record(directory, {"k": (1, 2), "lr": 0.2}, remedy="do X")
  assert [c.name for c in caught.value.changes] == ["lr"]


def test_a_setting_added_after_the_record_reads_as_its_default(tmp_path):
  settings_record.check_and_record(str(tmp_path), {"epochs": 2}, remedy="r")
  defaults = {"optimizer": "adam"}
  settings_record.check_and_record(str(tmp_path), {"epochs": 2, "optimizer": "adam"}, "r", defaults=defaults)
  with pytest.raises(settings_record.SettingsChanged, match="optimizer: 'adam' -> 'sgd'"):
    settings_record.check_and_record(str(tmp_path), {"epochs": 2, "optimizer": "sgd"}, "r", defaults=defaults)


def test_every_pipeline_setting_names_the_first_stage_it_feeds():
  settings = pipeline.preset("demo", "unused").settings()
  assert set(settings) == set(pipeline.FIRST_STAGE_OF_SETTING)
  assert set(pipeline.FIRST_STAGE_OF_SETTING.values()) <= set(pipeline.STAGES)


def test_a_workdir_gives_back_the_config_that_made_it(tmp_path):
  config = pipeline.preset("tiny", str(tmp_path / "work"), seed=3, l1_overrides={"epochs": 1})
  pipeline.Pipeline(config).prepare_workdir()
  assert pipeline.load_config(config.workdir) == config
  # The packaged zoo is named by its place in the package, not by where the package is installed.
  assert settings_record.read(config.workdir)["zoo_dir"] == "yt8m_tf/configs/zoo/pipeline"


def _fake_finished(workdir: str, config: pipeline.PipelineConfig) -> pipeline.Pipeline:
  """A workdir whose every stage looks finished (markers and outputs), without running any."""
  job = pipeline.Pipeline(config, log=lambda line: None)
  job.prepare_workdir()
  for stage in pipeline.STAGES:
    for output in pipeline.STAGE_OUTPUTS[stage]:
      path = job.path(output)
      if "." in output:
        open(path, "w").close()
      else:
        os.makedirs(os.path.join(path, "inner"))
    os.makedirs(job.stage_dir, exist_ok=True)
    with open(job._marker(stage), "w") as f:
      json.dump({"stage": stage, "wall_seconds": 1.0, "settings": job.stage_settings(stage)}, f)
  return job


def test_the_pipeline_refuses_other_settings_and_redoes_from_the_stage_they_change(tmp_path):
  workdir = str(tmp_path / "work")
  config = pipeline.preset("tiny", workdir)
  _fake_finished(workdir, config)
  changed = dataclasses.replace(config, distill_epochs=3, size_budget_bytes=5)
  with pytest.raises(settings_record.SettingsChanged) as caught:
    pipeline.Pipeline(changed).prepare_workdir()
  message = str(caught.value)
  assert "distill_epochs: 2 -> 3 (stage distill)" in message
  assert "size_budget_bytes: 1000000000 -> 5 (stage export)" in message
  assert "stages distill, export, inference hold work" in message and "redo_from=distill" in message
  assert os.path.exists(os.path.join(workdir, "distill"))  # nothing removed by a refusal

  with pytest.raises(settings_record.SettingsChanged, match="use redo_from=distill"):
    pipeline.Pipeline(changed).prepare_workdir(redo_from="export")  # after the first changed stage

  job = pipeline.Pipeline(changed)
  job.prepare_workdir(redo_from="distill")
  for stage in ("data", "l1", "candidates", "stacker"):
    assert job.result(stage) is not None and os.path.exists(job.path(pipeline.STAGE_OUTPUTS[stage][0]))
  for stage in ("distill", "export", "inference"):
    assert job.result(stage) is None and not os.path.exists(job.path(pipeline.STAGE_OUTPUTS[stage][0]))
  assert settings_record.read(workdir) == changed.settings()
  job.prepare_workdir()  # the new settings are now the workdir's


def test_a_partly_finished_workdir_refuses_a_new_seed(tmp_path):
  """The issue's case: an L1 stage under way (no marker yet) with seed 0, continued with seed 7."""
  workdir = str(tmp_path / "work")
  config = pipeline.preset("tiny", workdir)
  job = pipeline.Pipeline(config)
  job.prepare_workdir()
  os.makedirs(job.path("l1", "logistic", "fold_0"))
  with pytest.raises(settings_record.SettingsChanged, match=r"seed: 0 -> 7 \(stage l1\).*stages l1 hold"):
    pipeline.Pipeline(dataclasses.replace(config, seed=7)).prepare_workdir()
  # A change to a stage nobody started yet is simply recorded.
  later = dataclasses.replace(config, soft_label_weight=0.25)
  pipeline.Pipeline(later).prepare_workdir()
  assert settings_record.read(workdir)["soft_label_weight"] == 0.25


def test_a_marker_made_with_other_settings_is_refused_even_without_the_record(tmp_path):
  workdir = str(tmp_path / "work")
  config = pipeline.preset("tiny", workdir)
  _fake_finished(workdir, config)
  os.remove(os.path.join(workdir, settings_record.SETTINGS_FILE))
  job = pipeline.Pipeline(dataclasses.replace(config, num_folds=3), log=lambda line: None)
  job.prepare_workdir()  # no record to compare with
  with pytest.raises(settings_record.SettingsChanged, match=r"l1\.json was made with .*num_folds: 2 -> 3"):
    job.run_stage("l1", lambda: {})


def test_a_workdir_from_before_the_record_is_taken_with_a_warning(tmp_path):
  workdir = str(tmp_path / "work")
  config = pipeline.preset("tiny", workdir)
  _fake_finished(workdir, config)
  os.remove(os.path.join(workdir, settings_record.SETTINGS_FILE))
  logs = []
  pipeline.Pipeline(config, log=logs.append).prepare_workdir()
  assert any("made before workdirs recorded their settings" in line for line in logs)
  assert settings_record.read(workdir) == config.settings()


def test_a_restarted_stage_removes_what_a_killed_writer_left(tmp_path):
  workdir = str(tmp_path / "work")
  job = pipeline.Pipeline(pipeline.preset("tiny", workdir), log=lambda line: None)
  job.prepare_workdir()
  leftovers = [
    os.path.join(workdir, ".submission.csv.tmp-0123abcd"),
    os.path.join(workdir, "export", "distilled", ".1.tmp-0123abcd"),
  ]
  open(leftovers[0], "w").close()
  os.makedirs(leftovers[1])
  job.run_stage("export", lambda: {})
  job.run_stage("inference", lambda: {})
  assert not any(os.path.exists(path) for path in leftovers)


def test_stack_main_refuses_an_output_dir_made_with_other_flags(tmp_path):
  output_dir = tmp_path / "stack"
  output_dir.mkdir()
  recorded = {
    "models": ["a:dir_a"],
    "train_data_pattern": "train-*.tfrecord",
    "test_labels": None,
    "num_folds": 5,
    "num_classes": 3862,
    "num_trees": 300,
    "shrinkage": 0.1,
    "max_depth": 6,
    "early_stopping_trees": 30,
    "class_id_semantic": "numerical",
    "max_train_videos": None,
  }
  (output_dir / settings_record.SETTINGS_FILE).write_text(json.dumps(recorded))
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "binaries.stack_main",
      f"--output_dir={output_dir}",
      "--models=a:dir_a",
      "--train_data_pattern=train-*.tfrecord",
      "--num_trees=50",
    ],
    capture_output=True,
    text=True,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    timeout=300,
    cwd=REPO,
  )
  assert result.returncode != 0
  assert "num_trees: 300 -> 50" in result.stderr and "use a new --output_dir" in result.stderr


def test_a_setting_added_after_a_workdir_was_made_reads_as_its_default(tmp_path):
  """A workdir recorded before StackerConfig.engine (and the frame patterns) existed is taken as made with
  their defaults: its finished stages are kept, not refused as 'made with other settings'."""
  workdir = str(tmp_path / "work")
  config = pipeline.preset("tiny", workdir)
  job = _fake_finished(workdir, config)
  old_record = settings_record.read(workdir)
  del old_record["stacker"]["engine"], old_record["frame_train_data_pattern"]
  settings_record.write(workdir, old_record)
  with open(job._marker("stacker")) as f:
    marker = json.load(f)
  del marker["settings"]["stacker"]["engine"]
  with open(job._marker("stacker"), "w") as f:
    json.dump(marker, f)
  job = pipeline.Pipeline(config, log=lambda line: None)
  job.prepare_workdir()
  assert job.run_stage("stacker", lambda: pytest.fail("a finished stage ran again"))["stage"] == "stacker"
  # A real change is still refused.
  changed = dataclasses.replace(config, stacker=dataclasses.replace(config.stacker, num_trees=11))
  with pytest.raises(settings_record.SettingsChanged, match=r"stacker\.num_trees: 10 -> 11"):
    pipeline.Pipeline(changed).prepare_workdir()
