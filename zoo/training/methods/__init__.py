"""Training methods as plug-ins: each is one module with a `Method` (its hooks:
the config check, the schedule, the optimizer, the fit, the callbacks, the
finished model; `base.py`), registered here, in the order their hooks run.

Adding a method: a module with its `Method` subclass, one line in `METHODS`
(and, when it has settings, a `TrainConfig` field and a flag in
`zoo.cli.train`); docs/architecture.md has a worked example.
"""

from zoo.training.config import TrainConfig
from zoo.training.methods.base import Method, RunState
from zoo.training.methods.calibrate import Calibrate
from zoo.training.methods.distill import Distill
from zoo.training.methods.ema import EMA
from zoo.training.methods.independent import Independent
from zoo.training.methods.snapshot import Snapshot
from zoo.training.methods.swa import SWA

METHODS = (Independent(), Snapshot(), EMA(), SWA(), Calibrate(), Distill())


def active(config):
    """The methods `config` switches on, in hook order."""
    return [method for method in METHODS if method.active(config)]


def validate(config):
    """Every method's check of `config` (each also refuses its settings when off)."""
    for method in METHODS:
        method.validate(config)


def job(config):
    """The active method that runs the whole job itself, or None."""
    return next((m for m in active(config) if m.train is not None), None)


def schedule(config, schedule, steps_per_epoch):
    for method in active(config):
        schedule = method.schedule(config, schedule, steps_per_epoch)
    return schedule


def optimizer(config, optimizer):
    for method in active(config):
        optimizer = method.optimizer(config, optimizer)
    return optimizer


TrainConfig.checks.append(validate)  # TrainConfig.validate runs the methods' checks

__all__ = ["METHODS", "Method", "RunState", "active", "job", "optimizer", "schedule", "validate"]
