"""Inference images/s of exported SavedModels against the in-memory Keras models.

    python scripts/bench_export.py            # CIFAR/MNIST-sized models, batch 1 and 128
    python scripts/bench_export.py --quick    # tiny models, seconds (a smoke test)

For each case the script builds the model (random weights: speed does not depend
on them), exports it with `zoo.serving.export` to a temp folder, loads the SavedModel
back with `tf.saved_model.load` and times, on the same uint8 batch:

- keras: the plain model on already-normalized float input (`predict_on_batch`),
  i.e. what in-memory inference costs without preprocessing;
- keras+pre: the serving keras model (uint8 in, padding, normalization, TTA or
  ensemble inside; `predict_on_batch`), the same work as the SavedModel;
- saved: the SavedModel's ``serve`` signature.

Ratios are saved / keras+pre (same work) and saved / keras. Figures are the
median of --repeats timed calls after two warm-up calls, in one process.
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import startup  # noqa: E402,F401  (TensorFlow without its start-up noise; scripts/startup.py)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import zoo  # noqa: E402
from augment import datasets  # noqa: E402
from zoo.serving import export  # noqa: E402
from zoo.cli import args as types  # noqa: E402

import benchlib  # noqa: E402


def median_seconds(fn, repeats):
    """Median seconds of one call of `fn` after two warm-up calls."""
    return statistics.median(benchlib.time_calls(fn, repeats))

GRAY = ([0.1307], [0.3081])
RGB = ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616])

# name: (model names (several: a soft-voting ensemble), raw image shape, stats, TTA views)
CASES = {
    "lenet5 (MNIST 28 -> 32)": (["lenet5"], (28, 28, 1), GRAY, None),
    "alexnet_cifar": (["alexnet_cifar"], (32, 32, 3), RGB, None),
    "vgg11_cifar": (["vgg11_cifar"], (32, 32, 3), RGB, None),
    "googlenet_cifar": (["googlenet_cifar"], (32, 32, 3), RGB, None),
    "resnet20": (["resnet20"], (32, 32, 3), RGB, None),
    "resnet20 x3 ensemble": (["resnet20"] * 3, (32, 32, 3), RGB, None),
    "resnet20 + 10crop TTA": (["resnet20"], (32, 32, 3), RGB, "10crop"),
}
QUICK_CASES = {
    "lenet5 (MNIST 28 -> 32)": (["lenet5"], (28, 28, 1), GRAY, None),
    "test_resnet": (["test_resnet"], (16, 16, 1), GRAY, None),
    "test_resnet x2 ensemble": (["test_resnet"] * 2, (16, 16, 1), GRAY, None),
    "test_resnet + 10crop TTA": (["test_resnet"], (16, 16, 1), GRAY, "10crop"),
}


def build(names, views, stats, raw_shape):
    keras.utils.set_random_seed(0)
    members = [zoo.create_model(n) for n in names]
    model = members[0] if len(members) == 1 else export.average_models(members)
    serving = export.serving_model(model, *stats, tta=views, crop_padding=4)
    # The in-memory counterpart of the plain row: the model (with its TTA) on normalized input.
    plain = serving.layers[-1]
    return plain, serving


def bench_case(label, spec, batch_sizes, repeats, workdir):
    names, raw_shape, stats, views = spec
    plain, serving = build(names, views, stats, raw_shape)
    start = time.perf_counter()
    export.export_model(serving, workdir / label.split()[0], overwrite=True)
    export_seconds = time.perf_counter() - start
    serve = tf.saved_model.load(str(workdir / label.split()[0])).signatures[export.SIGNATURE]
    height, width = export.model_input_shape(plain)[:2]
    rows = []
    rng = np.random.default_rng(0)
    for batch in batch_sizes:
        images = rng.integers(0, 256, (batch, *raw_shape), np.uint8)
        padded = datasets.pad_to(images, height) if raw_shape[0] < height else images
        normalized = datasets.normalize(padded, np.asarray(stats[0]), np.asarray(stats[1]))
        tensor = tf.constant(images)
        keras_s = median_seconds(lambda: plain.predict_on_batch(normalized), repeats)
        keras_pre_s = median_seconds(lambda: serving.predict_on_batch(images), repeats)
        saved_s = median_seconds(lambda: serve(images=tensor)["probabilities"].numpy(), repeats)
        diff = float(np.max(np.abs(serve(images=tensor)["probabilities"].numpy()
                                   - serving.predict_on_batch(images))))
        rows.append({"case": label, "batch": batch, "keras": batch / keras_s,
                     "keras_pre": batch / keras_pre_s, "saved": batch / saved_s,
                     "export_s": export_seconds, "max_diff": diff})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny models, batch 1 and 32, 3 repeats")
    parser.add_argument("--batch-sizes", help="comma-separated (default 1,128; quick 1,32)")
    parser.add_argument("--repeats", type=types.positive_int, help="timed calls per figure (default 7; quick 3)")
    args = parser.parse_args(argv)
    cases = QUICK_CASES if args.quick else CASES
    try:
        text = args.batch_sizes or ("1,32" if args.quick else "1,128")
        batch_sizes = [int(b) for b in text.split(",")]
        if min(batch_sizes) < 1:
            raise ValueError
    except ValueError:
        parser.error(f"--batch-sizes={args.batch_sizes!r} is not accepted; expected positive "
                     "integers, comma-separated")
    repeats = args.repeats or (3 if args.quick else 7)
    if repeats < 1:
        parser.error(f"--repeats={repeats} is not accepted; expected an integer >= 1")
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_export_") as tmp:
        for label, spec in cases.items():
            rows += bench_case(label, spec, batch_sizes, repeats, Path(tmp))
            print(f"  {label}: done", file=sys.stderr, flush=True)
    print("| case | batch | keras img/s | keras+pre img/s | SavedModel img/s | saved / keras+pre "
          "| saved / keras | export s | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['batch']} | {r['keras']:,.1f} | {r['keras_pre']:,.1f} | "
              f"{r['saved']:,.1f} | {r['saved'] / r['keras_pre']:.2f} | "
              f"{r['saved'] / r['keras']:.2f} | "
              f"{r['export_s']:.1f} | {r['max_diff']:.1e} |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{platform.processor() or platform.machine()} ({os.cpu_count()} cores), TensorFlow "
          f"{tf.__version__}, Keras {keras.__version__}, float32, median of {repeats} calls, "
          f"{time.perf_counter() - start:.0f} s in all, load average {load:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
