"""Hyperparameter search over the zoo with keras-tuner (Bergstra & Bengio 2012,
"Random Search for Hyper-Parameter Optimization"; Li et al. 2018, "Hyperband").

One `ZooHyperModel` per family (lenet, alexnet, vgg, googlenet, resnet) samples
the shared options (activation, initializer, batch norm, L2 strength, dropout),
the optimizer (SGD with momentum, Nesterov, RMSProp, Adam), the learning rate,
momentum and schedule, and the family's own depth and width choices. Sampled
values become a `TrainConfig` (`dataclasses.replace` on a base config that fixes
the data and epochs), and the model is built and compiled by the training core
(`zoo.training.build_model`, `compile_model`): there is one way of building and
compiling a model, whether a script or a tuner asks.

A search lives in one directory:

    DIR/search.json      family, scale, base config, data facts, one entry per stage
    DIR/<stage>/         the keras-tuner project of a stage (coarse, fine1, fine2, ...);
                         trial_<id>/checkpoint.weights.h5 holds a trial's best epoch
    DIR/results.json     one row per trial of every stage (typed)
    DIR/results.csv      the same table, best first
    DIR/results.png      val accuracy against the learning rate and the other
                         hyperparameters that mattered most

`refine_space` narrows a space around the best trials of earlier stages (coarse
to fine); `ensemble_top` turns the best N trials into one `ensembles.EnsembleModel`.
"""

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import shutil
import time
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np

from zoo import cli, resolve, training
from zoo.training import TrainConfig

FAMILIES = ("lenet", "alexnet", "vgg", "googlenet", "resnet")
TUNERS = ("random", "hyperband", "bayesian")
SCALES = ("full", "tiny")  # tiny: the registered test_* variants, for smoke tests and CI
OBJECTIVE = "val_accuracy"
COARSE = "coarse"
TUNING_EPOCHS = 5          # default epochs per trial (the recipes' 74-164 are for final runs)
REFINE_TOP = 3             # trials whose values bound a refined range
LOG_MARGIN = 2.0           # a refined log range reaches a factor 2 beyond the top values
LINEAR_MARGIN = 0.1        # a refined linear range reaches 10% of the old range beyond them


# === Search spaces ===


@dataclasses.dataclass(frozen=True)
class Param:
    """One hyperparameter: a choice among `values`, a boolean, or a float range.

    Args:
        kind: "choice", "bool" or "float".
        values: the choices (or the boolean values still allowed).
        low, high: the float range; `log` samples it on a log scale.
        when: (parent name, parent values): the parameter is active only when
            the parent takes one of those values (keras-tuner conditional scope).
    """

    kind: str
    values: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    when: tuple | None = None

    def to_json(self):
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, d):
        d = dict(d)
        d["values"] = tuple(d.get("values", ()))
        if d.get("when"):
            d["when"] = (d["when"][0], tuple(d["when"][1]))
        return cls(**d)


def choice(*values, when=None):
    return Param("choice", tuple(values), when=when)


def boolean(when=None):
    return Param("bool", (True, False), when=when)


def floats(low, high, log=False, when=None):
    return Param("float", low=float(low), high=float(high), log=log, when=when)


SGD_WITH_MOMENTUM = ("momentum", "nesterov")  # the optimizers that read `momentum`

# Shared by every family; the order is the order of the columns in results.csv.
COMMON_SPACE = {
    "optimizer": choice("momentum", "nesterov", "rmsprop", "adam"),
    "lr": floats(1e-4, 0.3, log=True),                       # peak learning rate
    "momentum": floats(0.5, 0.99, when=("optimizer", SGD_WITH_MOMENTUM)),
    "schedule": choice("constant", "step", "cosine", "exponential"),
    "activation": choice("relu", "leaky_relu", "prelu", "elu", "gelu", "tanh"),
    "init": choice("he_normal", "he_uniform", "glorot_uniform", "glorot_normal", "lecun_normal"),
    "batch_norm": boolean(),
    "l2": floats(1e-6, 1e-3, log=True),                      # kernel penalty l2 * sum w^2
    "dropout": floats(0.0, 0.6),                              # on the hidden FC layers / head
}

