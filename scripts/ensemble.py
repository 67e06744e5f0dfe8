"""Combine already trained models (any families, sizes, seeds) into one ensemble model.

    python scripts/ensemble.py runs/lenet5_mnist runs/resnet20_mnist other.keras \
        --method soft --out runs/ensemble [--evaluate] [--data-dir ../shared/data]

Each input is a run directory (its model.keras) or a `.keras` file. Every model
carries its input contract, so the members may differ in everything but their
classes: seeds, training data, normalization, input size (each member fits the
images to its own size) and family. Writes OUT/model.keras (one
`EnsembleModel`, raw images in) and OUT/config.json. With --evaluate (or
--method weighted) the test split of the dataset the members name is loaded:
the per-member and ensemble test figures and the disagreement are printed and
written to OUT/metrics.json; --method weighted fits the combination weights on
a seeded --val-split of that dataset's training images (which the members may
have trained on: prefer soft voting unless you have held-out images).
"""

import sys

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

import keras
import numpy as np

from augment import datasets
from ensembles import METHODS, EnsembleModel
from zoo.cli import args as types
from zoo.cli import storage
from zoo.contract import contract_of
from zoo.training import rundir
from zoo.training.rundir import RunDir, RunDirError


def build_parser():
    p = types.Parser(description=__doc__.split("\n")[0])
    p.add_argument("members", nargs="+", type=types.model_file, metavar="MODEL",
                   help="run directories or .keras files")
    p.add_argument("--method", choices=METHODS, default="soft")
    p.add_argument("--out", required=True, help="directory for model.keras and config.json")
    p.add_argument("--evaluate", action="store_true",
                   help="report member and ensemble test figures on the members' dataset")
    p.add_argument("--data-dir", default=None,
                   help="where the members' dataset is (default: their runs' own, else "
                        "$ZOO_DATA_DIR, else keras.datasets)")
    p.add_argument("--limit-test", type=types.positive_int, default=None,
                   help="a seeded subset of the test split")
    p.add_argument("--val-split", type=types.number(0.0, True, 1.0, True), default=0.1,
                   help="--method weighted: the share of the training images the weights "
                        "are fitted on")
    p.add_argument("--seed", type=types.nonnegative_int, default=0,
                   help="of --limit-test and --val-split")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of an earlier run or ensemble in --out")
    return p


def load_data(args, contract):
    """The test split (and for --method weighted a seeded share of the
    training split) of the dataset the members' contract names."""
    if not contract.dataset or contract.dataset not in datasets.list_datasets():
        raise ValueError(f"--evaluate needs the members' dataset; their contract names "
                         f"{contract.dataset!r}, not one of {', '.join(datasets.list_datasets())}")
    data_dir = args.data_dir or rundir.recorded_data_dir(*args.members)
    ds = datasets.load_dataset(contract.dataset, data_dir, classes=contract.classes,
                               limit_test=args.limit_test, seed=args.seed)
    onehot = np.eye(ds.num_classes, dtype="float32")
    val = None
    if args.method == "weighted":
        order = np.random.default_rng(args.seed).permutation(len(ds.x_train))
        keep = order[:max(1, int(round(len(order) * args.val_split)))]
        val = (ds.x_train[keep], onehot[ds.y_train[keep]])
    return (ds.x_test, onehot[ds.y_test]), val, ds.source


def evaluate(ensemble, args, test, val):
    if val is not None:
        ensemble.fit_weights(*val)
    report = ensemble.report(*test)

    def line(s):
        return (f"test accuracy {s['accuracy']:.4f}, NLL {s['nll']:.4f}, "
                f"Brier {s['brier']:.4f}, ECE {s['ece']:.4f}")

    for i, scores in enumerate(report["member_scores"]):
        print(f"member {i} ({ensemble.members[i].name}): {line(scores)}")
    print(f"ensemble ({args.method}): {line(report['ensemble_scores'])}, disagreement "
          f"{report['disagreement']:.4f}, weights "
          + ", ".join(f"{w:.3f}" for w in report["weights"]))
    return report


@storage.stopping_on_storage_errors(storage.AGAIN)
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        members = [rundir.load_model(path) for path in args.members]
        ensemble = EnsembleModel(members, method=args.method, name="ensemble")
    except ValueError as err:
        parser.error(str(err))
    contract = contract_of(ensemble)
    report = None
    if args.evaluate or args.method == "weighted":
        if contract is None:
            parser.error("--evaluate and --method weighted need members that carry their input "
                         "contract (naming their dataset)")
        try:
            test, val, source = load_data(args, contract)
        except (ValueError, FileNotFoundError, OSError) as err:
            types.fail(err)
        report = {**evaluate(ensemble, args, test, val), "data_source": source}
    out = RunDir(args.out)
    try:
        with out.lock():
            out.start_fresh(args.overwrite)
            out.save_model(ensemble)
            out.write_config(None, members=[str(p) for p in args.members], method=args.method,
                             contract=contract.to_config() if contract else None,
                             backend=keras.backend.backend(), keras_version=keras.__version__)
            if report is not None:
                out.write_metrics(report)  # last: the commit point
    except (FileExistsError, RunDirError) as err:
        types.fail(err)
    print(f"{len(members)} members -> {out.model_path}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
