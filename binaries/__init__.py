"""Thin absl binaries over the yt8m_tf library; each is also a console script (setup.cfg)."""

import contextlib
import logging
import os
import sys

# Set before TensorFlow loads (every binary imports this package first): TF's C++ start-up noise, and
# TF-DF's welcome banner (which also breaks under pytest's captured output).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
SHOW_STARTUP_LOGS = "YT8M_SHOW_STARTUP_LOGS"  # set to 1 to see what TensorFlow prints while it starts


@contextlib.contextmanager
def _stderr_to_devnull():
  """Points file descriptor 2 (C++ writes there directly) at /dev/null for the block."""
  sys.stderr.flush()
  saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


def _start_tensorflow_quietly() -> None:
  """TF 2.19's wheel logs duplicate registrations (cuDNN, cuBLAS, computation placer) while it loads, through
  C++ logging that runs before any log level is read, and a machine without a GPU logs a cuInit error at the
  first device query: a dozen error-looking lines before every command. They are loaded and queried here
  with stderr silenced; a Python error still shows (it is raised after stderr is back)."""
  if os.environ.get(SHOW_STARTUP_LOGS):
    return
  with _stderr_to_devnull():
    import tensorflow as tf

    tf.config.list_physical_devices()


class _DropRetracingWarnings(logging.Filter):
  """Every fold model gets its own traced evaluation and prediction functions; TF counts those as retraces
  of one function and warns (with a paragraph of advice) after a few folds."""

  def filter(self, record: logging.LogRecord) -> bool:
    return "triggered tf.function retracing" not in record.getMessage()


_start_tensorflow_quietly()
logging.getLogger("tensorflow").addFilter(_DropRetracingWarnings())


def run_main(main, module_name: str) -> None:
  """`app.run(main)`, with `--help` listing the binary's own flags also when it starts as a console script,
  and a UsageError said in one line instead of after the whole flag list.

  absl's `--help` lists the key flags of the module named `sys.argv[0]`; for `python -m binaries.x` that is
  the binary, for the `yt8m-*` scripts it is the script, which defines no flags.
  """
  from absl import app, flags

  for flag in flags.FLAGS.get_key_flags_for_module(module_name):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)

  def main_with_short_errors(argv):
    # absl answers a UsageError with the whole flag list, the message at its very end; say it alone.
    try:
      return main(argv)
    except app.UsageError as error:
      sys.stderr.write(f"error: {error}\nPass --help to see the flags.\n")
      sys.exit(error.exitcode)

  app.run(main_with_short_errors)