# The families' own choices. "depth" picks a registered variant (resnet20/32/44/56,
# vgg11/13/16/19_cifar) at full scale; "width" multiplies the variant's channel counts.
# tiny: the same names over the test_* variants' geometry.
ARCH_SPACE = {
    "lenet": {
        "full": {"width": choice(0.5, 1.0, 2.0), "hidden_units": choice(84, 168),
                 "pooling": choice("max", "avg")},
        "tiny": {"width": choice(0.5, 1.0), "hidden_units": choice(16, 84),
                 "pooling": choice("max", "avg")},
    },
    "alexnet": {
        "full": {"width": choice(0.25, 0.5, 1.0), "hidden_units": choice(256, 512, 1024, 2048),
                 "lrn": boolean()},
        "tiny": {"width": choice(0.5, 1.0), "hidden_units": choice(8, 16), "lrn": boolean()},
    },
    "vgg": {
        "full": {"depth": choice(11, 13, 16, 19), "width": choice(0.25, 0.5, 1.0),
                 "head_units": choice(256, 512)},
        "tiny": {"depth": choice(4, 5), "width": choice(0.5, 1.0), "head_units": choice(8, 16)},
    },
    "googlenet": {
        "full": {"width": choice(0.25, 0.5, 1.0), "aux_logits": boolean()},
        "tiny": {"width": choice(0.03125, 0.0625), "aux_logits": boolean()},
    },
    "resnet": {
        "full": {"depth": choice(20, 32, 44, 56), "width": choice(0.5, 1.0, 2.0),
                 "stochastic_depth": choice(0.0, 0.1, 0.2), "zero_init_residual": boolean()},
        "tiny": {"depth": choice(6, 10), "width": choice(1.0, 2.0),
                 "stochastic_depth": choice(0.0, 0.1), "zero_init_residual": boolean()},
    },
}

# Channel counts the width multiplier scales (the variants' own, see each family's file).
LENET_FILTERS = (6, 16, 120)
ALEXNET_FILTERS = {"full": (64, 192, 384, 256, 256), "tiny": (4, 8, 8, 8, 8)}
VGG_WIDTHS = {"full": (64, 128, 256, 512, 512), "tiny": (4, 8)}
VGG_TINY_CONVS = {4: (1, 1), 5: (1, 2)}  # test_vgg: 2 stages + head + classifier
RESNET_WIDTHS = {"full": (16, 32, 64), "tiny": (4, 8)}


def _scaled(channels, width):
    return [max(1, int(round(c * width))) for c in channels]


def arch_options(family, scale, v):
    """The registered model name and constructor arguments for sampled values `v`."""
    if family == "lenet":
        return "lenet5", {"filters": _scaled(LENET_FILTERS, v["width"]),
                          "hidden_units": v["hidden_units"], "pooling": v["pooling"]}
    if family == "alexnet":
        return ("alexnet_cifar" if scale == "full" else "test_alexnet"), {
            "filters": _scaled(ALEXNET_FILTERS[scale], v["width"]),
            "hidden_units": v["hidden_units"], "lrn": v["lrn"]}
    if family == "vgg":
        widths = _scaled(VGG_WIDTHS[scale], v["width"])
        if scale == "full":
            return f"vgg{v['depth']}_cifar", {"widths": widths, "head": [v["head_units"]]}
        return "test_vgg", {"convs_per_stage": VGG_TINY_CONVS[v["depth"]], "widths": widths,
                            "head": [v["head_units"]]}
    if family == "googlenet":
        return ("googlenet_cifar" if scale == "full" else "test_googlenet"), {
            "width_scale": v["width"], "aux_logits": v["aux_logits"]}
    # resnet: depth 6n+2 over 3 stages (full) or 4n+2 over 2 stages (tiny), basic blocks
    stages = len(RESNET_WIDTHS[scale])
    n = (v["depth"] - 2) // (2 * stages)
    options = {"widths": _scaled(RESNET_WIDTHS[scale], v["width"]),
               "stochastic_depth": v["stochastic_depth"],
               "zero_init_residual": v["zero_init_residual"]}
    if scale == "full":
        return f"resnet{v['depth']}", options
    return "test_resnet", {**options, "depths": [n] * stages}


def search_space(family, scale="full"):
    """The coarse search space of a family: {name: Param}, shared options first."""
    resolve.check_choice("family", family, FAMILIES)
    resolve.check_choice("scale", scale, SCALES)
    return {**COMMON_SPACE, **ARCH_SPACE[family][scale]}


def space_to_json(space):
    return {name: p.to_json() for name, p in space.items()}


