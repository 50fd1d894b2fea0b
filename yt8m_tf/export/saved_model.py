"""One SavedModel per export, in TF Serving's layout, generic over "a scorer".

Layout: `<export_base>/<model_name>/<version>/` with `saved_model.pb`, `variables/`, `assets/` (when a
component has files, e.g. a TF-DF model) and `size_report.json`. The version is an integer, by default the
next free one. The version directory is written under a hidden temporary sibling name (which TF Serving
ignores, since it is not a number) and renamed when complete, so a server never loads a half-written model.

Signatures:
  serving_default: `mean_rgb` [B,1024], `mean_audio` [B,128] float32 (names and sizes from the Schema)
    -> `probabilities` [B,C] float32, `top_classes` [B,k] int32, `top_scores` [B,k] float32, k = min(20, C).
    The graph itself refuses an input of another width or with a NaN/Inf, naming the input (a loaded
    SavedModel does not enforce the declared shapes).
  from_examples: `example_bytes` [B] serialized video-level tf.Examples (the starter's input name) -> `id`
    [B] string plus the same outputs. The records are parsed by the repo's reader code, so features and
    input checks are exactly those of training and prediction; a bad record (one that does not parse, a
    wrong length, a NaN/Inf...) fails the request with a message naming its index and field.
  from_sequence_examples (scorers that read frames: a large ensemble with frame-level members):
    `sequence_example_bytes` [B] serialized frame-level SequenceExamples -> the same outputs. Frame models
    get the frames as `frame_dataset` gives them; video models the per-video means of the dequantized
    frames, as the data defines its video-level features. Checked as `from_examples`. Such an export has
    no video-level signatures (it needs the frames); its serving_default is this signature.

A scorer is a function `features dict -> probabilities [B,C]` plus the trackable objects it reads
(tf.Module, tf.Variable, a TF-DF model...). `ExportModule` attaches those under `components`, which is what
makes `tf.saved_model.save` store their variables and assets; anything the function reads that is not
reachable from there makes the save fail ("untracked resource"), so nothing can go missing silently.

Keras models go through `KerasScorer`: it holds its own copies of the weights, in float32 or float16, and
runs the model with `stateless_call` on the values cast to float32. The Keras model itself is deliberately
not tracked, so only the weights are saved (no optimizer slots, no Keras bookkeeping), the variables on
disk match the size accounting, and float16 storage halves them while the arithmetic stays float32.
The arithmetic is the model's own: a model built under a mixed policy (trained with --mixed_precision, or
rebuilt for the export by `export_keras_model(mixed_precision=...)`) computes its hidden layers in bfloat16
or float16 from those float32 values and its class scores in float32; the signatures are unchanged. The
size report names each Keras component's policy (`compute_dtype_policies`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

import keras
import tensorflow as tf

from yt8m_tf.data import readers
from yt8m_tf.data.schema import Schema
from yt8m_tf.export import mixed_precision as mixed
from yt8m_tf.export import size as sizes
from yt8m_tf.files import temporary_sibling
from yt8m_tf.metrics import GAP_K

SERVING_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "from_examples"
EXAMPLES_INPUT = "example_bytes"
SEQUENCE_EXAMPLES_SIGNATURE = "from_sequence_examples"
SEQUENCE_EXAMPLES_INPUT = "sequence_example_bytes"
SIZE_REPORT = "size_report.json"

ProbabilitiesFn = Callable[[Dict[str, tf.Tensor]], tf.Tensor]


def parse_video_examples(serialized: tf.Tensor, schema: Schema) -> Dict[str, tf.Tensor]:
  """Serialized video-level Examples [B] -> {"id" [B], "mean_rgb" [B,1024], ...}, exactly as the reader.

  Records are named `example_bytes:<index in the batch>` in error messages.
  """
  count = tf.size(serialized, out_type=tf.int64)
  names = tf.fill([count], EXAMPLES_INPUT)
  # The reader's batch parser (with its checks) is reused rather than re-implemented, so an export can
  # never disagree with training about how a record reads.
  features, _ = readers._parse_video_batch(names, tf.range(count), serialized, schema, "raise", None, None)
  return features


def parse_frame_examples(serialized: tf.Tensor, schema: Schema) -> Dict[str, tf.Tensor]:
  """Serialized frame-level SequenceExamples [B] -> {"id", "rgb" [B,T,1024], ..., "num_frames" [B],
  "mean_rgb" [B,1024], ...}: the frames exactly as the frame reader gives them, the means over all frames.

  Records are named `sequence_example_bytes:<index in the batch>` in error messages.
  """
  count = tf.size(serialized, out_type=tf.int64)
  names = tf.fill([count], SEQUENCE_EXAMPLES_INPUT)
  return readers._parse_frame_batch(names, tf.range(count), serialized, schema)


def checked_features(features: Mapping[str, tf.Tensor], schema: Schema) -> Dict[str, tf.Tensor]:
  """`features` behind in-graph checks: each must be [batch, its schema size] and finite.

  A loaded SavedModel's signature does not enforce its declared shapes: without these checks wrong widths
  give probabilities (both inputs wrong) or a bare "Matrix size-incompatible", and a NaN gives NaN scores.
  """
  checked = {}
  for name, size in zip(schema.video_feature_names, schema.feature_sizes):
    values = features[name]
    shape = tf.shape(values)
    # From the runtime shape only: grappler folds tf.rank to the declared, unchecked, rank 2.
    padded = tf.concat([shape, [-1, -1]], axis=0)  # -1 past the last axis
    width_ok = tf.equal(padded[1], size) & tf.equal(padded[2], -1)
    wrong_width = lambda name=name, size=size, shape=shape: tf.strings.join(
      [f"{SERVING_SIGNATURE}: input {name} must have shape [batch, {size}], got ", _as_text(shape)]
    )
    with tf.control_dependencies(readers._report(~width_ok, wrong_width, "raise")):
      finite = tf.math.is_finite(values)

    def non_finite(name=name, values=values, finite=finite):
      where = tf.where(~finite)[0]
      found = tf.strings.as_string(tf.gather_nd(values, where))
      return tf.strings.join(
        [f"{SERVING_SIGNATURE}: input {name} must hold finite values, found ", found, " at ", _as_text(where)]
      )

    with tf.control_dependencies(readers._report(~tf.reduce_all(finite), non_finite, "raise")):
      checked[name] = tf.identity(values)
  return checked


def _as_text(vector: tf.Tensor) -> tf.Tensor:
  return tf.strings.join(["[", tf.strings.reduce_join(tf.strings.as_string(vector), separator=", "), "]"])


class KerasScorer(tf.Module):
  """Probabilities of a registry Keras model, from weight copies stored as `storage_dtype`. It reads the
  inputs the model names from the features dict: video-level ones, or frames and `num_frames`.

  Only float variables are copied (and counted); other state (dropout seed generators) is frozen into the
  graph as constants, since inference never advances it.
  """

  def __init__(
    self,
    model: keras.Model,
    storage_dtype=tf.float32,
    apply_sigmoid: bool = True,
    name: str = "keras_scorer",
  ):
    super().__init__(name=name)
    self._model = self._no_dependency(model)  # not tracked: its float32 variables must not be saved
    self._apply_sigmoid = apply_sigmoid
    self._input_names = self._no_dependency([t.name for t in model.inputs])
    self.storage_dtype = tf.as_dtype(storage_dtype)
    self.trainable_weights_stored = [self._stored(v) for v in model.trainable_variables]
    self.non_trainable_weights_stored = [self._stored(v) for v in model.non_trainable_variables]
    self.size = keras_component_size(model, name, self.storage_dtype)
    self._compute_policy = mixed.compute_policy(model)

  def compute_policies(self) -> Dict[str, str]:
    """{component: the Keras dtype policy it computes under}, for the size report."""
    return {self.name: self._compute_policy}

  def _stored(self, variable):
    if not _is_float(variable):
      return tf.constant(keras.ops.convert_to_numpy(variable.value))
    return tf.Variable(
      tf.cast(variable.value, self.storage_dtype), trainable=False, name=_clean(variable.path)
    )

  @staticmethod
  def _compute_values(stored) -> List[tf.Tensor]:
    return [tf.cast(v, tf.float32) if v.dtype.is_floating else tf.convert_to_tensor(v) for v in stored]

  def __call__(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
    inputs = {name: features[name] for name in self._input_names}
    logits, _ = self._model.stateless_call(
      self._compute_values(self.trainable_weights_stored),
      self._compute_values(self.non_trainable_weights_stored),
      inputs,
      training=False,
    )
    logits = tf.cast(logits, tf.float32)
    return tf.sigmoid(logits) if self._apply_sigmoid else logits


def _is_float(variable) -> bool:
  return tf.as_dtype(variable.dtype).is_floating


def _clean(path: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.\-/]", "_", path)


def keras_component_size(model: keras.Model, name: str, storage_dtype=tf.float32) -> sizes.ComponentSize:
  """What a KerasScorer of `model` stores: every float weight, as `storage_dtype`."""
  weights = [v for v in model.trainable_variables + model.non_trainable_variables if _is_float(v)]
  return sizes.ComponentSize.from_variables(name, weights, storage_dtype)


def schema_for_model(model: keras.Model, base: Schema = Schema()) -> Schema:
  """`base` with the class count of the model's output (its keys and feature sizes are kept)."""
  return base.with_num_classes(int(model.outputs[0].shape[-1]))


