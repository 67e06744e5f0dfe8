"""Training and inference speed and peak memory of every family on this machine,
next to keras.applications VGG16 and ResNet50 measured in the same run.

    python scripts/bench_models.py                      # every family, jit off and on
    python scripts/bench_models.py --models vgg16,keras_vgg16 --jit off --steps 10
    python scripts/bench_models.py --quick              # a smoke run of a few seconds per model
    python scripts/bench_models.py --json runs/bench.json

Each measurement (model, input, batch, jit) runs in a fresh subprocess, so its
peak resident memory (`ru_maxrss`, which includes the ~0.7 GB of TensorFlow
itself) belongs to that measurement alone. A measurement builds the model,
compiles it (SGD momentum 0.9, lr 0.01, categorical cross-entropy, `jit_compile`
as asked), runs a warm-up `fit` that traces/compiles the train step, then times
a second `fit` on synthetic float32 data (10 classes, one-hot labels); the
same for `predict`. The timed call runs `--steps` + 1 batches and the clock
starts at the end of the first, so neither tracing nor the input pipeline's
start-up counts; images/s is the batch over the median step time, which a
stray hiccup on a busy machine barely moves. Inference uses the same
`jit_compile`.

ImageNet-geometry models (alexnet, vgg16, googlenet, resnet50 and the two
keras.applications models) run at `--input-size` x `--input-size` x 3 with
`--batch-size`, raised to a model's minimum side where it has one (alexnet 64,
googlenet with auxiliary classifiers 80); lenet5 (32x32x1), resnet20 and the
optional CIFAR variants the recipes train (alexnet_cifar, vgg16_cifar,
googlenet_cifar; 32x32x3) run at their own input with `--small-batch-size`.

The machine may be shared: each measurement records the share of the CPU that
other processes and the hypervisor (steal) took while it was timed, runs again
(`--retries`) when that passes 10%, and the table marks rows that stayed
disturbed. `--repeats N` runs everything N times round-robin and keeps the
fastest undisturbed run of each.

Stdout gets a markdown table (ready for the README), the ratios ours /
keras.applications per jit setting, and the fastest jit setting for training
per model; progress goes to stderr.
"""

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import benchlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RESULT_PREFIX = "BENCH_RESULT "
NOISY_PCT = benchlib.BUSY_PCT  # % of the CPU others took while timing that marks a row
NUM_CLASSES = 10
LR, MOMENTUM = 0.01, 0.9  # SGD, as the paper recipes use
# zoo.training.config.JIT_CHOICES -> compile(jit_compile=...); kept here so the parent process
# never imports TensorFlow (a test checks the two agree).
JIT_VALUES = {"auto": "auto", "on": True, "off": False}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One benchmarked model.

    Args:
        label: the name in the table.
        source: "zoo" or "keras.applications".
        model: the registered zoo name or the keras.applications function.
        options: keyword arguments for the builder.
        geometry: "imagenet" (runs at --input-size) or "small" (its own 32x32 input).
        channels: input channels.
        min_size: smallest input side the model accepts.
    """

    label: str
    source: str
    model: str
    options: dict = dataclasses.field(default_factory=dict)
    geometry: str = "imagenet"
    channels: int = 3
    min_size: int = 32

    def input_shape(self, input_size):
        side = 32 if self.geometry == "small" else max(input_size, self.min_size)
        return [side, side, self.channels]

    def build(self, input_shape):
        if self.source == "zoo":
            import zoo

            return zoo.create_model(self.model, num_classes=NUM_CLASSES,
                                    input_shape=tuple(input_shape), **self.options)
        import keras

        return getattr(keras.applications, self.model)(
            weights=None, include_top=True, input_shape=tuple(input_shape), classes=NUM_CLASSES,
            **self.options,
        )


ENTRIES = {e.label: e for e in (
    Entry("lenet5", "zoo", "lenet5", geometry="small", channels=1),
    Entry("alexnet", "zoo", "alexnet", min_size=64),
    Entry("vgg16", "zoo", "vgg16", {"batch_norm": False, "dropout": 0.0}),
    Entry("vgg16_bn", "zoo", "vgg16", {"batch_norm": True}),
    Entry("keras_vgg16", "keras.applications", "VGG16"),
    Entry("googlenet", "zoo", "googlenet", {"aux_logits": False}),
    Entry("googlenet_aux", "zoo", "googlenet", {"aux_logits": True}, min_size=80),
    Entry("resnet50", "zoo", "resnet50"),
    Entry("resnet50_v1", "zoo", "resnet50", {"stride_in_1x1": True}),
    Entry("keras_resnet50", "keras.applications", "ResNet50"),
    Entry("resnet20", "zoo", "resnet20", geometry="small"),
    # The CIFAR variants the training recipes use (not in the default list).
    Entry("alexnet_cifar", "zoo", "alexnet_cifar", geometry="small"),
    Entry("vgg16_cifar", "zoo", "vgg16_cifar", geometry="small"),
    Entry("googlenet_cifar", "zoo", "googlenet_cifar", geometry="small"),
)}
DEFAULT_MODELS = ("lenet5", "alexnet", "vgg16", "vgg16_bn", "keras_vgg16", "googlenet",
                  "resnet50", "resnet50_v1", "keras_resnet50", "resnet20")
# (keras.applications name, ours, theirs, what differs)
PAIRS = (
    ("VGG16", "vgg16", "keras_vgg16", "zoo vgg16 batch_norm=False, dropout=0: the same layers"),
    ("VGG16", "vgg16_bn", "keras_vgg16", "zoo vgg16 with batch norm: more work, for reference"),
    ("ResNet50", "resnet50_v1", "keras_resnet50", "zoo resnet50 stride_in_1x1=True: Keras' "
     "v1 layout, without conv biases before BN"),
    ("ResNet50", "resnet50", "keras_resnet50", "zoo resnet50 is v1.5 (stride on the 3x3, no conv "
     "biases), Keras' is v1 (stride on the first 1x1, conv biases)"),
)
DEFAULTS = dict(models=",".join(DEFAULT_MODELS), input_size=64, batch_size=16,
                small_batch_size=128, steps=5, jit="off,on", retries=1)
QUICK = dict(models="lenet5,resnet20,vgg16,keras_vgg16", input_size=32, batch_size=4,
             small_batch_size=4, steps=2, jit="off", retries=0)


# --- the worker: one measurement in this process ----------------------------------------

def peak_rss_mb():
    """This process's peak resident memory in MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 2 ** 10