def space_from_json(d):
    return {name: Param.from_json(p) for name, p in d.items()}


def refine_space(space, rows, top_k=REFINE_TOP, log_margin=LOG_MARGIN,
                 linear_margin=LINEAR_MARGIN):
    """Narrows `space` around the best `top_k` completed trials in `rows`.

    Float ranges shrink to [min, max] of the top trials' values, widened by a
    factor `log_margin` (log ranges) or by `linear_margin` of the old range
    (linear ones), and never beyond the old range; choices and booleans keep
    only the values the top trials took. A parameter none of them used (an
    inactive conditional one) keeps its range.
    """
    best = top_rows(rows, top_k)
    if not best:
        raise ValueError("rows hold no completed trial to refine around")
    refined = {}
    for name, p in space.items():
        seen = [r[name] for r in best if r.get(name) is not None]
        if not seen:
            refined[name] = p
        elif p.kind == "float":
            lo, hi = min(seen), max(seen)
            if p.log:
                lo, hi = lo / log_margin, hi * log_margin
            else:
                pad = linear_margin * (p.high - p.low)
                lo, hi = lo - pad, hi + pad
            refined[name] = dataclasses.replace(p, low=max(p.low, lo), high=min(p.high, hi))
        else:
            refined[name] = dataclasses.replace(p, values=tuple(x for x in p.values if x in seen))
    return refined


# === The HyperModel ===


class ZooHyperModel(kt.HyperModel):
    """Builds and compiles one family's models from sampled hyperparameters.

    Args:
        family: one of `FAMILIES`.
        base_config: the `TrainConfig` that fixes everything not searched (data,
            epochs, batch size, augmentation, seed).
        num_classes, input_shape: of the data (`zoo.training.prepare_data`).
        steps_per_epoch: training steps per epoch, for the LR schedules.
        space: {name: Param}; the family's coarse space if None.
        scale: "full" (the paper-size variants) or "tiny" (the test_* variants).
        run_eagerly: train without tf.function: quicker for tiny models whose
            trials are a few batches (smoke tests), slower for real ones.
    """

    def __init__(self, family, base_config, num_classes, input_shape, steps_per_epoch,
                 space=None, scale="full", run_eagerly=False, name=None):
        super().__init__(name=name or f"zoo_{family}", tunable=True)
        self.family = resolve.check_choice("family", family, FAMILIES)
        self.scale = resolve.check_choice("scale", scale, SCALES)
        self.base_config = base_config
        self.num_classes, self.input_shape = num_classes, tuple(input_shape)
        self.steps_per_epoch = steps_per_epoch
        self.space = dict(space or search_space(family, scale))
        self.run_eagerly = run_eagerly

    def declare_hyperparameters(self, hp):
        self.sample(hp)

    def sample(self, hp):
        """Declares the space on `hp` and returns the active values {name: value}."""
        values = {}
        for name, p in self.space.items():
            if p.when:  # declared either way; keras-tuner returns None while inactive
                with hp.conditional_scope(p.when[0], list(p.when[1])):
                    value = _declare(hp, name, p)
            else:
                value = _declare(hp, name, p)
            if value is not None:
                values[name] = value
        return values

    def config_for(self, values):
        """The `TrainConfig` of sampled values: the base config with them in."""
        model, options = arch_options(self.family, self.scale, values)
        base = self.base_config
        epochs = base.epochs
        schedule = values["schedule"]
        config = dataclasses.replace(
            base, model=model, optimizer=values["optimizer"], lr=float(values["lr"]),
            momentum=float(values.get("momentum") or base.momentum), schedule=schedule,
            # step: lr / 10 at half and three quarters of the run; exponential:
            # lr / 100 over the run; cosine: to 0 over the run.
            lr_milestones=(0.5 * epochs, 0.75 * epochs) if schedule == "step" else (),
            lr_gamma=0.1, lr_decay_epochs=epochs / 2,
            activation=values["activation"], init=values["init"],
            batch_norm=bool(values["batch_norm"]), l1=0.0, l2=float(values["l2"]),
            dropout=float(values["dropout"]), model_options={**base.model_options, **options},
        )
        return config.validate()

    def build_from_values(self, values, compile=True):
        """The model of sampled values (keras-tuner's or a results row), compiled
        with the sampled optimizer and schedule unless `compile` is False."""
        config = self.config_for(values)
        model = training.build_model(config, self.num_classes, self.input_shape)
        if not compile:
            return model
        training.compile_model(model, config, self.steps_per_epoch)
        model.run_eagerly = self.run_eagerly
        return model

    def build(self, hp):
        return self.build_from_values(self.sample(hp))


