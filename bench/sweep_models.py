"""Every registered model through `binaries/train_main.py` on the benchmark data, one short run each.

  python bench/sweep_models.py --data_dir=runs/demo/data --workdir=runs/sweep [--models=ResNetLike,DBoF]

Each model trains fold 0 of a K=3 split of a few training shards (video-level or frame-level files by
the model's kind) for `--epochs` pseudo-epochs of `--steps_per_epoch` batches, in its own train_main
process, at a CPU-sized width (SMALL_PARAMS; the defaults are the seed's GPU sizes). The table gives
wall time, train loss of the first and last epoch, and the best validation GAP@20, next to the
logistic baseline of the same kind run in the same sweep (Logistic / FrameLevelLogistic). Finished
models are kept (train_main resumes); results land in <workdir>/sweep.json.

This is a smoke-and-sanity sweep at a tiny budget, not a ranking of the architectures: big models
are far from converged after a few hundred steps.
"""

import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from yt8m_tf import files, models  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "runs/demo/data", "synth_main output with frame level")
flags.DEFINE_string("workdir", "runs/sweep", "Each model's train_dir and sweep.json go under it.")
flags.DEFINE_list("models", None, "comma list; default: every registered model")
flags.DEFINE_string("shards", "train-0000[01]-of-*.tfrecord", "file glob in video/ and frame/")
flags.DEFINE_integer("num_classes", 3862, "Classes of the data.")
flags.DEFINE_integer("max_frames", 60, "the demo data has at most 60 frames")
flags.DEFINE_integer("batch_size", 64, "Videos per training batch.")
flags.DEFINE_integer("epochs", 3, "Pseudo-epochs per model.")
flags.DEFINE_integer("steps_per_epoch", 50, "Batches per pseudo-epoch.")

# CPU-sized parameters; models missing here run at their defaults.
SMALL_PARAMS = {
  "ResNetLike": {"inner_size": 512},
  "EarlyConcatFCN": {"inner_sizes": [512, 512]},
  **{name: {"inner_size": 512} for name in ["AttentiveFCN", "AttentiveFCN3", "AttentiveFCN4"]},
  **{name: {"inner_size": 512} for name in ["AttentiveFCN5", "AttentiveFCN6", "AttentiveFCN7"]},
  "AttentiveFCN2": {"inner_size": 512},
  "EnsembleModel": {"width_scale": 0.0625, "bn_momentum": 0.9},
  "DBoF": {"cluster_size": 512, "hidden_size": 256},
  "SoftBoW": {"num_clusters": 256, "inner_size": 256},
  "VLADBoW": {"num_clusters": 256, "inner_size": 256},
  "TimeDistributedPooling": {"units": 256, "hidden_sizes": [512]},
  **{
    name: {"units": 128, "hidden_sizes": [512]}
    for name in ["StackedRNN", "EarlyConcatLSTM", "EarlyConcatLSTM2", "EarlyConcatGRU2"]
  },
  **{
    name: {"video_hidden": 128, "audio_hidden": 32, "hidden_sizes": [512]}
    for name in ["BiLSTMAttention", "EarlyConcatLSTM4"]
  },
  **{
    name: {"hidden_size": 128, "hidden_sizes": [512]}
    for name in ["AttentionModel", "AttentionModel2", "AttentionModel3", "AttentionModel4"]
  },
  "SelfAttentionEncoder": {"d_model": 128, "num_heads": 4, "ff_dim": 256},
  **{
    name: {"cluster_size": 16, "hidden_size": 256}
    for name in ["NetVLADModel", "NetRVLADModel", "NetFVModel", "NeXtVLADModel"]
  },
  "ClusterCentroids": {"num_clusters": 64, "hidden_size": 256},
}
# Linear models learn faster at the starter's higher rate.
LEARNING_RATES = {"Logistic": 0.01, "MoE": 0.01, "FrameLevelLogistic": 0.01}
BASELINES = {models.VIDEO: "Logistic", models.FRAME: "FrameLevelLogistic"}


def train(name, args):
  kind = models.get(name).kind
  train_dir = os.path.join(args.workdir, name)
  folder = "frame" if kind == models.FRAME else "video"
  train_flags = [
    f"--model={name}",
    f"--model_params={json.dumps(SMALL_PARAMS.get(name, {}))}",
    f"--train_dir={train_dir}",
    f"--train_data_pattern={os.path.join(args.data_dir, folder, args.shards)}",
    f"--num_classes={args.num_classes}",
    f"--max_frames={args.max_frames}",
    "--num_folds=3",
    "--fold=0",
    f"--batch_size={args.batch_size}",
    f"--epochs={args.epochs}",
    f"--steps_per_epoch={args.steps_per_epoch}",
    f"--learning_rate={LEARNING_RATES.get(name, 1e-3)}",
    "--verbose=0",
  ]
  start = time.perf_counter()
  process = subprocess.run(
    [sys.executable, "-m", "binaries.train_main", *train_flags], cwd=ROOT, capture_output=True, text=True
  )
  seconds = time.perf_counter() - start
  if process.returncode != 0:
    return {"model": name, "kind": kind, "error": process.stderr.strip().splitlines()[-1]}
  with open(os.path.join(train_dir, "history.json")) as f:
    history = json.load(f)
  params = SMALL_PARAMS.get(name, {})
  if "max_frames" in models.get(name).params:
    params = {**params, "max_frames": args.max_frames}
  num_params = models.build(name, num_classes=args.num_classes, **params).count_params()
  return {
    "model": name,
    "kind": kind,
    "params": SMALL_PARAMS.get(name, {}),
    "num_params": num_params,
    "seconds": seconds,
    "first_loss": history[0]["loss"],
    "last_loss": history[-1]["loss"],
    "best_val_gap": max(e["val_gap"] for e in history if "val_gap" in e),
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")

  names = FLAGS.models or models.list_models()
  names = sorted(set(names) | set(BASELINES.values()), key=lambda n: (n not in BASELINES.values(), n))
  summary_path = os.path.join(FLAGS.workdir, "sweep.json")
  results = {}
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      results = {r["model"]: r for r in json.load(f) if "error" not in r}
  for name in names:
    if name not in results:
      print(f"[sweep] {name} ...", flush=True)
      results[name] = train(name, FLAGS)
      with files.atomic_open(summary_path) as f:
        json.dump(list(results.values()), f, indent=1)
    result = results[name]
    if "error" in result:
      print(f"[sweep] {name} FAILED: {result['error']}", flush=True)

  print(
    f"\n{FLAGS.epochs} x {FLAGS.steps_per_epoch} steps of batch {FLAGS.batch_size}; "
    f"fold 0 of 3 over {FLAGS.shards}\n"
  )
  print(
    f"{'model':<24} {'kind':<6} {'params':>11} {'wall s':>7} {'loss 1st':>9} {'loss last':>9} "
    f"{'val GAP':>8} {'vs base':>8}"
  )
  for name in names:
    r = results[name]
    if "error" in r:
      print(f"{name:<24} {r['kind']:<6} FAILED: {r['error']}")
      continue
    base = results.get(BASELINES[r["kind"]], {}).get("best_val_gap")
    ratio = f"{r['best_val_gap'] / base:.2f}x" if base else "-"
    num_params = f"{r['num_params']:,}" if r["num_params"] else "-"
    print(
      f"{name:<24} {r['kind']:<6} {num_params:>11} {r['seconds']:>7.0f} {r['first_loss']:>9.5f} "
      f"{r['last_loss']:>9.5f} {r['best_val_gap']:>8.4f} {ratio:>8}"
    )


if __name__ == "__main__":
  app.run(main)
