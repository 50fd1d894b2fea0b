"""The demo ladder over seeds: mean and spread of every step of the method and of every change.

  python bench/method_ladder.py --workdir=runs/ladder --seeds=0,1,2 [--preset=demo] [--transductive]
      [--synthetic='{"seed": 7, "difficulty": 2.0}'] [--pipeline='{"distill_students": 1}']

Runs the main job (`pipeline.Pipeline`) once per training seed in <workdir>/seed_<s>; the benchmark data
is generated once (seed_<first>/data) and shared, so the seeds differ in what training draws (weights,
data order, dropout), not in the data. Finished seeds are kept. Prints, per ladder step (best L1 by OOF
GAP -> L1 mean -> stacker -> student on hard labels -> student on soft labels -> submitted CSV), the test
GAP@20 mean, min and max over seeds, then each change between steps and the margins that issue 9 asks
for, each with its spread; a margin smaller than its spread is not a result. Results land in
<workdir>/ladder.json, and as bars with [min, max] whiskers in <workdir>/ladder.png.

--synthetic changes the benchmark itself (SyntheticConfig fields over the preset's): another seed draws
other videos from the packaged label sets and another world; other knobs make another feature generator.
--pipeline changes the method's settings (PipelineConfig fields over the preset's). The method's defaults
were chosen on the demo benchmark; a ladder on such a variant tells whether they hold
on data they were not tuned on.
"""

import dataclasses
import json
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np
from absl import app, flags

from yt8m_tf import pipeline, report
from yt8m_tf.data import synthetic
from yt8m_tf.files import atomic_open

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/ladder", "One work directory per seed goes under it.")
flags.DEFINE_string("preset", "demo", "Pipeline preset.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds.")
flags.DEFINE_string(
  "synthetic", None, "JSON of SyntheticConfig fields replacing the preset's, e.g. '{\"seed\": 7}'."
)
flags.DEFINE_bool("transductive", False, "Also train the transductive student (its own row).")
flags.DEFINE_string(
  "pipeline", None, "JSON of PipelineConfig fields replacing the preset's, e.g. '{\"distill_students\": 1}'."
)
flags.DEFINE_string(
  "redo_from", None, "Redo this stage and those after it in every seed's workdir (new settings for them)."
)

# (label, later step, earlier step, wanted margin): the "done when" margins.
MARGINS = (
  ("stacker - L1 mean", "stacker", "mean of L1", 0.005),
  ("soft student - hard student", "student, soft labels", "student, hard labels", 0.003),
  ("submitted - best L1", "submitted (CSV)", "best L1 (by OOF GAP)", 0.005),
  ("stacker - submitted", "stacker", "submitted (CSV)", None),
)


def share_data(source: str, target: str) -> None:
  """Copies the finished data stage of one seed's workdir into another's (same data, new training)."""
  if os.path.exists(os.path.join(target, "stages", "data.json")):
    return
  os.makedirs(os.path.join(target, "stages"), exist_ok=True)
  if not os.path.exists(os.path.join(target, "data")):
    shutil.copytree(os.path.join(source, "data"), os.path.join(target, "data"))
  shutil.copy(os.path.join(source, "stages", "data.json"), os.path.join(target, "stages", "data.json"))


def spread(values) -> str:
  values = np.asarray(values, np.float64)
  return f"{values.mean():.4f}  [{values.min():.4f}, {values.max():.4f}]  (spread {np.ptp(values):.4f})"


def main(argv):
  del argv
  seeds = [int(s) for s in FLAGS.seeds]
  ladders = {}
  for seed in seeds:
    workdir = os.path.join(FLAGS.workdir, f"seed_{seed}")
    if seed != seeds[0]:
      share_data(os.path.join(FLAGS.workdir, f"seed_{seeds[0]}"), workdir)
    config = pipeline.preset(FLAGS.preset, workdir, seed=seed, transductive=FLAGS.transductive)
    if FLAGS.synthetic:
      fields = {**dataclasses.asdict(config.synthetic), **json.loads(FLAGS.synthetic)}
      config = dataclasses.replace(config, synthetic=synthetic.SyntheticConfig.from_json_dict(fields))
    if FLAGS.pipeline:
      config = dataclasses.replace(config, **json.loads(FLAGS.pipeline))
    seed_report = pipeline.Pipeline(config).run(redo_from=FLAGS.redo_from)
    print(pipeline.format_report(seed_report), flush=True)
    ladders[seed] = {step["step"]: step["test_gap"] for step in seed_report["ladder"]}
    extra = [r for r in seed_report["gap@20"] if "transductive" in r["name"]]
    if extra:
      ladders[seed]["transductive student (not submitted)"] = extra[0]["test_gap"]
    ladders[seed]["wall_seconds"] = seed_report["wall_seconds"]["total"]

  steps = [s for s in ladders[seeds[0]] if s != "wall_seconds"]
  lines = [f"\ntest GAP@20 over seeds {seeds}: mean [min, max]"]
  for step in steps:
    lines.append(f"  {step:<40} {spread([ladders[s][step] for s in seeds])}")
  lines.append("changes (per seed, then over seeds):")
  summary = {"seeds": seeds, "ladders": ladders, "margins": {}}
  for label, later, earlier, wanted in MARGINS:
    deltas = [ladders[s][later] - ladders[s][earlier] for s in seeds]
    mean, width = float(np.mean(deltas)), float(np.ptp(deltas))
    verdict = ""
    if wanted is not None:
      met = mean > wanted and width < mean
      verdict = "  met" if met else f"  NOT met (wanted: mean > {wanted}, spread < mean)"
    lines.append(f"  {label:<40} {spread(deltas)}{verdict}")
    summary["margins"][label] = {"deltas": deltas, "wanted": wanted}
  walls = [ladders[s]["wall_seconds"] for s in seeds]
  lines.append(f"wall time per seed: {', '.join(f'{w:.0f} s' for w in walls)}")
  print("\n".join(lines))
  with atomic_open(os.path.join(FLAGS.workdir, "ladder.json")) as f:
    json.dump(summary, f, indent=1)
  with atomic_open(os.path.join(FLAGS.workdir, "ladder.png"), "wb") as f:
    f.write(report.ladder_over_seeds_png({s: ladders[s] for s in seeds}, steps))


if __name__ == "__main__":
  app.run(main)
