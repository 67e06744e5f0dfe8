"""What the benchmark scripts share: timers, rates and a machine header.

Stdlib only at import (Keras is imported inside `batch_timer`), because two
benchmarks must not load a Keras backend in their parent process:
bench_gpu.py imports PyTorch before TensorFlow (the other order crashed) and
bench_models.py measures every network in its own child process. The
argparse types here are the stdlib ones those two need; every other script
uses `zoo.cli.args`.
"""

import argparse
import os
import platform
import statistics
import time


def time_calls(fn, repeats, warmup=2):
    """Seconds of each of `repeats` calls of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_rate(seconds, items):
    """Items per second of the median duration (None without durations)."""
    return items / statistics.median(seconds) if seconds else None


def batch_timer():
    """A Keras callback recording when each train and predict batch ends;
    `step_seconds(mode)` gives the duration of every batch after the first."""
    import keras

    class BatchTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends = {"train": [], "predict": []}

        def on_train_begin(self, logs=None):
            self.ends["train"] = [time.perf_counter()]

        def on_predict_begin(self, logs=None):
            self.ends["predict"] = [time.perf_counter()]

        def on_train_batch_end(self, batch, logs=None):
            self.ends["train"].append(time.perf_counter())

        def on_predict_batch_end(self, batch, logs=None):
            self.ends["predict"].append(time.perf_counter())

        def step_seconds(self, mode, skip=1):
            """Seconds of each batch, leaving out the first `skip` (tracing)."""
            ends = self.ends[mode]
            return [b - a for a, b in zip(ends, ends[1:])][skip:]

    return BatchTimer()


def machine():
    """Cores, processor and load of this machine, for a benchmark's header."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu_cores": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "load_average": load}


def positive_int(text):
    """argparse type: an integer >= 1 (as `zoo.cli.args.positive_int`)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not accepted; expected an integer >= 1")
    return value


def comma_list(allowed, option):
    """argparse type: a comma-separated list of names from `allowed`."""
    def parse(text):
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if v not in allowed]
        if not values or bad:
            raise argparse.ArgumentTypeError(
                f"{option}={text!r} is not accepted; expected a comma-separated list of: "
                + ", ".join(allowed))
        return values
    return parse
