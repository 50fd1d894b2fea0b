"""README's Python examples run as written (on small generated data instead of the main job's)."""

import os
import re

import numpy as np

from yt8m_tf import models
from conftest import generate_video_benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _block(name: str) -> str:
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  found = re.search(rf"<!-- {name} -->\s*```python\n(.*?)```\s*<!-- /{name} -->", readme, re.S)
  assert found, f"README has no <!-- {name} --> python block"
  return found.group(1)


def test_the_keras_example_reads_builds_fits_evaluates_predicts_and_saves(tmp_path, monkeypatch):
  demo = tmp_path / "runs" / "demo" / "data"
  # The 40 most frequent classes (ids 0-39 of the 3862 outputs), so that two epochs learn something.
  generate_video_benchmark(demo, num_videos=500, num_classes=40)
  monkeypatch.chdir(tmp_path)  # the example's relative paths: runs/demo/data, runs/resnet.keras
  scope = {}
  exec(compile(_block("keras-example"), "README.md:keras-example", "exec"), scope)  # noqa: S102
  num_test = sum(1 for _ in open(demo / "test_labels.csv")) - 1
  assert scope["logits"].shape == (num_test, 3862) and np.isfinite(scope["logits"]).all()
  losses = scope["model"].history.history["loss"]
  assert len(losses) == 2 and losses[1] < losses[0]  # it trained (two epochs of a few steps learn little)
  result = scope["model"].evaluate(scope["validate"], return_dict=True, verbose=0)
  assert 0 <= result["gap"] <= 1 and 0 < result["loss"] < losses[0]
  reloaded = models.load_model(str(tmp_path / "runs" / "resnet.keras"))
  first = next(iter(scope["test"]))[0]
  np.testing.assert_allclose(reloaded(first), scope["model"](first), rtol=1e-5, atol=1e-6)
