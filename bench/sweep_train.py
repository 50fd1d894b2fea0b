"""Training settings compared on a finished pipeline work directory, selected on validation, over seeds.

  python bench/sweep_train.py --workdir=runs/demo --base=soft --seeds=0,1,2 \
      --variant='w0.5={"soft_label_weight": 0.5}' --variant='w1={"soft_label_weight": 1.0}'

`--base` is a student of the pipeline (`hard`, `soft`, `transductive`: Pipeline.distill_config) or an L1
member (`l1:<flagfile stem>` of the pipeline's zoo, fold 0). Each variant is a JSON object of TrainConfig
fields laid over the base (`model_params` is merged key by key). Every (variant, seed) trains fold 0 in
its own directory under <workdir>/sweeps/<base>/<variant>/seed_<s> (finished runs are kept) and prints
the best fold-0 validation GAP@20, the number defaults are chosen by, and the test GAP@20 beside it, for
information only: never choose on it. Results land in <workdir>/sweeps/<base>/results.json.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from yt8m_tf import pipeline  # noqa: E402
from yt8m_tf.files import atomic_open  # noqa: E402
from yt8m_tf.training import experiment, zoo  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string(
  "workdir", None, "A pipeline work directory whose stages up to `stacker` are done.", required=True
)
flags.DEFINE_string("base", "soft", "hard | soft | transductive | l1:<member>.")
flags.DEFINE_multi_string("variant", [], "name={JSON TrainConfig overrides}; 'base={}' is the base itself.")
flags.DEFINE_list("seeds", ["0"], "Training seeds.")


def make_config(pipe: pipeline.Pipeline, base: str, train_dir: str, seed: int, overrides: dict):
  overrides = dict(overrides)
  if base.startswith("l1:"):
    config = pipe.config
    values = zoo.parse_flagfile(os.path.join(config.zoo_dir, f"{base[3:]}.flags"))
    values.update(config.l1_overrides)
    params = {**values.get("model_params", {}), **overrides.pop("model_params", {})}
    values.update(overrides, model_params=params, seed=seed)
    return experiment.TrainConfig(
      train_dir=train_dir,
      train_data_pattern=pipe.train_pattern(),
      fold=0,
      num_folds=config.num_folds,
      num_classes=pipe.schema().num_classes,
      **values,
    )
  student = pipe.distill_config(base, seed=seed)
  params = {**student.model_params, **overrides.pop("model_params", {})}
  return pipe.distill_config(base, train_dir=train_dir, seed=seed, model_params=params, **overrides)


def main(argv):
  del argv
  pipe = pipeline.Pipeline(pipeline.load_config(FLAGS.workdir), log=lambda *_: None)
  variants = []
  for text in FLAGS.variant or ["base={}"]:
    name, _, overrides = text.partition("=")
    variants.append((name, json.loads(overrides or "{}")))
  out_dir = os.path.join(FLAGS.workdir, "sweeps", FLAGS.base.replace(":", "_"))
  results = {}
  for name, overrides in variants:
    runs = []
    for seed in (int(s) for s in FLAGS.seeds):
      train_dir = os.path.join(out_dir, name, f"seed_{seed}")
      config = make_config(pipe, FLAGS.base, train_dir, seed, overrides)
      entry = pipe.train_student(config)
      runs.append({"seed": seed, **entry})
      print(
        f"{name:<28} seed {seed}: val {entry['best_val_gap']:.4f}  test {entry.get('test_gap', float('nan')):.4f}",
        flush=True,
      )
    val = np.array([r["best_val_gap"] for r in runs])
    test = np.array([r.get("test_gap", np.nan) for r in runs])
    results[name] = {"overrides": overrides, "runs": runs}
    print(
      f"== {name:<25} val {val.mean():.4f} (min {val.min():.4f}, max {val.max():.4f})   "
      f"test {np.nanmean(test):.4f} (min {np.nanmin(test):.4f}, max {np.nanmax(test):.4f})",
      flush=True,
    )
  with atomic_open(os.path.join(out_dir, "results.json")) as f:
    json.dump(results, f, indent=1)


if __name__ == "__main__":
  app.run(main)
