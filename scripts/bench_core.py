"""Does the training core cost anything? Our core against a plain `model.fit`.

    python scripts/bench_core.py overhead --data-dir ../shared/data          # per-epoch times
    python scripts/bench_core.py time-to-accuracy --data-dir ../shared/data  # LeNet-5 to 0.95%

overhead: LeNet-5 with its recipe on MNIST, trained by `zoo.training.train`
(EpochStats, CSVLogger, TerminateOnNaN, the atomic backup and best checkpoint)
and by a plain `model.fit` of the same model, data, optimizer and the Keras
callbacks that do the same jobs (CSVLogger, TerminateOnNaN, BackupAndRestore,
ModelCheckpoint). The two take turns, round by round and first place too, so a
slow spell of a shared machine (or a warm cache) favours neither; each epoch's
seconds (training and validation) are
printed, with the ratio plain / core per epoch (>= 0.97: the core costs at most 3%).

time-to-accuracy: `train_lenet.py`'s recipe at a given --epochs (the schedule
scales with it) on full MNIST, seeds 0-2, wall time of training and test error;
beside it the keras.io MNIST convnet (Conv32-Conv64, dropout, Adam, batch 128,
15 epochs) on the same data, the reference the project set itself.
"""

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

import keras
import numpy as np

import zoo
from zoo.cli import args as types
from zoo.training import TrainConfig, builder, train
from zoo.training import data as data_module

import benchlib

TARGET_ERROR = 0.0095


class EpochTimer(keras.callbacks.Callback):
    """Seconds of each epoch, training and validation, as EpochStats counts them."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def lenet_config(args, out, **overrides):
    recipe = {**zoo.get_family("lenet").recipe, "data_dir": args.data_dir, "verbose": 0,
              "limit_train": args.limit_train, "out": str(out), "overwrite": True}
    return TrainConfig(**{**recipe, **overrides})


def plain_fit(config, data, workdir):
    """The same model, data and optimizer in a plain model.fit with Keras' callbacks."""
    keras.utils.set_random_seed(config.seed)
    model = builder.build_classifier(config, data)
    steps = math.ceil(len(data["x_train"]) / config.batch_size)
    builder.compile_model(model, config, steps)
    timer = EpochTimer()
    model.fit(data["x_train"], data["y_train"], batch_size=config.batch_size,
              epochs=config.epochs, validation_data=(data["x_val"], data["y_val"]), verbose=0,
              callbacks=[timer, keras.callbacks.TerminateOnNaN(),
                         keras.callbacks.CSVLogger(str(workdir / "log.csv")),
                         keras.callbacks.BackupAndRestore(str(workdir / "backup")),
                         keras.callbacks.ModelCheckpoint(str(workdir / "best.keras"),
                                                         save_best_only=True)])
    keras.backend.clear_session()
    return timer.seconds


