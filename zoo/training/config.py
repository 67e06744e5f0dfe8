"""`TrainConfig`: every setting of a training run, validated, with a JSON round-trip.

It is what a run's `config.json` stores (`zoo.training.rundir` writes it,
beside the data facts the run found); `TrainConfig.from_dict` reads it back,
so the schema lives in one place.
"""

import dataclasses
import typing

import keras

import ensembles
import zoo
from augment import datasets, pipelines, transforms
from augment import tta as augment_tta
from ensembles import distill
from zoo import pretrained, resolve
from zoo.training import distribute

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "exponential", "cosine", "cosine_restarts")
JIT_CHOICES = ("auto", "on", "off")
ENSEMBLES = ("independent", "snapshot")
TUPLE_FIELDS = ("lr_milestones", "classes")  # JSON has lists; the config keeps tuples


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a training run; units are in the comments.

    `checks`: functions `check(config)` that `validate` runs too; the training
    methods add theirs (`zoo.training.methods`)."""

    checks: typing.ClassVar[list] = []

    model: str = "lenet5"
    dataset: str = "mnist"
    data_dir: str | None = None
    classes: tuple | None = None           # keep these labels, renumbered 0..k-1
    out: str = "runs/lenet5_mnist"
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "momentum"
    lr: float | str = 0.01                 # peak learning rate, or "find" (LR range test)
    momentum: float = 0.9                  # for momentum / nesterov / rmsprop
    schedule: str = "constant"
    warmup_epochs: float = 0.0             # linear warmup from 0 to lr, in epochs
    lr_milestones: tuple = ()              # step: epochs at which lr *= lr_gamma
    lr_gamma: float = 0.1                  # step / exponential multiplier
    lr_decay_epochs: float = 1.0           # exponential: epochs per lr_gamma factor
    restart_epochs: float = 10.0           # cosine_restarts: length of the first cycle
    weight_decay: float = 0.0              # decoupled (optimizer) weight decay
    label_smoothing: float = 0.0
    activation: str | None = None          # None keeps the model's default
    init: str | None = None
    batch_norm: bool | None = None
    l1: float = 0.0                        # kernel penalty l1 * sum|w|
    l2: float = 0.0                        # kernel penalty l2 * sum w^2
    dropout: float | None = None
    model_options: dict = dataclasses.field(default_factory=dict)
    weights: str | None = None             # ImageNet weights: keras, torchvision or a file
    image_size: int | None = None          # zero-pad (with weights: resize) images to this side;
                                           # folder/tfrecord: the crop side (pixels)
    train_transform: str | None = None     # folder/tfrecord: augment.transforms.TRAIN
                                           # (None: the recipe's, else inception)
    eval_transform: str | None = None      # folder/tfrecord: augment.transforms.EVAL (None: center)
    data_cache: str | None = None          # folder/tfrecord: "memory" or a directory
    data_service: str | None = None        # folder/tfrecord: a tf.data service, grpc://HOST:PORT
    bad_images: str = "skip"               # folder: skip (and name) unusable files, or error
    augment: str = "none"                  # preset, augment.pipelines.PRESET_NAMES
    augment_options: dict = dataclasses.field(default_factory=dict)  # AugmentSpec overrides
    augment_device: str = "host"           # host: tf.data pipeline; device: in the train step
    tta: str | None = None                 # test-time views (augment.tta.VIEWS) for a 2nd test
    ensemble: str | None = None            # independent | snapshot (ensembles/)
    members: int = 5                       # M: independent models, or snapshot cycles
    keep: int | None = None                # snapshot: ensemble of the last m snapshots (all)
    ensemble_method: str = "soft"          # ensembles.METHODS
    ema: float | None = None               # Polyak/EMA decay of the weights, e.g. 0.999
    swa_start: int | None = None           # SWA: average weights from this epoch's end on
    swa_lr: float | None = None            # SWA: constant lr from swa_start on (None: schedule)
    calibrate: str | None = None           # temperature: fit T on the validation split
    distill_from: str | None = None        # a teacher .keras (an ensemble) to distill
    distill_temperature: float = distill.TEMPERATURE  # T of the softened targets
    distill_hard_weight: float = distill.HARD_WEIGHT  # weight of the true-label loss
    init_seed: int | None = None           # weights/shuffling seed (None: seed; members: +k)
    member_index: int | None = None        # independent: train only member k (its own job)
    val_split: float = 0.1                 # fraction of the training split held out
    limit_train: int | None = None
    limit_test: int | None = None
    seed: int = 0
    early_stopping: int | None = None      # patience in epochs
    tensorboard: bool = False
    check: bool = False                    # sanity checks before training (babysit)
    monitor: bool = False                  # training monitors in the logs (monitors)
    jit_compile: str = "auto"              # auto: off on CPU, Keras' choice on accelerators
    precision: str = "float32"             # or mixed_float16 / mixed_bfloat16 (distribute)
    strategy: str = "none"                 # data parallel: mirrored / multiworker (distribute)
    verbose: int = 2
    overwrite: bool = False

    # === JSON round-trip ===

    def to_dict(self):
        """The settings as plain JSON-able values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values, strict=False):
        """A config from `to_dict()` output or a run's `config.json` (whose extra
        entries, the data facts, are ignored unless `strict`)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if strict and unknown:
            raise resolve.bad_option("config", unknown[0], "one of " + ", ".join(sorted(names)))
        settings = {k: v for k, v in values.items() if k in names}
        for key in TUPLE_FIELDS:
            if settings.get(key) is not None:
                settings[key] = tuple(settings[key])
        return cls(**settings)

    # === Validation ===

    def validate(self):
        """Raises ValueError naming the option, value and what is accepted."""
        resolve.check_choice("optimizer", self.optimizer, OPTIMIZERS)
        resolve.check_choice("schedule", self.schedule, SCHEDULES)
        resolve.check_choice("jit_compile", self.jit_compile, JIT_CHOICES)
        distribute.validate(self)
        resolve.check_choice("model", self.model, tuple(zoo.list_models()))
        if self.weights is not None:
            pretrained.check(self.model, self.weights)
        resolve.check_choice("dataset", self.dataset, tuple(datasets.list_datasets()))
        self._validate_streaming()
        spec = pipelines.resolve_spec(self.augment, self.augment_options)
        resolve.check_choice("augment_device", self.augment_device, pipelines.DEVICES)
        if self.tta is not None:
            augment_tta.check_views(self.tta)
        self._validate_averaging()
        if (spec != pipelines.PRESETS["none"] and self.augment_device == "host"
                and keras.backend.backend() != "tensorflow"):
            raise resolve.bad_option("augment_device", "host", (
                f"'device' under KERAS_BACKEND={keras.backend.backend()} (the tf.data "
                "pipeline runs the augmentation with the TensorFlow backend)"))
        for name in ("epochs", "batch_size", "seed"):
            resolve.check_positive_int(name, getattr(self, name),
                                       minimum=0 if name == "seed" else 1)
        for name in ("limit_train", "limit_test", "image_size", "early_stopping"):
            if getattr(self, name) is not None:
                resolve.check_positive_int(name, getattr(self, name))
        if self.lr != "find":
            resolve.check_number("lr", self.lr, low=0.0, low_open=True)
        for name in ("weight_decay", "l1", "l2", "warmup_epochs"):
            resolve.check_number(name, getattr(self, name), low=0.0)
        for name in ("lr_decay_epochs", "restart_epochs", "lr_gamma"):
            resolve.check_number(name, getattr(self, name), low=0.0, low_open=True)
        for name in ("momentum", "label_smoothing", "val_split"):
            resolve.check_rate(name, getattr(self, name))
        if self.warmup_epochs >= self.epochs:
            raise resolve.bad_option("warmup_epochs", self.warmup_epochs,
                                     f"fewer than epochs={self.epochs}")
        milestones = list(self.lr_milestones)
        if any(not 0 < m < self.epochs for m in milestones) \
                or milestones != sorted(set(milestones)):
            raise resolve.bad_option("lr_milestones", self.lr_milestones,
                                     f"increasing epochs between 0 and epochs={self.epochs}")
        if self.schedule == "step" and not milestones:
            raise resolve.bad_option("lr_milestones", self.lr_milestones,
                                     "at least one epoch when schedule='step'")
        return self

    def _validate_streaming(self):
        if self.train_transform is not None:
            resolve.check_choice("train_transform", self.train_transform, transforms.TRAIN)
        if self.eval_transform is not None:
            resolve.check_choice("eval_transform", self.eval_transform, transforms.EVAL)
        resolve.check_choice("bad_images", self.bad_images, datasets.BAD_IMAGES)
        streaming = self.dataset in datasets.STREAMING
        for name in ("data_cache", "data_service"):
            if getattr(self, name) is not None and not streaming:
                raise resolve.bad_option(name, getattr(self, name),
                                         "None unless dataset is folder or tfrecord (the others "
                                         "are held in memory)")
        if self.data_service is not None and not str(self.data_service).startswith("grpc://"):
            raise resolve.bad_option("data_service", self.data_service,
                                     "a tf.data service dispatcher, grpc://HOST:PORT")
        if self.data_service is not None and self.data_cache is not None:
            raise resolve.bad_option("data_cache", self.data_cache,
                                     "None with data_service (the service's workers read)")

    def _validate_averaging(self):
        """The fields every method shares; each method checks its own
        (`zoo.training.methods`, through `checks`)."""
        if self.ensemble is not None:
            resolve.check_choice("ensemble", self.ensemble, ENSEMBLES)
        resolve.check_positive_int("members", self.members)
        resolve.check_choice("ensemble_method", self.ensemble_method, ensembles.METHODS)
        if self.init_seed is not None:
            resolve.check_positive_int("init_seed", self.init_seed, minimum=0)
        for check in self.checks:
            check(self)
