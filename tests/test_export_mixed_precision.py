"""Exports computing in mixed precision: a float32-trained model rebuilt under mixed_bfloat16 scores close
to its float32 export, with the same float32 signatures and size; a model trained mixed exports as it
trained; export_main's --mixed_precision rebuilds from the run's config."""

import collections
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT, TINY_SCHEMA, make_videos, randomize_weights, write_video_file
from yt8m_tf import data, export, models
from yt8m_tf.training import experiment

# The demo student's params (pipeline.PipelineConfig.distill_params) at a tiny width.
STUDENT = (
  "EnsembleModel",
  {"width_scale": 1 / 64, "bn_momentum": 0.9, "output_bias": True, "input_normalization": "none"},
)
# bfloat16 keeps 8 bits of mantissa: on these 37 videos, seeds 0-3 of these random weights gave largest
# probability differences of 0.0030-0.0044 (EnsembleModel) and 0.0001-0.0003 (ResNetLike) against float32
# (a scratch script, 2026-11-30); 0.02 leaves room for other weights and CPUs.
NUM_VIDEOS = 37
PROBABILITY_TOLERANCE = 0.02
BF16 = "mixed_bfloat16"


def _randomized(name, params, seed=0, policy=None):
  """The registry model built (under `policy`) with non-trivial weights, BN statistics included."""
  with experiment.dtype_policy(policy):
    model = models.build(name, TINY_SCHEMA, **params)
  return randomize_weights(model, seed)


@pytest.fixture(scope="module")
def features_and_records(tmp_path_factory):
  root = tmp_path_factory.mktemp("mixed_data")
  records_path = str(root / "videos.tfrecord")
  ids, labels, rgb, audio = make_videos(NUM_VIDEOS, seed=5)
  write_video_file(records_path, ids, labels, rgb, audio)
  features, _ = next(iter(data.video_dataset(records_path, 64, schema=TINY_SCHEMA)))
  inputs = {k: tf.constant(features[k]) for k in TINY_SCHEMA.video_feature_names}
  records = tf.constant(list(tf.data.TFRecordDataset(records_path).as_numpy_iterator()))
  return inputs, records


def _bfloat16_ops(function) -> collections.Counter:
  """Ops of a concrete function's graph (its nested functions included) that compute in bfloat16."""
  graph = function.graph.as_graph_def()
  nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
  return collections.Counter(n.op for n in nodes if n.attr["T"].type == tf.bfloat16.as_datatype_enum)


def _signature_specs(loaded):
  return {
    name: (
      f.structured_input_signature,
      {k: (v.dtype, v.shape.as_list()) for k, v in f.structured_outputs.items()},
    )
    for name, f in loaded.signatures.items()
  }


@pytest.mark.parametrize("name, params", [STUDENT, ("ResNetLike", {"inner_size": 8, "context_gating": True})])
def test_mixed_export_of_float32_weights_matches_the_float32_export(
  name, params, features_and_records, tmp_path
):
  """Rebuilt under mixed_bfloat16: matmuls in bfloat16, probabilities within the tolerance of the float32
  export of the same weights, float32 outputs, the same signatures, the same stored bytes."""
  inputs, records = features_and_records
  model = _randomized(name, params, seed=1)
  base = str(tmp_path / "serving")
  plain = export.export_keras_model(model, base, "plain", TINY_SCHEMA)
  mixed = export.export_keras_model(
    model, base, "mixed", TINY_SCHEMA, mixed_precision=BF16, build=(name, params)
  )
  assert export.compute_policy(model) == "float32"  # the trained model itself is left as it was

  loaded_plain, loaded_mixed = tf.saved_model.load(plain.path), tf.saved_model.load(mixed.path)
  assert _signature_specs(loaded_mixed) == _signature_specs(loaded_plain)
  assert sorted(loaded_mixed.signatures) == [export.EXAMPLES_SIGNATURE, export.SERVING_SIGNATURE]
  serve = loaded_mixed.signatures[export.SERVING_SIGNATURE]
  assert _bfloat16_ops(serve)["MatMul"] > 0 and not _bfloat16_ops(
    loaded_plain.signatures[export.SERVING_SIGNATURE]
  )

  for signature, arguments in [
    (export.SERVING_SIGNATURE, inputs),
    (export.EXAMPLES_SIGNATURE, {export.EXAMPLES_INPUT: records}),
  ]:
    expected = loaded_plain.signatures[signature](**arguments)
    got = loaded_mixed.signatures[signature](**arguments)
    assert got["probabilities"].dtype == tf.float32 and got["top_scores"].dtype == tf.float32
    probabilities = got["probabilities"].numpy()
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities, expected["probabilities"].numpy(), atol=PROBABILITY_TOLERANCE)
    assert not np.array_equal(probabilities, expected["probabilities"].numpy())  # it did compute otherwise

  # Mixed policies keep float32 weights: what is stored, counted and reported is the float32 export's.
  assert mixed.account.to_json() == plain.account.to_json()
  assert mixed.variables_bytes == plain.variables_bytes
  with open(os.path.join(mixed.path, export.SIZE_REPORT)) as f:
    report = json.load(f)
  assert report["compute_dtype_policies"] == {model.name: BF16}
  assert report["components"][0]["storage"] == "float32"
  assert plain.compute_policies == {model.name: "float32"}
  assert "computes in " + model.name + " mixed_bfloat16" in mixed.summary()
  assert "computes in" not in plain.summary()


