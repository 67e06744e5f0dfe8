"""The benchmarks' harness: timing, taking turns, the machine header, a noise
warning, markdown and JSON output. Every `bench_*.py` uses it:

    report = benchlib.Report("bench_core overhead")   # the machine and its load, now
    ...                                                # measure (time_calls, turns, ...)
    report.table(["epoch", "core s", "plain s"], rows)
    report.finish(results, args.json)                  # footer, noise warning, JSON

Standard library only at import (Keras is imported inside `batch_timer`),
because some benchmarks must not load a Keras backend in their parent process:
bench_gpu.py imports PyTorch before TensorFlow (the other order crashed) and
bench_models.py measures every network in its own child process. The argparse
types are the project's (`zoo/cli/args.py`, loaded from its file: importing it
as part of the `zoo` package would load Keras).
"""

import importlib.util
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUSY_PCT = 10  # % of the machine's CPU taken by others that makes timings doubtful
LIBRARIES = ("tensorflow", "keras", "jax", "torch", "torchvision", "numpy")


def _cli_types():
    spec = importlib.util.spec_from_file_location("zoo_cli_args", ROOT / "zoo" / "cli" / "args.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


types = _cli_types()  # the project's argparse types: errors name the flag and what is accepted
positive_int = types.positive_int
comma_choices = types.comma_choices


# === timing ===

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


def turns(measures, rounds):
    """Runs every `measures[name]()` once per round, the order turning round by
    round (so a slow spell of a shared machine, or a warm cache, favours none);
    returns {name: [value of each round]}."""
    names = list(measures)
    values = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            values[name].append(measures[name]())
    return values


def spread(values):
    """(median, min, max) of a list of numbers."""
    return statistics.median(values), min(values), max(values)


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


# === the machine and its noise ===

def machine():
    """Cores, processor, Python, load and the versions of the libraries loaded."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    versions = {name: getattr(sys.modules[name], "__version__", None) for name in LIBRARIES
                if name in sys.modules}
    return {"cpu_cores": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "load_average": load, **versions}


def _machine_cpu_s():
    """(busy, steal) CPU seconds of the machine since boot from /proc/stat; None elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _own_cpu_s():
    """CPU seconds of this process and of the children it waited for."""
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


class CpuWatch:
    """Over the `with` blocks it wraps, the share of the machine's CPU taken by
    others: other processes, and the hypervisor's steal on a virtual machine.
    A share above a few percent means the timing was disturbed."""

    def __init__(self):
        self.wall = self.others = self.steal = 0.0
        self.available = _machine_cpu_s() is not None

    def __enter__(self):
        self._start = (time.perf_counter(), _own_cpu_s(), _machine_cpu_s())
        return self

    def __exit__(self, *exc):
        wall, own, machine_s = self._start
        end = _machine_cpu_s()
        self.wall += time.perf_counter() - wall
        if machine_s and end:
            self.others += max(0.0, (end[0] - machine_s[0]) - (_own_cpu_s() - own))
            self.steal += end[1] - machine_s[1]

    def percent(self, seconds):
        capacity = self.wall * (os.cpu_count() or 1)
        return round(100 * seconds / capacity, 1) if self.available and capacity else None


# === output ===

def markdown_table(header, rows):
    """A markdown table; numbers right-aligned, other columns left-aligned."""
    def align(column):
        return "---:" if all(isinstance(r[column], (int, float)) for r in rows) else "---"

    def cell(value):
        if isinstance(value, float):
            return f"{value:,.3g}" if abs(value) < 10 else f"{value:,.0f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    lines = ["| " + " | ".join(header) + " |",
             "| " + " | ".join(align(i) if rows else "---" for i in range(len(header))) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class Report:
    """One benchmark run's output: tables as they come, then a footer with the
    machine, the library versions, the wall time and the CPU others took
    (a warning when it is over `BUSY_PCT`), and the JSON file.

    Args:
        name: what is measured ("bench_core overhead").
    """

    def __init__(self, name):
        self.name = name
        self.start = time.perf_counter()
        self.load_start = machine()["load_average"]
        self.watch = CpuWatch().__enter__()

    def table(self, header, rows, note=None):
        print(markdown_table(header, rows))
        if note:
            print(f"\n{note}")
        print()

    def finish(self, results, json_path=None, args=None):
        """Prints the footer (stderr) and writes {name, args, machine, and the
        `results` dict's entries (or "results": a list)} to `json_path`;
        returns the machine header."""
        self.watch.__exit__(None, None, None)
        header = {**machine(), "seconds": time.perf_counter() - self.start,
                  "load_average_start": self.load_start,
                  "others_cpu_pct": self.watch.percent(self.watch.others),
                  "steal_cpu_pct": self.watch.percent(self.watch.steal)}
        versions = ", ".join(f"{name} {header[name]}" for name in LIBRARIES if header.get(name))
        print(f"{self.name}: {header['processor']} ({header['cpu_cores']} cores), {versions}; "
              f"{header['seconds']:.0f} s, load average {self.load_start or 0:.1f} at the start "
              f"and {header['load_average'] or 0:.1f} at the end", file=sys.stderr)
        busy = max(header["others_cpu_pct"] or 0, header["steal_cpu_pct"] or 0)
        if busy > BUSY_PCT:
            print(f"warning: other processes (or the hypervisor) took {busy:.0f}% of the "
                  "machine's CPU while this ran: the timings are noisy; rerun on a quiet "
                  "machine", file=sys.stderr)
        if json_path:
            settings = None if args is None else vars(args)
            body = results if isinstance(results, dict) else {"results": results}
            Path(json_path).write_text(json.dumps(
                {"name": self.name, "args": settings, "machine": header, **body}, indent=1,
                default=str) + "\n")
        return header
