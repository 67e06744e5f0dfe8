"""Stochastic weight averaging (Izmailov et al. 2018): the weights averaged at
every epoch end from `--swa-start` on, optionally at a constant `--swa-lr`,
then the BatchNorm statistics re-estimated."""

import ensembles
from zoo import resolve
from zoo.training import data as data_module
from zoo.training.methods.base import Method


class SWA(Method):
    name = "swa"

    def active(self, config):
        return config.swa_start is not None

    def validate(self, config):
        if config.swa_lr is not None and not self.active(config):
            raise resolve.bad_option("swa_lr", config.swa_lr, "None unless swa_start is set")
        if not self.active(config):
            return
        resolve.check_positive_int("swa_start", config.swa_start)
        if config.swa_start > config.epochs:
            raise resolve.bad_option("swa_start", config.swa_start,
                                     f"an epoch between 1 and epochs={config.epochs}")
        if config.swa_lr is not None:
            resolve.check_number("swa_lr", config.swa_lr, low=0.0, low_open=True)

    def schedule(self, config, schedule, steps_per_epoch):
        if config.swa_lr is None:
            return schedule
        # The usual schedule, then a constant SWA rate.
        return ensembles.SWASchedule(schedule, (config.swa_start - 1) * steps_per_epoch,
                                     config.swa_lr)

    def callbacks(self, state):
        return {"end": [ensembles.SWA(state.config.swa_start,
                                      bn_data=data_module.batch_norm_images(state.data),
                                      state_path=state.run.backup_dir / "swa_state.npz",
                                      model=state.model)]}
