"""SavedModel export: TF Serving layout, versions, size budget, fp16 storage, composite scorers, and outputs
checked after reloading in a fresh process that imports only tensorflow."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY_SCHEMA, make_frames, make_videos, randomize_weights, write_video_file
from yt8m_tf import data, export, models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_VIDEOS = 37

# Runs in a fresh interpreter: loads each export with tensorflow alone and runs both signatures.
_RELOAD_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
jobs = json.loads(sys.argv[1])
features = dict(np.load(jobs["features"]))
records = np.array(list(tf.data.TFRecordDataset(jobs["records"]).as_numpy_iterator()), dtype=object)
for export_dir, out in jobs["exports"]:
  loaded = tf.saved_model.load(export_dir)
  served = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in features.items()})
  parsed = loaded.signatures["from_examples"](example_bytes=tf.constant(records))
  arrays = {"serving/" + k: v.numpy() for k, v in served.items()}
  arrays.update({"examples/" + k: v.numpy() for k, v in parsed.items()})
  np.savez(out, **arrays)
print(json.dumps({"package_imported": any(m.startswith("yt8m_tf") for m in sys.modules)}))
"""


def _probabilities(model, features, graph=False):
  """sigmoid(model(features)) in process, eagerly or (graph=True) in a tf.function as the export runs it."""
  inputs = {k: tf.constant(features[k]) for k in TINY_SCHEMA.video_feature_names}
  call = lambda x: tf.sigmoid(model(x, training=False))
  return (tf.function(call) if graph else call)(inputs).numpy()


def _saved_weights(export_dir):
  """{checkpoint key: (dtype, bytes)} of the variables in a SavedModel (its object graph left out)."""
  reader = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
  shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
  return {
    key: (dtypes[key], int(np.prod(shape)) * dtypes[key].size)
    for key, shape in shapes.items()
    if key != "_CHECKPOINTABLE_OBJECT_GRAPH"
  }


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  root = tmp_path_factory.mktemp("export")
  records_path = str(root / "videos.tfrecord")
  ids, labels, rgb, audio = make_videos(NUM_VIDEOS, seed=3)
  write_video_file(records_path, ids, labels, rgb, audio)
  # Features as the repo's reader produces them (what training and prediction see).
  features, _ = next(iter(data.video_dataset(records_path, 64, schema=TINY_SCHEMA)))
  features = {k: v.numpy() for k, v in features.items()}
  features_path = str(root / "features.npz")
  np.savez(features_path, **{k: features[k] for k in TINY_SCHEMA.video_feature_names})

  resnet = randomize_weights(models.build("ResNetLike", num_classes=12, inner_size=16), seed=1)
  logistic = randomize_weights(models.build("Logistic", num_classes=12), seed=2)
  base = str(root / "serving")
  results = {
    "fp32": export.export_keras_model(resnet, base, "resnet", TINY_SCHEMA),
    "fp16": export.export_keras_model(resnet, base, "resnet_fp16", TINY_SCHEMA, fp16=True),
  }
  # A composite scorer, as the lead's ensemble export will be: two models averaged, fp16 storage.
  scorers = [export.KerasScorer(m, tf.float16, name=m.name) for m in (resnet, logistic)]
  results["composite"] = export.export_scorer(
    lambda f: (scorers[0](f) + scorers[1](f)) / 2.0,
    {s.name: s for s in scorers},
    [s.size for s in scorers],
    base,
    "composite",
    TINY_SCHEMA,
  )
  jobs = {
    "features": features_path,
    "records": records_path,
    "exports": [(r.path, str(root / f"{name}.npz")) for name, r in results.items()],
  }
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  run = subprocess.run(
    [sys.executable, "-c", _RELOAD_SCRIPT, json.dumps(jobs)],
    capture_output=True,
    text=True,
    env=env,
    cwd=str(root),  # outside the repo: the package is not even importable there
    timeout=120,
  )
  assert run.returncode == 0, run.stderr[-3000:]
  reloaded = {name: dict(np.load(str(root / f"{name}.npz"), allow_pickle=True)) for name in results}
  expected = {
    "fp32": _probabilities(resnet, features),
    "fp32_graph": _probabilities(resnet, features, graph=True),
    "composite": (_probabilities(resnet, features) + _probabilities(logistic, features)) / 2,
  }
  return {
    "base": base,
    "results": results,
    "reloaded": reloaded,
    "expected": expected,
    "features": features,
    "ids": ids,
    "records": records_path,
    "subprocess": json.loads(run.stdout.strip().splitlines()[-1]),
  }


