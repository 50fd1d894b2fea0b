"""Frame-level models (inputs rgb, audio, num_frames). Importing registers them."""

from yt8m_tf.models.frame import pooling_models, recurrent, self_attention  # noqa: F401
from yt8m_tf.models.frame import centroids, vlad  # noqa: F401
