"""Models: a registry of Keras builders taking the readers' feature dicts and returning logits."""

from yt8m_tf.models import frame, video  # noqa: F401  (registers the builders)
from yt8m_tf.models.registry import FRAME, VIDEO, build, get, list_models, register

__all__ = ["FRAME", "VIDEO", "build", "get", "list_models", "register"]