def check_video_model(model: keras.Model, schema: Schema) -> None:
  """The model must take only video-level features named and sized as in `schema`, and give [B, C]."""
  sizes = dict(zip(schema.video_feature_names, schema.feature_sizes))
  for tensor in model.inputs:
    if tensor.name not in sizes or tuple(tensor.shape[1:]) != (sizes[tensor.name],):
      raise ValueError(
        f"model {model.name!r} input {tensor.name!r} {tuple(tensor.shape)} is not a video-level feature of the "
        f"schema {sizes}; only video-level models can be exported"
      )
  classes = model.outputs[0].shape[-1]
  if classes != schema.num_classes:
    raise ValueError(f"model {model.name!r} outputs {classes} classes, the schema has {schema.num_classes}")


class ExportModule(tf.Module):
  """The served object: a probabilities function, the objects it reads, and its signatures."""

  def __init__(
    self,
    probabilities_fn: ProbabilitiesFn,
    schema: Schema,
    trackables: Optional[Mapping[str, object]] = None,
    top_k: int = GAP_K,
    frame_level: bool = False,
  ):
    super().__init__(name="yt8m_export")
    if top_k <= 0:
      raise ValueError(f"top_k must be positive, got {top_k}")
    self.components = dict(trackables or {})  # tracked: their variables and assets are saved
    self._probabilities_fn = self._no_dependency(probabilities_fn)
    self._schema = schema
    self.top_k = min(top_k, schema.num_classes)
    self.frame_level = frame_level
    # Only the functions of this level: saving traces every function with an input signature.
    if frame_level:
      self.predict_sequence_examples = tf.function(
        self._predict_sequence_examples,
        input_signature=[tf.TensorSpec([None], tf.string, name=SEQUENCE_EXAMPLES_INPUT)],
      )
    else:
      self.predict_features = tf.function(self._predict_features)
      self.predict_examples = tf.function(
        self._predict_examples, input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)]
      )

  def feature_specs(self) -> Dict[str, tf.TensorSpec]:
    schema = self._schema
    return {
      name: tf.TensorSpec([None, size], tf.float32, name=name)
      for name, size in zip(schema.video_feature_names, schema.feature_sizes)
    }

  def signatures(self) -> Dict[str, object]:
    if self.frame_level:
      from_frames = self.predict_sequence_examples.get_concrete_function()
      return {SERVING_SIGNATURE: from_frames, SEQUENCE_EXAMPLES_SIGNATURE: from_frames}
    return {
      SERVING_SIGNATURE: self.predict_features.get_concrete_function(**self.feature_specs()),
      EXAMPLES_SIGNATURE: self.predict_examples.get_concrete_function(),
    }

  def _outputs(self, features: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    probabilities = tf.cast(self._probabilities_fn(dict(features)), tf.float32)
    classes = probabilities.shape[-1]
    if probabilities.shape.rank != 2 or (classes is not None and classes != self._schema.num_classes):
      raise ValueError(
        f"the scorer returned shape {probabilities.shape}, expected [batch, {self._schema.num_classes}]"
      )
    top = tf.math.top_k(probabilities, k=self.top_k)  # ties: lower class id first
    return {"probabilities": probabilities, "top_classes": top.indices, "top_scores": top.values}

  def _predict_features(self, **features):
    return self._outputs(checked_features(features, self._schema))

  def _predict_examples(self, example_bytes):
    features = parse_video_examples(example_bytes, self._schema)
    outputs = self._outputs({k: v for k, v in features.items() if k != "id"})
    outputs["id"] = features["id"]
    return outputs

  def _predict_sequence_examples(self, sequence_example_bytes):
    features = parse_frame_examples(sequence_example_bytes, self._schema)
    outputs = self._outputs({k: v for k, v in features.items() if k != "id"})
    outputs["id"] = features["id"]
    return outputs


@dataclasses.dataclass(frozen=True)
class ExportResult:
  path: str  # the version directory
  version: int
  account: sizes.SizeAccount
  variables_bytes: int  # measured on disk
  saved_model_bytes: int  # measured on disk: the whole SavedModel (without size_report.json)
  seconds: float
  # Keras component -> the dtype policy it computes under ("float32", "mixed_bfloat16", ...). Storage,
  # and so the size account, does not depend on it: mixed policies keep float32 weights.
  compute_policies: Dict[str, str] = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict:
    return {
      "path": self.path,
      "version": self.version,
      **self.account.to_json(),
      "variables_bytes_on_disk": self.variables_bytes,
      "saved_model_bytes_on_disk": self.saved_model_bytes,
      "export_seconds": round(self.seconds, 3),
      "compute_dtype_policies": dict(self.compute_policies),
    }

  def summary(self) -> str:
    mixed_parts = {k: v for k, v in self.compute_policies.items() if v != mixed.FLOAT32}
    compute = (
      f"computes in {', '.join(f'{k} {v}' for k, v in mixed_parts.items())} (16-bit layers on the stored "
      "weights, cast per call; class scores float32; storage and size as counted above)\n"
      if mixed_parts
      else ""
    )
    return (
      f"{self.account.table()}\n"
      f"{compute}"
      f"on disk: variables/ {self.variables_bytes:,} bytes, whole SavedModel {self.saved_model_bytes:,} bytes "
      f"({self.saved_model_bytes / self.account.budget_bytes:.1%} of the budget)\n"
      f"written: {self.path} in {self.seconds:.1f} s"
    )


def list_versions(model_dir: str) -> List[int]:
  """Integer version subdirectories of `<export_base>/<model_name>`, ascending (temporaries excluded)."""
  if not tf.io.gfile.isdir(model_dir):
    return []
  names = [n.rstrip("/") for n in tf.io.gfile.listdir(model_dir)]
  return sorted(int(n) for n in names if n.isdigit() and tf.io.gfile.isdir(os.path.join(model_dir, n)))


def _version_dir(export_base: str, model_name: str, version: Optional[int]) -> tuple:
  if not model_name or "/" in model_name or model_name.startswith("."):
    raise ValueError(f"model_name must be a plain directory name, got {model_name!r}")
  model_dir = os.path.join(export_base, model_name)
  existing = list_versions(model_dir)
  if version is None:
    version = existing[-1] + 1 if existing else 1
  if isinstance(version, bool) or not isinstance(version, int) or version < 0:
    raise ValueError(f"version must be a non-negative integer, got {version!r}")
  path = os.path.join(model_dir, str(version))
  if tf.io.gfile.exists(path):
    raise FileExistsError(f"{path} exists; a served version is never overwritten (pick another --version)")
  return version, path


def export_scorer(
  probabilities_fn: ProbabilitiesFn,
  trackables: Mapping[str, object],
  components: Sequence[sizes.ComponentSize],
  export_base: str,
  model_name: str,
  schema: Schema,
  *,
  version: Optional[int] = None,
  top_k: int = GAP_K,
  size_budget_bytes: int = sizes.DEFAULT_BUDGET_BYTES,
  frame_level: bool = False,
) -> ExportResult:
  """Writes `<export_base>/<model_name>/<version>/` serving `probabilities_fn` (see the module docstring).

  Args:
    probabilities_fn: features dict (schema's video-level names -> float32 [B, size]) -> [B, C] probabilities.
    trackables: every object whose state the function reads, by name (saved under `components/<name>`).
    components: the size of each stored part, checked against `size_budget_bytes` before anything is written.
    version: integer version; default the next free one. An existing version is an error.
    frame_level: the function reads frames (and the video-level means): serve `from_sequence_examples`.

  Raises:
    ModelTooLargeError: the components exceed the budget (nothing written), or, measured after saving, the
      variables on disk do (the temporary directory is removed).
    FileExistsError: the version exists.
  """
  start = time.perf_counter()
  account = sizes.check_budget(components, size_budget_bytes)
  version, path = _version_dir(export_base, model_name, version)
  module = ExportModule(probabilities_fn, schema, trackables, top_k, frame_level)
  signatures = module.signatures()
  tmp = temporary_sibling(path)
  try:
    tf.io.gfile.makedirs(os.path.dirname(path))
    tf.saved_model.save(module, tmp, signatures=signatures)
    variables_bytes = sizes.directory_bytes(os.path.join(tmp, "variables"))
    if variables_bytes > account.budget_bytes:
      raise sizes.ModelTooLargeError(
        f"export refused: the saved variables take {variables_bytes:,} bytes on disk, above the budget of "
        f"{account.budget_bytes:,} (accounted {account.total_bytes:,}; an untracked extra variable?)"
      )
    result = ExportResult(
      path,
      version,
      account,
      variables_bytes,
      sizes.directory_bytes(tmp),
      time.perf_counter() - start,
      _compute_policies(trackables),
    )
    report = {
      **result.to_json(),
      "schema": dataclasses.asdict(schema),
      "top_k": module.top_k,
      "signatures": sorted(signatures),
    }
    with tf.io.gfile.GFile(os.path.join(tmp, SIZE_REPORT), "w") as f:
      json.dump(report, f, indent=1)
    tf.io.gfile.rename(tmp, path, overwrite=False)
  finally:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.rmtree(tmp)
  return result


def _compute_policies(trackables: Mapping[str, object]) -> Dict[str, str]:
  """{component: dtype policy} from each trackable with a `compute_policies()` method (KerasScorer, a large
  ensemble for its members): asked rather than found by walking submodules, which would walk TF-DF's too."""
  found = {}
  for trackable in trackables.values():
    found.update(getattr(trackable, "compute_policies", dict)())
  return found


def export_keras_model(
  model: keras.Model,
  export_base: str,
  model_name: str,
  schema: Optional[Schema] = None,
  *,
  fp16: bool = False,
  mixed_precision: Union[bool, str] = False,
  build: Optional[mixed.Build] = None,
  version: Optional[int] = None,
  top_k: int = GAP_K,
  size_budget_bytes: int = sizes.DEFAULT_BUDGET_BYTES,
  apply_sigmoid: bool = True,
) -> ExportResult:
  """Exports a registry video-level model (it returns logits; the sigmoid is applied in the graph).

  schema: feature keys and sizes and the class count; default `Schema()` with the model's class count.
  fp16: store the weights as float16 (half the bytes); the computation is the model's (float32 values).
  mixed_precision: compute the hidden layers in 16 bits, the class scores in float32: True for this
    machine's policy (mixed_float16 where a GPU is visible, mixed_bfloat16 on CPUs, as training picks it),
    or a policy name ("mixed_bfloat16", "mixed_float16") for another serving machine. A float32 model is
    rebuilt under that policy from `build` = (registry name, params), e.g. (TrainConfig.model,
    TrainConfig.model_params), and given its weights. False: the model computes as it was built (a model
    trained with --mixed_precision stays mixed). Inputs, outputs and stored weights stay float32.
  """
  schema = schema or schema_for_model(model)
  check_video_model(model, schema)
  storage_dtype = tf.float16 if fp16 else tf.float32
  component = model.name or "model"
  # Checked before the weights are copied, so an over-size model costs neither memory nor disk.
  sizes.check_budget([keras_component_size(model, component, storage_dtype)], size_budget_bytes)
  # After the check: a rebuild holds a second copy; its float32 weights count exactly as the original's.
  model = mixed.with_policy(model, mixed_precision, build, schema)
  scorer = KerasScorer(model, storage_dtype, apply_sigmoid, name=component)
  return export_scorer(
    scorer,
    {component: scorer},
    [scorer.size],
    export_base,
    model_name,
    schema,
    version=version,
    top_k=top_k,
    size_budget_bytes=size_budget_bytes,
  )
