"""The zoo's keras-tuner tuners: random search (Bergstra & Bengio 2012), Hyperband
(Li et al. 2018) and Bayesian optimization, with memory kept flat across trials
and keras-tuner's chief/worker mode for distributed search."""

import os
import time
import zlib
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np

from zoo import resolve
from zoo.training import compat
from zoo.training.rundir import write_json

TUNERS = ("random", "hyperband", "bayesian")
OBJECTIVE = "val_accuracy"
TUNING_EPOCHS = 5          # default epochs per trial (the recipes' 74-164 are for final runs)


def has_chief():
    """True in keras-tuner's distributed mode (KERASTUNER_ORACLE_IP set)."""
    return "KERASTUNER_ORACLE_IP" in os.environ


def is_chief():
    """True in the chief process of a distributed search (its KERASTUNER_TUNER_ID
    contains "chief", keras-tuner's convention)."""
    return has_chief() and "chief" in os.environ.get("KERASTUNER_TUNER_ID", "")


def is_worker():
    """True in a keras-tuner worker process (KERASTUNER_TUNER_ID without "chief")."""
    return has_chief() and not is_chief()


class _ZooTunerMixin:
    """What every zoo tuner adds to keras-tuner's: the session is cleared and
    garbage collected after each trial (memory stays flat across trials), a
    trial is seeded by its id, reports its best epoch's metrics and its wall
    time, writes which tuner ran it, and a chief serves its oracle without
    keras-tuner's 20-second polling at the end."""

    def __init__(self, *args, seed=None, **kwargs):
        self.search_seed = seed  # a worker's oracle is a client without it
        super().__init__(*args, seed=seed, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        start = time.perf_counter()
        # Each trial seeded by its id, not by the trials before it in this process:
        # a search resumed after a kill trains every trial as an unbroken one does.
        keras.utils.set_random_seed(trial_seed(self.search_seed, trial.trial_id))
        histories = super().run_trial(trial, *args, **kwargs)
        seconds = time.perf_counter() - start
        metrics = best_epoch_metrics(histories, self.oracle.objective)
        metrics["seconds"] = seconds
        write_json(Path(self.get_trial_dir(trial.trial_id)) / "runner.json",
                            {"tuner_id": self.tuner_id, "seconds": seconds})
        return metrics

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        # Frees the trial's model, optimizer and traced functions now rather than at
        # the next build (keras-tuner clears there too); clear_session collects garbage.
        keras.backend.clear_session(free_memory=True)

    def search(self, *fit_args, **fit_kwargs):
        if is_chief():
            self.save()
            compat.serve_oracle(self.oracle)
            return
        super().search(*fit_args, **fit_kwargs)


class RandomSearch(_ZooTunerMixin, kt.RandomSearch):
    pass


class Hyperband(_ZooTunerMixin, kt.Hyperband):
    pass


class BayesianOptimization(_ZooTunerMixin, kt.BayesianOptimization):
    pass


def trial_seed(seed, trial_id):
    """The seed of trial `trial_id` ("0", "01", ...) in a search seeded `seed`."""
    return (int(seed or 0) + zlib.crc32(str(trial_id).encode())) % 2**31


def make_tuner(kind, hypermodel, directory, project_name, max_trials=10, executions_per_trial=1,
               max_epochs=TUNING_EPOCHS, seed=0, overwrite=False):
    """A zoo tuner ("random", "hyperband" or "bayesian") maximizing val accuracy.

    Hyperband's trial count follows from `max_epochs` (and factor 3), not `max_trials`.
    """
    resolve.check_choice("tuner", kind, TUNERS)
    common = dict(hypermodel=hypermodel, objective=kt.Objective(OBJECTIVE, "max"),
                  # keras-tuner reads seed 0 as "no seed" (a random one): shifted by one.
                  executions_per_trial=executions_per_trial, seed=seed + 1,
                  directory=str(directory), project_name=project_name, overwrite=overwrite)
    if kind == "random":
        return RandomSearch(max_trials=max_trials, **common)
    if kind == "bayesian":
        return BayesianOptimization(max_trials=max_trials, **common)
    return Hyperband(max_epochs=max_epochs, factor=3, **common)


def best_epoch_metrics(histories, objective):
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

