"""Benchmark the augmentation pipelines: throughput, keeping up with training, accuracy.

    python scripts/bench_augment.py throughput --json runs/bench_augment.json
    python scripts/bench_augment.py accuracy --data-dir ../shared/data --json runs/acc.json

`throughput`: images/s of the tf.data pipeline per preset (32x32x3 uint8
images, batch 128; with and without XLA fusing the stack) against a plain
Keras 3 alternative measured in the same run (epoch by epoch in turns; the
speed-up is the median ratio over the rounds): a `keras.utils.PyDataset`
doing the same augmentation in numpy per image;
then resnet20's training images/s on this machine (batch 128, plain arrays, and
with the host pipeline / on-device augmentation), and the ratio
pipeline images/s / training images/s.

`accuracy`: lenet5 on real MNIST with a limited training set, `none` against
`standard` (pad + random crop; no flip for digits), each evaluated plainly and
with test-time augmentation, over several seeds at the same epochs.

`tta`: re-evaluates the `accuracy` runs' saved models with 5-crop TTA at
several crop offsets (--tta-paddings).
"""

import argparse
import json
import math
import statistics
import time

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

import keras
import numpy as np

from augment import datasets, layers, pipelines
from zoo import training
from zoo.cli import args as types
from zoo.contract import InputContract
from zoo.training import builder, rundir
from zoo.training import data as data_module

import benchlib

BATCH = 128


class NumpyAugmentDataset(keras.utils.PyDataset):
    """The per-image numpy augmentation a user would write with `PyDataset`."""

    def __init__(self, x, y, preset, pca_stats, batch_size=BATCH, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.preset, self.batch_size = x, y, preset, batch_size
        values, vectors = (np.asarray(a, np.float32) for a in pca_stats)
        self.basis = 255.0 * vectors * values[None, :]
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x))

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def augment(self, image):
        if self.preset == "none":
            return image.astype(np.float32)
        padded = np.pad(image, [(4, 4), (4, 4), (0, 0)])
        r, c = self.rng.integers(0, 9, 2)
        image = padded[r:r + image.shape[0], c:c + image.shape[1]].astype(np.float32)
        if self.rng.random() < 0.5:
            image = image[:, ::-1]
        if self.preset == "alexnet":
            image = image + self.basis @ self.rng.normal(0, 0.1, image.shape[-1])
        return image

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        x = np.stack([self.augment(self.x[i]) for i in rows])  # pixel values: the model normalizes
        y = self.y[rows]
        if self.preset in ("mixup", "cutmix"):
            perm = self.rng.permutation(len(x))
            lam = self.rng.beta(1.0, 1.0, len(x)).astype(np.float32)
            if self.preset == "mixup":
                x = lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * x[perm]
            else:
                h, w = x.shape[1:3]
                for k in range(len(x)):
                    ch, cw = int(h * math.sqrt(1 - lam[k])), int(w * math.sqrt(1 - lam[k]))
                    cy, cx = self.rng.integers(0, h), self.rng.integers(0, w)
                    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
                    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
                    x[k, y0:y1, x0:x1] = x[perm[k], y0:y1, x0:x1]
                    lam[k] = 1 - (y1 - y0) * (x1 - x0) / (h * w)
            y = lam[:, None] * y + (1 - lam[:, None]) * y[perm]
        return x.astype(np.float32), y


def images_per_second(sources, epochs):
    """Images/s of each source (name -> function returning an iterable of batches).

    The sources take turns epoch by epoch, so a slow spell of this shared VM
    hits all of them; the first round is a warm-up. Returns the median rate per
    source and, per source, the median over rounds of the first source's rate /
    its rate in the same round (the first source's speed-up over it).
    """
    rates = {name: [] for name in sources}
    for round_index in range(epochs + 1):
        for name, batches in sources.items():
            start, count = time.perf_counter(), 0
            for x, _ in batches():
                count += len(x)
            if round_index:
                rates[name].append(count / (time.perf_counter() - start))
    first = next(iter(rates.values()))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    ratios = {name: statistics.median(a / b for a, b in zip(first, r))
              for name, r in rates.items()}
    return medians, ratios


