"""Combine already trained models (different architectures allowed) into one ensemble model.

    python scripts/ensemble.py runs/lenet5_mnist runs/resnet20_mnist other.keras \
        --method soft --out runs/ensemble [--evaluate] [--data-dir ../shared/data]

Each input is a run directory (model.keras + config.json, as the training
scripts write) or a `.keras` file. The members must take the same input
(shape and normalization) and give the same number of classes. Writes
OUT/model.keras (one `EnsembleModel`) and OUT/config.json (the normalization,
for scripts/export.py). With --evaluate (or --method weighted) the dataset of
the first run is loaded: the weights are fitted on its validation split and
the per-member and ensemble test accuracy and the disagreement are printed and
written to OUT/metrics.json.
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)
import keras

from ensembles import METHODS, EnsembleModel
from zoo.training import data as data_module
from zoo.training import evaluate
from zoo.training.config import TrainConfig
from zoo.cli import args as types
from zoo.training.rundir import RunDir, RunDirError


def member_source(text):
    """A run directory (its model.keras and config.json) or a .keras file (with the
    config.json beside it, when there is one)."""
    path = Path(text)
    run = RunDir(path if path.is_dir() else path.parent)
    if path.is_dir():
        if not run.model_path.exists():
            raise argparse.ArgumentTypeError(f"{text!r} is a directory without model.keras")
        path = run.model_path
    elif path.suffix != ".keras" or not path.exists():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not accepted; expected an existing .keras file or run directory")
    return path, run.read_config()


def build_parser():
    p = types.Parser(description=__doc__.split("\n")[0])
    p.add_argument("members", nargs="+", type=member_source, metavar="MODEL",
                   help="run directories or .keras files")
    p.add_argument("--method", choices=METHODS, default="soft")
    p.add_argument("--out", required=True, help="directory for model.keras and config.json")
    p.add_argument("--evaluate", action="store_true",
                   help="report member and ensemble test accuracy on the first run's dataset")
    p.add_argument("--data-dir", default=None, help="override the runs' data directory")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of an earlier run or ensemble in --out")
    return p


def _normalization(sources):
    found = {json.dumps(c["normalization"]) for _, c in sources if c and "normalization" in c}
    if len(found) > 1:
        raise ValueError("members=... is not accepted; expected models trained with the same "
                         f"input normalization, got {sorted(found)}")
    return json.loads(found.pop()) if found else None


def write_ensemble(out, args, ensemble, members, normalization, first):
    """Evaluates (with --evaluate or --method weighted) and writes OUT's files."""
    report = None
    if first is not None and (args.evaluate or args.method == "weighted"):
        config = TrainConfig.from_dict(first)
        config = dataclasses.replace(config, data_dir=args.data_dir or config.data_dir,
                                     ensemble="independent", ensemble_method=args.method)
        data = data_module.prepare_data(config)
        report = evaluate.summarize_ensemble(ensemble, config, data, {"test_accuracy": None})
        def line(s):
            return (f"test accuracy {s['accuracy']:.4f}, NLL {s['nll']:.4f}, "
                    f"Brier {s['brier']:.4f}, ECE {s['ece']:.4f}")

        for i, scores in enumerate(report["member_scores"]):
            print(f"member {i} ({members[i].name}): {line(scores)}")
        print(f"ensemble ({args.method}): {line(report['ensemble_scores'])}, disagreement "
              f"{report['disagreement']:.4f}, weights "
              + ", ".join(f"{w:.3f}" for w in report["weights"]))
    out.save_model(ensemble)
    out.write_config(None, **{
        "members": [str(path) for path, _ in args.members], "method": args.method,
        "input_shape": list(members[0].input_shape[1:]),
        **({"normalization": normalization} if normalization else {}),
        **({k: first[k] for k in ("dataset", "image_size", "num_classes") if k in first}
           if first else {}),
    })
    if report is not None:
        out.write_metrics(report)  # last: the commit point
    return report


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        normalization = _normalization(args.members)
        members = [keras.saving.load_model(path, compile=False) for path, _ in args.members]
        ensemble = EnsembleModel(members, method=args.method, name="ensemble")
    except ValueError as err:
        parser.error(str(err))
    first = next((c for _, c in args.members if c), None)
    if (args.evaluate or args.method == "weighted") and first is None:
        parser.error("--evaluate and --method weighted need a run directory (config.json) "
                     "naming the dataset")
    out = RunDir(args.out)
    try:
        with out.lock():
            out.start_fresh(args.overwrite)
            report = write_ensemble(out, args, ensemble, members, normalization, first)
    except (FileExistsError, RunDirError) as err:
        types.fail(err)
    print(f"{len(members)} members -> {out.model_path}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