def _declare(hp, name, p):
    if p.kind == "float":
        if p.high <= p.low:
            return hp.Fixed(name, p.low)
        return hp.Float(name, p.low, p.high, sampling="log" if p.log else "linear")
    if p.kind == "bool":
        return hp.Fixed(name, p.values[0]) if len(p.values) == 1 else hp.Boolean(name)
    return hp.Choice(name, list(p.values))


# === Tuners ===


class _ZooTunerMixin:
    """What every zoo tuner adds to keras-tuner's: the session is cleared and
    garbage collected after each trial (memory stays flat across trials), a
    trial reports its best epoch's metrics and its wall time, writes which
    tuner ran it, and a chief serves its oracle without keras-tuner's
    20-second polling at the end."""

    def run_trial(self, trial, *args, **kwargs):
        start = time.perf_counter()
        histories = super().run_trial(trial, *args, **kwargs)
        seconds = time.perf_counter() - start
        metrics = _best_epoch_metrics(histories, self.oracle.objective)
        metrics["seconds"] = seconds
        training.write_json(Path(self.get_trial_dir(trial.trial_id)) / "runner.json",
                            {"tuner_id": self.tuner_id, "seconds": seconds})
        return metrics

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        # Frees the trial's model, optimizer and traced functions now rather than at
        # the next build (keras-tuner clears there too); clear_session collects garbage.
        keras.backend.clear_session(free_memory=True)

    def search(self, *fit_args, **fit_kwargs):
        from keras_tuner.src.distribute import utils as dist_utils

        if dist_utils.is_chief_oracle():
            self.save()
            _serve_oracle(self.oracle)
            return
        super().search(*fit_args, **fit_kwargs)


class RandomSearch(_ZooTunerMixin, kt.RandomSearch):
    pass


class Hyperband(_ZooTunerMixin, kt.Hyperband):
    pass


class BayesianOptimization(_ZooTunerMixin, kt.BayesianOptimization):
    pass


def make_tuner(kind, hypermodel, directory, project_name, max_trials=10, executions_per_trial=1,
               max_epochs=TUNING_EPOCHS, seed=0, overwrite=False):
    """A zoo tuner ("random", "hyperband" or "bayesian") maximizing val accuracy.

    Hyperband's trial count follows from `max_epochs` (and factor 3), not `max_trials`.
    """
    resolve.check_choice("tuner", kind, TUNERS)
    common = dict(hypermodel=hypermodel, objective=kt.Objective(OBJECTIVE, "max"),
                  executions_per_trial=executions_per_trial, seed=seed,
                  directory=str(directory), project_name=project_name, overwrite=overwrite)
    if kind == "random":
        return RandomSearch(max_trials=max_trials, **common)
    if kind == "bayesian":
        return BayesianOptimization(max_trials=max_trials, **common)
    return Hyperband(max_epochs=max_epochs, factor=3, **common)


def _best_epoch_metrics(histories, objective):
    """keras-tuner's reduction: each execution's best epoch, averaged over executions."""
    histories = histories if isinstance(histories, list) else [histories]
    per_run = []
    for h in histories:
        logs = h.history if hasattr(h, "history") else h
        series = logs[objective.name]
        pick = np.nanargmax if objective.direction == "max" else np.nanargmin
        best = int(pick(series)) if not np.all(np.isnan(series)) else len(series) - 1
        per_run.append({k: float(v[best]) for k, v in logs.items() if len(v) > best})
    keys = set.intersection(*(set(m) for m in per_run))
    return {k: float(np.mean([m[k] for m in per_run])) for k in keys}


