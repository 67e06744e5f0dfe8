"""Do ensembles beat a single model? Error, NLL, Brier score and calibration over
seeds on a limited MNIST, clean and under shift, with and without temperature scaling.

    python scripts/bench_ensembles.py --data-dir ../shared/data            # the docs table
    python scripts/bench_ensembles.py --quick                              # a smoke run

For each seed, trains with the training core (zoo.training.train), all at the
same epochs and learning rate, each with `--calibrate temperature` (the
temperature is fitted on the 10% validation split, so every method is scored
both as trained and temperature-scaled):
    single       one model, cosine decay
    ema          + Polyak/EMA of the weights (--ema-decay)
    swa          cosine down to --swa-lr, then SWA from 75% of the epochs
    snapshot     M cosine cycles in the same epochs (peak --snapshot-lr, 4x the
                 single model's rate: higher restarts than Huang et al.'s 2x, so that
                 3-epoch cycles still explore), ensemble of the M snapshots
    independent  M single models from different seeds (M x the budget)
    distilled    one model trained on the independent ensemble's softened
                 probabilities (Hinton et al. 2015; 1x inference)
Every model is scored on the full test set and on its corrupted copies
(`augment.corruptions`: 8 corruptions x 5 severities, seeded): severity 3 and
the mean over severities. Prints mean +- std over seeds, the gains against the
single model's seed-to-seed spread and the targets of the project's issue. Runs
live in --out and are reused when rerun.
"""

import dataclasses
import statistics
import sys
import time
from pathlib import Path

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

import numpy as np

from augment import corruptions, datasets
from zoo.cli import args as types

import benchlib

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("single", "ema", "swa", "snapshot", "independent", "distilled")
KEYS = ("error", "nll", "brier", "ece")
SEVERITY_PARTS = tuple(f"severity{s}" for s in corruptions.SEVERITIES)
PARTS = ("clean", "shift3", "shift", *SEVERITY_PARTS)  # what `aggregate` returns


def parse_args(argv=None):
    p = types.Parser(description=__doc__)
    p.add_argument("--data-dir", default=None,
                   help="directory with MNIST (default: ../shared/data when present)")
    p.add_argument("--model", default="lenet5")
    p.add_argument("--limit-train", type=types.positive_int, default=5000)
    p.add_argument("--epochs", type=types.positive_int, default=15)
    p.add_argument("--members", type=types.positive_int, default=5)
    p.add_argument("--seeds", type=types.positive_int, default=3)
    p.add_argument("--lr", type=types.positive_number, default=0.05)
    p.add_argument("--snapshot-lr", type=types.positive_number, default=None,
                   help="peak learning rate of the snapshot cycles (default: 4 x --lr)")
    p.add_argument("--ema-decay", type=types.number(0.0, True, 1.0, True), default=0.99)
    p.add_argument("--swa-lr", type=types.positive_number, default=0.01)
    p.add_argument("--methods", type=types.comma_choices("methods", METHODS),
                   default=list(METHODS))
    p.add_argument("--corruptions", type=types.comma_choices("corruptions",
                                                             corruptions.CORRUPTIONS),
                   default=list(corruptions.CORRUPTIONS))
    p.add_argument("--out", default="runs/bench_ensembles")
    p.add_argument("--json", default=None, help="also write the summary here")
    p.add_argument("--plot", default=None,
                   help="also write a PNG of error, NLL and ECE against severity per method")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: embedded sample, 2 epochs, 2 members, 1 seed, 2 corruptions")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.members, args.seeds, args.limit_train = 2, 2, 1, 600
        args.corruptions = args.corruptions[:2]
    if args.epochs % args.members:
        p.error(f"argument --members: {args.members} is not accepted; expected a divisor of "
                f"--epochs {args.epochs} (snapshot cycles are whole epochs)")
    if "distilled" in args.methods and "independent" not in args.methods:
        p.error("argument --methods: 'distilled' needs 'independent' (its teacher)")
    if args.data_dir is None and not args.quick and (ROOT.parent / "shared/data/mnist").exists():
        args.data_dir = str(ROOT.parent / "shared" / "data")
    args.snapshot_lr = args.snapshot_lr or 4 * args.lr
    return args


