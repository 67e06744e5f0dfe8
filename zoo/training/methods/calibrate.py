"""Temperature scaling (Guo et al. 2017): one temperature fitted on the
validation split, kept in the saved model (`--calibrate temperature`)."""

from zoo import resolve
from zoo.training import evaluate
from zoo.training.methods.base import Method

CALIBRATIONS = ("temperature",)


class Calibrate(Method):
    name = "calibrate"

    def active(self, config):
        return config.calibrate is not None

    def validate(self, config):
        if not self.active(config):
            return
        resolve.check_choice("calibrate", config.calibrate, CALIBRATIONS)
        if not config.val_split:
            raise resolve.bad_option("calibrate", config.calibrate,
                                     "None when val_split=0 (the temperature is fitted on "
                                     "the validation split)")

    def finish(self, state):
        state.model, state.report["calibration"], state.calibrated_probs = evaluate.calibrate(
            state.model, state.config, state.data, state.probs)
        state.figures, _ = evaluate.evaluate_test(state.model, state.config, state.data,
                                                  probs=state.calibrated_probs)