def _serve_oracle(oracle, poll_seconds=0.2):
    """keras-tuner's chief server (`oracle_chief.start_server`), polling every
    `poll_seconds` instead of sleeping 20 s once the first worker is told to stop."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_insecure_port(
        f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}")
    server.start()
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll_seconds)
    finally:
        server.stop(grace=1)


def is_worker():
    """True in a keras-tuner worker process (KERASTUNER_TUNER_ID without "chief")."""
    from keras_tuner.src.distribute import utils as dist_utils

    return dist_utils.has_chief_oracle() and not dist_utils.is_chief_oracle()


# === Results ===

RESULT_COLUMNS = ("val_accuracy", "val_loss", "seconds", "status", "tuner_id")


def trial_rows(tuner, stage):
    """One row per trial of a tuner: stage, trial id, hyperparameters, metrics."""
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        runner = Path(tuner.directory, tuner.project_name, f"trial_{trial_id}", "runner.json")
        runner = json.loads(runner.read_text()) if runner.exists() else {}

        def metric(name):
            m = trial.metrics
            return float(m.get_last_value(name)) if m.exists(name) else None

        seconds = metric("seconds")
        rows.append({"stage": stage, "trial_id": trial_id, **trial.hyperparameters.values,
                     "val_accuracy": metric(OBJECTIVE), "val_loss": metric("val_loss"),
                     "seconds": seconds if seconds is not None else runner.get("seconds"),
                     "status": str(trial.status), "tuner_id": runner.get("tuner_id")})
    return rows


def top_rows(rows, n):
    done = [r for r in rows if r.get("val_accuracy") is not None
            and math.isfinite(r["val_accuracy"])]
    return sorted(done, key=lambda r: -r["val_accuracy"])[:n]


def write_results(out, rows, space):
    """results.json (typed), results.csv (best first) and results.png."""
    import csv

    out = Path(out)
    training.write_json(out / "results.json", rows)
    ranked = top_rows(rows, len(rows))
    ranked += [r for r in rows if r not in ranked]
    extra = sorted({k for r in rows for k in r} - set(space) - set(RESULT_COLUMNS)
                   - {"stage", "trial_id"})
    columns = ["rank", "stage", "trial_id", *space, *extra, *RESULT_COLUMNS]
    tmp = out / ".results.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        for rank, row in enumerate(ranked, start=1):
            writer.writerow({**{k: _cell(row.get(k)) for k in columns}, "rank": rank})
    os.replace(tmp, out / "results.csv")
    plot_results(rows, space, out / "results.png")


def _cell(value):
    return "" if value is None else (f"{value:.6g}" if isinstance(value, float) else value)


def importance(rows, name, p):
    """Spread of the mean val accuracy across a parameter's values (floats in
    three quantile bins): how much it seems to matter in this search."""
    pairs = [(r[name], r["val_accuracy"]) for r in rows if r.get(name) is not None]
    if len(pairs) < 2:
        return 0.0
    if p.kind == "float":
        xs = np.array([x for x, _ in pairs], dtype=float)
        edges = np.quantile(xs, [1 / 3, 2 / 3])
        groups = np.digitize(xs, edges)
    else:
        groups = np.array([str(x) for x, _ in pairs])
    ys = np.array([y for _, y in pairs])
    means = [ys[groups == g].mean() for g in np.unique(groups)]
    return float(max(means) - min(means))


def plot_results(rows, space, path, max_panels=8):
    """Val accuracy against the learning rate (log axis) and against the other
    hyperparameters, most important first (`importance`), one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = top_rows(rows, len(rows))
    others = sorted((n for n in space if n != "lr"),
                    key=lambda n: -importance(rows, n, space[n]))
    names = ["lr", *others][:max_panels]
    cols = min(4, len(names))
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    rng = np.random.default_rng(0)
    for ax, name in zip(axes.flat, names):
        p = space[name]
        pts = [(r[name], r["val_accuracy"], r["stage"]) for r in rows if r.get(name) is not None]
        stages = sorted({s for _, _, s in pts}, key=lambda s: (s != COARSE, s))
        for stage in stages:
            xs = [x for x, _, s in pts if s == stage]
            ys = [y for _, y, s in pts if s == stage]
            if p.kind != "float":
                labels = [str(v) for v in p.values] or sorted({str(x) for x in xs})
                xs = [labels.index(str(x)) + rng.uniform(-0.15, 0.15) if str(x) in labels
                      else len(labels) for x in xs]
                ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
                ax.set_xlim(-0.5, len(labels) - 0.5)
            ax.scatter(xs, ys, s=18, alpha=0.8, label=stage)
        if p.kind == "float" and p.log:
            ax.set_xscale("log")
        ax.set_xlabel(name + (" (log)" if p.kind == "float" and p.log else ""))
        ax.set_ylabel("val accuracy")
        ax.grid(alpha=0.3)
        if len(stages) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(f"{len(rows)} trials: validation accuracy against each hyperparameter")
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.14, top=0.9, wspace=0.3, hspace=0.55)
    path = Path(path)
    tmp = path.with_name(f".tmp_{path.name}")
    fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    os.replace(tmp, path)


