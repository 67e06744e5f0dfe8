"""The run directory: the one reader and writer of every artifact of a run.

    DIR/config.json      every setting (`TrainConfig`), the data source, the
                         normalization statistics, the model config
    DIR/metrics.json     per-epoch history, test figures, wall time, images/s;
                         written last: a run is finished when it exists
    DIR/model.keras      the trained model (an ensemble for ensemble runs); it
                         carries its input contract (`zoo.contract`): raw
                         images in, class names; `load_model` reads it
    DIR/curves.png       loss and accuracy curves
    DIR/reliability.png  accuracy against confidence on the test set (calibration)
    DIR/log.csv          the per-epoch log (appended to across resumes)
    DIR/checkpoints/     best.keras by the monitored metric
    DIR/snapshots/       snapshot_K.keras, one per cycle (snapshot ensembles)
    DIR/member_K/        member K's own run (independent ensembles)
    DIR/backup/          resume state while a run is unfinished
    DIR/lr_finder.png    the LR range test (`--lr find`)
    DIR/.lock            held by the process running in DIR

The promises (docs/training.md#the-run-directory):
- One commit point: a run is finished when, and only when, metrics.json exists;
  everything it refers to is written before it, and the resume state is
  removed only after it (`finish`).
- Every file is written to a temporary name and renamed into place, so a
  reader (or a run killed mid-write, or a full disk) never sees half a file.
- `--overwrite` starts clean: the earlier run's artifacts are deleted before
  anything new is written (`clear`), so a run never combines files it did not
  write.
- One run per directory: an OS file lock (`lock`), released when the process
  ends however it ends; a second run is refused with the holder's process id.
- A resume must be the same run: an unfinished run with other settings is
  refused (`check_resumable`), a damaged backup is reported with what to do.
"""

import contextlib
import csv
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from augment import datasets
from zoo import atomic, resolve
from zoo.training import plots
from zoo.training.config import TrainConfig

CONFIG = "config.json"
METRICS = "metrics.json"
MODEL = "model.keras"
CURVES = "curves.png"
LOG = "log.csv"
CHECKPOINTS = "checkpoints"
BEST = "best.keras"
SNAPSHOTS = "snapshots"
BACKUP = "backup"
LR_FINDER_PLOT = "lr_finder.png"
RELIABILITY = "reliability.png"
LOCK = ".lock"
# Everything a run writes; `clear` deletes these (and member_*/) and nothing else.
ARTIFACTS = (CONFIG, METRICS, MODEL, CURVES, LOG, CHECKPOINTS, SNAPSHOTS, BACKUP,
             LR_FINDER_PLOT, RELIABILITY, "tensorboard", "model.pre-contract.keras")