def test_tf_serving_layout_and_size_report(exported):
  result = exported["results"]["fp32"]
  assert result.path == os.path.join(exported["base"], "resnet", "1") and result.version == 1
  assert sorted(os.listdir(os.path.join(exported["base"], "resnet"))) == ["1"]  # no temporary left behind
  assert {"saved_model.pb", "variables", export.SIZE_REPORT} <= set(os.listdir(result.path))
  report = json.load(open(os.path.join(result.path, export.SIZE_REPORT)))
  model = models.build("ResNetLike", num_classes=12, inner_size=16)
  assert report["total_params"] == model.count_params() == result.account.total_params
  assert report["total_bytes"] == 4 * model.count_params()
  assert report["variables_bytes_on_disk"] == result.variables_bytes
  # Exactly the accounted weights are saved (no Keras bookkeeping, no seed states), plus checkpoint metadata.
  assert sum(size for _, size in _saved_weights(result.path).values()) == result.account.total_bytes
  assert result.account.total_bytes < result.variables_bytes < result.account.total_bytes + 20_000
  assert result.variables_bytes <= result.saved_model_bytes
  assert report["schema"]["num_classes"] == 12 and report["top_k"] == 12


def test_reloaded_in_fresh_process_matches_keras(exported):
  assert exported["subprocess"] == {"package_imported": False}
  out, expected = exported["reloaded"]["fp32"], exported["expected"]["fp32"]
  probabilities = out["serving/probabilities"]
  assert probabilities.dtype == np.float32 and probabilities.shape == (NUM_VIDEOS, 12)
  # Bit-identical to the Keras model run in graph mode; eager Keras differs by float32 rounding only
  # (op fusion in the graph).
  np.testing.assert_array_equal(probabilities, exported["expected"]["fp32_graph"])
  max_diff = float(np.max(np.abs(probabilities - expected)))
  print(f"fp32 export vs in-process Keras: graph mode max abs diff 0, eager {max_diff:.3g}")
  assert max_diff <= 1e-6
  # top-k = min(20, 12) = 12 classes, by descending probability, ties by class id (tf.math.top_k).
  assert out["serving/top_classes"].dtype == np.int32 and out["serving/top_classes"].shape == (NUM_VIDEOS, 12)
  top = tf.math.top_k(probabilities, k=12)
  np.testing.assert_array_equal(out["serving/top_classes"], top.indices.numpy())
  np.testing.assert_array_equal(out["serving/top_scores"], top.values.numpy())
  assert np.all(np.diff(out["serving/top_scores"], axis=1) <= 0)


def test_from_examples_equals_serving_default_on_reader_features(exported):
  for name in exported["results"]:
    out = exported["reloaded"][name]
    assert [i.decode() for i in out["examples/id"]] == list(exported["features"]["id"].astype(str))
    assert sorted(i.decode() for i in out["examples/id"]) == sorted(exported["ids"])
    for key in ("probabilities", "top_classes", "top_scores"):
      np.testing.assert_array_equal(out["examples/" + key], out["serving/" + key])


def test_predict_requests_of_the_serving_api_are_answered_as_a_server_would(exported):
  """PredictRequests built with tensorflow-serving-api, for both signatures, answered through the
  signature the request names: the same outputs as calling the reloaded export directly."""
  path, out = exported["results"]["fp32"].path, exported["reloaded"]["fp32"]
  loaded = tf.saved_model.load(path)
  features = {k: exported["features"][k] for k in TINY_SCHEMA.video_feature_names}
  response = export.answer_predict_request(loaded, export.predict_request("resnet", features, version=1))
  assert response.model_spec.name == "resnet" and response.model_spec.signature_name == "serving_default"
  assert set(response.outputs) == {"probabilities", "top_classes", "top_scores"}
  for key in response.outputs:
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs[key]), out["serving/" + key])
  records = list(tf.data.TFRecordDataset(exported["records"]).as_numpy_iterator())
  request = export.predict_request(
    "resnet", {export.EXAMPLES_INPUT: np.array(records, dtype=object)}, signature_name="from_examples"
  )
  response = export.answer_predict_request(path, request)
  assert set(response.outputs) == {"id", "probabilities", "top_classes", "top_scores"}
  for key in response.outputs:
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs[key]), out["examples/" + key])
  with pytest.raises(ValueError, match="no signature 'predict'"):
    export.answer_predict_request(
      loaded, export.predict_request("resnet", features, signature_name="predict")
    )
  with pytest.raises(ValueError, match=r"missing \['mean_audio'\]"):
    export.answer_predict_request(
      loaded, export.predict_request("resnet", {"mean_rgb": features["mean_rgb"]})
    )


