"""SavedModel, ONNX and LiteRT exports side by side: size, latency, parity, int8 cost.

    python scripts/bench_formats.py --data-dir ../shared/data   # lenet5 and resnet20, MNIST
    python scripts/bench_formats.py --quick                     # tiny models, the embedded sample

Three tables, in one process (TensorFlow exports; each file runs in its own
runtime through `scripts/predict.py`'s loader, as a server would):

1. Size and latency: LeNet-5 (28x28x1 MNIST digits in, padded to 32x32 in the
   graph) and resnet20 (32x32x3) with random weights, exported as a SavedModel,
   ONNX, LiteRT and int8 LiteRT (calibrated on random images here: latency does
   not depend on the weights), all at the same fixed input size so every format
   does the same work, beside the same serving model in memory (Keras'
   `predict_on_batch`). File size of the exported model, and the median seconds
   of --repeats calls on a batch of 1 and of 64 uint8 images after two warm-up
   calls; ratios against the SavedModel.
2. Parity: the largest absolute difference of the probabilities between each
   export and the in-memory serving model, per family (CIFAR-size variants; an
   ensemble and 10-crop TTA), on 8 random images.
3. int8 on MNIST: LeNet-5 trained with the training core (--int8-epochs, the
   LeNet recipe) and exported with `scripts/export.py --format litert --quantize
   int8` (calibrated on 256 training images): test accuracy of the float model
   and the int8 file on the full test split, and their top-1 agreement.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

import keras
import numpy as np

import zoo
from zoo.serving import export
from zoo.training import TrainConfig, train
from zoo.training.rundir import read_json

import benchlib
import export as export_script  # (scripts/export.py)
import predict  # (scripts/predict.py: one loader per runtime)

GRAY = ([0.1307], [0.3081])
RGB = ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616])
# label: (model names (several: an ensemble), raw image shape, statistics, TTA views)
LATENCY = {"lenet5": (["lenet5"], (28, 28, 1), GRAY, None),
           "resnet20": (["resnet20"], (32, 32, 3), RGB, None)}
PARITY = {"lenet5": (["lenet5"], (28, 28, 1), GRAY, None),
          "alexnet_cifar": (["alexnet_cifar"], (32, 32, 3), RGB, None),
          "vgg11_cifar": (["vgg11_cifar"], (32, 32, 3), RGB, None),
          "googlenet_cifar": (["googlenet_cifar"], (32, 32, 3), RGB, None),
          "resnet20": (["resnet20"], (32, 32, 3), RGB, None),
          "resnet20 x2 ensemble": (["resnet20"] * 2, (32, 32, 3), RGB, None),
          "resnet20 + 10crop TTA": (["resnet20"], (32, 32, 3), RGB, "10crop")}
QUICK_LATENCY = {"lenet5": LATENCY["lenet5"],
                 "test_resnet": (["test_resnet"], (16, 16, 1), GRAY, None)}
QUICK_PARITY = {**QUICK_LATENCY,
                **{name: ([name], (16, 16, 1), GRAY, None)
                   for name in ("test_alexnet", "test_vgg", "test_googlenet")},
                "test_resnet x2 ensemble": (["test_resnet"] * 2, (16, 16, 1), GRAY, None),
                "test_resnet + 10crop TTA": (["test_resnet"], (16, 16, 1), GRAY, "10crop")}
# label: (format, quantize)
EXPORTS = {"SavedModel": ("savedmodel", None), "ONNX": ("onnx", None),
           "LiteRT": ("litert", None), "LiteRT int8": ("litert", "int8")}


def serving_for(names, raw_shape, stats, views):
    keras.utils.set_random_seed(0)
    contract = {"image_shape": raw_shape, "mean": stats[0], "std": stats[1]}
    members = [zoo.create_model(n, preprocessing=contract) for n in names]
    model = members[0] if len(members) == 1 else export.average_models(members)
    return export.serving_model(model, raw_shape=raw_shape, tta=views)


def in_memory(serving, images):
    """The serving model's probabilities, called eagerly (no retracing per shape)."""
    return keras.ops.convert_to_numpy(serving(images, training=False))


def export_and_load(serving, directory, format, quantize=None, representative=None):
    """Exports `serving`; returns (run, model file bytes, export seconds)."""
    start = time.perf_counter()
    export.export_model(serving, directory, format, overwrite=True, quantize=quantize,
                        representative=representative)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in Path(directory).rglob("*")
               if p.is_file() and p.name != export.METADATA_FILE)
    return predict.load_exported(directory)[0], size, seconds


def latency_rows(cases, batch_sizes, repeats, workdir):
    rng = np.random.default_rng(0)
    rows = []
    for label, (names, raw_shape, stats, views) in cases.items():
        serving = serving_for(names, raw_shape, stats, views)
        images = {b: rng.integers(0, 256, (b, *raw_shape), np.uint8) for b in batch_sizes}
        calibration = rng.integers(0, 256, (64, *raw_shape), np.uint8)
        reference = in_memory(serving, images[max(batch_sizes)])
        # The same work in memory: the Keras serving model (what bench_export.py timed).
        seconds = {b: statistics.median(benchlib.time_calls(
            lambda batch=images[b], net=serving: net.predict_on_batch(batch), repeats))
            for b in batch_sizes}
        rows.append({"model": label, "export": "Keras (in memory)", "bytes": 0, "export_s": 0.0,
                     "seconds": seconds, "max_abs_diff": 0.0})
        for name, (format, quantize) in EXPORTS.items():
            run, size, export_s = export_and_load(serving, workdir / f"{label}_{name}".replace(
                " ", "_"), format, quantize, calibration if quantize else None)
            seconds = {b: statistics.median(benchlib.time_calls(
                lambda run=run, batch=images[b]: run(batch), repeats)) for b in batch_sizes}
            diff = float(np.max(np.abs(run(images[max(batch_sizes)]) - reference)))
            rows.append({"model": label, "export": name, "bytes": size, "export_s": export_s,
                         "seconds": seconds, "max_abs_diff": diff})
        print(f"  latency {label}: done", file=sys.stderr, flush=True)
    return rows


