"""The one training core every script uses.

`TrainConfig` holds every setting of a run (it is what `config.json` stores);
`train(config)` loads the data, builds the model, compiles it with the named
optimizer and learning-rate schedule, fits it with Keras' own callbacks and
writes the run's artifacts:

    DIR/model.keras      the trained model
    DIR/config.json      every setting, the data source and normalization stats
    DIR/metrics.json     per-epoch history, test loss/accuracy, wall time, images/s
    DIR/curves.png       loss and accuracy curves
    DIR/log.csv          the per-epoch log (appended to across resumes)
    DIR/checkpoints/     best.keras by the monitored metric
    DIR/backup/          BackupAndRestore state while a run is unfinished

A run killed part-way resumes where it stopped when the same command runs again
with the same `--out`.
"""

import csv
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import keras
import numpy as np

import ensembles
import zoo
from augment import datasets, pipelines
from augment import layers as augment_layers
from augment import tta as augment_tta
from zoo import monitors, resolve, scale

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "exponential", "cosine", "cosine_restarts")
JIT_CHOICES = ("auto", "on", "off")
ENSEMBLES = ("independent", "snapshot")
# Parameters that weight decay leaves alone: biases and BatchNorm's scale/shift.
NO_DECAY = ["bias", "gamma", "beta"]


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a training run; units are in the comments."""

    model: str = "lenet5"
    dataset: str = "mnist"
    data_dir: str | None = None
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
    image_size: int | None = None          # zero-pad images to this side (e.g. MNIST 28 -> 32)
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
    init_seed: int | None = None           # weights/shuffling seed (None: seed; members: +k)
    member_index: int | None = None        # independent: train only member k (its own job)
    val_split: float = 0.1                 # fraction of the training split held out
    limit_train: int | None = None
    limit_test: int | None = None
    seed: int = 0
    early_stopping: int | None = None      # patience in epochs
    tensorboard: bool = False
    check: bool = False                    # sanity checks before training (zoo.babysit)
    monitor: bool = False                  # training monitors in the logs (zoo.monitors)
    jit_compile: str = "auto"             # auto: off on CPU, Keras' choice on accelerators
    precision: str = "float32"             # or mixed_float16 / mixed_bfloat16 (zoo.scale)
    strategy: str = "none"                 # data parallel: mirrored / multiworker (zoo.scale)
    verbose: int = 2
    overwrite: bool = False

    def validate(self):
        """Raises ValueError naming the option, value and what is accepted."""
        resolve.check_choice("optimizer", self.optimizer, OPTIMIZERS)
        resolve.check_choice("schedule", self.schedule, SCHEDULES)
        resolve.check_choice("jit_compile", self.jit_compile, JIT_CHOICES)
        scale.validate(self)
        resolve.check_choice("model", self.model, tuple(zoo.list_models()))
        resolve.check_choice("dataset", self.dataset, tuple(datasets.list_datasets()))
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
            resolve.check_positive_int(name, getattr(self, name), minimum=0 if name == "seed" else 1)
        for name in ("limit_train", "limit_test", "image_size", "early_stopping"):
            if getattr(self, name) is not None:
                resolve.check_positive_int(name, getattr(self, name))
        if self.lr != "find":
            _check_number("lr", self.lr, low=0.0, low_open=True)
        for name in ("weight_decay", "l1", "l2", "warmup_epochs"):
            _check_number(name, getattr(self, name), low=0.0)
        _check_number("lr_decay_epochs", self.lr_decay_epochs, low=0.0, low_open=True)
        _check_number("restart_epochs", self.restart_epochs, low=0.0, low_open=True)
        _check_number("lr_gamma", self.lr_gamma, low=0.0, low_open=True)
        for name in ("momentum", "label_smoothing", "val_split"):
            resolve.check_rate(name, getattr(self, name))
        if self.warmup_epochs >= self.epochs:
            raise resolve.bad_option("warmup_epochs", self.warmup_epochs,
                                     f"fewer than epochs={self.epochs}")
        milestones = list(self.lr_milestones)
        if any(not 0 < m < self.epochs for m in milestones) or milestones != sorted(set(milestones)):
            raise resolve.bad_option("lr_milestones", self.lr_milestones,
                                     f"increasing epochs between 0 and epochs={self.epochs}")
        if self.schedule == "step" and not milestones:
            raise resolve.bad_option("lr_milestones", self.lr_milestones,
                                     "at least one epoch when schedule='step'")
        return self

    def _validate_averaging(self):
        if self.ensemble is not None:
            resolve.check_choice("ensemble", self.ensemble, ENSEMBLES)
        resolve.check_positive_int("members", self.members)
        resolve.check_choice("ensemble_method", self.ensemble_method, ensembles.METHODS)
        if self.ensemble == "snapshot":
            ensembles.snapshot.check_cycles(self.epochs, self.members, self.keep)
            if self.swa_start is not None:
                raise resolve.bad_option("swa_start", self.swa_start,
                                         "None with ensemble='snapshot' (both set the schedule)")
            if self.warmup_epochs:
                raise resolve.bad_option("warmup_epochs", self.warmup_epochs,
                                         "0 with ensemble='snapshot' (cycles start at the top)")
        elif self.keep is not None:
            raise resolve.bad_option("keep", self.keep, "None unless ensemble='snapshot'")
        if self.member_index is not None:
            if self.ensemble != "independent":
                raise resolve.bad_option("member_index", self.member_index,
                                         "None unless ensemble='independent'")
            resolve.check_positive_int("member_index", self.member_index, minimum=0)
            if self.member_index >= self.members:
                raise resolve.bad_option("member_index", self.member_index,
                                         f"an index below members={self.members}")
        if self.ema is not None:
            ensembles.averaging.check_decay(self.ema)
            if self.swa_start is not None:
                raise resolve.bad_option("swa_start", self.swa_start,
                                         "None with ema (choose one kind of weight averaging)")
        if self.swa_start is not None:
            resolve.check_positive_int("swa_start", self.swa_start)
            if self.swa_start > self.epochs:
                raise resolve.bad_option("swa_start", self.swa_start,
                                         f"an epoch between 1 and epochs={self.epochs}")
        if self.swa_lr is not None:
            if self.swa_start is None:
                raise resolve.bad_option("swa_lr", self.swa_lr, "None unless swa_start is set")
            _check_number("swa_lr", self.swa_lr, low=0.0, low_open=True)
        if self.init_seed is not None:
            resolve.check_positive_int("init_seed", self.init_seed, minimum=0)


def _check_number(option, value, low, low_open=False):
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    if bad or value < low or (low_open and value == low):
        raise resolve.bad_option(option, value, f"a number {'>' if low_open else '>='} {low}")


@keras.saving.register_keras_serializable(package="zoo")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to the wrapped schedule's value over `warmup_steps`
    (Goyal et al. 2017), then the wrapped schedule, shifted by the warmup."""

    def __init__(self, schedule, warmup_steps):
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        after = self.schedule(keras.ops.maximum(step - self.warmup_steps, 0.0))
        ramp = after * keras.ops.minimum((step + 1.0) / self.warmup_steps, 1.0)
        return keras.ops.where(step < self.warmup_steps, ramp, after)

    def get_config(self):
        return {
            "schedule": keras.optimizers.schedules.serialize(self.schedule),
            "warmup_steps": self.warmup_steps,
        }

    @classmethod
    def from_config(cls, config):
        schedule = keras.optimizers.schedules.deserialize(config["schedule"])
        return cls(schedule, config["warmup_steps"])