# === Searches ===


def read_search(out):
    """DIR/search.json, or None where no search finished a stage there."""
    path = Path(out) / "search.json"
    return json.loads(path.read_text()) if path.exists() else None


def read_rows(out):
    path = Path(out) / "results.json"
    return json.loads(path.read_text()) if path.exists() else []


def base_config_from(family, overrides):
    """The family's paper recipe (`zoo.cli.RECIPES`) with tuning epochs, then `overrides`."""
    recipe = {**cli.RECIPES[family], "epochs": TUNING_EPOCHS, "verbose": 0}
    # The schedule is searched; its milestones follow the tuning epochs (`config_for`).
    recipe.pop("lr_milestones", None)
    recipe["schedule"] = "constant"
    config = TrainConfig(**{**recipe, **overrides})
    return config


def run_search(family, base_config, out, tuner="random", max_trials=10, executions_per_trial=1,
               scale="full", refine=False, refine_top=REFINE_TOP, overwrite=False, verbose=1,
               run_eagerly=False):
    """Runs one stage of a search in `out` and writes its results.

    The first stage ("coarse") samples the family's whole space; with `refine`
    the next stage ("fine1", "fine2", ...) samples the coarse space narrowed by
    `refine_space` around the best `refine_top` trials of all earlier stages,
    with the earlier base config.

    In a keras-tuner worker process (KERASTUNER_TUNER_ID etc. set, id without
    "chief") this only runs the trials the chief hands out; the chief (or a
    single process) records the stage and writes the results.

    Returns the rows of every stage so far (empty in a worker).
    """
    out = Path(out)
    previous = read_search(out)
    rows = read_rows(out)
    if refine:
        if previous is None:
            raise resolve.bad_option("out", str(out), "a directory holding an earlier search "
                                     "(search.json) when refining")
        family, scale = previous["family"], previous["scale"]
        stage = f"fine{len(previous['stages'])}"
        # The coarse space narrowed around the best trials of every stage so far: each
        # top value lies inside it, and the ranges shrink as the top trials agree.
        space = refine_space(space_from_json(previous["stages"][0]["space"]), rows, refine_top)
    else:
        if previous is not None and not overwrite and not is_worker():
            raise FileExistsError(
                f"out={str(out)!r} already holds a search (search.json); pass --refine to narrow "
                "it, --overwrite to start over, or choose another --out")
        stage, space = COARSE, search_space(family, scale)
        if overwrite and not is_worker():
            for old in (previous or {}).get("stages", []):  # stale fine stages would reload
                shutil.rmtree(out / old["name"], ignore_errors=True)
            previous, rows = None, []
    base_config = dataclasses.replace(base_config, out=str(out)).validate()
    if not base_config.val_split:
        raise resolve.bad_option("val_split", base_config.val_split,
                                 "a fraction > 0: trials are ranked on validation accuracy")
    if base_config.augment_device != "host":
        raise resolve.bad_option("augment_device", base_config.augment_device,
                                 "'host' when tuning")
    keras.utils.set_random_seed(base_config.seed)
    data = training.prepare_data(base_config)
    steps = math.ceil(len(data["x_train"]) / base_config.batch_size)
    hypermodel = ZooHyperModel(family, base_config, data["num_classes"], data["input_shape"],
                               steps, space=space, scale=scale, run_eagerly=run_eagerly)
    out.mkdir(parents=True, exist_ok=True)
    t = make_tuner(tuner, hypermodel, out, stage, max_trials=max_trials,
                   executions_per_trial=executions_per_trial, max_epochs=base_config.epochs,
                   seed=base_config.seed, overwrite=overwrite and not is_worker() and not refine)
    _, fit_kwargs = training.fit_inputs(base_config, None, data, steps)
    t.search(**fit_kwargs, epochs=base_config.epochs, verbose=verbose)
    if is_worker():
        return []
    stage_entry = {"name": stage, "tuner": tuner, "max_trials": max_trials,
                   "executions_per_trial": executions_per_trial, "space": space_to_json(space)}
    rows = [r for r in rows if r["stage"] != stage] + trial_rows(t, stage)
    search = previous or {"family": family, "scale": scale,
                          "base_config": dataclasses.asdict(base_config),
                          "num_classes": data["num_classes"],
                          "input_shape": list(data["input_shape"]),
                          "steps_per_epoch": steps, "stages": []}
    search["stages"] = [s for s in search["stages"] if s["name"] != stage] + [stage_entry]
    write_results(out, rows, {**space_from_json(search["stages"][0]["space"]), **space})
    training.write_json(out / "search.json", search)
    return rows


