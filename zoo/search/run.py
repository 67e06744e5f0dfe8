"""Hyperparameter search over the zoo with keras-tuner (Bergstra & Bengio 2012,
"Random Search for Hyper-Parameter Optimization"; Li et al. 2018, "Hyperband").

One `ZooHyperModel` per family (lenet, alexnet, vgg, googlenet, resnet) samples
the shared options (activation, initializer, batch norm, L2 strength, dropout),
the optimizer (SGD with momentum, Nesterov, RMSProp, Adam), the learning rate,
momentum and schedule, and the family's own depth and width choices.

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

import dataclasses
import math
import shutil
from pathlib import Path

import keras
import numpy as np

import zoo
from ensembles import EnsembleModel
from zoo import resolve
from zoo.search import results, space as space_module, tuners
from zoo.search.hypermodel import ZooHyperModel
from zoo.search.space import REFINE_TOP, top_rows
from zoo.training import data as data_module
from zoo.training.config import TrainConfig
from zoo.training.rundir import read_json, save_model, write_json


def read_search(out):
    """DIR/search.json, or None where no search finished a stage there."""
    path = Path(out) / "search.json"
    return read_json(path) if path.exists() else None


def read_rows(out):
    path = Path(out) / "results.json"
    return read_json(path) if path.exists() else []


def base_config_from(family, overrides):
    """The family's paper recipe (`zoo.get_family(family).recipe`) with tuning
    epochs, then `overrides`."""
    recipe = {**zoo.get_family(family).recipe, "epochs": tuners.TUNING_EPOCHS, "verbose": 0}
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
        space = space_module.refine_space(space_module.space_from_json(previous["stages"][0]["space"]), rows, refine_top)
    else:
        if previous is not None and not overwrite and not tuners.is_worker():
            raise FileExistsError(
                f"out={str(out)!r} already holds a search (search.json); pass --refine to narrow "
                "it, --overwrite to start over, or choose another --out")
        stage, space = results.COARSE, space_module.search_space(family, scale)
        if overwrite and not tuners.is_worker():
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
    data = data_module.prepare_data(base_config)
    steps = math.ceil(len(data["x_train"]) / base_config.batch_size)
    hypermodel = ZooHyperModel(family, base_config, data["num_classes"], data["input_shape"],
                               data["contract"], steps, space=space, scale=scale,
                               run_eagerly=run_eagerly)
    out.mkdir(parents=True, exist_ok=True)
    t = tuners.make_tuner(tuner, hypermodel, out, stage, max_trials=max_trials,
                   executions_per_trial=executions_per_trial, max_epochs=base_config.epochs,
                   seed=base_config.seed, overwrite=overwrite and not tuners.is_worker() and not refine)
    _, fit_kwargs = data_module.fit_inputs(base_config, None, data)
    t.search(**fit_kwargs, epochs=base_config.epochs, verbose=verbose)
    if tuners.is_worker():
        return []
    stage_entry = {"name": stage, "tuner": tuner, "max_trials": max_trials,
                   "executions_per_trial": executions_per_trial, "space": space_module.space_to_json(space)}
    rows = [r for r in rows if r["stage"] != stage] + results.trial_rows(t, stage)
    search = previous or {"family": family, "scale": scale,
                          "base_config": base_config.to_dict(),
                          "num_classes": data["num_classes"],
                          "input_shape": list(data["input_shape"]),
                          "contract": data["contract"].to_config(),
                          "steps_per_epoch": steps, "stages": []}
    search["stages"] = [s for s in search["stages"] if s["name"] != stage] + [stage_entry]
    results.write_results(out, rows, {**space_module.space_from_json(search["stages"][0]["space"]), **space})
    write_json(out / "search.json", search)
    return rows


def ensemble_top(out, n, method="soft", evaluate=True):
    """Rebuilds the best `n` trials of the search in `out` from their values and
    best-epoch weights and saves them as one `ensembles.EnsembleModel`.

    Returns {"path", "method", "members": [{stage, trial_id, val_accuracy}], and
    with `evaluate` "test": `EnsembleModel.report` on the test split}.
    """
    out = Path(out)
    search = read_search(out)
    if search is None:
        raise resolve.bad_option("out", str(out), "a directory holding an earlier search "
                                 "(search.json) for --ensemble-top")
    best = top_rows(read_rows(out), n)
    if len(best) < n:
        raise resolve.bad_option("ensemble_top", n, f"at most {len(best)}, the completed "
                                 f"trials in {out}")
    base = TrainConfig.from_dict(search["base_config"])
    hypermodel = ZooHyperModel(search["family"], base, search["num_classes"],
                               search["input_shape"], search["contract"],
                               search["steps_per_epoch"], scale=search["scale"])
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
    ensemble(np.zeros((1, *hypermodel.contract.image_shape), "uint8"))  # built before saving
    if evaluate:
        data = data_module.prepare_data(base)
        result["test"] = ensemble.report(data["x_test"], data["y_test"])
    save_model(ensemble, out / f"ensemble_top{n}.keras")
    write_json(out / f"ensemble_top{n}.json", result)
    return result