def measure(spec):
    """Builds, compiles, warms up and times one model; returns a JSON-able dict."""
    import keras
    import numpy as np

    baseline_mb = peak_rss_mb()
    entry = ENTRIES[spec["entry"]]
    shape, batch, steps = spec["input_shape"], spec["batch_size"], spec["steps"]
    keras.utils.set_random_seed(spec["seed"])

    start = time.perf_counter()
    model = entry.build(shape)
    build_s = time.perf_counter() - start
    model.compile(optimizer=keras.optimizers.SGD(LR, momentum=MOMENTUM),
                  loss="categorical_crossentropy", jit_compile=JIT_VALUES[spec["jit"]])

    # One batch more than timed: the clock starts at the end of the first batch.
    n = (steps + 1) * batch
    rng = np.random.default_rng(spec["seed"])
    x = rng.standard_normal((n, *shape), dtype=np.float32)
    y = keras.utils.to_categorical(rng.integers(0, NUM_CLASSES, n), NUM_CLASSES).astype("float32")
    timer, watch = benchlib.batch_timer(), benchlib.CpuWatch()

    start = time.perf_counter()
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)
    train_warmup_s = time.perf_counter() - start
    with watch:
        model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
    train_ms = step_ms(timer, "train", steps)
    train_peak_mb = peak_rss_mb()

    start = time.perf_counter()
    model.predict(x[:batch], batch_size=batch, verbose=0)
    infer_warmup_s = time.perf_counter() - start
    with watch:
        model.predict(x, batch_size=batch, verbose=0, callbacks=[timer])
    infer_ms = step_ms(timer, "predict", steps)

    import tensorflow as tf

    return {
        "model": entry.label, "source": entry.source, "builder": entry.model,
        "options": entry.options, "input_shape": list(shape), "batch_size": batch,
        "steps": steps, "dtype": "float32", "jit": spec["jit"],
        "jit_compile": bool(model.jit_compile), "params": int(model.count_params()),
        "train_images_per_sec": 1000 * batch / float(np.median(train_ms)),
        "infer_images_per_sec": 1000 * batch / float(np.median(infer_ms)),
        "train_step_ms": train_ms, "infer_step_ms": infer_ms,
        "build_s": build_s, "train_warmup_s": train_warmup_s, "infer_warmup_s": infer_warmup_s,
        "others_cpu_pct": watch.percent(watch.others),
        "steal_cpu_pct": watch.percent(watch.steal), "baseline_rss_mb": baseline_mb,
        "train_peak_rss_mb": train_peak_mb,
        "peak_rss_mb": peak_rss_mb(), "backend": keras.backend.backend(),
        "keras_version": keras.__version__, "tensorflow_version": tf.__version__,
    }


