"""A search's results: one row per trial, the table (csv, json) and the plot."""

import csv
import json
import math
from pathlib import Path

import numpy as np

from zoo import atomic
from zoo.search.space import top_rows
from zoo.search.tuners import OBJECTIVE
from zoo.training import plots
from zoo.training.rundir import write_json

COARSE = "coarse"
RESULT_COLUMNS = ("val_accuracy", "val_loss", "seconds", "status", "tuner_id")


def trial_rows(tuner, stage):
    """One row per trial of a tuner: stage, trial id, hyperparameters, metrics."""
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        runner = Path(tuner.directory, tuner.project_name, f"trial_{trial_id}", "runner.json")
        runner = json.loads(runner.read_text()) if runner.exists() else {}

        def metric(name, trial=trial):
            m = trial.metrics
            return float(m.get_last_value(name)) if m.exists(name) else None

        seconds = metric("seconds")
        rows.append({"stage": stage, "trial_id": trial_id, **trial.hyperparameters.values,
                     "val_accuracy": metric(OBJECTIVE), "val_loss": metric("val_loss"),
                     "seconds": seconds if seconds is not None else runner.get("seconds"),
                     "status": str(trial.status), "tuner_id": runner.get("tuner_id")})
    return rows



def write_results(out, rows, space):
    """results.json (typed), results.csv (best first) and results.png."""
    out = Path(out)
    write_json(out / "results.json", rows)
    ranked = top_rows(rows, len(rows))
    ranked += [r for r in rows if r not in ranked]
    extra = sorted({k for r in rows for k in r} - set(space) - set(RESULT_COLUMNS)
                   - {"stage", "trial_id"})
    columns = ["rank", "stage", "trial_id", *space, *extra, *RESULT_COLUMNS]
    with atomic.atomic_path(out / "results.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        for rank, row in enumerate(ranked, start=1):
            writer.writerow({**{k: _cell(row.get(k)) for k in columns}, "rank": rank})
    plot_results(rows, space, out / "results.png")


def _cell(value):
    return "" if value is None else (f"{value:.6g}" if isinstance(value, float) else value)


def importance(rows, name, p):
    """Spread of the mean val accuracy across a parameter's values (floats in
    three quantile bins): how much it seems to matter in this search."""
    pairs = [(r[name], r["val_accuracy"]) for r in rows if r.get(name) is not None]
    if len(pairs) < 2:
        return 0.0
    if p.kind == "float":
        xs = np.array([x for x, _ in pairs], dtype=float)
        edges = np.quantile(xs, [1 / 3, 2 / 3])
        groups = np.digitize(xs, edges)
    else:
        groups = np.array([str(x) for x, _ in pairs])
    ys = np.array([y for _, y in pairs])
    means = [ys[groups == g].mean() for g in np.unique(groups)]
    return float(max(means) - min(means))


def plot_results(rows, space, path, max_panels=8):
    """Val accuracy against the learning rate (log axis) and against the other
    hyperparameters, most important first (`importance`), one panel each."""
    plt = plots.pyplot()
    rows = top_rows(rows, len(rows))
    others = sorted((n for n in space if n != "lr"),
                    key=lambda n: -importance(rows, n, space[n]))
    names = ["lr", *others][:max_panels]
    cols = min(4, len(names))
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    rng = np.random.default_rng(0)
    for ax, name in zip(axes.flat, names):
        p = space[name]
        pts = [(r[name], r["val_accuracy"], r["stage"]) for r in rows if r.get(name) is not None]
        stages = sorted({s for _, _, s in pts}, key=lambda s: (s != COARSE, s))
        for stage in stages:
            xs = [x for x, _, s in pts if s == stage]
            ys = [y for _, y, s in pts if s == stage]
            if p.kind != "float":
                labels = [str(v) for v in p.values] or sorted({str(x) for x in xs})
                xs = [labels.index(str(x)) + rng.uniform(-0.15, 0.15) if str(x) in labels
                      else len(labels) for x in xs]
                ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
                ax.set_xlim(-0.5, len(labels) - 0.5)
            ax.scatter(xs, ys, s=18, alpha=0.8, label=stage)
        if p.kind == "float" and p.log:
            ax.set_xscale("log")
        ax.set_xlabel(name + (" (log)" if p.kind == "float" and p.log else ""))
        ax.set_ylabel("val accuracy")
        ax.grid(alpha=0.3)
        if len(stages) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(f"{len(rows)} trials: validation accuracy against each hyperparameter")
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.14, top=0.9, wspace=0.3, hspace=0.55)
    plots.save_figure(fig, path, dpi=90)



def print_table(rows, n=10):
    best = top_rows(rows, n)
    if not best:
        return
    keys = [k for k in dict.fromkeys(k for r in rows for k in r)
            if k not in ("status", "tuner_id") and not k.startswith("tuner/")]
    keys = [k for k in keys if k not in RESULT_COLUMNS] + ["val_accuracy", "val_loss", "seconds"]
    print(" | ".join(keys))
    for r in best:
        print(" | ".join(str(_cell(r.get(k))) for k in keys))