def test_fp16_export_stores_half_precision_and_stays_close(exported):
  fp32, fp16 = exported["results"]["fp32"], exported["results"]["fp16"]
  weights = _saved_weights(fp16.path)
  assert weights and {dtype for dtype, _ in weights.values()} == {tf.float16}
  assert (
    sum(size for _, size in weights.values()) * 2 == fp32.account.total_bytes == fp16.account.total_bytes * 2
  )
  assert fp16.variables_bytes < 0.6 * fp32.variables_bytes  # whole directory, metadata included
  max_diff = float(
    np.max(np.abs(exported["reloaded"]["fp16"]["serving/probabilities"] - exported["expected"]["fp32"]))
  )
  print(f"fp16 export vs fp32 Keras: max abs diff of probabilities {max_diff:.3g}")
  assert 0 < max_diff < 5e-3


def test_composite_scorer_export(exported):
  result = exported["results"]["composite"]
  assert [c.name for c in result.account.components] == ["ResNetLike", "Logistic"]
  assert result.account.total_params == sum(c.num_params for c in result.account.components)
  max_diff = float(
    np.max(
      np.abs(exported["reloaded"]["composite"]["serving/probabilities"] - exported["expected"]["composite"])
    )
  )
  print(f"composite fp16 export vs fp32 Keras average: max abs diff {max_diff:.3g}")
  assert max_diff < 5e-3


def test_budget_refusal_writes_nothing(tmp_path):
  model = models.build("Logistic", num_classes=12)
  base = tmp_path / "serving"
  with pytest.raises(export.ModelTooLargeError, match=r"Logistic\s+13,836\s+float32\s+55,344") as error:
    export.export_keras_model(model, str(base), "logistic", TINY_SCHEMA, size_budget_bytes=50_000)
  assert "exceed the budget of 50,000 bytes" in str(error.value)
  assert not base.exists()
  # fp16 halves the stored bytes and fits the same budget.
  assert export.export_keras_model(
    model, str(base), "logistic", TINY_SCHEMA, size_budget_bytes=50_000, fp16=True
  )


def test_versions_default_to_next_free_integer(tmp_path):
  model = models.build("Logistic", num_classes=12)
  base = str(tmp_path)
  assert export.export_keras_model(model, base, "m", TINY_SCHEMA).version == 1
  assert export.export_keras_model(model, base, "m", TINY_SCHEMA, version=5).version == 5
  with pytest.raises(FileExistsError, match="never overwritten"):
    export.export_keras_model(model, base, "m", TINY_SCHEMA, version=5)
  os.makedirs(os.path.join(base, "m", "notes"))  # TF Serving ignores non-numeric entries; so do we
  assert export.export_keras_model(model, base, "m", TINY_SCHEMA).version == 6
  assert export.list_versions(os.path.join(base, "m")) == [1, 5, 6]
  assert export.resolve_export_dir(os.path.join(base, "m")) == os.path.join(base, "m", "6")
  assert sorted(os.listdir(os.path.join(base, "m"))) == ["1", "5", "6", "notes"]


def test_untracked_state_fails_and_leaves_nothing(tmp_path):
  hidden = tf.Variable(tf.ones([12]))

  def reads_untracked_variable(features):
    return tf.sigmoid(features["mean_rgb"][:, :12] * hidden)

  with pytest.raises((AssertionError, ValueError, TypeError), match="(?i)untracked|not tracked|captur"):
    export.export_scorer(reads_untracked_variable, {}, [], str(tmp_path), "bad", TINY_SCHEMA)
  assert os.listdir(tmp_path / "bad") == []


