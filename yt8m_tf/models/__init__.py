"""Models: a registry of Keras builders taking the readers' feature dicts and returning logits."""

from yt8m_tf.models import frame, video  # noqa: F401  (registers the builders)
from yt8m_tf.models.registry import FRAME, VIDEO, build, get, list_models, register


def load_model(path: str, **kwargs):
  """`keras.models.load_model` for yt8m_tf models (importing this package registers their layers)."""
  import keras

  return keras.models.load_model(path, **kwargs)


__all__ = ["FRAME", "VIDEO", "build", "get", "list_models", "load_model", "register"]
