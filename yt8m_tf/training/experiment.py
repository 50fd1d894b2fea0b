"""One L1 training run from a `TrainConfig`: what `binaries/train_main.py` calls.

K-fold: with `fold=k`, the model trains on the videos of `train_data_pattern` whose fold is not k and
validates on those whose fold is k (its out-of-fold set); folds come from the video id
(`yt8m_tf.data.fold_of`), so video- and frame-level runs share them. Without `fold`, it trains on all
of `train_data_pattern` and validates on `eval_data_pattern`.

The run's `train_dir` holds `config.json` (the settings it ran with; a resumed run must match them)
next to what `trainer.fit` writes (best.keras, last.keras, backup/, tensorboard/, history.json). Under
`multi_worker` the same comes from `distributed.fit`, a custom loop (Keras `fit` fails there).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from typing import Dict, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from yt8m_tf import data, models, progress
from yt8m_tf.configs.dataclass_flags import setting
from yt8m_tf.files import atomic_open, atomic_save_npz, load_npz
from yt8m_tf.stores.soft_labels import SoftLabelStore
from yt8m_tf.training import distributed, losses, soft_targets, trainer
from yt8m_tf.training.inputs import dataset_for

CONFIG_FILE = "config.json"
STRATEGIES = ("default", "mirrored", "multi_worker")
# "model": each builder's own initialization; "prior": the output bias (the Dense layer named "logits")
# starts at the log-odds of each class's frequency in the training folds.
OUTPUT_BIAS_INITS = ("model", "prior")
# "plateau": the LR is multiplied by lr_factor when validation GAP stops improving (lr_patience epochs);
# "cosine": per-step cosine decay from learning_rate to 0 over the run's planned steps; "constant": none.
# "exponential": the starter's staircase decay, times learning_rate_decay every learning_rate_decay_examples.
LR_SCHEDULES = ("plateau", "cosine", "constant", "exponential")
# Optimizers by name; the starter's tf.train class names are accepted too (`--optimizer=AdamOptimizer`).
OPTIMIZERS = ("adam", "momentum", "sgd", "rmsprop", "adagrad")
STARTER_OPTIMIZERS = {
  "AdamOptimizer": "adam",
  "MomentumOptimizer": "momentum",
  "GradientDescentOptimizer": "sgd",
  "RMSPropOptimizer": "rmsprop",
  "AdagradOptimizer": "adagrad",
}
TRAINING_LABELS_FILE = "training_labels.npz"  # class counts and videos of the training folds
JSON_FIELDS = ("model_params", "frame_sampler_params")  # TrainConfig dicts, JSON on command lines
# Settings that may change when a run is resumed (how long it runs, not what it trains).
_RESUMABLE_CHANGES = {"epochs", "max_steps", "verbose", "tensorboard_steps"}
# How a run is shown, not what it computes: work directories neither record nor compare them.
DISPLAY_SETTINGS = ("verbose", "tensorboard_steps")
# The TrainConfig fields that describe the data (its Schema): binaries that read data take them as flags.
SCHEMA_FIELDS = ("num_classes", "max_frames", "feature_names", "feature_sizes", "id_key")


def schema_from_settings(num_classes, max_frames, feature_names, feature_sizes, id_key) -> data.Schema:
  """The Schema the TrainConfig fields of these names describe. The starter's video-level spelling of a
  feature (mean_rgb) names its frame-level key (rgb), the one spelling a Schema keeps."""
  return data.Schema(
    id_key=id_key,
    feature_names=tuple(n[len("mean_") :] if n.startswith("mean_") else n for n in feature_names),
    feature_sizes=tuple(int(size) for size in feature_sizes),
    num_classes=num_classes,
    max_frames=max_frames,
  )


def schema_settings(schema: data.Schema) -> dict:
  """The TrainConfig fields of a Schema (`TrainConfig(**schema_settings(schema), ...)`)."""
  return {name: getattr(schema, name) for name in SCHEMA_FIELDS}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Every setting of an L1 run; each field is a flag of `binaries/train_main.py` (`configs.dataclass_flags`)."""

  model: str = setting(help="Registered model name.")
  train_dir: str = setting(help="Directory for checkpoints, logs and config.")
  train_data_pattern: str = setting(help="Glob(s) of training TFRecords.")
  eval_data_pattern: Optional[str] = setting(None, "Glob(s) of validation TFRecords (without --fold).")
  model_params: Dict[str, object] = setting({}, "Builder parameters of the model.")
  num_classes: int = setting(data.schema.NUM_CLASSES_2018, "Number of classes.")
  max_frames: int = setting(
    data.schema.MAX_FRAMES, "Frames per video after padding/truncation (frame-level)."
  )
  feature_names: Tuple[str, ...] = setting(
    data.Schema.feature_names,
    "Features to read, as the starter's --feature_names: frame-level keys; video level reads mean_<name> "
    "(mean_rgb,mean_audio is accepted too). Other than rgb,audio: models that concatenate their inputs.",
  )
  feature_sizes: Tuple[int, ...] = setting(
    data.Schema.feature_sizes, "Values per frame (or per video) of each feature, as the starter's."
  )
  id_key: str = setting(data.Schema.id_key, "Key of the video id: id (2018), video_id (2017 data).")
  num_folds: int = setting(5, "K of the K-fold split (folds come from the video id).")
  fold: Optional[int] = setting(None, "Validate on this fold and train on the others.")
  batch_size: int = setting(512, "Global batch size.")
  epochs: int = setting(30, "Epochs (pseudo-epochs with --steps_per_epoch).")
  steps_per_epoch: Optional[int] = setting(None, "Batches per pseudo-epoch; default: one pass over the data.")
  validation_steps: Optional[int] = setting(None, "Validation batches per epoch; default: all.")
  # Keras' validation_freq. Fixed schedules need no per-epoch GAP: validation then costs one pass.
  validation_freq: int = setting(
    1, "Validate after every N-th epoch and the last one (not with --lr_schedule=plateau)."
  )
  learning_rate: float = setting(1e-3, "The optimizer's (initial) learning rate.")
  lr_schedule: str = setting(
    "plateau",
    "plateau: times --lr_factor when validation GAP stops improving; cosine: per-step decay to 0 over the "
    "run; constant: --learning_rate throughout; exponential: the starter's staircase, times "
    "--learning_rate_decay every --learning_rate_decay_examples.",
    choices=LR_SCHEDULES,
  )
  learning_rate_decay: float = setting(0.95, "Exponential schedule: LR factor per decay period.")
  learning_rate_decay_examples: int = setting(
    4_000_000, "Exponential schedule: training examples per decay period (the starter's staircase)."
  )
  optimizer: str = setting(
    "adam",
    "adam, momentum (0.9), sgd, rmsprop or adagrad; the starter's class names (AdamOptimizer, ...) too.",
    choices=OPTIMIZERS + tuple(STARTER_OPTIMIZERS),
  )
  lr_factor: float = setting(0.5, "ReduceLROnPlateau factor.")
  lr_patience: int = setting(0, "ReduceLROnPlateau patience, in epochs.")
  early_stopping_patience: Optional[int] = setting(None, "Stop after this many epochs without improvement.")
  clip_norm: float = setting(10.0, "Gradient global-norm clip.")
  mixed_precision: bool = setting(
    False,
    "Compute in bfloat16 (CPU) or float16 (GPU, with loss scaling) with float32 weights; the class scores "
    "stay float32. The saved model and its exports compute the same way.",
  )
  loss: str = setting("bce", "Loss name (yt8m_tf.training.losses).")
  mixup_alpha: float = setting(0.0, "Mixup Beta(alpha, alpha); 0 disables (the seed used 0.4).")
  frame_sampler: Optional[str] = setting(None, "Training-time frame subsampler name (frame-level).")
  frame_sampler_params: Dict[str, object] = setting({}, "Parameters of the frame sampler.")
  kmeans_max_batches: Optional[int] = setting(100, "Training batches k-means sees (cluster-centroid models).")
  soft_labels: Optional[str] = setting(None, "Soft-label store made by the stacking stage.")
  soft_label_weight: float = setting(1.0, "Targets are w * soft + (1 - w) * hard.")
  soft_label_missed_positives: str = setting(
    "mixed",
    "Target of a hard positive the teacher did not score: 1 - w (mixed, the seed) or 1 (hard); max: "
    "targets max(hard, w * soft) (positives keep 1, the teacher lifts negatives).",
    choices=soft_targets.MISSED_POSITIVES,
  )
  soft_label_temperature: float = setting(1.0, "Teacher probabilities p -> sigmoid(logit(p) / T).")
  transductive_data_pattern: Optional[str] = setting(
    None, "Unlabeled videos (e.g. test) trained on the teacher's scores alone."
  )
  transductive_soft_labels: Optional[str] = setting(None, "Soft-label store of --transductive_data_pattern.")
  output_bias_init: str = setting(
    "model",
    "Output bias: the model's own init, or the log-odds of the training folds' class frequencies.",
    choices=OUTPUT_BIAS_INITS,
  )
  # For a final model (the distilled student), which needs no out-of-fold predictions and gains from all
  # the data; validation is then monitoring and LR schedule, not a held-out score.
  fit_all_folds: bool = setting(
    False, "Train on every fold, --fold included (validation then watches seen videos)."
  )
  max_steps: Optional[int] = setting(None, "Caps the run's training steps in all (smoke runs).")
  distribution_strategy: str = setting(
    "default", "default | mirrored (local GPUs) | multi_worker (TF_CONFIG cluster).", choices=STRATEGIES
  )
  shuffle_buffer: int = setting(10_000, "Videos in the training shuffle buffer.")
  seed: int = setting(0, "Seed for data order and initialization.")
  verbose: int = setting(
    progress.AUTO_VERBOSITY,
    "Keras verbosity: 0 silent, 1 progress bar with ETA, 2 one line per epoch, -1 a bar on a terminal "
    "and one line per epoch otherwise.",
  )
  tensorboard_steps: int = setting(
    50,
    "Write the training loss to TensorBoard every N steps (0: per epoch only; the multi-worker loop "
    "writes per epoch).",
  )

  def __post_init__(self):
    schema = self.schema  # feature names and sizes of equal count, positive sizes
    object.__setattr__(self, "feature_names", schema.feature_names)  # one spelling: rgb, not mean_rgb
    object.__setattr__(self, "feature_sizes", schema.feature_sizes)
    # Stored under their own names, so that config.json and resume checks see one spelling; an unknown
    # model fails here, early, naming the known ones.
    object.__setattr__(self, "model", models.get(self.model).name)
    object.__setattr__(self, "optimizer", STARTER_OPTIMIZERS.get(self.optimizer, self.optimizer))
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(
        f"optimizer must be one of {OPTIMIZERS + tuple(STARTER_OPTIMIZERS)}, got {self.optimizer!r}"
      )
    if not 0 < self.learning_rate_decay <= 1 or self.learning_rate_decay_examples < 1:
      raise ValueError(
        "learning_rate_decay must be in (0, 1] and learning_rate_decay_examples >= 1, got "
        f"{self.learning_rate_decay} and {self.learning_rate_decay_examples}"
      )
    for name in ("batch_size", "epochs", "num_classes", "max_frames", "shuffle_buffer", "validation_freq"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    for name in ("steps_per_epoch", "validation_steps"):
      if getattr(self, name) is not None and getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1 or unset, got {getattr(self, name)}")
    if not self.learning_rate > 0:
      raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
    if self.num_folds < 2 and self.fold is not None:
      raise ValueError(
        f"num_folds must be >= 2 with a fold (one fold leaves nothing to train on), got {self.num_folds}"
      )
    if not self.soft_label_temperature > 0:
      raise ValueError(f"soft_label_temperature must be > 0, got {self.soft_label_temperature}")
    for name in JSON_FIELDS:
      if not isinstance(getattr(self, name), dict):
        raise ValueError(f"{name} must be a JSON object (a dict), got {getattr(self, name)!r}")
    if self.distribution_strategy not in STRATEGIES:
      raise ValueError(
        f"distribution_strategy must be one of {STRATEGIES}, got {self.distribution_strategy!r}"
      )
    if self.fold is not None and not 0 <= self.fold < self.num_folds:
      raise ValueError(f"fold must be in [0, {self.num_folds}), got {self.fold}")
    if self.fold is None and not self.eval_data_pattern:
      raise ValueError("without --fold, --eval_data_pattern is needed for validation")
    if not 0.0 <= self.soft_label_weight <= 1.0:
      raise ValueError(f"soft_label_weight must be in [0, 1], got {self.soft_label_weight}")
    if self.lr_schedule not in LR_SCHEDULES:
      raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
    if self.validation_freq > 1 and (
      self.lr_schedule == "plateau" or self.early_stopping_patience is not None
    ):
      raise ValueError(
        f"validation_freq={self.validation_freq} leaves epochs unvalidated, but lr_schedule=plateau and "
        "early_stopping_patience decide on every epoch's validation GAP; use lr_schedule=cosine or constant"
      )
    if self.output_bias_init not in OUTPUT_BIAS_INITS:
      raise ValueError(f"output_bias_init must be one of {OUTPUT_BIAS_INITS}, got {self.output_bias_init!r}")
    if bool(self.transductive_data_pattern) != bool(self.transductive_soft_labels):
      raise ValueError("transductive_data_pattern and transductive_soft_labels go together")
    if self.transductive_data_pattern and not self.soft_labels:
      raise ValueError("transductive distillation needs soft_labels for the labeled videos too")
    if self.max_steps is not None and self.max_steps < 1:
      raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
    if self.mixup_alpha < 0:
      raise ValueError(f"mixup_alpha must be >= 0, got {self.mixup_alpha}")
    if self.tensorboard_steps < 0:
      raise ValueError(f"tensorboard_steps must be >= 0, got {self.tensorboard_steps}")
    if self.verbose not in (progress.AUTO_VERBOSITY, 0, 1, 2):
      raise ValueError(f"verbose must be -1 (auto), 0, 1 or 2, got {self.verbose}")
    models.check_features(self.model, self.schema)  # features other than rgb and audio

  @property
  def kind(self) -> str:
    return models.get(self.model).kind

  @property
  def schema(self) -> data.Schema:
    return schema_from_settings(**{name: getattr(self, name) for name in SCHEMA_FIELDS})

  @property
  def targets_by_id(self) -> bool:
    """Soft or transductive targets are looked up by video id, so the training reader keeps `id`."""
    return bool(self.soft_labels or self.transductive_data_pattern)

  @property
  def schedule(self) -> Tuple[int, Optional[int]]:
    """(epochs, steps_per_epoch) as run: with max_steps, epochs of at most max_steps batches and at
    most max_steps batches in all."""
    if not self.max_steps:
      return self.epochs, self.steps_per_epoch
    steps_per_epoch = min(self.steps_per_epoch or self.max_steps, self.max_steps)
    return min(self.epochs, max(1, self.max_steps // steps_per_epoch)), steps_per_epoch

  def to_json(self) -> dict:
    """The fields as JSON holds them (tuples as lists), so that config.json compares equal to its source."""
    return json.loads(json.dumps(dataclasses.asdict(self)))


def make_strategy(name: str) -> tf.distribute.Strategy:
  """`default`: one device; `mirrored`: all local GPUs; `multi_worker`: the cluster in TF_CONFIG."""
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  return tf.distribute.get_strategy()


def field_defaults() -> Dict[str, object]:
  """TrainConfig's fields that have a plain default, with it as JSON holds it (what config.json compares)."""
  defaults = {
    f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING
  }
  return json.loads(json.dumps(defaults))


def check_or_write_config(config: TrainConfig) -> None:
  """Writes the run's config.json, or, when the train_dir has one, refuses settings that differ from it
  (naming each change) other than those a resumed run may change (epochs, max_steps, display)."""
  path = os.path.join(config.train_dir, CONFIG_FILE)
  current = config.to_json()
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      previous = json.load(f)
    # A field added after the run was made had its default then (the behaviour before the field existed).
    previous = {**{k: v for k, v in field_defaults().items() if k not in previous}, **previous}
    changed = sorted(
      k
      for k in set(current) | set(previous)
      if k not in _RESUMABLE_CHANGES and current.get(k) != previous.get(k)
    )
    if changed:
      details = ", ".join(f"{k}: {previous.get(k)!r} -> {current.get(k)!r}" for k in changed)
      raise ValueError(
        f"{config.train_dir} holds a run made with other settings ({details}); "
        "use a new --train_dir or delete the old one"
      )
  tf.io.gfile.makedirs(config.train_dir)
  with atomic_open(path) as f:
    json.dump(current, f, indent=1, sort_keys=True)


def _training_folds(config: TrainConfig) -> dict:
  """Reader arguments selecting the training videos: all folds but the held-out one (if any)."""
  if config.fold is None or config.fit_all_folds:
    return {}
  return {"num_folds": config.num_folds, "exclude_folds": [config.fold]}


def apply_training_transforms(
  dataset: tf.data.Dataset, config: TrainConfig, with_soft_targets: bool = True
) -> tf.data.Dataset:
  """Per-batch training transforms, in order: soft-label targets (unless `with_soft_targets=False`: the
  caller made them), frame sampling, mixup (last, so it mixes the final targets). Random draws are
  seeded from `config.seed`: a run replays exactly."""
  if config.soft_labels and with_soft_targets:
    dataset = dataset.map(
      _soft_targets(SoftLabelStore.load(config.soft_labels), config, config.soft_label_weight),
      num_parallel_calls=tf.data.AUTOTUNE,
    )
  if config.frame_sampler:
    from yt8m_tf.training import frame_sampling

    params = dict(config.frame_sampler_params)
    params.setdefault("pad_to", config.max_frames)  # frame models take a fixed number of frames
    sampler = frame_sampling.get_sampler(config.frame_sampler, **params)
    dataset = sampler.map_dataset(dataset, seed=config.seed)
  if config.mixup_alpha > 0:
    from yt8m_tf.training import mixup

    dataset = mixup.mixup_dataset(dataset, config.mixup_alpha, seed=config.seed + 1)
  return dataset


def _soft_targets(store, config: TrainConfig, weight: float):
  return soft_targets.target_transform(
    store,
    weight,
    missed_positives=config.soft_label_missed_positives,
    temperature=config.soft_label_temperature,
  )


def _shuffled_batches(config: TrainConfig, pattern: str, seed: int, num_epochs, **folds) -> tf.data.Dataset:
  """Shuffled training batches of `pattern` (whole batches only), with the ids kept if targets need them."""
  return dataset_for(
    config.kind,
    pattern,
    config.batch_size,
    schema=config.schema,
    keep_ids=config.targets_by_id,
    shuffle=True,
    seed=seed,
    num_epochs=num_epochs,
    shuffle_buffer=config.shuffle_buffer,
    drop_remainder=True,
    **folds,
  )


def _with_transductive_batches(train: tf.data.Dataset, config: TrainConfig, num_epochs) -> tf.data.Dataset:
  """Mixes whole batches of the unlabeled videos, targets = the teacher's scores alone (weight 1), into
  the training batches, in proportion to the two sets' sizes (the stores cover every video of each)."""
  store = SoftLabelStore.load(config.soft_labels)
  extra_store = SoftLabelStore.load(config.transductive_soft_labels)
  train = train.map(_soft_targets(store, config, config.soft_label_weight))
  extra = _shuffled_batches(config, config.transductive_data_pattern, config.seed + 2, num_epochs).map(
    soft_targets.target_transform(extra_store, 1.0, temperature=config.soft_label_temperature),
    num_parallel_calls=tf.data.AUTOTUNE,
  )
  train_videos = len(store)
  if config.fold is not None and not config.fit_all_folds:
    train_videos *= (config.num_folds - 1) / config.num_folds
  share = len(extra_store) / (len(extra_store) + train_videos)
  return tf.data.Dataset.sample_from_datasets(
    [train, extra], weights=[1 - share, share], seed=config.seed + 3, stop_on_empty_dataset=False
  )


def training_dataset(config: TrainConfig) -> tf.data.Dataset:
  """Shuffled, transformed training batches of the global batch size.

  Under a tf.distribute strategy Keras splits each global batch over the replicas; across workers the
  batches are sharded (policy DATA: every worker reads every file and keeps its share of batches,
  which works for any number of files).
  """
  # With steps_per_epoch an epoch is that many batches of an endless stream (the seed's
  # pseudo-epochs); without it, one pass over the data.
  num_epochs = None if config.steps_per_epoch or config.max_steps else 1
  train = _shuffled_batches(
    config, config.train_data_pattern, config.seed, num_epochs, **_training_folds(config)
  )
  if config.transductive_data_pattern:
    train = apply_training_transforms(
      _with_transductive_batches(train, config, num_epochs), config, with_soft_targets=False
    )
  else:
    train = apply_training_transforms(train, config)
  if config.targets_by_id:
    train = train.map(lambda f, l: ({k: v for k, v in f.items() if k != "id"}, l))
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return train.with_options(options).prefetch(tf.data.AUTOTUNE)


def validation_dataset(config: TrainConfig) -> tf.data.Dataset:
  """Hard-labeled validation data: the held-out fold, or `eval_data_pattern` without folds."""
  if config.fold is not None:
    return dataset_for(
      config.kind,
      config.train_data_pattern,
      config.batch_size,
      schema=config.schema,
      num_folds=config.num_folds,
      folds=[config.fold],
    )
  return dataset_for(config.kind, config.eval_data_pattern, config.batch_size, schema=config.schema)


def mixed_precision_policy() -> str:
  """Keras' mixed policy for this machine: float16 where a GPU runs it fast, bfloat16 on CPUs (no loss
  scaling needed, the float32 exponent range)."""
  return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


@contextlib.contextmanager
def dtype_policy(name: Optional[str]):
  """Models built inside compute under Keras' dtype policy `name` (None: the current one); the previous
  global policy is restored after."""
  previous = keras.config.dtype_policy()
  if name is not None:
    keras.config.set_dtype_policy(name)
  try:
    yield
  finally:
    keras.config.set_dtype_policy(previous)


def build_model(config: TrainConfig) -> keras.Model:
  params = dict(config.model_params)
  with dtype_policy(mixed_precision_policy() if config.mixed_precision else None):
    model = models.build(config.model, config.schema, **params)
  if "centroids" not in params:
    _fit_centroids_if_needed(model, config)
  if config.output_bias_init == "prior":
    set_output_bias(model, prior_log_odds(training_class_prior(config)))
  return model


def prior_log_odds(prior: np.ndarray) -> np.ndarray:
  return np.log(prior) - np.log1p(-prior)


def set_output_bias(model: keras.Model, bias: np.ndarray) -> None:
  """Sets the bias of the model's output layer (the Dense named "logits")."""
  try:
    layer = model.get_layer("logits")
  except ValueError:
    raise ValueError(
      f"{model.name} has no layer named 'logits' whose bias could start at the prior"
    ) from None
  if getattr(layer, "bias", None) is None:
    raise ValueError(
      f"{model.name}'s output layer has no bias (EnsembleModel: model_params output_bias=true), so "
      "output_bias_init='prior' cannot set it"
    )
  layer.bias.assign(np.asarray(bias, np.float32))


# (kind, pattern, schema, num_folds, files' (path, size, mtime)) -> per-fold (class counts, videos): the K
# fold runs of a zoo member, and the students after them, share one pass over the labels per process.
_LABEL_COUNTS_BY_FOLD: Dict[tuple, Tuple[np.ndarray, np.ndarray]] = {}


def _label_counts_by_fold(config: TrainConfig) -> Tuple[np.ndarray, np.ndarray]:
  """([num_folds, num_classes] videos per class, [num_folds] videos) of every fold of the training data."""
  num_folds = max(config.num_folds, 1)
  files = data.list_files(config.train_data_pattern)
  stats = [tf.io.gfile.stat(f) for f in files]
  key = (
    config.kind,
    config.train_data_pattern,
    config.schema,
    num_folds,
    tuple((f, s.length, s.mtime_nsec) for f, s in zip(files, stats)),
  )
  if key not in _LABEL_COUNTS_BY_FOLD:
    counts, videos = np.zeros((num_folds, config.num_classes)), np.zeros(num_folds, np.int64)
    for features, labels in dataset_for(
      config.kind, config.train_data_pattern, 1024, schema=config.schema, keep_ids=True
    ):
      fold, labels = data.fold_of(features["id"].numpy(), num_folds), labels.numpy()
      for k in range(num_folds):
        counts[k] += labels[fold == k].sum(axis=0)
      videos += np.bincount(fold, minlength=num_folds)
    _LABEL_COUNTS_BY_FOLD[key] = counts, videos
  return _LABEL_COUNTS_BY_FOLD[key]


def training_label_counts(config: TrainConfig) -> Tuple[np.ndarray, int]:
  """(videos per class [num_classes], videos) over the training folds (the held-out fold's labels stay
  unseen). One pass over the labels per process and data, cached as train_dir/training_labels.npz."""
  path = os.path.join(config.train_dir, TRAINING_LABELS_FILE)
  if tf.io.gfile.exists(path):
    cached = load_npz(path)
    return cached["class_counts"], int(cached["videos"])
  by_fold, videos_by_fold = _label_counts_by_fold(config)
  keep = np.ones(len(videos_by_fold), bool)
  if _training_folds(config):
    keep[config.fold] = False
  counts, videos = by_fold[keep].sum(axis=0), int(videos_by_fold[keep].sum())
  if videos == 0:
    raise ValueError(f"{config.train_data_pattern}: no training videos in the training folds")
  atomic_save_npz(path, class_counts=counts, videos=np.int64(videos))
  return counts, videos


def training_class_prior(config: TrainConfig) -> np.ndarray:
  """Each class's frequency among the training videos, smoothed as (count + 0.5) / (videos + 1) so that
  no class is at 0."""
  counts, videos = training_label_counts(config)
  return ((counts + 0.5) / (videos + 1)).astype(np.float32)


def planned_steps(config: TrainConfig) -> int:
  """Training steps the run will take: what a per-step LR schedule spans."""
  epochs, steps_per_epoch = config.schedule
  if not steps_per_epoch:
    steps_per_epoch = training_label_counts(config)[1] // config.batch_size  # whole batches only
    if config.transductive_data_pattern:
      steps_per_epoch += len(SoftLabelStore.load(config.transductive_soft_labels)) // config.batch_size
  total = epochs * steps_per_epoch
  return max(1, min(total, config.max_steps) if config.max_steps else total)


def learning_rate(config: TrainConfig):
  """The optimizer's learning rate: a float (plateau) or a per-step schedule."""
  if config.lr_schedule == "cosine":
    return keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=planned_steps(config))
  if config.lr_schedule == "exponential":  # the starter: decayed by examples seen, in whole periods
    return keras.optimizers.schedules.ExponentialDecay(
      config.learning_rate,
      decay_steps=max(1.0, config.learning_rate_decay_examples / config.batch_size),
      decay_rate=config.learning_rate_decay,
      staircase=True,
    )
  return config.learning_rate


def _fit_centroids_if_needed(model: keras.Model, config: TrainConfig) -> None:
  """Cluster-centroid models get k-means centroids (and idf) fitted on the real frames of the training
  folds before training; they are cached in train_dir so a resumed run does not refit."""
  from yt8m_tf.models.frame import centroids as centroid_lib

  layers = centroid_lib._centroid_layers(model)  # pylint: disable=protected-access
  if not layers:
    return
  path = os.path.join(config.train_dir, "centroids.npz")
  if tf.io.gfile.exists(path):
    cached = load_npz(path)
    centers, idf = cached["centroids"], cached["idf"]
  else:
    frames = data.frame_dataset(
      config.train_data_pattern,
      config.batch_size,
      schema=config.schema,
      shuffle=True,
      seed=config.seed,
      **_training_folds(config),
    )
    if config.kmeans_max_batches:
      frames = frames.take(config.kmeans_max_batches)
    centers = centroid_lib.fit_kmeans_on_dataset(frames, layers[0].num_clusters, seed=config.seed)
    idf = centroid_lib.compute_idf(frames, centers)
    atomic_save_npz(path, centroids=centers, idf=idf)
  centroid_lib.set_centroids(model, centers, idf)


def read_config(train_dir: str) -> TrainConfig:
  """The TrainConfig a train_dir was made with (its config.json)."""
  with tf.io.gfile.GFile(os.path.join(train_dir, CONFIG_FILE)) as f:
    return TrainConfig(**json.load(f))


def read_history(config: TrainConfig) -> List[Dict[str, float]]:
  """The run's per-epoch logs so far (history.json); [] before its first epoch ends."""
  path = os.path.join(config.train_dir, "history.json")
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def training_finished(config: TrainConfig) -> bool:
  """The run took all its epochs: a finished run is kept, never trained again from scratch (its backup,
  which a restart resumes from, is gone once training ends)."""
  return len(read_history(config)) >= config.schedule[0]


def run_training(config: TrainConfig, extra_callbacks=()) -> List[Dict[str, float]]:
  """Trains (or resumes) one L1 model; returns the per-epoch logs (see trainer.fit). `extra_callbacks` run
  after the trainer's own."""
  strategy = make_strategy(config.distribution_strategy)
  if distributed.is_chief(strategy):
    check_or_write_config(config)
  keras.utils.set_random_seed(config.seed)
  with strategy.scope():
    model = build_model(config)
    loss = losses.get_loss(config.loss)
    # Rank losses pad to B*C*30B under XLA; they run without it.
    trainer.compile_model(
      model,
      learning_rate(config),
      loss=loss,
      clip_norm=config.clip_norm,
      jit_compile="auto" if losses.loss_supports_jit(loss) else False,
      optimizer=config.optimizer,
    )
  epochs, steps_per_epoch = config.schedule
  schedule = dict(
    epochs=epochs,
    steps_per_epoch=steps_per_epoch,
    validation_steps=config.validation_steps,
    validation_freq=config.validation_freq,
    lr_on_plateau=config.lr_schedule == "plateau",
    lr_factor=config.lr_factor,
    lr_patience=config.lr_patience,
    early_stopping_patience=config.early_stopping_patience,
    verbose=progress.keras_verbosity(config.verbose),
    tensorboard_steps=config.tensorboard_steps,
  )
  videos = training_label_counts(config)[1]
  if videos < config.batch_size:  # whole batches only: the run would take no step
    raise ValueError(
      f"{config.train_data_pattern}: the training folds hold {videos} videos, fewer than one batch "
      f"(batch_size={config.batch_size})"
    )
  train, validation = training_dataset(config), validation_dataset(config)
  if distributed.uses_custom_loop(strategy):
    return distributed.fit(
      model,
      train,
      validation,
      strategy=strategy,
      train_dir=config.train_dir,
      extra_callbacks=extra_callbacks,
      **schedule,
    )
  return trainer.fit(
    model,
    train,
    validation,
    train_dir=config.train_dir,
    extra_callbacks=extra_callbacks,
    **schedule,
  )
