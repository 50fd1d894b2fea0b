"""Models: a registry of Keras builders taking the readers' feature dicts and returning logits."""

from yt8m_tf.models import frame, video  # noqa: F401  (registers the builders)
from yt8m_tf.models.registry import FRAME, VIDEO, build, check_features, get, list_models, register


def load_model(path: str, compile: bool = False, **kwargs):
  """`keras.models.load_model` for yt8m_tf models (importing this package registers their layers).

  Not compiled by default: for inference. Training losses live in `yt8m_tf.training.losses`; import it
  before loading with `compile=True`.
  """
  import keras

  return keras.models.load_model(path, compile=compile, **kwargs)


__all__ = ["FRAME", "VIDEO", "build", "check_features", "get", "list_models", "load_model", "register"]
