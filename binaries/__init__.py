"""Thin absl binaries over the yt8m_tf library; each is also a console script (setup.cfg)."""

import os
import sys

# Set before TensorFlow loads (every binary imports this package first): TF's C++ start-up noise, and
# TF-DF's welcome banner (which also breaks under pytest's captured output).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")


def run_main(main, module_name: str) -> None:
  """`app.run(main)`, with `--help` listing the binary's own flags also when it starts as a console script.

  absl's `--help` lists the key flags of the module named `sys.argv[0]`; for `python -m binaries.x` that is
  the binary, for the `yt8m-*` scripts it is the script, which defines no flags.
  """
  from absl import app, flags

  for flag in flags.FLAGS.get_key_flags_for_module(module_name):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  app.run(main)