def step_ms(timer, mode, steps):
    """Milliseconds of each batch after the first (the clock starts there)."""
    seconds = timer.step_seconds(mode)
    if len(seconds) != steps:
        raise RuntimeError(f"{mode} ran {len(seconds) + 1} batches, expected {steps + 1}")
    return [1000 * s for s in seconds]


def worker(spec_json):
    result = measure(json.loads(spec_json))
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# --- the parent: one subprocess per measurement, then the report -------------------------

def run_one(spec, timeout):
    """Runs `spec` in a fresh interpreter; returns its result or an error record."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    failed = {"model": spec["entry"], "input_shape": spec["input_shape"],
              "batch_size": spec["batch_size"], "steps": spec["steps"], "jit": spec["jit"]}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**failed, "error": f"timed out after {timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {**failed, "error": f"exit {proc.returncode}: " + " | ".join(tail)}


def best_of(runs):
    """One row per (model, jit), in the order first run: the fastest of its
    undisturbed runs (of all its runs when every one was disturbed), with every
    run's images/s kept alongside."""
    groups = {}
    for r in runs:
        groups.setdefault((r["model"], r["jit"]), []).append(r)
    rows = []
    for group in groups.values():
        ok = [r for r in group if "error" not in r]
        if not ok:
            rows.append(group[-1])
            continue
        chosen = [r for r in ok if not disturbed(r)] or ok
        row = dict(max(chosen, key=lambda r: r["train_images_per_sec"]))
        row["infer_images_per_sec"] = max(r["infer_images_per_sec"] for r in chosen)
        for key in ("train_images_per_sec", "infer_images_per_sec"):
            row[f"{key}_runs"] = [r[key] for r in ok]
        row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
        row["runs"] = len(ok)
        rows.append(row)
    return rows


def disturbed(r):
    """The CPU share others took while this row was timed, if above NOISY_PCT."""
    share = (r.get("others_cpu_pct") or 0) + (r.get("steal_cpu_pct") or 0)
    return share if share > NOISY_PCT else None


def fmt(value, digits=1):
    return "failed" if value is None else f"{value:,.{digits}f}"


