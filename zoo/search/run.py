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
from zoo.search import results, tuners
from zoo.search import space as space_module
from zoo.search.hypermodel import ZooHyperModel
from zoo.search.space import REFINE_TOP, top_rows
from zoo.training import data as data_module
from zoo.training.config import TrainConfig
from zoo.training.rundir import RESUME_MAY_CHANGE, read_json, save_model, write_json


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
               run_eagerly=False, log=print):
    """Runs one stage of a search in `out` and writes its results.

    The first stage ("coarse") samples the family's whole space; with `refine`
    the next stage ("fine1", "fine2", ...) samples the coarse space narrowed by
    `refine_space` around the best `refine_top` trials of all earlier stages,
    with the earlier base config.

    A stage is recorded in search.json when it starts and marked complete when
    it ends, so the same call after a kill resumes it (keras-tuner reloads its
    oracle; the trial the kill interrupted runs again from its start) and after
    the end says it is complete; a larger `max_trials` extends it, other
    settings are refused.

    In a keras-tuner worker process (KERASTUNER_TUNER_ID etc. set, id without
    "chief") this only runs the trials the chief hands out; the chief (or a
    single process) records the stage and writes the results.

    Returns the rows of every stage so far (empty in a worker).
    """
    out = Path(out)
    previous = read_search(out)
    rows = read_rows(out)
    worker = tuners.is_worker()
    settings = {"tuner": tuner, "max_trials": max_trials,
                "executions_per_trial": executions_per_trial}
    base_config = dataclasses.replace(base_config, out=str(out)).validate()
    if refine:
        if previous is None:
            raise resolve.bad_option("out", str(out), "a directory holding an earlier search "
                                     "(search.json) when refining")
        family, scale = previous["family"], previous["scale"]
        last = previous["stages"][-1]
        if last["name"] == results.COARSE and not is_complete(last):
            raise resolve.bad_option("refine", True, "a complete coarse stage: run the same "
                                     "command without --refine to finish it first")
        first = space_module.space_from_json(previous["stages"][0]["space"])
        if is_complete(last):
            stage = f"fine{len(previous['stages'])}"
            # The coarse space narrowed around the best trials of every stage so far: each
            # top value lies inside it, and the ranges shrink as the top trials agree.
            space = space_module.refine_space(first, rows, refine_top)
        else:  # a refine stage a kill interrupted
            check_same_stage(out, last, settings, None, None)
            stage, space = last["name"], space_module.space_from_json(last["space"])
    else:
        stage, space = results.COARSE, space_module.search_space(family, scale)
        if previous is not None and not overwrite and not worker:
            coarse = previous["stages"][0]
            check_same_stage(out, coarse, settings, previous, {
                "family": family, "scale": scale, "base_config": base_config.to_dict()})
            if is_complete(coarse) and max_trials <= coarse["max_trials"]:
                log(f"the search in {out} is already complete ({len(read_rows_of(rows, stage))} "
                    "trials); --refine narrows it, --overwrite starts it over")
                return rows
            space = space_module.space_from_json(coarse["space"])
        if overwrite and not worker:
            for old in (previous or {}).get("stages", []):  # stale fine stages would reload
                shutil.rmtree(out / old["name"], ignore_errors=True)
            (out / "search.json").unlink(missing_ok=True)
            previous, rows = None, []
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
    search = previous or {"family": family, "scale": scale,
                          "base_config": base_config.to_dict(),
                          "num_classes": data["num_classes"],
                          "input_shape": list(data["input_shape"]),
                          "contract": data["contract"].to_config(),
                          "steps_per_epoch": steps, "stages": []}
    entry = {"name": stage, **settings, "space": space_module.space_to_json(space)}
    if not worker:  # recorded before the first trial: a rerun after a kill resumes it
        write_stage(out, search, {**entry, "complete": False})
        if not overwrite:
            discard_damaged_stage(out / stage, log)
    t = tuners.make_tuner(tuner, hypermodel, out, stage, max_trials=max_trials,
                          executions_per_trial=executions_per_trial,
                          max_epochs=base_config.epochs, seed=base_config.seed,
                          overwrite=overwrite and not worker and not refine)
    _, fit_kwargs = data_module.fit_inputs(base_config, None, data)
    t.search(**fit_kwargs, epochs=base_config.epochs, verbose=verbose)
    if worker:
        return []
    rows = [r for r in rows if r["stage"] != stage] + results.trial_rows(t, stage)
    results.write_results(out, rows, {**space_module.space_from_json(search["stages"][0]["space"]),
                                      **space})
    write_stage(out, search, {**entry, "complete": True})  # last: the stage is done
    return rows


def discard_damaged_stage(directory, log=print):
    """keras-tuner writes its state files in place: one a kill cut short cannot
    be reloaded, so the stage starts over (its trials are seeded by their ids,
    so they train as they did; only time is lost)."""
    for path in sorted(Path(directory).glob("*.json")) + sorted(
            Path(directory).glob("trial_*/trial.json")):
        try:
            read_json(path)
        except ValueError:
            log(f"{path} was cut short by a kill; the stage {directory.name} starts over")
            shutil.rmtree(directory)
            return


def is_complete(stage):
    """Searches of the previous release recorded a stage only once it ended."""
    return stage.get("complete", True)


def read_rows_of(rows, stage):
    return [r for r in rows if r["stage"] == stage]


def write_stage(out, search, entry):
    search["stages"] = [s for s in search["stages"] if s["name"] != entry["name"]] + [entry]
    write_json(Path(out) / "search.json", search)


def check_same_stage(out, stage, settings, previous, facts):
    """Refuses to resume or report `stage` of the search in `out` for a
    command with other settings, naming each difference."""
    differences = [f"{k}: {stage.get(k)!r} there, {v!r} now" for k, v in settings.items()
                   if stage.get(k) != v and k != "max_trials"]  # more trials extend it
    if previous is not None:
        differences += [f"{k}: {previous[k]!r} there, {facts[k]!r} now"
                        for k in ("family", "scale") if previous[k] != facts[k]]
        stored, now = previous["base_config"], facts["base_config"]
        differences += [f"{k}: {stored.get(k)!r} there, {now.get(k)!r} now"
                        for k in sorted(set(stored) | set(now))
                        if k not in RESUME_MAY_CHANGE and stored.get(k) != now.get(k)]
    if differences:
        raise FileExistsError(
            f"out={str(out)!r} already holds a search with other settings ("
            + "; ".join(differences) + "); run the same command to resume it, pass --refine "
            "to narrow it, --overwrite to start over, or choose another --out")


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


