"""Accuracy, NLL and calibration under distribution shift: trained models side by side
on the clean test split and on corrupted copies of it (rotation, shear, translation,
Gaussian and impulse noise, blur, contrast, fog) at severities 1-5.

    python scripts/evaluate_shift.py runs/single runs/ensemble runs/student \\
        --data-dir ../shared/data --out runs/shift

Each input is a run directory (its model.keras) or a .keras file: the model carries
its input contract (size, normalization, the dataset it was trained on), so the test
split comes from the dataset it names (--data-dir, else $ZOO_DATA_DIR, else
keras.datasets). Writes OUT/shift.json (every score), OUT/shift.md (the tables) and
OUT/shift.png (accuracy, NLL and ECE against severity, averaged over corruptions).
"""

import sys
from pathlib import Path

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

import numpy as np

from augment import corruptions, datasets
from zoo.cli import args as types
from zoo.cli import storage
from zoo.contract import contract_of
from zoo.training import evaluate, plots, rundir
from zoo.training.rundir import write_json

KEYS = ("error", "nll", "brier", "ece")


def source(text):
    """(label, model path) of a run directory or a .keras file."""
    model = types.model_file(text)
    path = Path(text)
    return (path.name if path.is_dir() else f"{path.parent.name}/{path.stem}"), model


def build_parser():
    p = types.Parser(description=__doc__)
    p.add_argument("models", nargs="+", type=source, metavar="RUN_OR_MODEL")
    p.add_argument("--data-dir", default=None,
                   help="the dataset's files (default: the runs' own, else $ZOO_DATA_DIR, "
                        "else keras.datasets)")
    p.add_argument("--corruptions", type=types.comma_choices("corruptions",
                                                             corruptions.CORRUPTIONS),
                   default=list(corruptions.CORRUPTIONS),
                   help="comma-separated, of " + ", ".join(corruptions.CORRUPTIONS)
                   + " (default: all)")
    p.add_argument("--limit-test", type=types.positive_int, default=None,
                   help="a seeded subset of the test split")
    p.add_argument("--seed", type=types.nonnegative_int, default=0, help="of the corruptions")
    p.add_argument("--out", required=True, help="folder for shift.json, shift.md, shift.png")
    return p


def table(results, name):
    """Markdown rows: one per model, clean, each severity, and the mean over them."""
    lines = [f"| model | {name} clean | " + " | ".join(f"s{s}" for s in corruptions.SEVERITIES)
             + " | mean over severities |",
             "| --- | ---: | " + " | ".join("---:" for _ in corruptions.SEVERITIES) + " | ---: |"]
    for label, r in results.items():
        by = [r["by_severity"][s][name] for s in corruptions.SEVERITIES]
        def fmt(v):
            return f"{100 * v:.2f}" if name in ("error", "ece") else f"{v:.4f}"
        lines.append(f"| {label} | {fmt(r['clean'][name])} | " + " | ".join(fmt(v) for v in by)
                     + f" | {fmt(float(np.mean(by)))} |")
    return "\n".join(lines)


def plot(results, path):
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key, title in zip(axes, ("error", "nll", "ece"),
                              ("test error", "NLL", "ECE (15 bins)")):
        for i, (label, r) in enumerate(results.items()):
            values = [r["clean"][key]] + [r["by_severity"][s][key]
                                          for s in corruptions.SEVERITIES]
            ax.plot(range(len(values)), values, marker="o", color=f"C{i % 10}", label=label)
        ax.set_xticks(range(6), ["clean", "1", "2", "3", "4", "5"])
        ax.set_xlabel("severity (mean over corruptions)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    plots.save_figure(fig, path)


@storage.stopping_on_storage_errors(storage.AGAIN)
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    models = {}
    for label, path in args.models:
        try:
            models[label, path] = rundir.load_model(path)
        except ValueError as err:
            parser.error(f"RUN_OR_MODEL: {err}")
    contracts = [contract_of(m) for m in models.values()]
    if None in contracts:
        parser.error("RUN_OR_MODEL is not accepted: a bare network (no input contract) does not "
                     "say its dataset or normalization; expected models the toolkit trained")
    datasets_used = {(c.dataset, c.classes) for c in contracts}
    if len(datasets_used) > 1:
        parser.error(f"RUN_OR_MODEL is not accepted: the models trained on different data "
                     f"({sorted(map(str, datasets_used))}); expected one test split")
    dataset, classes = datasets_used.pop()
    try:
        data_dir = args.data_dir or rundir.recorded_data_dir(*(path for _, path in models))
        ds = datasets.load_dataset(dataset, data_dir, limit_test=args.limit_test,
                                   seed=args.seed, classes=classes)
    except (ValueError, FileNotFoundError, OSError) as err:
        types.fail(err)
    labels = [label for label, _ in models]
    if len(set(labels)) < len(labels):  # runs/a/run, runs/b/run: name them a/run, b/run
        labels = [f"{Path(path).parent.parent.name}/{label}" for label, path in models]
    results = {}
    for label, model in zip(labels, models.values()):
        results[label] = evaluate.shift_scores(model, ds.x_test, ds.y_test, args.corruptions,
                                               seed=args.seed)
        by = results[label]["by_severity"]
        print(f"{label}: clean error {100 * results[label]['clean']['error']:.2f}%, severity 3 "
              f"{100 * by[3]['error']:.2f}% (NLL {by[3]['nll']:.3f}, ECE "
              f"{100 * by[3]['ece']:.2f}%)", file=sys.stderr, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "shift.json", {"test_images": len(ds.x_test), "source": ds.source,
                                    "corruptions": args.corruptions, "seed": args.seed,
                                    "results": results})
    text = "\n\n".join(f"### {name}\n\n{table(results, name)}" for name in KEYS)
    (out / "shift.md").write_text(text + "\n")
    plot(results, out / "shift.png")
    print(text)
    return results


if __name__ == "__main__":
    main()