def run_config(args, method, seed):
    from zoo.training import TrainConfig

    out = Path(args.out)
    base = TrainConfig(
        model=args.model, dataset="mnist_sample" if args.quick else "mnist",
        data_dir=args.data_dir, limit_train=args.limit_train,
        limit_test=1000 if args.quick else None, epochs=args.epochs, batch_size=128,
        optimizer="momentum", lr=args.lr, schedule="cosine", seed=seed, verbose=0,
        calibrate="temperature", out=str(out / f"{method}_seed{seed}"))
    swa_start = max(1, int(0.75 * args.epochs)) + (1 if args.epochs > 1 else 0)
    return dataclasses.replace(base, **{
        "single": {},
        "ema": {"ema": args.ema_decay},
        "swa": {"swa_start": min(swa_start, args.epochs), "swa_lr": args.swa_lr},
        "snapshot": {"ensemble": "snapshot", "members": args.members, "lr": args.snapshot_lr},
        "independent": {"ensemble": "independent", "members": args.members},
        "distilled": {"distill_from": str(out / f"independent_seed{seed}" / "model.keras")},
    }[method])


def train_or_reuse(config):
    from keras import backend

    from zoo.training import RunDir, train

    if RunDir(config.out).is_finished():
        return RunDir(config.out).read_metrics()
    metrics = train(config)
    backend.clear_session()
    return metrics


def score_run(config, shifted, labels):
    """Clean and shifted scores of the run's model as trained (the model inside the
    temperature-scaling wrapper) and temperature-scaled, and its inference seconds."""
    import keras

    from ensembles import apply_temperature, metrics
    from ensembles.calibration import temperature_of
    from zoo.training import RunDir

    run = RunDir(config.out)
    saved = keras.saving.load_model(run.model_path, compile=False)
    temperature = temperature_of(saved)
    raw = next(layer for layer in saved.layers if isinstance(layer, keras.Model))
    results = {"raw": {}, "scaled": {}}
    seconds = None
    for key, images in shifted.items():
        start = time.perf_counter()
        probs = raw.predict(images, batch_size=512, verbose=0)
        if key == "clean":
            seconds = time.perf_counter() - start
        results["raw"][key] = metrics.scores(probs, labels)
        results["scaled"][key] = metrics.scores(apply_temperature(probs, temperature),
                                                     labels)
    return results, temperature, seconds


def shifted_sets(args, config):
    """The clean test images and every corruption x severity, raw uint8 (the
    runs' models fit and normalize them themselves)."""
    ds = datasets.load_dataset(config.dataset, config.data_dir, limit_train=1,
                               limit_test=config.limit_test, seed=config.seed)
    sets = {"clean": ds.x_test}
    for name in args.corruptions:
        for severity in corruptions.SEVERITIES:
            sets[(name, severity)] = corruptions.corrupt(ds.x_test, name, severity, config.seed)
    return sets, ds.y_test


def aggregate(scores, corruption_names):
    """{clean, severity 3, mean over severities, each severity (mean over the
    corruptions)} of one run's {set: scores}."""
    def mean_of(keys):
        return {k: float(np.mean([scores[key][k] for key in keys])) for k in KEYS}

    return {"clean": {k: scores["clean"][k] for k in KEYS},
            "shift3": mean_of([(n, 3) for n in corruption_names]),
            "shift": mean_of([(n, s) for n in corruption_names for s in corruptions.SEVERITIES]),
            **{part: mean_of([(n, s) for n in corruption_names])
               for part, s in zip(SEVERITY_PARTS, corruptions.SEVERITIES)}}


