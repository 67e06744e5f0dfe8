"""Do ensembles beat a single model? Test error over seeds on a limited MNIST.

    python scripts/bench_ensembles.py --data-dir ../shared/data            # the README table
    python scripts/bench_ensembles.py --quick                              # a smoke run

For each seed, trains with the training core (zoo.training.train), all at the
same epochs and learning rate:
    single       one model, cosine decay
    ema          + Polyak/EMA of the weights (--ema-decay)
    swa          cosine down to --swa-lr, then SWA from 75% of the epochs
    snapshot     M cosine cycles in the same epochs, ensemble of the M snapshots
    independent  M single models from different seeds (M x the budget)
and prints test error mean +- std over the seeds, the gain over the single
model against the seed-to-seed spread, training time and inference time
relative to one model. Runs live in --out and are reused when rerun.
"""

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

from zoo.cli import args as types

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("single", "ema", "swa", "snapshot", "independent")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default=None,
                   help="directory with MNIST (default: ../shared/data when present)")
    p.add_argument("--model", default="lenet5")
    p.add_argument("--limit-train", type=types.positive_int, default=5000)
    p.add_argument("--epochs", type=types.positive_int, default=15)
    p.add_argument("--members", type=types.positive_int, default=5)
    p.add_argument("--seeds", type=types.positive_int, default=3)
    p.add_argument("--lr", type=types.positive_number, default=0.05)
    p.add_argument("--snapshot-lr", type=types.positive_number, default=None,
                   help="peak lr of every snapshot cycle (default --lr; Huang et al. restart "
                        "at twice the single model's rate)")
    p.add_argument("--ema-decay", type=types.number(0.0, True, 1.0, True), default=0.99)
    p.add_argument("--swa-lr", type=types.positive_number, default=0.01)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--out", default="runs/bench_ensembles")
    p.add_argument("--json", default=None, help="also write the summary here")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: embedded sample, 2 epochs, 2 members, 1 seed")
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        p.error(f"--methods={args.methods!r} is not accepted; expected some of {', '.join(METHODS)}")
    args.methods = methods
    if args.quick:
        args.epochs, args.members, args.seeds, args.limit_train = 2, 2, 1, 600
    if args.epochs % args.members:
        p.error(f"--members={args.members} is not accepted; expected a divisor of "
                f"--epochs={args.epochs} (snapshot cycles are whole epochs)")
    if args.data_dir is None and not args.quick and (ROOT.parent / "shared/data/mnist").exists():
        args.data_dir = str(ROOT.parent / "shared" / "data")
    return args


def run_config(args, method, seed):
    from zoo.training import TrainConfig

    base = TrainConfig(
        model=args.model, dataset="mnist_sample" if args.quick else "mnist",
        data_dir=args.data_dir, image_size=32 if args.model.startswith("lenet") else None,
        limit_train=args.limit_train, limit_test=1000 if args.quick else None,
        epochs=args.epochs, batch_size=128, optimizer="momentum", lr=args.lr,
        schedule="cosine", seed=seed, verbose=0, out=str(Path(args.out) / f"{method}_seed{seed}"))
    swa_start = max(1, int(0.75 * args.epochs)) + (1 if args.epochs > 1 else 0)
    snapshot_lr = args.snapshot_lr or args.lr
    return dataclasses.replace(base, **{
        "single": {},
        "ema": {"ema": args.ema_decay},
        "swa": {"swa_start": min(swa_start, args.epochs), "swa_lr": args.swa_lr},
        "snapshot": {"ensemble": "snapshot", "members": args.members, "lr": snapshot_lr,
                     **({"out": str(Path(args.out) / f"snapshot_lr{snapshot_lr:g}_seed{seed}")}
                        if snapshot_lr != args.lr else {})},
        "independent": {"ensemble": "independent", "members": args.members},
    }[method])


def run(config):
    from keras import backend

    from zoo.training import RunDir, train

    if RunDir(config.out).is_finished():
        return RunDir(config.out).read_metrics()
    metrics = train(config)
    backend.clear_session()
    return metrics


def summarize(results, methods):
    """results: {method: [metrics per seed]} -> rows of the table."""
    single = [m["test_error"] for m in results.get("single", [])]
    spread = statistics.stdev(single) if len(single) > 1 else 0.0
    rows = []
    for method in methods:
        runs = results.get(method, [])
        if not runs:
            continue
        errors = [m["test_error"] for m in runs]
        mean = statistics.mean(errors)
        std = statistics.stdev(errors) if len(errors) > 1 else 0.0
        gain = statistics.mean(single) - mean if single else None
        cost = [m.get("ensemble", {}).get("inference_cost", 1.0) for m in runs]
        rows.append({
            "method": method, "error_mean": mean, "error_std": std, "errors": errors,
            "gain_vs_single": gain,
            "beats_spread": None if gain is None or method == "single" else gain > spread,
            "train_seconds": statistics.mean(m["wall_time_s"] for m in runs),
            "inference_cost": statistics.mean(cost),
        })
    return rows


def format_table(rows):
    single = next((r for r in rows if r["method"] == "single"), None)
    lines = ["| method | test error (mean +- std) | gain vs single | > single's spread | "
             "train s | train time vs single | inference time vs single |",
             "| --- | --- | ---: | :---: | ---: | ---: | ---: |"]
    for r in rows:
        gain = "" if r["gain_vs_single"] is None or r["method"] == "single" else \
            f"{100 * r['gain_vs_single']:+.2f} pt"
        beats = {None: "", True: "yes", False: "no"}[r["beats_spread"]]
        train_ratio = r["train_seconds"] / single["train_seconds"] if single else float("nan")
        lines.append(f"| {r['method']} | {100 * r['error_mean']:.2f}% +- {100 * r['error_std']:.2f} "
                     f"| {gain} | {beats} | {r['train_seconds']:.0f} | {train_ratio:.2f}x | "
                     f"{r['inference_cost']:.2f}x |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    results = {method: [] for method in args.methods}
    for seed in range(args.seeds):
        for method in args.methods:
            metrics = run(run_config(args, method, seed))
            results[method].append(metrics)
            print(f"seed {seed} {method}: test error {100 * metrics['test_error']:.2f}% "
                  f"({metrics['wall_time_s']:.0f} s)", file=sys.stderr, flush=True)
    rows = summarize(results, args.methods)
    if args.snapshot_lr and args.snapshot_lr != args.lr:
        for row in rows:
            if row["method"] == "snapshot":
                row["method"] = f"snapshot (peak lr {args.snapshot_lr:g})"
    print(f"{args.model} on {args.limit_train} MNIST training images, {args.epochs} epochs, "
          f"M={args.members}, {args.seeds} seeds")
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