def make_schedule(config, steps_per_epoch):
    """A per-step learning-rate schedule (or a float for `constant`)."""
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    decay_steps = max(1, config.epochs * steps_per_epoch - warmup_steps)
    s = keras.optimizers.schedules
    if config.ensemble == "snapshot":
        # Huang et al. 2017: M cosine cycles, restarted every epochs/M epochs.
        schedule = ensembles.snapshot_schedule(config.lr, config.epochs, config.members,
                                               steps_per_epoch)
    elif config.schedule == "constant":
        schedule = config.lr
    elif config.schedule == "step":
        # PiecewiseConstantDecay switches after a boundary; the new lr starts at the milestone.
        boundaries = [int(m * steps_per_epoch) - warmup_steps - 1 for m in config.lr_milestones]
        values = [config.lr * config.lr_gamma ** i for i in range(len(boundaries) + 1)]
        schedule = s.PiecewiseConstantDecay(boundaries, values)
    elif config.schedule == "exponential":
        schedule = s.ExponentialDecay(config.lr, config.lr_decay_epochs * steps_per_epoch,
                                      config.lr_gamma)
    elif config.schedule == "cosine":
        schedule = s.CosineDecay(config.lr, decay_steps)
    else:  # cosine_restarts: SGDR, Loshchilov & Hutter 2017
        schedule = s.CosineDecayRestarts(config.lr, int(config.restart_epochs * steps_per_epoch))
    if warmup_steps:
        if isinstance(schedule, float):
            schedule = s.PiecewiseConstantDecay([0], [schedule, schedule])
        schedule = LinearWarmup(schedule, warmup_steps)
    if config.swa_lr is not None:
        # Izmailov et al. 2018: the usual schedule, then a constant SWA rate.
        schedule = ensembles.SWASchedule(schedule, (config.swa_start - 1) * steps_per_epoch,
                                         config.swa_lr)
    return schedule