def table(results):
    rows = ["| model | input | batch | jit | train img/s | infer img/s | peak MB | params (M) |",
            "|---|---|---|---|---:|---:|---:|---:|"]
    for r in results:
        options = ", ".join(f"{k}={v}" for k, v in r.get("options", {}).items())
        name = f"{r['model']} ({options})" if options else r["model"]
        if r.get("source") == "keras.applications":
            name = f"{r['model']} (keras.applications)"
        params, mark = r.get("params"), " †" if disturbed(r) else ""
        rows.append(
            f"| {name} | {'x'.join(map(str, r['input_shape']))} | {r['batch_size']} | {r['jit']} "
            f"| {fmt(r.get('train_images_per_sec'))}{mark} "
            f"| {fmt(r.get('infer_images_per_sec'))}{mark} "
            f"| {fmt(r.get('peak_rss_mb'), 0)} | {fmt(params and params / 1e6, 2)} |"
        )
    return "\n".join(rows)


def ratios(results):
    """ours / keras.applications images/s for each pair and jit setting measured."""
    found = {(r["model"], r["jit"]): r for r in results if "error" not in r}
    out = []
    for keras_name, ours, theirs, note in PAIRS:
        for jit in dict.fromkeys(r["jit"] for r in results):
            a, b = found.get((ours, jit)), found.get((theirs, jit))
            if a and b:
                out.append({
                    "keras_model": keras_name, "ours": ours, "theirs": theirs, "jit": jit,
                    "train": a["train_images_per_sec"] / b["train_images_per_sec"],
                    "infer": a["infer_images_per_sec"] / b["infer_images_per_sec"], "note": note,
                })
    return out


