"""Export for serving and submission: one SavedModel in TF Serving's layout, size accounting against the
1 GB budget, batch inference to the Kaggle CSV.

  export_keras_model(model, export_base, model_name, schema, fp16=...)   a registry video-level model
    (mixed_precision=True, build=(name, params): computing in bfloat16/float16, class scores float32)
  export_scorer(probabilities_fn, trackables, components, ...)           any scorer (ensembles, stackers)
  run_inference(model_dir, input_data_pattern, output_file, ...)         SavedModel -> submission CSV
  answer_predict_request(export_dir, predict_request(...))               TF Serving's Predict API, no server
"""

from yt8m_tf.export.inference import (
  InferenceCounts,
  evaluate_export,
  load_export,
  predict_records,
  read_labels,
  resolve_export_dir,
  run_inference,
)
from yt8m_tf.export.mixed_precision import MIXED_POLICIES, compute_policy, rebuild_under_policy
from yt8m_tf.export.saved_model import (
  EXAMPLES_INPUT,
  EXAMPLES_SIGNATURE,
  SEQUENCE_EXAMPLES_INPUT,
  SEQUENCE_EXAMPLES_SIGNATURE,
  SERVING_SIGNATURE,
  SIZE_REPORT,
  ExportModule,
  ExportResult,
  KerasScorer,
  export_keras_model,
  export_scorer,
  keras_component_size,
  list_versions,
  parse_frame_examples,
  parse_video_examples,
  schema_for_model,
)
from yt8m_tf.export.serving import answer_predict_request, predict_request
from yt8m_tf.export.size import (
  DEFAULT_BUDGET_BYTES,
  ComponentSize,
  ModelTooLargeError,
  SizeAccount,
  check_budget,
  directory_bytes,
)
from yt8m_tf.export.submission import (
  HEADER,
  open_submission,
  read_submission,
  submission_gap,
  write_submission,
)

__all__ = [
  "DEFAULT_BUDGET_BYTES",
  "EXAMPLES_INPUT",
  "EXAMPLES_SIGNATURE",
  "HEADER",
  "MIXED_POLICIES",
  "SEQUENCE_EXAMPLES_INPUT",
  "SEQUENCE_EXAMPLES_SIGNATURE",
  "SERVING_SIGNATURE",
  "SIZE_REPORT",
  "ComponentSize",
  "ExportModule",
  "ExportResult",
  "InferenceCounts",
  "KerasScorer",
  "ModelTooLargeError",
  "SizeAccount",
  "answer_predict_request",
  "check_budget",
  "compute_policy",
  "directory_bytes",
  "evaluate_export",
  "export_keras_model",
  "export_scorer",
  "keras_component_size",
  "list_versions",
  "load_export",
  "open_submission",
  "parse_frame_examples",
  "parse_video_examples",
  "predict_records",
  "predict_request",
  "read_labels",
  "read_submission",
  "rebuild_under_policy",
  "resolve_export_dir",
  "run_inference",
  "schema_for_model",
  "submission_gap",
  "write_submission",
]