# Settings a resumed run may change: how it reports, not what it computes.
RESUME_MAY_CHANGE = ("verbose", "overwrite", "tensorboard", "data_dir", "out", "check",
                     "monitor", "jit_compile", "data_cache", "data_service")


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked; the message says what to do."""


def write_json(path, payload):
    """Writes JSON atomically: a reader never sees a half-written file."""
    atomic.write_json(path, payload, default=_json_default)


def read_json(path):
    return json.loads(Path(path).read_text())


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (tuple, np.ndarray)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def save_model(model, path):
    """Saves a Keras model to `path` atomically (a temporary file, then a rename);
    a wrapper never called yet (an ensemble) is built on one blank image first."""
    if not model.built:
        from zoo.contract import model_input_shape

        model(np.zeros((1, *model_input_shape(model)), "uint8"))
    with atomic.atomic_path(path) as tmp:
        model.save(tmp)


# Models written before they carried their input contract are upgraded once
# (`load_model`); the file as it was is kept beside, under this suffix.
PRE_CONTRACT_SUFFIX = ".pre-contract.keras"
# The raw images of the named datasets, which those runs' config.json left out.
LEGACY_IMAGE_SHAPES = {"mnist": (28, 28, 1), "mnist_sample": (28, 28, 1),
                       "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3),
                       "cifar100": (32, 32, 3)}
LEGACY_CLASS_NAMES = {"mnist": datasets.MNIST_CLASSES, "mnist_sample": datasets.MNIST_CLASSES,
                      "fashion_mnist": datasets.FASHION_MNIST_CLASSES,
                      "cifar10": datasets.CIFAR10_CLASSES}


def load_model(path, log=print):
    """A model the toolkit wrote, ready to take raw images (uint8, or floats
    in 0-255): a `zoo.contract.Classifier`, an ensemble or a wrapper of them.

    An `augment.AugmentedModel` gives the model inside it. A model written
    before the models carried their input contract (a bare network on
    normalized input) is upgraded once from the config.json of its run: the
    file is replaced by the same network with its contract (the original kept
    as NAME.pre-contract.keras), said in one line; its predictions on raw
    images are those of the old path (pad, normalize, predict).

    Raises:
        ValueError: not an existing file, or not a Keras model archive.
    """
    import keras

    from augment.pipelines import AugmentedModel
    from zoo.contract import Classifier, contract_of

    path = Path(path)
    if not path.is_file():
        raise resolve.bad_option("model", str(path), "an existing .keras file")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # a damaged or foreign archive: zip, JSON or h5py errors
        raise resolve.bad_option("model", str(path), (
            "a model saved as .keras (it does not load: "
            f"{type(error).__name__}: {str(error).splitlines()[0][:200]})")) from None
    if isinstance(model, AugmentedModel):
        model = model.model
    if contract_of(model) is not None:
        return model
    contract = legacy_contract(path)
    if contract is None:
        return model
    model = Classifier(model, contract)
    backup = path.with_name(path.name[:-len(".keras")] + PRE_CONTRACT_SUFFIX)
    try:
        if not backup.exists():
            shutil.copy2(path, backup)
        save_model(model, path)
        done = f"upgraded in place (the original kept as {backup.name})"
    except OSError as error:
        done = f"upgraded in memory only ({error.strerror or error})"
    log(f"{path}: a model from before the input contract; {done}: it now takes raw images, "
        f"normalized as its run's config.json says", file=sys.stderr)
    return model


def recorded_data_dir(*paths):
    """Where the run of a model file found its data (config.json's `data_dir`,
    beside the file or one folder up), for tools that need its dataset again:
    the first of `paths` that has one, else None. Only a default: the model's
    contract names the dataset, `--data-dir` says where it is."""
    for path in paths:
        path = Path(path)
        for folder in (path.parent, path.parent.parent):
            stored = RunDir(folder).read_config() or {}
            if stored.get("data_dir"):
                return stored["data_dir"]
    return None


def legacy_contract(path):
    """The `InputContract` of a model written before models carried it, from
    the config.json of its run (beside it, or one folder up for
    checkpoints/, snapshots/), or None when there is none."""
    from zoo.contract import InputContract

    path = Path(path)
    for folder in (path.parent, path.parent.parent):
        stored = RunDir(folder).read_config()
        if stored and "normalization" in stored:
            break
    else:
        return None
    dataset = stored.get("dataset")
    weights = stored.get("weights")
    network = stored.get("input_shape") or [None, None, len(stored["normalization"]["mean"])]
    shape = LEGACY_IMAGE_SHAPES.get(dataset, tuple(network))
    classes = stored.get("classes")
    names = LEGACY_CLASS_NAMES.get(dataset)
    if names and classes:
        names = [names[c] for c in classes]
    if None in shape:
        return None
    return InputContract(shape, stored["normalization"]["mean"], stored["normalization"]["std"],
                         fit="resize" if weights else "pad", class_names=names,
                         dataset=dataset, classes=classes)


def read_history(csv_path):
    """The per-epoch log as {column: [values]}, across resumed runs."""
    csv_path = Path(csv_path)
    if not csv_path.exists():
        return {}
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    # CSVLogger writes "NA" for the val_ columns of a run without validation data.
    return {key: [float(r[key]) for r in rows if r.get(key) not in (None, "", "NA")]
            for key in rows[0]} if rows else {}


class RunDir:
    """One run's directory and its artifacts.

    Args:
        path: the directory (`--out`).
    """

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self):
        return f"RunDir({str(self.path)!r})"

    # === Paths ===

    def file(self, name):
        return self.path / name

    @property
    def config_path(self):
        return self.path / CONFIG

    @property
    def metrics_path(self):
        return self.path / METRICS

    @property
    def model_path(self):
        return self.path / MODEL

    @property
    def log_path(self):
        return self.path / LOG

    @property
    def backup_dir(self):
        return self.path / BACKUP

    @property
    def checkpoint_path(self):
        return self.path / CHECKPOINTS / BEST

    @property
    def snapshots_dir(self):
        return self.path / SNAPSHOTS

    def member(self, index):
        """Member `index`'s own run directory (independent ensembles)."""
        return RunDir(self.path / f"member_{index}")

    # === State ===

    def is_finished(self):
        """A run is finished once metrics.json exists (it is written last)."""
        return self.metrics_path.exists()

    def has_resume_state(self):
        return self.backup_dir.exists()

    def holds_artifacts(self):
        return any((self.path / name).exists() for name in ARTIFACTS) or any(
            self.path.glob("member_*"))

    def create(self):
        (self.path / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        return self

    def clear(self):
        """Deletes the artifacts of an earlier run (files of other programs stay)."""
        for name in ARTIFACTS:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        for member in self.path.glob("member_*"):
            shutil.rmtree(member) if member.is_dir() else member.unlink()
        self.remove_temporaries()

    def remove_temporaries(self):
        """Deletes the half-written files a killed process left (`zoo.atomic`);
        call it holding `lock`, so no writer is using them."""
        pattern = f"{atomic.TEMPORARY_PREFIX}*"
        found = list(self.path.glob(pattern))
        for folder in (CHECKPOINTS, SNAPSHOTS, BACKUP, "member_*"):
            for inner in self.path.glob(folder):
                found += inner.rglob(pattern) if inner.is_dir() else []
        for tmp in found:
            if tmp.is_file():
                tmp.unlink(missing_ok=True)

    def check_start(self, overwrite=False):
        """Raises when a run cannot start here; reads only, so it can run before
        anything is loaded or written. A finished run needs `overwrite`."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"out={str(self.path)!r} is not accepted; expected a directory "
                              "(it is a file): choose another --out")
        if self.is_finished() and not overwrite:
            raise FileExistsError(
                f"out={str(self.path)!r} already holds a finished run (metrics.json); pass "
                "--overwrite to replace it or choose another --out")

    def start(self, overwrite=False):
        """Makes the directory ready for a run (call it holding `lock`): checks as
        `check_start`, deletes the earlier run's artifacts with `overwrite`.
        Returns True when an unfinished run's resume state is there to continue."""
        self.check_start(overwrite)
        if overwrite:
            self.clear()
        self.remove_temporaries()
        self.create()
        return self.has_resume_state()

    def start_fresh(self, overwrite=False):
        """For one-shot outputs (a combination of runs, a fine-tuned model): any
        earlier artifact is refused unless `overwrite`, which deletes them first
        (call it holding `lock`)."""
        self.check_start(overwrite=True)
        if self.holds_artifacts():
            if not overwrite:
                raise FileExistsError(
                    f"out={str(self.path)!r} already holds a run's files ("
                    + ", ".join(sorted(n for n in ARTIFACTS if (self.path / n).exists()))
                    + "); pass --overwrite to replace them or choose another --out")
            self.clear()
        self.path.mkdir(parents=True, exist_ok=True)

    def check_resumable(self, config):
        """Raises RunDirError unless config.json (if any) describes `config`,
        apart from `RESUME_MAY_CHANGE`; a resume continues the same run."""
        stored = self.read_config()
        if stored is None:
            return
        try:
            before = TrainConfig.from_dict(stored)
        except TypeError as err:
            raise RunDirError(f"{self.config_path} is not a training run's config ({err}); "
                              "pass --overwrite to start over") from None
        differences = []
        for field in dataclasses.fields(TrainConfig):
            name = field.name
            old, new = getattr(before, name), getattr(config, name)
            if name in RESUME_MAY_CHANGE or (name == "lr" and new == "find"):
                continue
            if old != new:
                differences.append(f"{name}: {old!r} there, {new!r} now")
        if differences:
            raise RunDirError(
                f"out={str(self.path)!r} holds an unfinished run with other settings ("
                + "; ".join(differences) + "); run the same command to resume it, or pass "
                "--overwrite to start over")

    @contextlib.contextmanager
    def lock(self):
        """Holds `DIR/.lock` for the block: an OS lock, released when the process
        exits however it exits (no stale lock). A second holder is refused."""
        self.check_start(overwrite=True)  # a file in the way is named, not a bare Errno 17
        self.path.mkdir(parents=True, exist_ok=True)
        with _FileLock(self.path / LOCK) as holder:
            if holder is not None:
                raise RunDirError(
                    f"out={str(self.path)!r} is in use by another run (process {holder}); "
                    "wait for it to finish or choose another --out")
            yield self

    def clear_log(self):
        self.log_path.unlink(missing_ok=True)

    def finish(self):
        """After metrics.json: the resume state is no longer needed."""
        self.remove_backup()

    def trim_log(self, epochs):
        """Keeps the log rows of the first `epochs` epochs: a resumed run redoes
        the epoch a kill interrupted, whose row may have been written already."""
        if not self.log_path.exists():
            return
        with open(self.log_path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        header, body = rows[0], rows[1:]
        kept = [r for r in body if len(r) == len(header) and r[0].isdigit()
                and int(r[0]) < epochs]
        with atomic.atomic_path(self.log_path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([header, *kept])

    # === Artifacts ===

    def write_config(self, config, **facts):
        """config.json: the `TrainConfig`'s settings (None for a run that has
        none, such as a combination of runs) plus the facts of the run."""
        write_json(self.config_path, {**(config.to_dict() if config else {}), **facts})

    def read_config(self):
        """config.json as a dict (None when there is none)."""
        return read_json(self.config_path) if self.config_path.exists() else None

    def read_train_config(self):
        """The `TrainConfig` of config.json."""
        return TrainConfig.from_dict(read_json(self.config_path))

    def write_metrics(self, metrics):
        write_json(self.metrics_path, metrics)

    def read_metrics(self):
        return read_json(self.metrics_path)

    def save_model(self, model, name=MODEL):
        save_model(model, self.path / name)

    def history(self):
        return read_history(self.log_path)

    def plot_curves(self, history):
        if history:
            plots.plot_curves(history, self.path / CURVES, title=self.path.name)

    def plot_reliability(self, curves):
        plots.plot_reliability(curves, self.path / RELIABILITY,
                               title=f"{self.path.name}: reliability on the test set")

    def remove_backup(self):
        shutil.rmtree(self.backup_dir, ignore_errors=True)


class _FileLock:
    """An exclusive lock on `path` for a `with` block: `fcntl.flock` (released by
    the OS when the process dies), else a pid file checked for a live holder.
    Entering yields None when the lock is taken, else the holder's pid."""

    def __init__(self, path):
        self.path = Path(path)
        self.fd = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # not POSIX
            fcntl = None
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(self.fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(self.fd)
                self.fd = None
                return holder
        else:
            holder = os.read(self.fd, 32).decode(errors="replace").strip()
            if holder.isdigit() and int(holder) != os.getpid() and _alive(int(holder)):
                os.close(self.fd)
                self.fd = None
                return holder
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.write(self.fd, str(os.getpid()).encode())
        return None

    def __exit__(self, *exc):
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # releases the flock
            self.fd = None
        return False


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