def fastest_jit(results):
    """For each model, the jit setting with the most training images/s and the others' share."""
    by_model = {}
    for r in results:
        if "error" not in r:
            by_model.setdefault(r["model"], {})[r["jit"]] = r["train_images_per_sec"]
    out = {}
    for model, speeds in by_model.items():
        best = max(speeds, key=speeds.get)
        out[model] = {"fastest": best, "relative": {j: s / speeds[best] for j, s in speeds.items()}}
    return out


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def report(results, settings, seconds):
    """The text for stdout; `results` has one row per (model, jit) (see `best_of`)."""
    ok = [r for r in results if "error" not in r]
    versions = (f"TensorFlow {ok[0]['tensorflow_version']}, Keras {ok[0]['keras_version']}, "
                if ok else "")
    baseline = min((r["baseline_rss_mb"] for r in ok if "baseline_rss_mb" in r), default=None)
    lines = [
        f"Benchmark on {cpu_name()} ({os.cpu_count()} cores), {versions}float32, "
        f"median of {settings['steps']} timed steps"
        + (f", best of {settings['repeats']} runs" if settings.get("repeats", 1) > 1 else "")
        + f", {seconds:.0f} s in all."
        + (f" Peak MB includes ~{baseline:.0f} MB for TensorFlow itself." if baseline else ""),
        "",
        table(results),
    ]
    noisy = [f"{r['model']} jit {r['jit']} ({disturbed(r):.0f}%)" for r in ok if disturbed(r)]
    if noisy:
        lines.append(f"† while these were timed, other processes or the hypervisor (steal) took "
                     f"more than {NOISY_PCT}% of the CPU; rerun them, or use --repeats: "
                     + ", ".join(noisy))
    lines.append("")
    for q in ratios(results):
        flag = "" if min(q["train"], q["infer"]) >= 1.0 else "  SLOWER"
        lines.append(f"ours/keras.applications {q['keras_model']} train {q['train']:.2f} "
                     f"infer {q['infer']:.2f}  [jit {q['jit']}; {q['note']}]{flag}")
    fastest = fastest_jit(results)
    if any(len(v["relative"]) > 1 for v in fastest.values()):
        lines.append("")
        for model, v in fastest.items():
            others = ", ".join(f"{j} {rel:.2f}x" for j, rel in v["relative"].items()
                               if j != v["fastest"])
            lines.append(f"fastest training jit: {model} -> {v['fastest']}"
                         + (f" (relative speed: {others})" if others else ""))
    for r in results:
        if "error" in r:
            lines.append(f"FAILED {r['model']} jit {r['jit']}: {r['error']}")
    return "\n".join(lines)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--models", help="comma-separated, from: " + ", ".join(ENTRIES)
        + f" (default: {DEFAULTS['models']})")
    add("--input-size", type=benchlib.positive_int,
        help=f"side of the ImageNet-geometry models' input (default {DEFAULTS['input_size']})")
    add("--batch-size", type=benchlib.positive_int,
        help=f"batch of the ImageNet-geometry models (default {DEFAULTS['batch_size']})")
    add("--small-batch-size", type=benchlib.positive_int,
        help=f"batch of the 32x32 models: lenet5, resnet20, *_cifar (default "
        f"{DEFAULTS['small_batch_size']})")
    add("--steps", type=benchlib.positive_int,
        help=f"timed batches for training and for inference (default {DEFAULTS['steps']})")
    add("--jit", help=f"comma-separated jit_compile settings: auto, on, off (default "
        f"{DEFAULTS['jit']})")
    add("--quick", action="store_true",
        help="smoke run: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()) + "; flags win")
    add("--repeats", type=benchlib.positive_int, default=1,
        help="run every measurement this many times, round-robin; the fastest undisturbed run "
        "counts")
    add("--retries", type=int,
        help=f"run a measurement again, up to this many times, while others took more than "
        f"{NOISY_PCT}%% of the CPU during its timing (default {DEFAULTS['retries']})")
    add("--seed", type=int, default=0)
    add("--timeout", type=benchlib.positive_int, default=1800, help="seconds per measurement")
    add("--json", metavar="PATH", help="write settings and every result here")
    add("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    return p


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for flag, choices in (("models", tuple(ENTRIES)), ("jit", tuple(JIT_VALUES))):
        try:
            setattr(args, flag, benchlib.comma_choices(flag, choices)(getattr(args, flag)))
        except argparse.ArgumentTypeError as err:
            parser.error(f"argument --{flag}: {err}")
    return args


def specs(args):
    for label in args.models:
        entry = ENTRIES[label]
        for jit in args.jit:
            yield {
                "entry": label, "input_shape": entry.input_shape(args.input_size),
                "batch_size": (args.small_batch_size if entry.geometry == "small"
                               else args.batch_size),
                "steps": args.steps, "jit": jit, "seed": args.seed,
            }


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args.worker)
    harness = benchlib.Report("bench_models")
    todo = list(specs(args)) * args.repeats  # round-robin: a busy spell hits many models once
    runs, start = [], time.perf_counter()
    for i, spec in enumerate(todo, start=1):
        t = time.perf_counter()
        result = run_one(spec, args.timeout)
        for _ in range(args.retries):
            if not disturbed(result):
                break
            print(f"[{i}/{len(todo)}] {spec['entry']} jit {spec['jit']}: others took "
                  f"{disturbed(result):.0f}% of the CPU; again", file=sys.stderr, flush=True)
            runs.append(result)
            result = run_one(spec, args.timeout)
        runs.append(result)
        status = result.get("error") or (f"train {result['train_images_per_sec']:.1f} img/s, "
                                         f"infer {result['infer_images_per_sec']:.1f} img/s")
        print(f"[{i}/{len(todo)}] {spec['entry']} jit {spec['jit']}: {status} "
              f"({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    results = best_of(runs)
    names = ("models", "input_size", "batch_size", "small_batch_size", "steps", "jit", "repeats",
             "retries", "seed")
    settings = {name: getattr(args, name) for name in names}
    print(report(results, settings, seconds))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    harness.finish({"settings": settings, "cpu": cpu_name(), "total_s": seconds,
                    "results": results, "ratios": ratios(results),
                    "fastest_jit": fastest_jit(results), "runs": runs}, args.json)
    return 1 if any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
