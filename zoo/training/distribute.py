"""Scaling a training run out: mixed precision and data-parallel strategies.

`TrainConfig.precision` (`--precision`):
- ``float32``: the default.
- ``mixed_float16``: float16 compute, float32 variables (Micikevicius et al.
  2018, "Mixed Precision Training"); `compile` wraps the optimizer in a
  `keras.optimizers.LossScaleOptimizer` (dynamic loss scaling) by itself.
- ``mixed_bfloat16``: bfloat16 compute, float32 variables; no loss scaling
  needed (Ampere+ GPUs, TPUs).
Every zoo model's classifier computes in float32 (`zoo.base.output_dtype`), so
outputs and the loss stay float32.

`TrainConfig.strategy` (`--strategy`), data parallelism (synchronous, every
replica holds the whole model, the global `--batch-size` is split between
replicas and gradients are all-reduced):
- ``none``: one device.
- ``mirrored``: every local accelerator. TensorFlow backend:
  `tf.distribute.MirroredStrategy`; JAX backend:
  `keras.distribution.DataParallel` over `keras.distribution.list_devices()`.
- ``multiworker``: several machines (or processes). TensorFlow backend:
  `tf.distribute.MultiWorkerMirroredStrategy`, the cluster and this process'
  role from the `TF_CONFIG` environment variable; JAX backend:
  `keras.distribution.initialize()` (which reads
  `KERAS_DISTRIBUTION_JOB_ADDRESSES`, `KERAS_DISTRIBUTION_NUM_PROCESSES` and
  `KERAS_DISTRIBUTION_PROCESS_ID`, or lets `jax.distributed` detect the
  cluster) then `DataParallel` over every process' devices.
  Only the chief (TF_CONFIG task `chief`, else `worker` 0; process 0 under
  JAX) writes the run's artifacts to `--out`; the other workers write theirs
  to a private temporary directory that is removed when the run finishes.

`scaled` wraps `zoo.training.train`: it sets the precision policy and enters
the strategy's scope for the whole run (model, optimizer, metrics and the
augmentation wrapper are all built inside it), then restores the previous
policy and distribution. TensorFlow is imported only inside the functions
here: model code stays `keras`-only.
"""

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import keras

from zoo import resolve
from zoo.training import compat

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("none", "mirrored", "multiworker")
TF_CONFIG = "TF_CONFIG"

_strategies = {}   # one tf.distribute strategy per kind and process
_depth = [0]       # > 0 inside a `scaled` run (nested calls pass through)
_jax_initialized = [False]


def validate(config):
    """Checks `precision` and `strategy`; raises ValueError naming the option."""
    resolve.check_choice("precision", config.precision, PRECISIONS)
    resolve.check_choice("strategy", config.strategy, STRATEGIES)
    backend = keras.backend.backend()
    if config.strategy != "none" and backend not in ("tensorflow", "jax"):
        raise resolve.bad_option("strategy", config.strategy,
                                 f"'none' under KERAS_BACKEND={backend} (strategies need the "
                                 "tensorflow or jax backend)")
    if config.strategy == "multiworker" and backend == "tensorflow":
        cluster = read_tf_config()
        if not cluster:
            raise resolve.bad_option("strategy", "multiworker", (
                f"the cluster in the {TF_CONFIG} environment variable, e.g. "
                '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}, or --strategy mirrored/none'))
        task = cluster.get("task", {})
        if task.get("type") not in cluster.get("cluster", {}):
            raise resolve.bad_option("strategy", "multiworker",
                                     f"a {TF_CONFIG} whose task type is one of its cluster's jobs")
    return config


def read_tf_config():
    """The parsed TF_CONFIG environment variable ({} when unset)."""
    text = os.environ.get(TF_CONFIG, "").strip()
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise resolve.bad_option(TF_CONFIG, text, "JSON with 'cluster' and 'task'") from None