def test_from_examples_rejects_bad_record_naming_the_field():
  module = export.ExportModule(lambda f: tf.sigmoid(f["mean_rgb"][:, :12]), TINY_SCHEMA)
  good = data.video_example("ok", [1], {"mean_rgb": np.zeros(1024), "mean_audio": np.zeros(128)}, TINY_SCHEMA)
  bad = tf.train.Example()
  bad.CopyFrom(good)
  del bad.features.feature["mean_audio"].float_list.value[5:]
  records = tf.constant([good.SerializeToString(), bad.SerializeToString()])
  with pytest.raises(tf.errors.InvalidArgumentError, match="example_bytes:1: field mean_audio must have 128"):
    module.predict_examples(records)


def test_video_models_only():
  frame_model = models.build("FrameLevelLogistic", num_classes=12)
  with pytest.raises(ValueError, match="only video-level models"):
    export.export_keras_model(frame_model, "/nonexistent", "m", TINY_SCHEMA)


@pytest.fixture(scope="module")
def loaded_logistic(tmp_path_factory):
  """A Logistic export loaded back with tf.saved_model.load, as a server calls it."""
  base = str(tmp_path_factory.mktemp("checked_inputs"))
  result = export.export_keras_model(models.build("Logistic", num_classes=12), base, "logistic", TINY_SCHEMA)
  return tf.saved_model.load(result.path)


def _served_features(rgb_shape=(3, 1024), audio_shape=(3, 128), poke=None):
  features = {"mean_rgb": np.zeros(rgb_shape, np.float32), "mean_audio": np.zeros(audio_shape, np.float32)}
  if poke:
    name, position, value = poke
    features[name][position] = value
  return features


SERVING_REFUSALS = [
  (
    "both_widths",
    dict(rgb_shape=(3, 1000), audio_shape=(3, 152)),
    "mean_rgb must have shape [batch, 1024], got [3, 1000]",
  ),
  ("rgb_width", dict(rgb_shape=(3, 1000)), "mean_rgb must have shape [batch, 1024], got [3, 1000]"),
  ("audio_width", dict(audio_shape=(3, 129)), "mean_audio must have shape [batch, 128], got [3, 129]"),
  ("rank_1", dict(rgb_shape=(1024,)), "mean_rgb must have shape [batch, 1024], got [1024]"),
  ("rank_3", dict(rgb_shape=(3, 1, 1024)), "mean_rgb must have shape [batch, 1024], got [3, 1, 1024]"),
  ("nan", dict(poke=("mean_rgb", (1, 5), np.nan)), "mean_rgb must hold finite values, found nan at [1, 5]"),
  (
    "inf",
    dict(poke=("mean_audio", (2, 0), -np.inf)),
    "mean_audio must hold finite values, found -inf at [2, 0]",
  ),
]


@pytest.mark.parametrize("name,shapes,message", SERVING_REFUSALS, ids=[c[0] for c in SERVING_REFUSALS])
def test_served_model_refuses_bad_inputs_naming_them(loaded_logistic, name, shapes, message):
  serve = loaded_logistic.signatures["serving_default"]
  features = _served_features(**shapes)
  with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(f"serving_default: input {message}")):
    serve(**{k: tf.constant(v) for k, v in features.items()})
  assert serve(**{k: tf.constant(v) for k, v in _served_features().items()})["probabilities"].shape == (3, 12)


def _example(**changes):
  record = data.video_example(
    "ok", [1], {"mean_rgb": np.zeros(1024), "mean_audio": np.zeros(128)}, TINY_SCHEMA
  )
  for key, (kind, values) in changes.items():
    del record.features.feature[key]
    getattr(record.features.feature[key], kind).value.extend(values)
  return record.SerializeToString()


EXAMPLE_REFUSALS = [
  (
    "not_a_protocol_buffer",
    np.random.default_rng(7).bytes(200),
    "record is not a serialized tf.train.Example",
  ),
  (
    "float_labels",
    _example(labels=("float_list", [1.0])),
    "field labels must be of type int64_list, found float_list",
  ),
  (
    "nan",
    _example(mean_rgb=("float_list", [0.0] * 3 + [np.nan] + [0.0] * 1020)),
    "field mean_rgb must hold finite values, found nan at position 3",
  ),
]


