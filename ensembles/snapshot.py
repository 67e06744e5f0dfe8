"""Snapshot ensembles (Huang et al. 2017, "Snapshot Ensembles: Train 1, get M for free").

One training run with M cycles of cosine annealing, the learning rate updated
every step and restarted at the top of each cycle:

    lr(t) = lr0 / 2 * (cos(pi * mod(t, T / M) / (T / M)) + 1),   t = 0 .. T - 1

`CyclicCosine` sets it before every step from the epoch and the step within it,
so each cycle is a whole number of epochs whatever `fit` is given. A snapshot
of the weights is taken at the end of every cycle (where the rate is lowest);
the last m snapshots form an `EnsembleModel`.
"""

import math
from pathlib import Path

import keras
import numpy as np

from ensembles.combine import EnsembleModel
from zoo import atomic, resolve


def check_cycles(epochs, cycles, keep=None):
    """Each cycle must be a whole number of epochs, so a snapshot falls on an
    epoch end (where checkpoints and resumes happen). Returns epochs per cycle."""
    resolve.check_positive_int("members", cycles)
    resolve.check_positive_int("epochs", epochs)
    if epochs % cycles:
        divisors = [d for d in range(1, epochs + 1) if epochs % d == 0]
        raise resolve.bad_option(
            "members", cycles,
            f"a number of cycles that divides epochs={epochs} ({', '.join(map(str, divisors))})")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int)
                             or not 1 <= keep <= cycles):
        raise resolve.bad_option("keep", keep, f"an integer between 1 and members={cycles}")
    return epochs // cycles


def cyclic_cosine(peak_lr, epoch, step, steps_per_epoch, epochs_per_cycle):
    """The learning rate at `step` of `epoch` (both from 0): a cosine from
    `peak_lr` to 0 over each cycle of `epochs_per_cycle` whole epochs."""
    cycle_steps = epochs_per_cycle * steps_per_epoch
    t = (epoch % epochs_per_cycle) * steps_per_epoch + step
    return 0.5 * peak_lr * (math.cos(math.pi * t / cycle_steps) + 1.0)


class CyclicCosine(keras.callbacks.Callback):
    """Sets the optimizer's learning rate before every training step to
    `cyclic_cosine`: the snapshot schedule, restarted at `peak_lr` every
    `epochs_per_cycle` epochs. The steps per epoch are the ones `fit` runs
    (validation_split, steps_per_epoch and datasets included), so every cycle
    ends on an epoch end, where a snapshot is taken.
    """

    def __init__(self, peak_lr, epochs_per_cycle):
        super().__init__()
        self.peak_lr = float(peak_lr)
        self.epochs_per_cycle = resolve.check_positive_int("epochs_per_cycle", epochs_per_cycle)
        self.epoch = 0

    def on_train_begin(self, logs=None):
        self.steps = (self.params or {}).get("steps")
        if not self.steps:
            raise resolve.bad_option("steps_per_epoch", self.steps,
                                     "a number of steps per epoch when the data has no length "
                                     "(pass steps_per_epoch to fit)")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate = cyclic_cosine(
            self.peak_lr, self.epoch, batch, self.steps, self.epochs_per_cycle)


class SnapshotSaver(keras.callbacks.Callback):
    """Saves `model` to DIR/snapshot_K.keras at the end of cycle K (1-based).

    Args:
        directory: where the snapshots go (written atomically).
        epochs_per_cycle: the cycle length in epochs.
        model: the model to save (default: the model being fitted; pass the
            inner model when fitting a wrapper such as an AugmentedModel).
    """

    def __init__(self, directory, epochs_per_cycle, model=None):
        super().__init__()
        self.directory = Path(directory)
        self.epochs_per_cycle = resolve.check_positive_int("epochs_per_cycle", epochs_per_cycle)
        self.snapshot_model = model

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.epochs_per_cycle:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"snapshot_{(epoch + 1) // self.epochs_per_cycle}.keras"
        with atomic.atomic_path(path) as tmp:
            (self.snapshot_model or self.model).save(tmp)