def parity_rows(cases, workdir):
    rng = np.random.default_rng(1)
    rows = []
    for label, (names, raw_shape, stats, views) in cases.items():
        serving = serving_for(names, raw_shape, stats, views)
        images = rng.integers(0, 256, (8, *raw_shape), np.uint8)
        reference = in_memory(serving, images)
        diffs = {}
        for name, (format, quantize) in EXPORTS.items():
            if quantize:
                continue
            run, _, _ = export_and_load(serving, workdir / "parity", format)
            diffs[name] = float(np.max(np.abs(run(images) - reference)))
        rows.append({"model": label, "max_abs_diff": diffs})
        print(f"  parity {label}: done", file=sys.stderr, flush=True)
    return rows


def int8_cost(args, workdir):
    """Trains LeNet-5 and exports it as int8 LiteRT with scripts/export.py; its report."""
    from zoo.lenet import RECIPE

    out = workdir / "lenet5_run"
    quick = {"dataset": "mnist_sample", "limit_train": 2048} if args.quick else {}
    metrics = train(TrainConfig(**{**RECIPE, "data_dir": args.data_dir, "out": str(out),
                                   "epochs": args.int8_epochs, "verbose": 0, **quick}))
    argv = [str(out / "model.keras"), "--out", str(workdir / "lenet5_int8"), "--format",
            "litert", "--quantize", "int8", "--overwrite"]
    export_script.main(argv + (["--data-dir", args.data_dir] if args.data_dir else []))
    meta = read_json(workdir / "lenet5_int8" / export.METADATA_FILE)
    return {**meta["quantization"], "dataset": metrics["dataset"],
            "data_source": metrics["data_source"], "epochs": args.int8_epochs,
            "keras_test_accuracy": metrics["test_accuracy"],
            "bytes": (workdir / "lenet5_int8" / "model.tflite").stat().st_size}


def print_tables(latency, parity, int8, batch_sizes):
    saved = {(r["model"], b): r["seconds"][b] for r in latency if r["export"] == "SavedModel"
             for b in batch_sizes}
    head = " | ".join(f"batch {b} ms | / SavedModel" for b in batch_sizes)
    print(f"| model | export | size KB | {head} | export s | max abs diff |")
    print("| --- | --- | ---: |" + " ---: | ---: |" * len(batch_sizes) + " ---: | ---: |")
    for r in latency:
        cells = " | ".join(f"{1e3 * r['seconds'][b]:.2f} | "
                           f"{r['seconds'][b] / saved[r['model'], b]:.2f}"
                           for b in batch_sizes)
        print(f"| {r['model']} | {r['export']} | {r['bytes'] / 1024:,.0f} | {cells} | "
              f"{r['export_s']:.1f} | {r['max_abs_diff']:.1e} |")
    names = list(parity[0]["max_abs_diff"]) if parity else []
    print(f"\n| model (8 images) | {' | '.join(names)} |")
    print("| --- |" + " ---: |" * len(names))
    for r in parity:
        print(f"| {r['model']} | " + " | ".join(f"{r['max_abs_diff'][n]:.1e}" for n in names)
              + " |")
    if int8:
        print(f"\n| LeNet-5 on {int8['dataset']} ({int8['epochs']} epochs) | test images | "
              "float accuracy | int8 accuracy | change | top-1 agreement | int8 file KB |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        print(f"| LiteRT int8 vs the float model | {int8['images']:,} | "
              f"{int8['accuracy_float']:.4f} | {int8['accuracy_quantized']:.4f} | "
              f"{int8['accuracy_change']:+.4f} | {int8['top1_agreement']:.4f} | "
              f"{int8['bytes'] / 1024:,.0f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write every figure here")
    parser.add_argument("--quick", action="store_true",
                        help="tiny models, the embedded MNIST sample, 3 repeats (seconds)")
    parser.add_argument("--data-dir", help="where MNIST is, for the int8 table (../shared/data)")
    parser.add_argument("--repeats", type=benchlib.positive_int,
                        help="timed calls per figure (default 15; quick 3)")
    parser.add_argument("--int8-epochs", type=benchlib.positive_int,
                        help="LeNet-5 training epochs before quantizing (default 3; quick 1)")
    parser.add_argument("--skip", default=[], help="tables to leave out: latency, parity, int8",
                        type=benchlib.comma_choices("skip", ("latency", "parity", "int8")))
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 15)
    args.int8_epochs = args.int8_epochs or (1 if args.quick else 3)
    batch_sizes = (1, 64)
    report = benchlib.Report("bench_formats")
    with tempfile.TemporaryDirectory(prefix="bench_formats_") as tmp:
        workdir = Path(tmp)
        latency = [] if "latency" in args.skip else latency_rows(
            QUICK_LATENCY if args.quick else LATENCY, batch_sizes, repeats, workdir)
        parity = [] if "parity" in args.skip else parity_rows(
            QUICK_PARITY if args.quick else PARITY, workdir)
        int8 = None if "int8" in args.skip else int8_cost(args, workdir)
    print_tables(latency, parity, int8, batch_sizes)
    import onnxruntime
    from ai_edge_litert import __version__ as litert_version

    print(f"\nONNX Runtime {onnxruntime.__version__}, LiteRT {litert_version}; median of "
          f"{repeats} calls")
    report.finish({"latency": latency, "parity": parity, "int8": int8}, args.json, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