def train_rate(model_name, fit_model_and_data, steps):
    """Training images/s of `steps` batches after one warm-up step's worth."""
    fit_model, fit_data = fit_model_and_data
    rates = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if batch >= 2:  # skip tracing
                rates.append(BATCH / (time.perf_counter() - self.start))

    fit_model.fit(**fit_data, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[Timer()])
    return statistics.median(rates)


def throughput(args):
    ds = datasets.load_dataset("synthetic", None, seed=0, synthetic_size=(args.images, BATCH))
    x, y = ds.x_train, keras.utils.to_categorical(ds.y_train, ds.num_classes).astype("float32")
    mean, std = datasets.channel_stats(x)
    contract = InputContract(x.shape[1:], mean, std, dataset="synthetic")
    pca_stats = layers.pca_lighting_stats(x)
    results = {"images": len(x), "batch_size": BATCH, "presets": {}}
    for preset in args.presets:
        augmenter = pipelines.build_augmenter(
            pipelines.resolve_spec(preset), mean=mean, image_shape=x.shape[1:],
            dataset="cifar10", pca_stats=pca_stats, seed=0)
        pipeline = pipelines.make_dataset(x, y, augmenter, batch_size=BATCH, seed=0)
        op_by_op = pipelines.make_dataset(x, y, augmenter, batch_size=BATCH, seed=0,
                                          jit_compile=False)
        sources = {"tf_data": lambda p=pipeline: p, "tf_data_no_xla": lambda p=op_by_op: p}
        if preset != "strong":  # RandAugment has no numpy baseline here
            baseline = NumpyAugmentDataset(x, y, preset, pca_stats)
            sources["pydataset"] = lambda b=baseline: (b[i] for i in range(len(b)))
        rates, ratios = images_per_second(sources, args.epochs)
        row = {f"{name}_images_per_sec": rate for name, rate in rates.items()}
        ours = rates["tf_data"]
        if "pydataset" in ratios:
            row["speedup"] = ratios["pydataset"]
        results["presets"][preset] = row
        print(f"{preset:>9}: tf.data {ours:8.0f} images/s "
              f"(op by op {row['tf_data_no_xla_images_per_sec']:7.0f})"
              + (f", PyDataset {row['pydataset_images_per_sec']:7.0f} images/s, "
                 f"{row['speedup']:.1f}x" if "speedup" in row else ""), flush=True)

    if args.skip_train:
        return results
    # resnet20 training speed on the same machine, batch 128.
    config = training.TrainConfig(model="resnet20", dataset="synthetic", batch_size=BATCH,
                                  augment="standard", epochs=1, verbose=0, val_split=0.0)
    data = {"x_train": x, "y_train": y, "x_val": None, "contract": contract,
            "input_shape": x.shape[1:], "num_classes": ds.num_classes}
    train = {}
    for label, device, preset in (("plain arrays", "host", "none"),
                                  ("host pipeline (standard)", "host", "standard"),
                                  ("on-device (standard)", "device", "standard")):
        keras.utils.set_random_seed(0)
        run_config = training.TrainConfig(**{**vars(config), "augment": preset,
                                             "augment_device": device})
        model = builder.build_classifier(run_config, data)
        builder.compile_model(model, run_config, 10)
        fit = data_module.fit_inputs(run_config, model, data)
        if fit[0] is not model:  # the on-device augmentation wrapper
            builder.compile_model(fit[0], run_config, 10)
        train[label] = train_rate("resnet20", fit, args.train_steps)
        print(f"resnet20 training, {label}: {train[label]:.0f} images/s", flush=True)
    results["resnet20_train_images_per_sec"] = train
    plain = train["plain arrays"]
    results["keeps_up_ratio"] = {p: r["tf_data_images_per_sec"] / plain
                                 for p, r in results["presets"].items()}
    for preset, ratio in results["keeps_up_ratio"].items():
        print(f"{preset:>9}: pipeline / resnet20 training = {ratio:.1f}", flush=True)
    return results


