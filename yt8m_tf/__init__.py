"""yt8m_tf: YouTube-8M 2018 2nd-place solution in TensorFlow/Keras."""

__version__ = "0.1.0"
