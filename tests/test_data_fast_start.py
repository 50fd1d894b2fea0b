"""fast_start: the tf.data mechanics behind the readers' start-up."""

import numpy as np
import tensorflow as tf

from yt8m_tf.data import fast_start


def test_only_if_runs_its_ops_only_where_the_predicate_holds():
  calls = []

  def slow(x):
    calls.append(int(x))
    return x * 10

  def step(state, x):
    (out,) = fast_start.only_if(x % 3 == 0, lambda x: [tf.py_function(slow, [x], tf.int64)], [x], [x])
    return state, out

  got = [int(v) for v in tf.data.Dataset.range(7).scan(tf.constant(0, tf.int64), step)]
  assert got == [0, 1, 2, 30, 4, 5, 60]
  assert calls == [0, 3, 6]


def test_single_device_rebuild_keeps_the_elements_and_marks_every_function():
  scale = tf.function(lambda x: tf.cast(x, tf.float32) * 2.0, autograph=False)
  dataset = tf.data.Dataset.range(10).map(lambda x: (x, scale(x))).batch(4)
  rebuilt = fast_start.lean(dataset)
  for (a, b), (c, d) in zip(dataset, rebuilt):
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(b, d)
  graph = tf.raw_ops.DatasetToGraphV2(input_dataset=tf.data.experimental.to_variant(rebuilt))
  functions = tf.compat.v1.GraphDef.FromString(graph.numpy()).library.function
  assert functions and all(f.attr["experimental_ints_on_device"].b for f in functions)
  assert not [n.op for f in functions for n in f.node_def if n.op.endswith("PartitionedCall")]


def test_shuffle_and_repeat_is_seeded_and_reshuffles_each_epoch():
  run = lambda seed: [int(x) for x in fast_start.shuffle_and_repeat(tf.data.Dataset.range(8), 8, 3, seed)]
  first = run(5)
  assert first == run(5) and sorted(first) == sorted(list(range(8)) * 3)
  assert first[:8] != first[8:16] or first[8:16] != first[16:]
