"""The run directory: the one reader and writer of every artifact of a run.

    DIR/config.json      every setting (`TrainConfig`), the data source, the
                         normalization statistics, the model config
    DIR/metrics.json     per-epoch history, test figures, wall time, images/s;
                         written last: a run is finished when it exists
    DIR/model.keras      the trained model (an ensemble for ensemble runs)
    DIR/curves.png       loss and accuracy curves
    DIR/log.csv          the per-epoch log (appended to across resumes)
    DIR/checkpoints/     best.keras by the monitored metric
    DIR/snapshots/       snapshot_K.keras, one per cycle (snapshot ensembles)
    DIR/member_K/        member K's own run (independent ensembles)
    DIR/backup/          resume state while a run is unfinished
    DIR/lr_finder.png    the LR range test (`--lr find`)

Every file is written to a temporary name and renamed into place, so a reader
(or a run killed mid-write) never sees half a file.
"""

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np

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


def temporary_path(path):
    """A sibling of `path` to write before renaming into place; unique per
    process, so two writers never share a temporary file."""
    path = Path(path)
    return path.with_name(f".tmp{os.getpid()}_{path.name}")


def write_json(path, payload):
    """Writes JSON atomically: a reader never sees a half-written file."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        tmp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path):
    return json.loads(Path(path).read_text())


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (tuple, np.ndarray)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def save_model(model, path):
    """Saves a Keras model to `path` atomically (a temporary file, then a rename)."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
        """A run is finished once metrics.json exists and no resume state is left."""
        return self.metrics_path.exists() and not self.backup_dir.exists()

    def has_resume_state(self):
        return self.backup_dir.exists()

    def create(self):
        (self.path / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        return self

    def clear_log(self):
        self.log_path.unlink(missing_ok=True)

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

    def remove_backup(self):
        shutil.rmtree(self.backup_dir, ignore_errors=True)
