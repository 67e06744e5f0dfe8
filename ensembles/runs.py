"""Independent-model ensembles from the training core: M training jobs, one ensemble.

Member k is an ordinary run in OUT/member_k with the weights and shuffling
seeded by seed + k and the same data split (seed), so members can also run as
separate jobs on different devices or machines (`--member-index K`) and be
combined here afterwards. A finished member is reused, so a killed ensemble
run resumes at the member it stopped in (which resumes at its epoch).
"""

import dataclasses
import json
import time
from pathlib import Path

import keras

from ensembles.combine import EnsembleModel
from zoo import training


def member_config(config, index):
    return dataclasses.replace(config, ensemble=None, member_index=None,
                               out=str(Path(config.out) / f"member_{index}"),
                               init_seed=config.seed + index)


def train_independent(config):
    """Trains (or reuses) the M members, then writes the ensemble run to OUT:
    model.keras (one EnsembleModel), config.json and metrics.json with the
    per-member and ensemble test figures. Returns the metrics."""
    if config.member_index is not None:  # one member as its own job
        return training.train(member_config(config, config.member_index))
    start = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    member_metrics = []
    for index in range(config.members):
        member = member_config(config, index)
        finished = (Path(member.out) / "metrics.json").exists() \
            and not (Path(member.out) / "backup").exists()
        if finished and not config.overwrite:
            member_metrics.append(json.loads((Path(member.out) / "metrics.json").read_text()))
        else:
            member_metrics.append(training.train(member))
        keras.backend.clear_session()

    data = training.prepare_data(config)
    members = [keras.saving.load_model(Path(member_config(config, k).out) / "model.keras",
                                       compile=False) for k in range(config.members)]
    ensemble = EnsembleModel(members, method=config.ensemble_method, name="ensemble")
    summary = training.summarize_ensemble(ensemble, config, data, member_metrics[0])
    test_loss, test_accuracy, tta_accuracy = training.evaluate_test(ensemble, config, data)
    training.save_model_atomically(ensemble, out / "model.keras")
    training.write_json(out / "config.json", {
        **dataclasses.asdict(config), "num_classes": data["num_classes"],
        "input_shape": data["input_shape"],
        "normalization": {"mean": data["mean"], "std": data["std"]},
        "data_source": data["source"], "members_out": [member_config(config, k).out
                                                       for k in range(config.members)],
        "backend": keras.backend.backend(), "keras_version": keras.__version__,
    })
    metrics = {
        "model": config.model, "dataset": config.dataset, "data_source": data["source"],
        "test_loss": test_loss, "test_accuracy": test_accuracy, "test_error": 1.0 - test_accuracy,
        "tta": config.tta, "test_accuracy_tta": tta_accuracy,
        "test_error_tta": None if tta_accuracy is None else 1.0 - tta_accuracy,
        "wall_time_s": float(sum(m["wall_time_s"] for m in member_metrics)),
        "wall_time_this_process_s": time.perf_counter() - start,
        "train_images_per_sec": member_metrics[0].get("train_images_per_sec"),
        "params": ensemble.count_params(), "num_train": member_metrics[0]["num_train"],
        "ensemble": {**summary, "member_test_accuracy": [m["test_accuracy"]
                                                         for m in member_metrics]},
    }
    training.write_json(out / "metrics.json", metrics)
    return metrics