def snapshot_paths(directory):
    """Snapshot files in cycle order."""
    paths = Path(directory).glob("snapshot_*.keras")
    return sorted(paths, key=lambda p: int(p.stem.split("_")[1]))


def load_snapshot_ensemble(directory, keep=None, method="soft"):
    """An `EnsembleModel` of the last `keep` snapshots in `directory`."""
    paths = snapshot_paths(directory)
    if not paths:
        raise FileNotFoundError(f"no snapshot_*.keras files in {str(directory)!r}")
    members = [keras.saving.load_model(p, compile=False) for p in paths[-(keep or len(paths)):]]
    return EnsembleModel(members, method=method, name="snapshot_ensemble")


class SnapshotEnsemble:
    """Trains one model with M cosine cycles and ensembles its last m snapshots.

    Used like a Keras model:

        ensemble = SnapshotEnsemble(model, cycles=5)
        ensemble.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                         loss="categorical_crossentropy", metrics=["accuracy"])
        ensemble.fit(x, y, epochs=50, batch_size=128, validation_data=(xv, yv))
        ensemble.predict(x_test); ensemble.evaluate(x_test, y_test)
        ensemble.save("snapshots.keras")  # an EnsembleModel; keras.saving.load_model

    The optimizer's learning rate is the peak of every cycle; during `fit` a
    `CyclicCosine` callback sets it before every step.

    Args:
        model: the network to train (a Keras model).
        cycles: M, the number of cosine cycles (and snapshots).
        keep: m, how many of the last snapshots form the ensemble (default M).
        method: how the snapshots are combined (`ensembles.combine.METHODS`).
        directory: where snapshots are saved (default: kept in memory only).
    """

    def __init__(self, model, cycles=5, keep=None, method="soft", directory=None):
        resolve.check_positive_int("cycles", cycles)
        if keep is not None:
            check_cycles(cycles, cycles, keep)
        self.model, self.cycles, self.keep = model, cycles, keep
        self.method, self.directory = method, directory
        self.ensemble = None
        self._compile_args = None

    def compile(self, optimizer, loss="categorical_crossentropy", metrics=None, **kwargs):
        optimizer = keras.optimizers.get(optimizer)
        self._compile_args = dict(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def fit(self, x=None, y=None, epochs=1, batch_size=32, callbacks=None, **kwargs):
        if self._compile_args is None:
            raise RuntimeError("call SnapshotEnsemble.compile(...) before fit")
        epochs_per_cycle = check_cycles(epochs, self.cycles, self.keep)
        args = dict(self._compile_args)
        peak = float(args["optimizer"].get_config()["learning_rate"])
        self.model.compile(**args)
        collector = _SnapshotCollector(epochs_per_cycle)
        extra = [SnapshotSaver(self.directory, epochs_per_cycle)] if self.directory else []
        schedule = CyclicCosine(peak, epochs_per_cycle)
        history = self.model.fit(x, y, epochs=epochs, batch_size=batch_size,
                                 callbacks=[schedule, *(callbacks or []), collector, *extra],
                                 **kwargs)
        members = []
        for weights in collector.snapshots[-(self.keep or self.cycles):]:
            member = keras.models.clone_model(self.model)
            member.set_weights(weights)
            members.append(member)
        self.ensemble = EnsembleModel(members, method=self.method, name="snapshot_ensemble")
        self.ensemble.compile(loss=args["loss"], metrics=args["metrics"])
        return history

    def _fitted(self):
        if self.ensemble is None:
            raise RuntimeError("the snapshot ensemble exists after fit(); call fit first")
        return self.ensemble

    def predict(self, x, **kwargs):
        return self._fitted().predict(x, **kwargs)

    def evaluate(self, x=None, y=None, **kwargs):
        return self._fitted().evaluate(x, y, **kwargs)

    def save(self, path):
        self._fitted().save(path)


class _SnapshotCollector(keras.callbacks.Callback):
    def __init__(self, epochs_per_cycle):
        super().__init__()
        self.epochs_per_cycle = epochs_per_cycle
        self.snapshots = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.epochs_per_cycle == 0:
            self.snapshots.append([np.array(w) for w in self.model.get_weights()])
