"""Frame-level models (inputs rgb, audio, num_frames). Importing registers them."""

from yt8m_tf.models.frame import centroids, pooling_models, recurrent, self_attention, vlad  # noqa: F401
