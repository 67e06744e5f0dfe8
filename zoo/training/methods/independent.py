"""Independent-model ensembles (`--ensemble independent --members M`): M
training jobs, one ensemble.

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
from zoo import resolve
from zoo.training import data as data_module
from zoo.training import evaluate, rundir
from zoo.training.methods.base import Method, RunState
from zoo.training.rundir import RunDir


def member_config(config, index):
    return dataclasses.replace(config, ensemble=None, member_index=None,
                               out=str(RunDir(config.out).member(index).path),
                               init_seed=config.seed + index)


class Independent(Method):
    name = "independent"

    def active(self, config):
        return config.ensemble == "independent"

    def validate(self, config):
        if config.member_index is None:
            return
        if not self.active(config):
            raise resolve.bad_option("member_index", config.member_index,
                                     "None unless ensemble='independent'")
        resolve.check_positive_int("member_index", config.member_index, minimum=0)
        if config.member_index >= config.members:
            raise resolve.bad_option("member_index", config.member_index,
                                     f"an index below members={config.members}")

    def train(self, config, runner):
        """Trains (or reuses) the M members with `runner.train_run`, then writes
        the ensemble run to OUT through `runner.finish` (model.keras: one
        EnsembleModel; metrics.json with the per-member and ensemble test
        figures). Returns the metrics."""
        if config.member_index is not None:  # one member as its own job
            return runner.train_run(member_config(config, config.member_index))
        start = time.perf_counter()
        run = RunDir(config.out)
        with run.lock():
            run.start(config.overwrite)
            member_metrics = []
            for index in range(config.members):
                member = member_config(config, index)
                member_run = RunDir(member.out)
                if member_run.is_finished():  # --overwrite cleared them all in `start`
                    member_metrics.append(member_run.read_metrics())
                else:
                    member_metrics.append(runner.train_run(dataclasses.replace(member,
                                                                               overwrite=False)))
                keras.backend.clear_session()
            data = data_module.prepare_data(config)
            members = [rundir.load_model(run.member(k).model_path)
                       for k in range(config.members)]
            ensemble = EnsembleModel(members, method=config.ensemble_method, name="ensemble")
            state = RunState(config, data, run, ensemble)
            summary = evaluate.summarize_ensemble(ensemble, config, data, member_metrics[0])
            state.figures, state.probs = evaluate.evaluate_test(ensemble, config, data)
            state.member_probs = data_module.predict(members[0], data, "test")
            state.report["ensemble"] = {**summary, "member_test_accuracy": [
                m["test_accuracy"] for m in member_metrics]}
            run.write_config(
                config, num_classes=data["num_classes"], input_shape=data["input_shape"],
                contract=data["contract"].to_config(), data_source=data["source"],
                members_out=[str(run.member(k).path) for k in range(config.members)],
                backend=keras.backend.backend(), keras_version=keras.__version__)
            return runner.finish(state, {
                "wall_time_s": float(sum(m["wall_time_s"] for m in member_metrics)),
                "wall_time_this_process_s": time.perf_counter() - start,
                "train_images_per_sec": member_metrics[0].get("train_images_per_sec"),
                "num_train": member_metrics[0]["num_train"]})