def make_optimizer(config, steps_per_epoch):
    lr = make_schedule(config, steps_per_epoch)
    wd = config.weight_decay or None
    o = keras.optimizers
    optimizer = {
        "sgd": lambda: o.SGD(lr, weight_decay=wd),
        "momentum": lambda: o.SGD(lr, momentum=config.momentum, weight_decay=wd),
        "nesterov": lambda: o.SGD(lr, momentum=config.momentum, nesterov=True, weight_decay=wd),
        "adagrad": lambda: o.Adagrad(lr, weight_decay=wd),
        "rmsprop": lambda: o.RMSprop(lr, rho=0.9, momentum=0.0, weight_decay=wd),
        "adam": lambda: o.Adam(lr, weight_decay=wd),
        "adamw": lambda: o.AdamW(lr, weight_decay=config.weight_decay),
    }[config.optimizer]()
    if config.ema:
        optimizer = ensembles.ema_optimizer(optimizer, config.ema)
    if wd:
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    return optimizer


class EpochStats(keras.callbacks.Callback):
    """Adds the learning rate, training seconds and training images/s to each
    epoch's logs (so CSVLogger and TensorBoard record them)."""

    def __init__(self, num_train):
        super().__init__()
        self.num_train = num_train

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._train_end = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        end = time.perf_counter()
        train_seconds = (self._train_end or end) - self._start
        logs["epoch_seconds"] = end - self._start
        logs["train_images_per_sec"] = self.num_train / train_seconds
        logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def prepare_data(config):
    """Loads the dataset, pads, normalizes with training-split statistics and
    holds out a seeded validation split. Returns a dict of arrays and facts."""
    ds = datasets.load_dataset(config.dataset, config.data_dir, limit_train=config.limit_train,
                               limit_test=config.limit_test, seed=config.seed)
    x_train, x_test = ds.x_train, ds.x_test
    if config.image_size:
        x_train, x_test = datasets.pad_to(x_train, config.image_size), datasets.pad_to(
            x_test, config.image_size)
    mean, std = datasets.channel_stats(x_train)
    y_train, y_test = ds.y_train, ds.y_test
    x_val = y_val = None
    if config.val_split:
        order = np.random.default_rng(config.seed).permutation(len(x_train))
        n_val = max(1, int(round(len(x_train) * config.val_split)))
        val, train = order[:n_val], order[n_val:]
        x_val, y_val = x_train[val], y_train[val]
        x_train, y_train = x_train[train], y_train[train]

    def onehot(y):
        return None if y is None else keras.utils.to_categorical(y, ds.num_classes).astype("float32")

    def norm(x):
        return None if x is None else datasets.normalize(x, mean, std)

    return {
        "x_train_raw": x_train, "x_val_raw": x_val,  # uint8, for the augmentation pipelines
        "x_train": norm(x_train), "y_train": onehot(y_train),
        "x_val": norm(x_val), "y_val": onehot(y_val),
        "x_test": norm(x_test), "y_test": onehot(y_test),
        "num_classes": ds.num_classes, "input_shape": tuple(x_train.shape[1:]),
        "mean": mean.tolist(), "std": std.tolist(), "source": ds.source,
    }


