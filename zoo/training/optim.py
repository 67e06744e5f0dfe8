"""Optimizers by name and per-step learning-rate schedules.

- Optimizers: plain SGD, SGD with momentum (Polyak 1964), Nesterov momentum
  (Sutskever et al. 2013), Adagrad (Duchi et al. 2011), RMSProp (Hinton 2012,
  rho 0.9), Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019), with
  decoupled weight decay that leaves biases and BatchNorm's scale and shift alone.
- Schedules, updated every step: constant, step decay at milestones,
  exponential decay, cosine decay (Loshchilov & Hutter 2017) and cosine with
  warm restarts (SGDR), optionally after a linear warmup (Goyal et al. 2017);
  the training methods change them (snapshot cycles, SWA's constant rate, EMA
  of the weights: `zoo.training.methods`).
"""

import keras

from zoo import resolve
from zoo.training.config import OPTIMIZERS

# Parameters that weight decay leaves alone: biases and BatchNorm's scale/shift.
NO_DECAY = ["bias", "gamma", "beta"]


@keras.saving.register_keras_serializable(package="zoo")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to the wrapped schedule's value over `warmup_steps`
    (Goyal et al. 2017), then the wrapped schedule, shifted by the warmup."""

    def __init__(self, schedule, warmup_steps):
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        after = self.schedule(keras.ops.maximum(step - self.warmup_steps, 0.0))
        ramp = after * keras.ops.minimum((step + 1.0) / self.warmup_steps, 1.0)
        return keras.ops.where(step < self.warmup_steps, ramp, after)

    def get_config(self):
        return {
            "schedule": keras.optimizers.schedules.serialize(self.schedule),
            "warmup_steps": self.warmup_steps,
        }

    @classmethod
    def from_config(cls, config):
        schedule = keras.optimizers.schedules.deserialize(config["schedule"])
        return cls(schedule, config["warmup_steps"])


def make_schedule(config, steps_per_epoch):
    """A per-step learning-rate schedule (or a float for `constant`)."""
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    decay_steps = max(1, config.epochs * steps_per_epoch - warmup_steps)
    s = keras.optimizers.schedules
    if config.schedule == "constant":
        schedule = config.lr
    elif config.schedule == "step":
        # PiecewiseConstantDecay switches after a boundary; the new lr starts at the milestone.
        boundaries = [int(m * steps_per_epoch) - warmup_steps - 1 for m in config.lr_milestones]
        values = [config.lr * config.lr_gamma ** i for i in range(len(boundaries) + 1)]
        schedule = s.PiecewiseConstantDecay(boundaries, values)
    elif config.schedule == "exponential":
        schedule = s.ExponentialDecay(config.lr, config.lr_decay_epochs * steps_per_epoch,
                                      config.lr_gamma)
    elif config.schedule == "cosine":
        schedule = s.CosineDecay(config.lr, decay_steps)
    else:  # cosine_restarts: SGDR, Loshchilov & Hutter 2017
        schedule = s.CosineDecayRestarts(config.lr, int(config.restart_epochs * steps_per_epoch))
    if warmup_steps:
        if isinstance(schedule, float):
            schedule = s.PiecewiseConstantDecay([0], [schedule, schedule])
        schedule = LinearWarmup(schedule, warmup_steps)
    return schedule


def optimizer_by_name(name, learning_rate, momentum=0.9, weight_decay=None):
    """A Keras optimizer from `OPTIMIZERS` (`zoo.training.config`) at `learning_rate`
    (a float or a schedule), with decoupled `weight_decay` (biases and BN excluded)."""
    resolve.check_choice("optimizer", name, OPTIMIZERS)
    wd = weight_decay or None
    o = keras.optimizers
    optimizer = {
        "sgd": lambda: o.SGD(learning_rate, weight_decay=wd),
        "momentum": lambda: o.SGD(learning_rate, momentum=momentum, weight_decay=wd),
        "nesterov": lambda: o.SGD(learning_rate, momentum=momentum, nesterov=True,
                                  weight_decay=wd),
        "adagrad": lambda: o.Adagrad(learning_rate, weight_decay=wd),
        "rmsprop": lambda: o.RMSprop(learning_rate, rho=0.9, momentum=0.0, weight_decay=wd),
        "adam": lambda: o.Adam(learning_rate, weight_decay=wd),
        "adamw": lambda: o.AdamW(learning_rate, weight_decay=weight_decay or 0.0),
    }[name]()
    if wd:
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    return optimizer


def make_optimizer(config, steps_per_epoch, methods=None):
    """The config's optimizer with its schedule; `methods` (the module
    `zoo.training.methods`, or anything with its `schedule` and `optimizer`)
    lets the run's training methods change both (snapshot cycles, SWA's
    constant rate, EMA of the weights)."""
    schedule = make_schedule(config, steps_per_epoch)
    if methods is not None:
        schedule = methods.schedule(config, schedule, steps_per_epoch)
    optimizer = optimizer_by_name(config.optimizer, schedule, config.momentum,
                                  config.weight_decay)
    return optimizer if methods is None else methods.optimizer(config, optimizer)