def overhead(args):
    config = lenet_config(args, "unused", epochs=args.epochs)
    data = data_module.prepare_data(config)
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            # The first model of a shape pays for oneDNN's primitive creation, which the
            # second reuses: the two take the first place in turn.
            workdir = Path(tmp) / f"plain{r}"
            workdir.mkdir()
            for which in (("core", "plain") if r % 2 == 0 else ("plain", "core")):
                if which == "core":
                    core_s = train(lenet_config(args, Path(tmp) / f"core{r}",
                                                epochs=args.epochs))["history"]["epoch_seconds"]
                    keras.backend.clear_session()
                else:
                    plain = plain_fit(config, data, workdir)
            rounds.append({"core_s": core_s, "plain_s": plain,
                           "ratio": [p / c for p, c in zip(plain, core_s)]})
            print(f"round {r}: core " + " ".join(f"{s:.2f}" for s in core_s)
                  + " s | plain " + " ".join(f"{s:.2f}" for s in plain) + " s", flush=True)
    steps = math.ceil(len(data["x_train"]) / config.batch_size)
    print(f"\nLeNet-5 recipe, {len(data['x_train'])} training images ({steps} steps of "
          f"{config.batch_size}), {args.rounds} rounds, medians:")
    print("| epoch | core s | plain fit s | core ms/step | plain ms/step | plain / core |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    summary = []
    for e in range(args.epochs):
        core_e = statistics.median(r["core_s"][e] for r in rounds)
        plain_e = statistics.median(r["plain_s"][e] for r in rounds)
        ratio = statistics.median(r["ratio"][e] for r in rounds)
        summary.append({"epoch": e + 1, "core_s": core_e, "plain_s": plain_e, "ratio": ratio})
        print(f"| {e + 1} | {core_e:.2f} | {plain_e:.2f} | {1000 * core_e / steps:.1f} | "
              f"{1000 * plain_e / steps:.1f} | {ratio:.3f} |")
    worst = min(s["ratio"] for s in summary)
    print(f"\nworst epoch: plain / core = {worst:.3f} "
          f"({'meets' if worst >= 0.97 else 'misses'} the >= 0.97 target)")
    return {"rounds": rounds, "summary": summary, "worst_ratio": worst}


def keras_io_convnet(data, seed, epochs=15):
    """The keras.io "Simple MNIST convnet" on the same 28x28 data (scaled to [0, 1])."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(), keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    timer = EpochTimer()
    model.fit(data["x_train"], data["y_train"], batch_size=128, epochs=epochs, verbose=0,
              validation_data=(data["x_val"], data["y_val"]), callbacks=[timer])
    error = 1.0 - float(model.evaluate(data["x_test"], data["y_test"], verbose=0)[1])
    keras.backend.clear_session()
    return {"seed": seed, "train_s": sum(timer.seconds), "test_error": error}


def time_to_accuracy(args):
    rows = {"lenet": [], "keras_io": []}
    # The keras.io example trains on 28x28 digits: no padding (min_size 1).
    mnist = data_module.prepare_data(TrainConfig(dataset="mnist", data_dir=args.data_dir),
                                     min_size=1)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            metrics = train(lenet_config(args, Path(tmp) / f"s{seed}", epochs=args.epochs,
                                         seed=seed))
            keras.backend.clear_session()
            rows["lenet"].append({"seed": seed, "train_s": metrics["wall_time_s"],
                                  "test_error": metrics["test_error"]})
            rows["keras_io"].append(keras_io_convnet(mnist, seed))
            for name in rows:
                r = rows[name][-1]
                print(f"{name:8} seed {seed}: {r['train_s']:.1f} s, test error "
                      f"{100 * r['test_error']:.2f}%", flush=True)
    print("\n| network | epochs | train s (mean) | test error (mean, max) | all <= 0.95% |")
    print("| --- | ---: | ---: | ---: | :---: |")
    for name, epochs in (("lenet", args.epochs), ("keras_io", 15)):
        seconds = statistics.mean(r["train_s"] for r in rows[name])
        errors = [r["test_error"] for r in rows[name]]
        print(f"| {name} | {epochs} | {seconds:.1f} | {100 * statistics.mean(errors):.2f}%, "
              f"{100 * max(errors):.2f}% | {'yes' if max(errors) <= TARGET_ERROR else 'no'} |")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=types.HelpFormatter)
    p.add_argument("part", choices=("overhead", "time-to-accuracy"))
    p.add_argument("--data-dir", default=None, help="full MNIST (default: ../shared/data)")
    p.add_argument("--epochs", type=types.positive_int, default=None,
                   help="overhead: 3; time-to-accuracy: 10")
    p.add_argument("--rounds", type=types.positive_int, default=3, help="overhead: turns each")
    p.add_argument("--seeds", type=types.int_list, default=[0, 1, 2])
    p.add_argument("--limit-train", type=types.positive_int, default=None)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    args.data_dir = args.data_dir or (str(shared) if (shared / "mnist").is_dir() else None)
    args.epochs = args.epochs or (3 if args.part == "overhead" else 10)
    report = benchlib.Report(f"bench_core {args.part}")
    results = (overhead if args.part == "overhead" else time_to_accuracy)(args)
    report.finish(results, args.json, args)
    return results


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
