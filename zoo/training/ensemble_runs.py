"""Independent-model ensembles from the training core: M training jobs, one ensemble.

Member k is an ordinary run in OUT/member_k with the weights and shuffling
seeded by seed + k and the same data split (seed), so members can also run as
separate jobs on different devices or machines (`--member-index K`) and be
combined here afterwards. A finished member is reused, so a killed ensemble
run resumes at the member it stopped in (which resumes at its epoch).
"""

import dataclasses
import time

import keras

from ensembles import EnsembleModel
from zoo.training import data as data_module
from zoo.training import evaluate, loop, rundir
from zoo.training.rundir import RunDir


def member_config(config, index):
    return dataclasses.replace(config, ensemble=None, member_index=None,
                               out=str(RunDir(config.out).member(index).path),
                               init_seed=config.seed + index)


def train_independent(config):
    """Trains (or reuses) the M members, then writes the ensemble run to OUT:
    model.keras (one EnsembleModel), config.json and metrics.json with the
    per-member and ensemble test figures. Returns the metrics."""
    if config.member_index is not None:  # one member as its own job
        return loop.train_run(member_config(config, config.member_index))
    start = time.perf_counter()
    run = RunDir(config.out)
    with run.lock():
        run.start(config.overwrite)
        return _combine_members(run, config, start)


def _combine_members(run, config, start):
    member_metrics = []
    for index in range(config.members):
        member = member_config(config, index)
        member_run = RunDir(member.out)
        if member_run.is_finished():  # --overwrite cleared them all in `start`
            member_metrics.append(member_run.read_metrics())
        else:
            member_metrics.append(loop.train_run(dataclasses.replace(member, overwrite=False)))
        keras.backend.clear_session()

    data = data_module.prepare_data(config)
    members = [rundir.load_model(run.member(k).model_path) for k in range(config.members)]
    ensemble = EnsembleModel(members, method=config.ensemble_method, name="ensemble")
    summary = evaluate.summarize_ensemble(ensemble, config, data, member_metrics[0])
    figures, probs = evaluate.evaluate_test(ensemble, config, data)
    member_probs = data_module.predict(members[0], data, "test")
    model, calibration, calibrated_probs = ensemble, None, None
    if config.calibrate:
        model, calibration, calibrated_probs = evaluate.calibrate(ensemble, config, data, probs)
        figures, _ = evaluate.evaluate_test(model, config, data, probs=calibrated_probs)
    run.save_model(model)
    run.plot_reliability(evaluate.reliability_curves(data, probs, member_probs,
                                                     calibrated_probs))
    run.write_config(
        config, num_classes=data["num_classes"], input_shape=data["input_shape"],
        contract=data["contract"].to_config(), data_source=data["source"],
        members_out=[str(run.member(k).path) for k in range(config.members)],
        backend=keras.backend.backend(), keras_version=keras.__version__,
    )
    metrics = {
        "model": config.model, "dataset": config.dataset, "data_source": data["source"],
        **figures,
        "wall_time_s": float(sum(m["wall_time_s"] for m in member_metrics)),
        "wall_time_this_process_s": time.perf_counter() - start,
        "train_images_per_sec": member_metrics[0].get("train_images_per_sec"),
        "params": ensemble.count_params(), "num_train": member_metrics[0]["num_train"],
        "ensemble": {**summary, "member_test_accuracy": [m["test_accuracy"]
                                                         for m in member_metrics]},
        **({"calibration": calibration} if calibration else {}),
    }
    run.write_metrics(metrics)  # the commit point
    return metrics
