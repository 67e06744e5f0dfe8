"""The training core's own callbacks.

- `EpochStats`: learning rate, seconds and images/s in each epoch's logs.
- `RunBackup`: Keras' BackupAndRestore with every write atomic. Each epoch's
  weights (the model's and the optimizer's) go to a new file, then a small
  state file naming it is replaced atomically: a kill or a full disk at any
  moment leaves the previous good state. A damaged state is reported with what
  to do (`ResumeStateError`) instead of a crash, and the backup stays after
  `fit` until the run directory removes it (`RunDir.finish`).
- `RunLog`: Keras' CSVLogger, naming its file when a write fails.
- `BestCheckpoint`: Keras' ModelCheckpoint(save_best_only=True) written
  atomically, its best value kept across resumes.

Public Keras APIs only: `fit(initial_epoch=...)` resumes, `save_weights`,
`load_weights` and `optimizer.build` carry the state.
"""

import math
import time
from pathlib import Path

import keras

from zoo import atomic
from zoo.training import rundir

STATE = "state.json"


class ResumeStateError(RuntimeError):
    """The resume state of a run cannot be used; the message says what to do."""


class EpochStats(keras.callbacks.Callback):
    """Adds the learning rate, training seconds and training images/s to each
    epoch's logs (so CSVLogger and TensorBoard record them)."""

    def __init__(self, num_train):
        super().__init__()
        self.num_train = num_train

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._train_end = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        end = time.perf_counter()
        train_seconds = (self._train_end or end) - self._start
        logs["epoch_seconds"] = end - self._start
        logs["train_images_per_sec"] = self.num_train / train_seconds
        logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class RunLog(keras.callbacks.CSVLogger):
    """Keras' CSVLogger appending to `path` (a resumed run continues its log,
    trimmed by `RunDir.trim_log`), naming the file when a write fails (a full
    disk: the stream's error names none)."""

    def __init__(self, path):
        super().__init__(str(path), append=True)

    def on_epoch_end(self, epoch, logs=None):
        try:
            super().on_epoch_end(epoch, logs)
        except OSError as error:
            named = atomic.naming(error, self.filename)
            if named is error:
                raise
            raise named from error


class RunBackup(keras.callbacks.Callback):
    """The weights and optimizer state after every epoch, for resuming a killed run.

    Args:
        directory: the backup folder (`RunDir.backup_dir`).
        run_path: the run directory, named in error messages.
    """

    def __init__(self, directory, run_path=None):
        super().__init__()
        self.directory = Path(directory)
        self.run_path = Path(run_path) if run_path else self.directory.parent

    def _damaged(self, what, err):
        return ResumeStateError(
            f"the resume state in {self.directory} is damaged ({what}: {type(err).__name__}: "
            f"{err}); pass --overwrite to start the run in {str(self.run_path)!r} over, or "
            f"delete {self.directory} to restart it from epoch 1 with its settings")

    def restore(self, model):
        """Loads the last good state into `model`; returns the epochs it completed
        (0 without a backup), for `fit(initial_epoch=...)`."""
        state_path = self.directory / STATE
        if not state_path.exists():
            return 0
        try:
            state = rundir.read_json(state_path)
            epoch, weights = int(state["epoch"]), self.directory / state["weights"]
        except (ValueError, KeyError, TypeError) as err:
            raise self._damaged(state_path.name, err) from None
        if not weights.exists():
            raise self._damaged(weights.name, FileNotFoundError("missing"))
        try:
            if model.optimizer is not None and not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            model.load_weights(weights)
        except Exception as err:  # h5py and Keras raise many kinds for a bad file
            raise self._damaged(weights.name, err) from None
        return epoch

    def on_epoch_end(self, epoch, logs=None):
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"epoch_{epoch + 1}.weights.h5"
        with atomic.atomic_path(self.directory / name) as tmp:
            self.model.save_weights(tmp)
        rundir.write_json(self.directory / STATE, {"epoch": epoch + 1, "weights": name})
        for old in self.directory.glob("epoch_*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)


class BestCheckpoint(keras.callbacks.Callback):
    """Saves `model` to `path` whenever the monitored value improves, atomically.

    Args:
        path: the `.keras` file (`RunDir.checkpoint_path`).
        monitor: a log key such as "val_loss" (minimized) or "val_accuracy"
            (maximized: names with "acc").
        model: the model to save (default: the model being fitted; pass the
            inner model when fitting a wrapper such as an AugmentedModel).
        state_path: a JSON file keeping the best value, so a resumed run only
            replaces the checkpoint with a better one.
    """

    def __init__(self, path, monitor="val_loss", model=None, state_path=None):
        super().__init__()
        self.path, self.monitor = Path(path), monitor
        self.saved_model = model
        self.state_path = Path(state_path) if state_path else None
        self.sign = -1.0 if "acc" in monitor else 1.0
        self.best = math.inf

    def on_train_begin(self, logs=None):
        if self.state_path and self.state_path.exists():
            self.best = float(rundir.read_json(self.state_path)["best"])

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value) or self.sign * value >= self.best:
            return
        self.best = self.sign * float(value)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rundir.save_model(self.saved_model or self.model, self.path)
        if self.state_path:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            rundir.write_json(self.state_path, {"best": self.best, "epoch": epoch + 1,
                                                "monitor": self.monitor})
