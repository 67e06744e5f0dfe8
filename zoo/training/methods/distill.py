"""Knowledge distillation (Hinton et al. 2015): one student trained on a
teacher's (an ensemble's) softened probabilities (`--distill-from TEACHER.keras`)."""

from pathlib import Path

import numpy as np

import ensembles
from zoo import resolve
from zoo.training import data as data_module
from zoo.training import rundir
from zoo.training.methods.base import Method


class Distill(Method):
    name = "distill"

    def active(self, config):
        return config.distill_from is not None

    def validate(self, config):
        if not self.active(config):
            return
        path = Path(config.distill_from)
        if path.suffix != ".keras" or not path.is_file():
            raise resolve.bad_option("distill_from", config.distill_from,
                                     "an existing .keras file (a trained model or ensemble)")
        ensembles.distill.check_settings(config.distill_temperature, config.distill_hard_weight)
        if config.augment_device == "device":
            raise resolve.bad_option("augment_device", "device", (
                "'host' with distill_from (the teacher runs on each augmented batch "
                "the tf.data pipeline makes)"))
        if config.ensemble is not None:
            raise resolve.bad_option("ensemble", config.ensemble,
                                     "None with distill_from (one student is trained)")
        if config.label_smoothing:
            raise resolve.bad_option("label_smoothing", config.label_smoothing, (
                "0 with distill_from (the teacher's softened probabilities are the soft "
                "targets; distill_hard_weight sets the labels' share)"))

    def prepare_fit(self, state):
        """`ensembles.Distiller` around the student, compiled as the run asks; with
        plain arrays the teacher's probabilities are computed once and appended to
        the labels, with an augmentation pipeline the teacher sees every batch.
        The teacher carries its own input contract (any normalization or size)."""
        config = state.config
        teacher = state.extras["teacher"] = rundir.load_model(config.distill_from)
        distiller = ensembles.Distiller(state.model, teacher, config.distill_temperature,
                                        config.distill_hard_weight,
                                        name=f"{state.model.name}_distiller")
        state.compile(distiller)
        fit_data = state.fit_data
        if fit_data.get("y") is not None:
            soft = teacher.predict(fit_data["x"], batch_size=256, verbose=0)
            fit_data = {**fit_data, "y": np.concatenate([fit_data["y"], soft], axis=1)}
        state.fit_model, state.fit_data = distiller, fit_data

    def finish(self, state):
        config = state.config
        probs = data_module.predict(state.extras["teacher"], state.data, "test")
        state.report["distillation"] = {
            "teacher": str(config.distill_from), "temperature": config.distill_temperature,
            "hard_weight": config.distill_hard_weight,
            "teacher_test": ensembles.metrics.scores(probs, state.data["y_test"])}
