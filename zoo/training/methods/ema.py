"""Polyak/EMA averaging of the weights (Polyak & Juditsky 1992), Keras' own
(`use_ema`): evaluated and saved with the average (`--ema DECAY`)."""

import ensembles
from zoo import resolve
from zoo.training import data as data_module
from zoo.training.methods.base import Method
from zoo.training.optim import NO_DECAY


class EMA(Method):
    name = "ema"

    def active(self, config):
        return config.ema is not None

    def validate(self, config):
        if not self.active(config):
            return
        ensembles.averaging.check_decay(config.ema)
        if config.swa_start is not None:
            raise resolve.bad_option("swa_start", config.swa_start,
                                     "None with ema (choose one kind of weight averaging)")

    def optimizer(self, config, optimizer):
        optimizer = ensembles.ema_optimizer(optimizer, config.ema)
        if config.weight_decay:
            optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
        return optimizer

    def callbacks(self, state):
        # After the backup: it saves the raw weights in the model and their
        # average in the optimizer, so a resumed run continues both.
        return {"after_backup": ensembles.ema_callbacks()}

    def after_fit(self, state):
        # fit left the averaged weights in the model, but the BatchNorm moving
        # statistics are those of the raw weights: re-estimate them.
        ensembles.recompute_batch_norm(state.model, data_module.batch_norm_images(state.data))
