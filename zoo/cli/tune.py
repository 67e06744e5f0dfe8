"""Command line of scripts/tune.py: a coarse search, --refine stages, --ensemble-top."""

import argparse
import dataclasses
import importlib.util
import json
import logging
import sys

from zoo.cli import args as types
from zoo.cli import storage
from zoo.cli.train import flag_message
from zoo.search import results, tuners
from zoo.search.run import base_config_from, ensemble_top, read_search, run_search
from zoo.search.space import REFINE_TOP, SCALES, families
from zoo.search.tuners import TUNERS, TUNING_EPOCHS
from zoo.training.config import TrainConfig


def build_parser(description=None):
    p = types.Parser(description=description)
    add = p.add_argument
    add("--family", type=types.choice("family", families()), default=None,
        help="family to search: " + ", ".join(families())
        + " (from --out's search with --refine / --ensemble-top)")
    add("--model", dest="family", type=types.choice("family", families()),
        action=types.deprecated_alias("--family"), help=argparse.SUPPRESS)
    add("--tuner", type=types.choice("tuner", TUNERS), default="random",
        help="random (the coarse stage), hyperband or bayesian")
    add("--max-trials", type=types.positive_int, default=10,
        help="trials of this stage (hyperband: set by --epochs instead)")
    add("--executions-per-trial", type=types.positive_int, default=1,
        help="trainings per trial, averaged (less noisy rankings)")
    add("--scale", type=types.choice("scale", SCALES), default="full",
        help="full: the paper-size variants; tiny: the test_* variants (smoke tests)")
    add("--out", default=None, help="search directory (default runs/tune_FAMILY)")
    add("--refine", action="store_true",
        help="narrow every range around the best trials of the earlier search in --out")
    add("--refine-top", type=types.positive_int, default=REFINE_TOP,
        help="trials whose values bound the refined ranges")
    add("--ensemble-top", type=types.positive_int, default=None, metavar="N",
        help="save the best N trials of --out as one soft-voting ensemble .keras")
    add("--overwrite", action="store_true", help="start the search in --out over")
    add("--verbose", type=int, choices=(0, 1, 2), default=1)
    add("--run-eagerly", action="store_true",
        help="train without tf.function (quicker only for tiny smoke runs)")
    g = p.add_argument_group("data and fixed training settings (default: the family's recipe, "
                             f"{TUNING_EPOCHS} epochs; --refine: the earlier search's)")
    g.add_argument("--dataset", default=None)
    g.add_argument("--data-dir", default=None)
    g.add_argument("--epochs", type=types.positive_int, default=None)
    g.add_argument("--batch-size", type=types.positive_int, default=None)
    g.add_argument("--image-size", type=types.positive_int, default=None)
    g.add_argument("--limit-train", type=types.positive_int, default=None)
    g.add_argument("--limit-test", type=types.positive_int, default=None)
    g.add_argument("--val-split", type=types.any_number, default=None)
    g.add_argument("--augment", default=None, help="augmentation preset (host pipeline)")
    g.add_argument("--seed", type=types.nonnegative_int, default=None)
    return p


DATA_FLAGS = ("dataset", "data_dir", "epochs", "batch_size", "image_size", "limit_train",
              "limit_test", "val_split", "augment", "seed")


def parse_args(argv=None, description=None):
    """Flags -> (settings dict, parser). Bad values stop here with the flag, the
    value and what is accepted."""
    parser = build_parser(description)
    args = parser.parse_args(argv)
    out = args.out or (f"runs/tune_{args.family}" if args.family else None)
    if out is None:
        parser.error("family=None is not accepted; expected one of " + ", ".join(families())
                     + " (--family), or --out DIR of an earlier search with --refine or "
                     "--ensemble-top")
    previous = read_search(out)
    searching = args.family is not None or args.refine
    if (args.refine or not searching) and previous is None:
        parser.error(f"out={out!r} is not accepted; expected a directory holding an earlier "
                     f"search (search.json) with {'--refine' if args.refine else '--ensemble-top'}")
    if args.refine and args.family and args.family != previous["family"]:
        parser.error(f"family={args.family!r} is not accepted; expected "
                     f"{previous['family']!r}, the family of the search in {out}")
    if not searching and args.ensemble_top is None:
        parser.error("family=None is not accepted; expected --family FAMILY to search")
    if args.tuner == "bayesian" and importlib.util.find_spec("sklearn") is None:
        parser.error("tuner='bayesian' is not accepted; expected random or hyperband: "
                     "keras-tuner's "
                     "Bayesian optimization needs scikit-learn (pip install keras-tuner[bayesian])")
    overrides = {k: getattr(args, k) for k in DATA_FLAGS if getattr(args, k) is not None}
    family = args.family or (previous or {}).get("family")
    settings = {**vars(args), "out": out, "family": family, "searching": searching}
    if searching:
        try:
            if args.refine:
                base = TrainConfig.from_dict({**previous["base_config"], **overrides})
            else:
                base = base_config_from(family, overrides)
            settings["base_config"] = dataclasses.replace(base, out=out).validate()
        except ValueError as err:
            parser.error(str(err))
    return settings, parser


@storage.stopping_on_storage_errors("run the same command again: it resumes the search")
def main(argv=None, description=None):
    settings, _ = parse_args(argv, description)
    # Every trial builds new models, so tf.function traces again: expected, not a problem.
    logging.getLogger("tensorflow").addFilter(
        lambda record: "triggered tf.function retracing" not in record.getMessage())
    rows, result = [], None
    try:
        if settings["searching"]:
            rows = run_search(settings["family"], settings["base_config"], settings["out"],
                              tuner=settings["tuner"], max_trials=settings["max_trials"],
                              executions_per_trial=settings["executions_per_trial"],
                              scale=settings["scale"], refine=settings["refine"],
                              refine_top=settings["refine_top"],
                              overwrite=settings["overwrite"], verbose=settings["verbose"],
                              run_eagerly=settings["run_eagerly"],
                              log=lambda line: print(line, file=sys.stderr))
            if rows:
                results.print_table(rows)
        if settings["ensemble_top"] and not tuners.is_worker():
            result = ensemble_top(settings["out"], settings["ensemble_top"])
            print(json.dumps(result, indent=2))
    except (ValueError, TypeError, FileExistsError, FileNotFoundError) as err:
        types.fail(flag_message(err))  # the message names the flag and what to do
    return {"rows": rows, "ensemble": result}


