"""tf.data mechanics that keep a pipeline's start-up near a bare parse's (BUILD_NOTES, "Readers at the speed
of a bare parse").

tf.data instantiates every function of a pipeline, for every iterator, as a multi-device function (placement,
grappler and the oneDNN rewrite pass over each body), and so is every tf.function they call; the readers
spent most of their start-up there. `with_single_device_functions` rebuilds a finished pipeline so that its
functions skip those passes. Pipelines rebuilt so cannot take tf.data's default graph rewrites
(`LEAN_OPTIONS` turns them off); the two that matter are made by hand with the fused ops they would have
made (`map_and_batch`, `shuffle_and_repeat`). `only_if` runs graph code conditionally without `tf.cond`,
whose branch functions would be instantiated with every iterator too.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf

# Nothing measurable is lost once a reader's pipeline runs, ~20 ms per iterator is saved, and a rebuilt
# pipeline could not be rewritten anyway.
LEAN_OPTIONS = tf.data.Options()
LEAN_OPTIONS.experimental_optimization.apply_default_optimizations = False
_CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall")


def only_if(pred, fn, inputs: list, otherwise: list) -> list:
  """`fn(*inputs)` where the scalar `pred` holds, else `otherwise`, with `fn`'s ops run only when it holds.

  Graph-level Switch/Merge rather than `tf.cond`: a cond's branch functions are lowered and instantiated
  with every iterator tf.data makes (13-19 ms measured); these few nodes cost nothing until `pred` holds.
  Every op `fn` makes must depend on `inputs`: one that does not would run anyway.
  """
  taken = [tf.raw_ops.Switch(data=x, pred=pred)[1] for x in inputs]
  results = fn(*taken)
  skipped = [tf.raw_ops.Switch(data=x, pred=pred)[0] for x in otherwise]
  return [tf.raw_ops.Merge(inputs=[a, b])[0] for a, b in zip(skipped, results)]


@contextlib.contextmanager
def fused_ops_allowed():
  """Silences the deprecation notices of tf.data's fused ops (`map_and_batch`, `shuffle_and_repeat`): they
  point to the default graph rewrites that make the same ops, which `LEAN_OPTIONS` turns off, so they are
  not for the reader's user."""
  logger = tf.get_logger()
  level = logger.level
  logger.setLevel("ERROR")
  try:
    yield
  finally:
    logger.setLevel(level)


def map_and_batch(dataset: tf.data.Dataset, fn, batch_size: int, drop_remainder: bool) -> tf.data.Dataset:
  """`dataset.map(fn).batch(batch_size)` fused: each element is mapped straight into its batch (a frame-level
  batch is ~40 MB; the copy the fusion saves was a quarter of a pass)."""
  with fused_ops_allowed():
    fused = tf.data.experimental.map_and_batch(
      fn, batch_size, num_parallel_calls=tf.data.AUTOTUNE, drop_remainder=drop_remainder
    )
  return dataset.apply(fused)


def shuffle_and_repeat(dataset: tf.data.Dataset, buffer_size: int, count, seed) -> tf.data.Dataset:
  """`dataset.shuffle(buffer_size, seed, reshuffle_each_iteration=True).repeat(count)` as the one fused op
  tf.data's default rewrites made of it: its order per epoch differs from the unfused pair's, and is the
  order seeded runs have always read."""
  with fused_ops_allowed():
    fused = tf.data.experimental.shuffle_and_repeat(buffer_size, count, seed=seed)
  return dataset.apply(fused)


def with_single_device_functions(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """`dataset` rebuilt with its functions instantiated as plain single-device functions.

  A function marked `experimental_ints_on_device` is instantiated on the iterator's device alone (the CPU,
  where tf.data runs its functions) without the multi-device passes, and the mark has no other effect there
  (tensorflow/core/data/captured_function.cc); a call made an ordinary function call runs the callee the
  same way, where a PartitionedCall is always multi-device and refuses the mark. tf.data's Python API sets
  neither, hence the round trip through the dataset's graph (public raw ops). The dataset must hold no TF
  state (variables): its graph would carry copies of their handles. Built inside a tf.function (no graph to
  read back yet), the dataset is returned as it is.
  """
  if not tf.executing_eagerly():
    return dataset
  graph = tf.raw_ops.DatasetToGraphV2(
    input_dataset=tf.data.experimental.to_variant(dataset),
    external_state_policy=1,  # 1: ignore
  )
  graph_def = tf.compat.v1.GraphDef.FromString(graph.numpy())
  signatures = {function.signature.name: function.signature for function in graph_def.library.function}
  for function in graph_def.library.function:
    function.attr["experimental_ints_on_device"].b = True
    renamed = {}
    for node in function.node_def:
      if node.op in _CALL_OPS:
        callee = signatures[node.attr["f"].func.name]
        node.op = callee.name
        for key in ("f", "Tin", "Tout", "config", "config_proto", "executor_type"):
          node.attr.pop(key, None)
        # A call's outputs are named after the callee's outputs, where PartitionedCall's are "output:<i>".
        for i, output in enumerate(callee.output_arg):
          renamed[f"{node.name}:output:{i}"] = f"{node.name}:{output.name}:0"
    if renamed:
      for node in function.node_def:
        node.input[:] = [renamed.get(name, name) for name in node.input]
      for key, name in function.ret.items():
        function.ret[key] = renamed.get(name, name)
  variant = tf.raw_ops.DatasetFromGraph(graph_def=graph_def.SerializeToString())
  return tf.data.experimental.from_variant(variant, dataset.element_spec)


def lean(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """A finished pipeline, without default rewrites, rebuilt with single-device functions."""
  return with_single_device_functions(dataset.with_options(LEAN_OPTIONS))