def summarize(per_seed, methods):
    """per_seed: {method: [run summary per seed]} ->
    {method: {variant: {set: {key: (mean, std)}}}}."""
    table = {}
    for method in methods:
        runs = per_seed.get(method)
        if not runs:
            continue
        table[method] = {"train_s": statistics.mean(r["train_s"] for r in runs),
                         "infer_s": statistics.mean(r["infer_s"] for r in runs),
                         "temperature": statistics.mean(r["temperature"] for r in runs)}
        for variant in ("raw", "scaled"):
            table[method][variant] = {
                part: {k: (statistics.mean(r[variant][part][k] for r in runs),
                           statistics.stdev(r[variant][part][k] for r in runs)
                           if len(runs) > 1 else 0.0) for k in KEYS}
                for part in PARTS}
    return table



def plot_severity(table, path):
    """Error, NLL (temperature-scaled) and ECE (as trained) against severity
    (0: clean; mean over the corruptions), mean +- std over seeds per method."""
    from zoo.training.plots import pyplot, save_figure

    plt = pyplot()
    severities = [0, *corruptions.SEVERITIES]
    parts = ["clean", *SEVERITY_PARTS]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (key, variant, label) in zip(axes, (("error", "raw", "test error %"),
                                               ("nll", "scaled", "NLL (temperature-scaled)"),
                                               ("ece", "raw", "ECE % (as trained)"))):
        scale = 100 if key in ("error", "ece") else 1
        for method, row in table.items():
            mean = np.array([row[variant][p][key][0] for p in parts]) * scale
            std = np.array([row[variant][p][key][1] for p in parts]) * scale
            ax.plot(severities, mean, marker="o", label=method)
            ax.fill_between(severities, mean - std, mean + std, alpha=0.15)
        ax.set(xlabel="corruption severity (0: clean)", ylabel=label, xticks=severities)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def format_tables(table):
    single = table.get("single")
    lines = []
    for part, title in (("clean", "clean test set"), ("shift3", "shifted, severity 3"),
                        ("shift", "shifted, mean over severities 1-5")):
        lines += [f"\n{title} (mean +- std over seeds; T: temperature-scaled)\n",
                  "| method | error % | NLL | Brier | ECE % | error % (T) | NLL (T) | "
                  "Brier (T) | ECE % (T) |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | "
                  "---: | ---: |"]
        for method, row in table.items():
            cells = []
            for variant in ("raw", "scaled"):
                for k in KEYS:
                    mean, std = row[variant][part][k]
                    scale = 100 if k in ("error", "ece") else 1
                    cells.append(f"{scale * mean:.{2 if scale == 100 else 4}f} +- "
                                 f"{scale * std:.{2 if scale == 100 else 4}f}")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["\n| method | train s | train vs single | inference s | inference vs single | "
              "temperature |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for method, row in table.items():
        lines.append(f"| {method} | {row['train_s']:.0f} | "
                     f"{row['train_s'] / single['train_s'] if single else float('nan'):.2f}x | "
                     f"{row['infer_s']:.2f} | "
                     f"{row['infer_s'] / single['infer_s'] if single else float('nan'):.2f}x | "
                     f"{row['temperature']:.2f} |")
    return "\n".join(lines)


def targets(table, members=5):
    """The issue's targets, each with the figures it compares."""
    out = []
    if "single" not in table:
        return out

    def value(method, part, key, variant="scaled"):
        return table[method][variant][part][key]

    if "independent" in table:
        for key, goal, variant in (("error", 0.25, "raw"), ("nll", 0.30, "scaled"),
                                   ("ece", 0.50, "raw")):
            s, e = value("single", "clean", key, variant)[0], value("independent", "clean", key,
                                                                    variant)[0]
            cut = 1 - e / s
            out.append(f"independent x{members} cuts {key} ({variant}) by {100 * cut:.0f}% "
                       f"({s:.4f} -> {e:.4f}); target >= {100 * goal:.0f}%: "
                       f"{'met' if cut >= goal else 'MISSED'}")
        s, e = value("single", "shift", "ece", "raw")[0], value("independent", "shift", "ece",
                                                                "raw")[0]
        out.append(f"under shift (mean over severities) the ensemble's ECE is {e / s:.2f} of the "
                   f"single model's ({100 * s:.2f}% -> {100 * e:.2f}%); target <= 0.5: "
                   f"{'met' if e <= 0.5 * s else 'MISSED'}")
    if "snapshot" in table:
        (s, spread), (e, _) = value("single", "clean", "nll"), value("snapshot", "clean", "nll")
        out.append(f"snapshot NLL (T) {e:.4f} vs single {s:.4f} +- {spread:.4f}: "
                   f"{'beats the spread' if s - e > spread else 'within the spread (MISSED)'}")
    if "distilled" in table and "independent" in table:
        s, e, d = (value(m, "clean", "error", "raw")[0]
                   for m in ("single", "independent", "distilled"))
        kept = (s - d) / (s - e) if s > e else float("nan")
        out.append(f"the student keeps {100 * kept:.0f}% of the ensemble's error gain "
                   f"({100 * s:.2f}"
                   f"% -> {100 * d:.2f}%, ensemble {100 * e:.2f}%); target >= 50%: "
                   f"{'met' if kept >= 0.5 else 'MISSED'}")
    return out


def paired_gains(per_seed):
    """Per-seed NLL (T) gains over the single model trained on the same seed (the
    same training subset and initialisation): a paired comparison, which the
    seed-to-seed spread of an unpaired one hides."""
    single = per_seed.get("single", [])
    out = []
    for method, runs in per_seed.items():
        if method == "single" or len(runs) != len(single) or not runs:
            continue
        gains = [s["scaled"]["clean"]["nll"] - r["scaled"]["clean"]["nll"]
                 for s, r in zip(single, runs)]
        std = statistics.stdev(gains) if len(gains) > 1 else 0.0
        out.append(f"{method}: NLL (T) lower than the same seed's single model on "
                   f"{sum(g > 0 for g in gains)}/{len(gains)} seeds, paired gain "
                   f"{statistics.mean(gains):.4f} +- {std:.4f} "
                   f"({', '.join(f'{g:+.4f}' for g in gains)})")
    return out


def main(argv=None):
    args = parse_args(argv)
    per_seed = {method: [] for method in args.methods}
    started = time.perf_counter()
    report = benchlib.Report("bench_ensembles")
    for seed in range(args.seeds):
        shifted = labels = None
        for method in args.methods:
            config = run_config(args, method, seed)
            metrics = train_or_reuse(config)
            if shifted is None:
                shifted, labels = shifted_sets(args, config)
            scores, temperature, infer_s = score_run(config, shifted, labels)
            summary = {"train_s": metrics["wall_time_s"], "infer_s": infer_s,
                       "temperature": temperature,
                       **{v: aggregate(scores[v], args.corruptions) for v in scores}}
            per_seed[method].append(summary)
            print(f"seed {seed} {method}: error {100 * summary['raw']['clean']['error']:.2f}%, "
                  f"NLL {summary['raw']['clean']['nll']:.4f} -> "
                  f"{summary['scaled']['clean']['nll']:.4f} (T {temperature:.2f}), "
                  f"ECE {100 * summary['raw']['clean']['ece']:.2f}%, shift ECE "
                  f"{100 * summary['raw']['shift']['ece']:.2f}% ({metrics['wall_time_s']:.0f} s)",
                  file=sys.stderr, flush=True)
    table = summarize(per_seed, args.methods)
    print(f"{args.model} on {args.limit_train} MNIST training images, {args.epochs} epochs, "
          f"M={args.members}, {args.seeds} seeds, snapshot peak lr {args.snapshot_lr:g}, "
          f"{len(args.corruptions)} corruptions x 5 severities, "
          f"{time.perf_counter() - started:.0f} s")
    print(format_tables(table))
    print("\n" + "\n".join(targets(table, args.members)))
    print("\n" + "\n".join(paired_gains(per_seed)))
    if args.plot:
        print(f"plot: {plot_severity(table, args.plot)}")
    report.finish({"per_seed": per_seed, "table": table}, args.json, args)
    return table


if __name__ == "__main__":
    main()