def accuracy(args):
    runs = []
    for seed in args.seeds:
        for preset in ("none", "standard"):
            config = training.TrainConfig(
                model="lenet5", dataset="mnist", data_dir=args.data_dir, image_size=32,
                limit_train=args.limit_train, val_split=0.0, epochs=args.acc_epochs,
                batch_size=BATCH, optimizer="momentum", lr=0.05, schedule="cosine", l2=5e-5,
                augment=preset, tta="5crop", seed=seed, verbose=0, overwrite=True,
                out=f"{args.runs_dir}/lenet5_mnist{args.limit_train}_{preset}_s{seed}")
            metrics = training.train(config)
            row = {"seed": seed, "augment": preset, "test_error": metrics["test_error"],
                   "test_error_tta": metrics["test_error_tta"],
                   "wall_time_s": metrics["wall_time_s"], "source": metrics["data_source"]}
            runs.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for preset in ("none", "standard"):
        for key in ("test_error", "test_error_tta"):
            values = [r[key] for r in runs if r["augment"] == preset]
            summary[f"{preset} {key}"] = {"mean": statistics.mean(values),
                                          "std": statistics.stdev(values) if len(values) > 1
                                          else 0.0}
    for name, s in summary.items():
        print(f"{name:>26}: {100 * s['mean']:.2f}% +- {100 * s['std']:.2f}", flush=True)
    return {"runs": runs, "summary": summary, "epochs": args.acc_epochs,
            "limit_train": args.limit_train, "tta": "5crop"}


def tta_paddings(args):
    from pathlib import Path

    from augment import tta

    results = []
    for run_dir in sorted(Path(args.runs_dir).glob(f"lenet5_mnist{args.limit_train}_*")):
        settings = json.loads((run_dir / "config.json").read_text())
        ds = datasets.load_dataset("mnist", args.data_dir)
        model = rundir.load_model(run_dir / "model.keras")  # raw images in
        row = {"run": run_dir.name, "augment": settings["augment"], "seed": settings["seed"]}
        for padding in args.tta_paddings:
            accuracy_tta, _ = tta.evaluate_tta(model, ds.x_test, ds.y_test, "5crop", padding)
            row[f"5crop_padding{padding}_error"] = 1 - accuracy_tta
        results.append(row)
        print(json.dumps(row), flush=True)
    summary = {}
    for preset in ("none", "standard"):
        for padding in args.tta_paddings:
            values = [r[f"5crop_padding{padding}_error"] for r in results if r["augment"] == preset]
            if values:
                summary[f"{preset} 5crop padding {padding}"] = {
                    "mean": statistics.mean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    for name, s in summary.items():
        print(f"{name:>26}: {100 * s['mean']:.2f}% +- {100 * s['std']:.2f}", flush=True)
    return {"runs": results, "summary": summary}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=("throughput", "accuracy", "tta"))
    p.add_argument("--presets", nargs="+", choices=pipelines.PRESET_NAMES,
                   default=list(pipelines.PRESET_NAMES))
    p.add_argument("--images", type=types.positive_int, default=10_000,
                   help="throughput: images per epoch")
    p.add_argument("--epochs", type=types.positive_int, default=5, help="throughput: timed rounds")
    p.add_argument("--train-steps", type=types.positive_int, default=12,
                   help="resnet20 batches timed")
    p.add_argument("--skip-train", action="store_true", help="throughput: pipelines only")
    p.add_argument("--data-dir", default=None, help="accuracy: directory with mnist/")
    p.add_argument("--limit-train", type=types.positive_int, default=5000)
    p.add_argument("--acc-epochs", type=types.positive_int, default=10)
    p.add_argument("--seeds", type=types.nonnegative_int, nargs="+", default=[0, 1, 2])
    p.add_argument("--runs-dir", default="runs/bench_augment")
    p.add_argument("--tta-paddings", type=types.nonnegative_int, nargs="+", default=[1, 2, 4])
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    report = benchlib.Report(f"bench_augment {args.part}")
    results = {"throughput": throughput, "accuracy": accuracy, "tta": tta_paddings}[args.part](args)
    report.finish(results, args.json, args)
    return results


if __name__ == "__main__":
    main()