def ensemble_top(out, n, method="soft", evaluate=True):
    """Rebuilds the best `n` trials of the search in `out` from their values and
    best-epoch weights and saves them as one `ensembles.EnsembleModel`.

    Returns {"path", "method", "members": [{stage, trial_id, val_accuracy}], and
    with `evaluate` "test": `EnsembleModel.report` on the test split}.
    """
    from ensembles import EnsembleModel

    out = Path(out)
    search = read_search(out)
    if search is None:
        raise resolve.bad_option("out", str(out), "a directory holding an earlier search "
                                 "(search.json) for --ensemble-top")
    best = top_rows(read_rows(out), n)
    if len(best) < n:
        raise resolve.bad_option("ensemble_top", n, f"at most {len(best)}, the completed "
                                 f"trials in {out}")
    base = TrainConfig(**{**search["base_config"],
                          "lr_milestones": tuple(search["base_config"]["lr_milestones"])})
    hypermodel = ZooHyperModel(search["family"], base, search["num_classes"],
                               search["input_shape"], search["steps_per_epoch"],
                               scale=search["scale"])
    keras.backend.clear_session()
    members = []
    for row in best:
        model = hypermodel.build_from_values(row, compile=False)
        model.load_weights(out / row["stage"] / f"trial_{row['trial_id']}" /
                           "checkpoint.weights.h5")
        members.append(model)
    ensemble = EnsembleModel(members, method=method, name=f"ensemble_top{n}")
    result = {"path": str(out / f"ensemble_top{n}.keras"), "method": method,
              "members": [{"stage": r["stage"], "trial_id": r["trial_id"],
                           "val_accuracy": r["val_accuracy"]} for r in best]}
    if evaluate:
        data = training.prepare_data(base)
        result["test"] = ensemble.report(data["x_test"], data["y_test"])
    else:
        ensemble(np.zeros((1, *search["input_shape"]), "float32"))  # built before saving
    training.save_model_atomically(ensemble, out / f"ensemble_top{n}.keras")
    training.write_json(out / f"ensemble_top{n}.json", result)
    return result


# === Command line (scripts/tune.py) ===


def _choice_type(option, choices):
    def parse(text):
        if text not in choices:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not accepted; expected one of {', '.join(choices)}")
        return text
    parse.__name__ = option
    return parse


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Flag defaults in the help, and the script's docstring as written."""


def build_parser(description=None):
    p = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter)
    add = p.add_argument
    add("--model", type=_choice_type("family", FAMILIES), default=None,
        help="family to search: " + ", ".join(FAMILIES)
        + " (from --out's search with --refine / --ensemble-top)")
    add("--tuner", type=_choice_type("tuner", TUNERS), default="random",
        help="random (the coarse stage), hyperband or bayesian")
    add("--max-trials", type=cli._positive_int, default=10,
        help="trials of this stage (hyperband: set by --epochs instead)")
    add("--executions-per-trial", type=cli._positive_int, default=1,
        help="trainings per trial, averaged (less noisy rankings)")
    add("--scale", type=_choice_type("scale", SCALES), default="full",
        help="full: the paper-size variants; tiny: the test_* variants (smoke tests)")
    add("--out", default=None, help="search directory (default runs/tune_FAMILY)")
    add("--refine", action="store_true",
        help="narrow every range around the best trials of the earlier search in --out")
    add("--refine-top", type=cli._positive_int, default=REFINE_TOP,
        help="trials whose values bound the refined ranges")
    add("--ensemble-top", type=cli._positive_int, default=None, metavar="N",
        help="save the best N trials of --out as one soft-voting ensemble .keras")
    add("--overwrite", action="store_true", help="start the search in --out over")
    add("--verbose", type=int, choices=(0, 1, 2), default=1)
    add("--run-eagerly", action="store_true",
        help="train without tf.function (quicker only for tiny smoke runs)")
    g = p.add_argument_group("data and fixed training settings (default: the family's recipe, "
                             f"{TUNING_EPOCHS} epochs; --refine: the earlier search's)")
    g.add_argument("--dataset", default=None)
    g.add_argument("--data-dir", default=None)
    g.add_argument("--epochs", type=cli._positive_int, default=None)
    g.add_argument("--batch-size", type=cli._positive_int, default=None)
    g.add_argument("--image-size", type=cli._positive_int, default=None)
    g.add_argument("--limit-train", type=cli._positive_int, default=None)
    g.add_argument("--limit-test", type=cli._positive_int, default=None)
    g.add_argument("--val-split", type=cli._number, default=None)
    g.add_argument("--augment", default=None, help="augmentation preset (host pipeline)")
    g.add_argument("--seed", type=int, default=None)
    return p


