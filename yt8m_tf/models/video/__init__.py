"""Video-level models (inputs mean_rgb, mean_audio). Importing registers them."""

from yt8m_tf.models.video import ensemble, fcn, logistic, moe, resnet_like  # noqa: F401
