"""Snapshot ensembles (Huang et al. 2017, "Snapshot Ensembles: Train 1, get M for free").

One training run with M cycles of cosine annealing, the learning rate updated
every step and restarted at the top of each cycle:

    lr(t) = lr0 / 2 * (cos(pi * mod(t, T / M) / (T / M)) + 1),   t = 0 .. T - 1

Keras' `CosineDecayRestarts` with `t_mul=m_mul=1` is exactly this schedule. A
snapshot of the weights is taken at the end of every cycle (where the rate is
lowest); the last m snapshots form an `EnsembleModel`.
"""

import os
from pathlib import Path

import keras
import numpy as np

from ensembles.combine import EnsembleModel
from zoo import resolve


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


def snapshot_schedule(lr, epochs, cycles, steps_per_epoch):
    """The per-step cyclic cosine schedule of M = `cycles` cycles over `epochs`."""
    epochs_per_cycle = check_cycles(epochs, cycles)
    return keras.optimizers.schedules.CosineDecayRestarts(
        lr, first_decay_steps=epochs_per_cycle * steps_per_epoch, t_mul=1.0, m_mul=1.0,
        alpha=0.0)


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
        tmp = path.with_name(f".tmp_{path.name}")
        (self.snapshot_model or self.model).save(tmp)
        os.replace(tmp, path)


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

    The optimizer's learning rate is the peak of every cycle; `fit` replaces it
    with the cyclic schedule once it knows the steps per epoch.

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
        steps_per_epoch = _steps_per_epoch(x, batch_size, kwargs.get("steps_per_epoch"))
        args = dict(self._compile_args)
        optimizer_config = args["optimizer"].get_config()
        optimizer_config["learning_rate"] = snapshot_schedule(
            float(optimizer_config["learning_rate"]), epochs, self.cycles, steps_per_epoch)
        args["optimizer"] = args["optimizer"].__class__.from_config(optimizer_config)
        self.model.compile(**args)
        collector = _SnapshotCollector(epochs_per_cycle)
        extra = [SnapshotSaver(self.directory, epochs_per_cycle)] if self.directory else []
        history = self.model.fit(x, y, epochs=epochs, batch_size=batch_size,
                                 callbacks=[*(callbacks or []), collector, *extra], **kwargs)
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


def _steps_per_epoch(x, batch_size, steps_per_epoch=None):
    if steps_per_epoch:
        return int(steps_per_epoch)
    if isinstance(x, keras.utils.PyDataset):
        return len(x)
    cardinality = getattr(x, "cardinality", None)  # a batched tf.data.Dataset
    if cardinality is not None:
        if int(cardinality()) > 0:
            return int(cardinality())
    elif isinstance(x, dict):
        return int(np.ceil(len(next(iter(x.values()))) / batch_size))
    elif hasattr(x, "__len__"):
        return int(np.ceil(len(x) / batch_size))
    raise resolve.bad_option("steps_per_epoch", steps_per_epoch,
                             "a number of steps when x has no length (a generator or an "
                             "infinite dataset)")