DATA_FLAGS = ("dataset", "data_dir", "epochs", "batch_size", "image_size", "limit_train",
              "limit_test", "val_split", "augment", "seed")


def parse_args(argv=None, description=None):
    """Flags -> (settings dict, parser). Bad values stop here with the flag, the
    value and what is accepted."""
    parser = build_parser(description)
    args = parser.parse_args(argv)
    out = args.out or (f"runs/tune_{args.model}" if args.model else None)
    if out is None:
        parser.error("model=None is not accepted; expected one of " + ", ".join(FAMILIES)
                     + " (--model), or --out DIR of an earlier search with --refine or "
                     "--ensemble-top")
    previous = read_search(out)
    searching = args.model is not None or args.refine
    if (args.refine or not searching) and previous is None:
        parser.error(f"out={out!r} is not accepted; expected a directory holding an earlier "
                     f"search (search.json) with {'--refine' if args.refine else '--ensemble-top'}")
    if args.refine and args.model and args.model != previous["family"]:
        parser.error(f"model={args.model!r} is not accepted; expected "
                     f"{previous['family']!r}, the family of the search in {out}")
    if not searching and args.ensemble_top is None:
        parser.error("model=None is not accepted; expected --model FAMILY to search")
    if args.tuner == "bayesian" and importlib.util.find_spec("sklearn") is None:
        parser.error("tuner='bayesian' is not accepted; expected random or hyperband: keras-tuner's "
                     "Bayesian optimization needs scikit-learn (pip install keras-tuner[bayesian])")
    overrides = {k: getattr(args, k) for k in DATA_FLAGS if getattr(args, k) is not None}
    family = args.model or (previous or {}).get("family")
    settings = {**vars(args), "out": out, "family": family, "searching": searching}
    if searching:
        try:
            if args.refine:
                stored = {**previous["base_config"],
                          "lr_milestones": tuple(previous["base_config"]["lr_milestones"])}
                base = TrainConfig(**{**stored, **overrides})
            else:
                base = base_config_from(family, overrides)
            settings["base_config"] = dataclasses.replace(base, out=out).validate()
        except ValueError as err:
            parser.error(str(err))
    return settings, parser


def main(argv=None, description=None):
    settings, _ = parse_args(argv, description)
    rows = []
    if settings["searching"]:
        rows = run_search(settings["family"], settings["base_config"], settings["out"],
                          tuner=settings["tuner"], max_trials=settings["max_trials"],
                          executions_per_trial=settings["executions_per_trial"],
                          scale=settings["scale"], refine=settings["refine"],
                          refine_top=settings["refine_top"], overwrite=settings["overwrite"],
                          verbose=settings["verbose"], run_eagerly=settings["run_eagerly"])
        if rows:
            print_table(rows)
    result = None
    if settings["ensemble_top"] and not is_worker():
        result = ensemble_top(settings["out"], settings["ensemble_top"])
        print(json.dumps(result, indent=2))
    return {"rows": rows, "ensemble": result}


def print_table(rows, n=10):
    best = top_rows(rows, n)
    if not best:
        return
    keys = [k for k in dict.fromkeys(k for r in rows for k in r)
            if k not in ("status", "tuner_id") and not k.startswith("tuner/")]
    keys = [k for k in keys if k not in RESULT_COLUMNS] + ["val_accuracy", "val_loss", "seconds"]
    print(" | ".join(keys))
    for r in best:
        print(" | ".join(str(_cell(r.get(k))) for k in keys))