def build_model(config, num_classes, input_shape):
    """The zoo model a config names; None options keep the model's defaults."""
    regularizer = {"l1": config.l1, "l2": config.l2} if (config.l1 or config.l2) else None
    return zoo.create_model(
        config.model, num_classes=num_classes, input_shape=input_shape,
        activation=config.activation, kernel_initializer=config.init,
        batch_norm=config.batch_norm, kernel_regularizer=regularizer, dropout=config.dropout,
        **config.model_options,
    )


def fit_inputs(config, model, data, steps_per_epoch):
    """The model to fit and its data: the normalized arrays without augmentation,
    a tf.data pipeline (`augment_device='host'`), or the model wrapped in an
    `augment.pipelines.AugmentedModel` fed uint8 batches (`'device'`).

    Returns (fit_model, keyword arguments for fit_model.fit).
    """
    has_val = data["x_val"] is not None
    spec = pipelines.resolve_spec(config.augment, config.augment_options)
    plain = dict(x=data["x_train"], y=data["y_train"], batch_size=config.batch_size,
                 validation_data=(data["x_val"], data["y_val"]) if has_val else None)
    if spec == pipelines.PRESETS["none"]:
        return model, plain
    pca_stats = augment_layers.pca_lighting_stats(data["x_train_raw"], seed=config.seed) \
        if spec.pca_lighting else None
    augmenter = pipelines.build_augmenter(
        spec, mean=data["mean"], std=data["std"], image_shape=data["input_shape"],
        dataset=config.dataset, pca_stats=pca_stats, seed=config.seed)
    if config.augment_device == "host":
        train_ds = pipelines.make_dataset(data["x_train_raw"], data["y_train"], augmenter,
                                          batch_size=config.batch_size, seed=config.seed)
        return model, {**plain, "x": train_ds, "y": None, "batch_size": None, "shuffle": False}
    wrapper = pipelines.AugmentedModel(model, augmenter, name=f"{model.name}_augmented")
    compile_model(wrapper, config, steps_per_epoch)
    wrapper(data["x_train_raw"][:1])  # built before fit, as BackupAndRestore requires
    x = data["x_train_raw"]
    x = {"images": x, "labels": data["y_train"]} if spec.mixes_labels else x
    return wrapper, {**plain, "x": x,
                     "validation_data": (data["x_val_raw"], data["y_val"]) if has_val else None}


def evaluate_test(model, config, data):
    """Test loss, accuracy and (with `config.tta`) the accuracy over TTA views."""
    batch_size = max(config.batch_size, 256)
    if not model.compiled:
        model.compile(loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
    test_loss, test_accuracy = model.evaluate(data["x_test"], data["y_test"],
                                              batch_size=batch_size, verbose=0)
    tta_accuracy = None
    if config.tta:
        crop = pipelines.resolve_spec(config.augment, config.augment_options).crop_padding
        tta_accuracy, _ = augment_tta.evaluate_tta(
            model, data["x_test"], data["y_test"], config.tta, batch_size=batch_size,
            **augment_tta.evaluation_settings(data["mean"], data["std"], crop))
    return float(test_loss), float(test_accuracy), tta_accuracy


def summarize_ensemble(ensemble, config, data, single):
    """Per-member and ensemble test figures, the members' disagreement and the
    inference cost against one member. `single` holds the single model's
    test figures (a snapshot run's last snapshot, or member 0)."""
    if config.ensemble_method == "weighted" and data["x_val"] is not None:
        ensemble.fit_weights(data["x_val"], data["y_val"])
    report = ensemble.report(data["x_test"], data["y_test"])
    x = data["x_test"]
    timings = {}
    for name, net in (("single", ensemble.members[-1]), ("ensemble", ensemble)):
        net.predict(x[:256], verbose=0)  # traced before timing
        start = time.perf_counter()
        net.predict(x, batch_size=256, verbose=0)
        timings[name] = time.perf_counter() - start
    return {
        "kind": config.ensemble, "method": config.ensemble_method, "members": len(ensemble.members),
        **report, "single_test_accuracy": single["test_accuracy"],
        "single_test_accuracy_tta": single.get("test_accuracy_tta"),
        "inference_seconds": timings["ensemble"], "single_inference_seconds": timings["single"],
        "inference_cost": timings["ensemble"] / timings["single"],
    }


def resolve_jit(choice):
    """`auto` is off on a CPU-only machine, where XLA made training slower in
    `scripts/bench_models.py` (see the README), and Keras' own choice elsewhere."""
    if choice == "auto":
        on_cpu_only = all(d.startswith("cpu") for d in keras.distribution.list_devices())
        return False if on_cpu_only else "auto"
    return choice == "on"


def compile_model(model, config, steps_per_epoch):
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        jit_compile=resolve_jit(config.jit_compile),
    )