def is_chief(tf_config=None):
    """Whether this process writes the run's artifacts: the TF_CONFIG task of
    type `chief`, else `worker` 0 when the cluster has no chief (TensorFlow's
    convention); no TF_CONFIG means a single process, the chief."""
    tf_config = read_tf_config() if tf_config is None else tf_config
    if not tf_config:
        return True
    task = tf_config.get("task", {})
    kind, index = task.get("type"), int(task.get("index", 0))
    if kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in tf_config.get("cluster", {})


def worker_share(strategy):
    """(workers, this worker's index) of a multi-worker run, for reading a
    disjoint share of a streamed dataset; None for a single process."""
    if strategy != "multiworker":
        return None
    if keras.backend.backend() == "jax":
        import jax

        return (jax.process_count(), jax.process_index()) if jax.process_count() > 1 else None
    tf_config = read_tf_config()
    cluster = tf_config.get("cluster", {})
    tasks = [("chief", i) for i in range(len(cluster.get("chief", [])))] + [
        ("worker", i) for i in range(len(cluster.get("worker", [])))]
    task = tf_config.get("task", {})
    mine = (task.get("type"), int(task.get("index", 0)))
    if len(tasks) < 2 or mine not in tasks:
        return None
    return len(tasks), tasks.index(mine)


@contextlib.contextmanager
def precision_policy(precision):
    """Sets the global dtype policy for the block and restores the previous one."""
    resolve.check_choice("precision", precision, PRECISIONS)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def tf_strategy(kind):
    """The process' `tf.distribute` strategy of `kind` (created once: a
    MultiWorkerMirroredStrategy can only be set up once per process)."""
    import tensorflow as tf

    if kind not in _strategies:
        if kind == "mirrored":
            _strategies[kind] = tf.distribute.MirroredStrategy()
        else:
            compat.patch_keras_for_multiworker()
            _strategies[kind] = tf.distribute.MultiWorkerMirroredStrategy()
    return _strategies[kind]


@contextlib.contextmanager
def distribution(kind):
    """Runs the block under the data-parallel `kind` (STRATEGIES).

    Yields whether this process is the chief (writes the artifacts).
    """
    resolve.check_choice("strategy", kind, STRATEGIES)
    if kind == "none":
        yield True
    elif keras.backend.backend() == "tensorflow":
        with tf_strategy(kind).scope():
            yield is_chief() if kind == "multiworker" else True
    else:  # jax: Keras' own distribution API
        chief = True
        if kind == "multiworker":
            if not _jax_initialized[0]:
                keras.distribution.initialize()
                _jax_initialized[0] = True
            import jax

            chief = jax.process_index() == 0
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=keras.distribution.list_devices()))
        try:
            yield chief
        finally:
            keras.distribution.set_distribution(previous)


def worker_dir(out):
    """A non-chief worker's private output directory for the run `out`: the
    same on every retry (so BackupAndRestore resumes it), outside `out`."""
    task = read_tf_config().get("task", {})
    digest = hashlib.sha1(str(Path(out).resolve()).encode()).hexdigest()[:10]
    label = f"{task.get('type', 'worker')}{task.get('index', os.getpid())}"
    return Path(tempfile.gettempdir()) / f"zoo-{label}-{digest}"


def scaled(train):
    """Decorates `train(config)`: precision policy and strategy for the whole run."""

    @functools.wraps(train)
    def wrapper(config):
        if _depth[0] or (config.precision == "float32" and config.strategy == "none"):
            return train(config)
        config.validate()
        _depth[0] += 1
        try:
            with precision_policy(config.precision), distribution(config.strategy) as chief:
                if chief:
                    return train(config)
                private = worker_dir(config.out)
                metrics = train(dataclasses.replace(config, out=str(private), overwrite=True))
                shutil.rmtree(private, ignore_errors=True)
                return metrics
        finally:
            _depth[0] -= 1

    return wrapper
