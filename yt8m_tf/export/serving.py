"""TF Serving's Predict API against an export, without a model server.

  request = predict_request("distilled", {"mean_rgb": rgb, "mean_audio": audio})
  response = answer_predict_request("runs/demo/export/distilled/1", request)
  tf.make_ndarray(response.outputs["top_classes"])

`answer_predict_request` does what `tensorflow_model_server` does with a `PredictRequest`: looks up the
signature the request names (`serving_default` when it names none), turns each input TensorProto into a
tensor, refuses missing or unknown inputs, runs the signature and packs every output into a
`PredictResponse`. It checks an export with the same client code that will talk to a server (gRPC or the
REST API's JSON, which carries the same fields). Needs `tensorflow-serving-api` (the `test` extra pins it).
"""

from __future__ import annotations

from typing import Mapping, Optional, Union

import numpy as np
import tensorflow as tf

DEFAULT_SIGNATURE = "serving_default"


def _apis():
  try:
    from tensorflow_serving.apis import predict_pb2
  except ImportError as e:
    raise ImportError(
      "the Predict API needs tensorflow-serving-api: pip install tensorflow-serving-api==2.19.0"
    ) from e
  return predict_pb2


def predict_request(
  model_name: str,
  inputs: Mapping[str, Union[np.ndarray, list]],
  signature_name: str = DEFAULT_SIGNATURE,
  version: Optional[int] = None,
):
  """A `PredictRequest` for `model_name` (the server's model name) with `inputs` as TensorProtos."""
  request = _apis().PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature_name
  if version is not None:
    request.model_spec.version.value = version
  for key, value in inputs.items():
    request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
  return request


def answer_predict_request(export: Union[str, object], request):
  """The `PredictResponse` a model server would send for `request`; `export` is a version directory
  (`.../<model_name>/<version>`) or a SavedModel already loaded with `tf.saved_model.load`."""
  predict_pb2 = _apis()
  loaded = tf.saved_model.load(export) if isinstance(export, str) else export
  name = request.model_spec.signature_name or DEFAULT_SIGNATURE
  if name not in loaded.signatures:
    raise ValueError(f"the export has no signature {name!r}; it has {sorted(loaded.signatures)}")
  signature = loaded.signatures[name]
  expected = set(signature.structured_input_signature[1])
  given = set(request.inputs)
  if given != expected:
    raise ValueError(
      f"signature {name!r} takes inputs {sorted(expected)}; the request has {sorted(given)} "
      f"(missing {sorted(expected - given)}, unknown {sorted(given - expected)})"
    )
  outputs = signature(**{key: tf.constant(tf.make_ndarray(proto)) for key, proto in request.inputs.items()})
  response = predict_pb2.PredictResponse()
  response.model_spec.CopyFrom(request.model_spec)
  response.model_spec.signature_name = name
  for key, value in outputs.items():
    response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
  return response