def write_json(path, payload):
    """Writes JSON atomically: a reader never sees a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (tuple, np.ndarray)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def save_model_atomically(model, path):
    path = Path(path)
    tmp = path.with_name(f".tmp_{path.name}")
    model.save(tmp)
    os.replace(tmp, path)


def read_history(csv_path):
    """The per-epoch log as {column: [values]}, across resumed runs."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    # CSVLogger writes "NA" for the val_ columns of a run without validation data.
    return {key: [float(r[key]) for r in rows if r.get(key) not in (None, "", "NA")]
            for key in rows[0]} \
        if rows else {}


def plot_curves(history, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(e) + 1 for e in history.get("epoch", [])]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if history.get(key):
                ax.plot(epochs, history[key], marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(path.parent.name)
    fig.tight_layout()
    tmp = path.with_name(f".tmp_{path.name}")
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def _babysit(config, data, model, out, resuming):
    """`--lr find`: runs the LR range test (or reuses a resumed run's result);
    `--check`: runs the sanity checks at that learning rate and stops on a
    failure. Returns the config with a numeric lr and the finder's summary
    (None without `--lr find`)."""
    from zoo import babysit

    summary = None
    if config.lr == "find":
        previous = out / "config.json"
        if resuming and previous.exists() and "lr_finder" in json.loads(previous.read_text()):
            summary = json.loads(previous.read_text())["lr_finder"]
        else:
            summary = babysit.find_lr(model, data["x_train"], data["y_train"], config,
                                      plot_path=out / "lr_finder.png").summary()
            summary["plot"] = "lr_finder.png"
        print(f"lr finder: suggested lr {summary['suggested_lr']:.3g} "
              f"(lowest smoothed loss at {summary['min_loss_lr']:.3g})")
        config = dataclasses.replace(config, lr=summary["suggested_lr"])
    if config.check:
        babysit.raise_on_failure(babysit.run_checks(config, data))
    return config, summary


@scale.scaled
def train(config):
    """Runs one training job described by `config` and writes its artifacts.

    Returns the metrics dict written to metrics.json.
    """
    config.validate()
    if config.ensemble == "independent":
        from ensembles import runs

        return runs.train_independent(config)
    out = Path(config.out)
    backup_dir = out / "backup"
    if (out / "metrics.json").exists() and not backup_dir.exists() and not config.overwrite:
        raise FileExistsError(
            f"out={str(out)!r} already holds a finished run (metrics.json); pass --overwrite "
            "to replace it or choose another --out"
        )
    resuming = backup_dir.exists()
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    keras.utils.set_random_seed(config.seed if config.init_seed is None else config.init_seed)

    data = prepare_data(config)
    model = build_model(config, data["num_classes"], data["input_shape"])
    num_train = len(data["x_train"])
    steps_per_epoch = math.ceil(num_train / config.batch_size)
    config, lr_finder = _babysit(config, data, model, out, resuming)
    compile_model(model, config, steps_per_epoch)
    fit_model, fit_data = fit_inputs(config, model, data, steps_per_epoch)
    has_val = data["x_val"] is not None
    monitor = "val_loss" if has_val else "loss"

    settings = dataclasses.asdict(config)
    write_json(out / "config.json", {
        **settings, "num_classes": data["num_classes"], "input_shape": data["input_shape"],
        "normalization": {"mean": data["mean"], "std": data["std"]},
        "data_source": data["source"], "num_train": num_train,
        "num_val": len(data["x_val"]) if has_val else 0, "model_config": model.get_config(),
        "backend": keras.backend.backend(), "keras_version": keras.__version__,
        **({"lr_finder": lr_finder} if lr_finder else {}),
    })
    if not resuming and (out / "log.csv").exists():
        (out / "log.csv").unlink()

    callbacks = [
        EpochStats(num_train),  # first, so the loggers below see its values
        *([monitors.make_monitor(data, model)] if config.monitor else []),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(str(out / "log.csv"), append=True),
        # The backup comes before the EMA swap: it saves the raw weights in the
        # model and their average in the optimizer, so a resumed run continues both.
        keras.callbacks.BackupAndRestore(str(backup_dir)),
        *(ensembles.ema_callbacks() if config.ema else []),
        keras.callbacks.ModelCheckpoint(str(out / "checkpoints" / "best.keras"), monitor=monitor,
                                        save_best_only=True),
    ]
    if config.ensemble == "snapshot":
        callbacks.append(ensembles.SnapshotSaver(out / "snapshots",
                                                 config.epochs // config.members, model=model))
    if config.swa_start:
        callbacks.append(ensembles.SWA(config.swa_start, bn_data=data["x_train"],
                                       state_path=backup_dir / "swa_state.npz", model=model))
    if config.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor,
                                                       patience=config.early_stopping))
    if config.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(out / "tensorboard")))

    start = time.perf_counter()
    fit_model.fit(**fit_data, epochs=config.epochs, callbacks=callbacks, verbose=config.verbose)
    if config.ema:
        # fit left the averaged weights in the model, but the BatchNorm moving
        # statistics are those of the raw weights: re-estimate them.
        ensembles.recompute_batch_norm(model, data["x_train"])
    test_loss, test_accuracy, tta_accuracy = evaluate_test(model, config, data)
    ensemble_metrics = None
    if config.ensemble == "snapshot":
        single = {"test_accuracy": test_accuracy, "test_accuracy_tta": tta_accuracy}
        model = ensembles.load_snapshot_ensemble(out / "snapshots", config.keep,
                                                 config.ensemble_method)
        ensemble_metrics = summarize_ensemble(model, config, data, single)
        test_loss, test_accuracy, tta_accuracy = evaluate_test(model, config, data)
    save_model_atomically(model, out / "model.keras")

    history = read_history(out / "log.csv") if (out / "log.csv").exists() else {}
    speeds = history.get("train_images_per_sec", [])
    steady = speeds[1:] or speeds  # the first epoch includes tracing/compilation
    metrics = {
        "model": config.model, "dataset": config.dataset, "data_source": data["source"],
        "epochs_completed": len(history.get("epoch", [])),
        "test_loss": float(test_loss), "test_accuracy": float(test_accuracy),
        "test_error": 1.0 - float(test_accuracy),
        "tta": config.tta, "test_accuracy_tta": tta_accuracy,
        "test_error_tta": None if tta_accuracy is None else 1.0 - tta_accuracy,
        "wall_time_s": float(sum(history.get("epoch_seconds", []))),
        "wall_time_this_process_s": time.perf_counter() - start,
        "train_images_per_sec": float(np.median(steady)) if steady else None,
        "params": model.count_params(), "num_train": num_train,
        **({"ensemble": ensemble_metrics} if ensemble_metrics else {}),
        "history": history,
    }
    write_json(out / "metrics.json", metrics)
    if history:
        plot_curves(history, out / "curves.png")
    return metrics
