"""Weight averaging: Polyak/EMA (Polyak & Juditsky 1992) and SWA (Izmailov et al. 2018).

EMA is Keras' own: an optimizer with `use_ema=True, ema_momentum=DECAY` keeps
the moving average in its variables (so `.keras` files and BackupAndRestore
checkpoints hold both the raw and the averaged weights), `SwapEMAWeights`
evaluates with the average, and `fit` copies the average into the model at
the end. `ema_optimizer` and `ema_callbacks` set that up.

SWA keeps a uniform running average of the weights at the end of every epoch
from `start_epoch` on (`SWA` callback), optionally with a constant learning
rate from there (`SWASchedule`), and at the end loads the average and
recomputes the BatchNorm statistics on training data (`recompute_batch_norm`):
the moving statistics of the individual networks do not belong to the
averaged one.
"""

from pathlib import Path

import keras
import numpy as np

from zoo import atomic, resolve


def check_decay(decay):
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < decay < 1.0:
        raise resolve.bad_option("ema", decay, "a decay in (0, 1), such as 0.999")
    return float(decay)


def ema_optimizer(optimizer, decay):
    """A copy of `optimizer` that keeps an exponential moving average of the
    weights: avg <- decay * avg + (1 - decay) * w after every step."""
    config = keras.optimizers.get(optimizer).get_config()
    config.update(use_ema=True, ema_momentum=check_decay(decay))
    return keras.optimizers.get(optimizer).__class__.from_config(config)


def ema_callbacks():
    """Evaluation and checkpoints with the averaged weights. Put it after
    BackupAndRestore in the callback list, so the backup saves the raw weights
    in the model and the average in the optimizer, and before ModelCheckpoint."""
    return [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)]


@keras.saving.register_keras_serializable(package="ensembles")
class SWASchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The wrapped schedule until `start_step`, then the constant `swa_lr`."""

    def __init__(self, schedule, start_step, swa_lr):
        self.schedule = schedule
        self.start_step = int(start_step)
        self.swa_lr = float(swa_lr)

    def __call__(self, step):
        before = self.schedule(step) if callable(self.schedule) else self.schedule
        before = keras.ops.cast(before, "float32")
        return keras.ops.where(keras.ops.cast(step, "float32") < self.start_step, before,
                               keras.ops.cast(self.swa_lr, "float32"))

    def get_config(self):
        schedule = self.schedule
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            schedule = keras.optimizers.schedules.serialize(schedule)
        return {"schedule": schedule, "start_step": self.start_step, "swa_lr": self.swa_lr}

    @classmethod
    def from_config(cls, config):
        schedule = config["schedule"]
        if isinstance(schedule, dict):
            schedule = keras.optimizers.schedules.deserialize(schedule)
        return cls(schedule, config["start_step"], config["swa_lr"])


def all_layers(model):
    """Every layer inside `model`, nested models included (depth first), from the
    public `layers` of each model (and `members` / `model` of the wrappers)."""
    found, seen = [], set()

    def walk(layer):
        children = list(getattr(layer, "layers", None) or [])
        for attribute in ("members", "model"):
            inner = getattr(layer, attribute, None)
            inner = inner if isinstance(inner, (list, tuple)) else [inner]
            children += [m for m in inner if isinstance(m, keras.layers.Layer)]
        for child in children:
            if id(child) not in seen:
                seen.add(id(child))
                found.append(child)
                walk(child)

    walk(model)
    return found


def batch_norm_layers(model):
    return [layer for layer in all_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization)]


def recompute_batch_norm(model, x, batch_size=256):
    """Re-estimates every BatchNormalization layer's moving mean and variance
    as the average over `x` of the batch statistics of `model` as it is now
    (torch.optim.swa_utils.update_bn does the same). `x` is an array of
    inputs, or an iterable of batches (a streamed dataset). Returns the number
    of layers updated.

    Each forward pass in training mode updates `moving = m * moving + (1 - m) *
    batch`; with m = (k - 1) / k for batch k the result is the plain average.
    """
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.moving_mean.assign(keras.ops.zeros(layer.moving_mean.shape, "float32"))
        layer.moving_variance.assign(keras.ops.ones(layer.moving_variance.shape, "float32"))
    try:
        batches = (x[start:start + batch_size] for start in range(0, len(x), batch_size)) \
            if isinstance(x, np.ndarray) else x
        for k, batch in enumerate(batches, start=1):
            for layer in layers:
                layer.momentum = (k - 1) / k
            model(batch, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return len(layers)


class SWA(keras.callbacks.Callback):
    """Stochastic weight averaging: a uniform average of the weights at the end
    of every epoch from `start_epoch` (1-based) on, loaded into the model when
    training ends, followed by a BatchNorm statistics pass over `bn_data`.

    Args:
        start_epoch: the first epoch whose end weights enter the average.
        bn_data: training inputs for `recompute_batch_norm` (None: skip it).
        state_path: an `.npz` file keeping the running average, written
            atomically every epoch, so a resumed run continues it.
        model: the model to average (default: the model being fitted).
    """

    def __init__(self, start_epoch, bn_data=None, state_path=None, model=None, batch_size=256):
        super().__init__()
        self.start_epoch = resolve.check_positive_int("swa_start", start_epoch)
        self.bn_data, self.batch_size = bn_data, batch_size
        self.state_path = Path(state_path) if state_path else None
        self.averaged_model = model
        self.count, self.average, self.last_epoch = 0, None, -1

    def _target(self):
        return self.averaged_model or self.model

    def _variables(self):
        return self._target().trainable_variables

    def on_train_begin(self, logs=None):
        epochs = self.params.get("epochs") if self.params else None
        if epochs is not None and self.start_epoch > epochs:
            raise resolve.bad_option("swa_start", self.start_epoch, f"an epoch <= epochs={epochs}")
        if self.state_path and self.state_path.exists():
            state = np.load(self.state_path)
            self.count, self.last_epoch = int(state["count"]), int(state["last_epoch"])
            self.average = [state[f"w{i}"] for i in range(len(self._variables()))]

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 < self.start_epoch or epoch <= self.last_epoch:
            return
        weights = [keras.ops.convert_to_numpy(v).astype(np.float64) for v in self._variables()]
        self.count += 1
        if self.average is None:
            self.average = weights
        else:
            self.average = [a + (w - a) / self.count for a, w in zip(self.average, weights)]
        self.last_epoch = epoch
        if self.state_path:
            with atomic.atomic_path(self.state_path) as tmp, open(tmp, "wb") as f:
                np.savez(f, count=self.count, last_epoch=epoch,
                         **{f"w{i}": a for i, a in enumerate(self.average)})

    def on_train_end(self, logs=None):
        if not self.count:
            return
        for variable, average in zip(self._variables(), self.average):
            variable.assign(average.astype(variable.dtype))
        if self.bn_data is not None:
            recompute_batch_norm(self._target(), self.bn_data, self.batch_size)