@pytest.mark.parametrize("name,record,message", EXAMPLE_REFUSALS, ids=[c[0] for c in EXAMPLE_REFUSALS])
def test_served_from_examples_refuses_bad_records_naming_them(loaded_logistic, name, record, message):
  from_examples = loaded_logistic.signatures["from_examples"]
  with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(f"example_bytes:1: {message}")):
    from_examples(example_bytes=tf.constant([_example(), record, _example()]))
  assert from_examples(example_bytes=tf.constant([_example()]))["id"].numpy().tolist() == [b"ok"]


def _frame_records(num=9, max_frames=14):
  """Serialized SequenceExamples of `num` videos (some longer than TINY_SCHEMA's 10 frames), their frames."""
  frames = make_frames(num, seed=3, max_frames=max_frames)
  records = [
    data.frame_example(f"v{i}", [i % 12], video_frames, TINY_SCHEMA).SerializeToString()
    for i, video_frames in enumerate(frames)
  ]
  return records, frames


def test_from_sequence_examples_reads_frames_as_the_reader_and_means_of_all_frames(tmp_path):
  records, frames = _frame_records()
  path = str(tmp_path / "frames.tfrecord")
  with tf.io.TFRecordWriter(path) as writer:
    for record in records:
      writer.write(record)
  parsed = export.parse_frame_examples(tf.constant(records), TINY_SCHEMA)
  read, _ = next(iter(data.frame_dataset(path, len(records), schema=TINY_SCHEMA)))
  for key in ("id", "rgb", "audio", "num_frames"):  # frames as frame models see them in training
    np.testing.assert_array_equal(parsed[key].numpy(), read[key].numpy())
  assert read["num_frames"].numpy().max() == TINY_SCHEMA.max_frames < max(len(f["rgb"]) for f in frames)
  for name in TINY_SCHEMA.feature_names:  # video-level: every frame counts, truncated ones too
    expected = np.stack([data.dequantize(f[name]).mean(axis=0) for f in frames])
    np.testing.assert_allclose(parsed["mean_" + name].numpy(), expected, rtol=1e-6, atol=1e-6)


def test_a_frame_level_scorer_serves_sequence_examples_only(tmp_path):
  records, _ = _frame_records(num=4)
  scorer = lambda f: tf.sigmoid(f["mean_rgb"][:, :12] + tf.reduce_max(f["rgb"], axis=1)[:, :12])
  result = export.export_scorer(scorer, {}, [], str(tmp_path), "frames", TINY_SCHEMA, frame_level=True)
  loaded = tf.saved_model.load(result.path)
  assert set(loaded.signatures) == {export.SERVING_SIGNATURE, export.SEQUENCE_EXAMPLES_SIGNATURE}
  out = loaded.signatures[export.SEQUENCE_EXAMPLES_SIGNATURE](sequence_example_bytes=tf.constant(records))
  features = export.parse_frame_examples(tf.constant(records), TINY_SCHEMA)
  np.testing.assert_allclose(out["probabilities"].numpy(), scorer(features).numpy(), atol=1e-6)
  assert out["id"].numpy().tolist() == [b"v0", b"v1", b"v2", b"v3"]
  bad = tf.train.SequenceExample.FromString(records[2])
  bad.feature_lists.feature_list["audio"].feature[0].bytes_list.value[0] = b"short"
  with pytest.raises(
    tf.errors.InvalidArgumentError,
    match=re.escape("sequence_example_bytes:1: field audio must have 128 bytes per frame, found 5"),
  ):
    loaded.signatures[export.SERVING_SIGNATURE](
      sequence_example_bytes=tf.constant([records[0], bad.SerializeToString()])
    )
  with pytest.raises(
    tf.errors.InvalidArgumentError,
    match=re.escape("sequence_example_bytes:0: record is not a serialized tf.train.SequenceExample"),
  ):
    loaded.signatures[export.SERVING_SIGNATURE](sequence_example_bytes=tf.constant([b"\xff" * 20]))