def test_mixed_export_with_fp16_storage(features_and_records, tmp_path):
  """Both at once: float16 weights on disk (half the bytes), bfloat16 layers, scores still close."""
  inputs, _ = features_and_records
  model = _randomized(*STUDENT, seed=2)
  base = str(tmp_path / "serving")
  plain = export.export_keras_model(model, base, "plain", TINY_SCHEMA)
  both = export.export_keras_model(
    model, base, "both", TINY_SCHEMA, fp16=True, mixed_precision=BF16, build=STUDENT
  )
  assert both.account.total_bytes * 2 == plain.account.total_bytes
  expected = tf.saved_model.load(plain.path).signatures[export.SERVING_SIGNATURE](**inputs)["probabilities"]
  got = tf.saved_model.load(both.path).signatures[export.SERVING_SIGNATURE](**inputs)["probabilities"]
  np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=PROBABILITY_TOLERANCE)


def test_a_model_trained_mixed_exports_as_it_trained(features_and_records, tmp_path):
  """Built (as --mixed_precision training builds it) under mixed_bfloat16, saved and reloaded: exported
  without the flag it computes in bfloat16 exactly as the reloaded model does, scores float32; asking for
  its own policy needs no rebuild."""
  inputs, _ = features_and_records
  trained = _randomized(*STUDENT, seed=3, policy=BF16)
  path = str(tmp_path / "best.keras")
  trained.save(path)
  model = models.load_model(path)
  assert export.compute_policy(model) == BF16 and model.output.dtype == "float32"
  assert keras.config.dtype_policy().name == "float32"

  base = str(tmp_path / "serving")
  result = export.export_keras_model(model, base, "as_trained", TINY_SCHEMA)
  assert result.compute_policies == {model.name: BF16}
  loaded = tf.saved_model.load(result.path)
  served = loaded.signatures[export.SERVING_SIGNATURE](**inputs)["probabilities"]
  assert served.dtype == tf.float32
  in_process = tf.function(lambda x: tf.sigmoid(model(x, training=False)))(inputs)
  np.testing.assert_allclose(served.numpy(), in_process.numpy(), atol=1e-6)

  again = export.export_keras_model(model, base, "asked", TINY_SCHEMA, mixed_precision=BF16)  # no build
  served_again = tf.saved_model.load(again.path).signatures[export.SERVING_SIGNATURE](**inputs)
  np.testing.assert_array_equal(served_again["probabilities"].numpy(), served.numpy())


def test_a_large_ensemble_reports_each_members_policy():
  from yt8m_tf.export import large_ensemble

  members = {"student": [_randomized(*STUDENT), _randomized(*STUDENT, policy=BF16)]}
  scorer = large_ensemble.LargeEnsembleScorer(members, [], np.full(TINY_SCHEMA.num_classes, 0.1), 5)
  assert scorer.compute_policies() == {"student_fold_0": "float32", "student_fold_1": BF16}


def test_mixed_export_refuses_what_it_cannot_rebuild(tmp_path):
  model = _randomized(*STUDENT)
  base = str(tmp_path / "serving")
  with pytest.raises(ValueError, match=r"give build=\(name, params\)"):
    export.export_keras_model(model, base, "m", TINY_SCHEMA, mixed_precision=BF16)
  with pytest.raises(ValueError, match="does not have the weights of"):
    export.export_keras_model(
      model, base, "m", TINY_SCHEMA, mixed_precision=BF16, build=("EnsembleModel", {"width_scale": 1 / 32})
    )
  with pytest.raises(ValueError, match="mixed_precision must be"):
    export.export_keras_model(model, base, "m", TINY_SCHEMA, mixed_precision="bfloat16", build=STUDENT)
  assert not os.path.exists(base) or not os.listdir(base)


def test_export_main_mixed_precision_rebuilds_from_the_runs_config(features_and_records, tmp_path):
  """A run directory (config.json + best.keras of a float32 model): --mixed_precision exports it computing
  in bfloat16, close to its plain export; with --model_path the config is found next to the file."""
  inputs, _ = features_and_records
  name, params = STUDENT
  run_dir = str(tmp_path / "run")
  config = experiment.TrainConfig(
    model=name,
    model_params=params,
    train_dir=run_dir,
    train_data_pattern="unused-*.tfrecord",
    num_folds=3,
    fold=0,
    num_classes=TINY_SCHEMA.num_classes,
  )
  experiment.check_or_write_config(config)
  _randomized(name, params, seed=4).save(os.path.join(run_dir, "best.keras"))
  base = str(tmp_path / "serving")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
  common = [sys.executable, "-m", "binaries.export_main", f"--export_base={base}", "--model_name=student"]
  common += ["--mixed_precision", f"--mixed_precision_policy={BF16}"]
  for args in ([f"--train_dir={run_dir}"], [f"--model_path={run_dir}/best.keras"]):
    done = subprocess.run(common + args, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "computes in EnsembleModel mixed_bfloat16" in done.stdout

  plain = export.export_keras_model(models.load_model(os.path.join(run_dir, "best.keras")), base, "plain")
  expected = tf.saved_model.load(plain.path).signatures[export.SERVING_SIGNATURE](**inputs)["probabilities"]
  outputs = []
  for version in (1, 2):
    path = os.path.join(base, "student", str(version))
    outputs.append(tf.saved_model.load(path).signatures[export.SERVING_SIGNATURE](**inputs)["probabilities"])
    with open(os.path.join(path, export.SIZE_REPORT)) as f:
      assert json.load(f)["compute_dtype_policies"] == {"EnsembleModel": BF16}
  np.testing.assert_allclose(outputs[0].numpy(), expected.numpy(), atol=PROBABILITY_TOLERANCE)
  np.testing.assert_array_equal(outputs[1].numpy(), outputs[0].numpy())
