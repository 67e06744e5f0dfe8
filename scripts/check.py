"""Sanity checks before training (CS231n's "babysitting the learning process"):
the initial loss against ln(num_classes) with regularization off, the loss rising
with regularization on, and overfitting a tiny subset to ~100% training accuracy.

    python scripts/check.py --model resnet20 --dataset cifar10 --data-dir DIR --lr 0.1
    python scripts/check.py --model test_resnet --dataset mnist_sample --examples 20

Takes every training flag (the optimizer and --lr are the overfit check's); exits
with status 1 when a check fails.
"""

import json
import sys
from pathlib import Path

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

from zoo.cli import args as types
from zoo.cli.train import parse_with_extras
from zoo.training import babysit


def add_arguments(parser):
    parser.add_argument("--examples", type=types.positive_int, default=50,
                        help="training examples the overfit check must fit (20 to 100)")
    parser.add_argument("--max-steps", type=types.positive_int, default=300,
                        help="steps allowed for the overfit check")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")


def main(argv=None):
    config, extras, parser = parse_with_extras(argv, add_arguments, __doc__)
    if not 2 <= extras["examples"] <= 1000:
        parser.error(f"examples={extras['examples']!r} is not accepted; expected an integer "
                     "in [2, 1000] (20 to 100 is the usual tiny subset)")
    if extras["max_steps"] < 1:
        parser.error(f"max_steps={extras['max_steps']!r} is not accepted; expected an integer >= 1")
    results = babysit.run_checks(config, examples=extras["examples"],
                                 max_steps=extras["max_steps"])
    if extras["json"]:
        Path(extras["json"]).write_text(json.dumps(
            [{"name": r.name, "status": r.status, "message": r.message, "values": r.values}
             for r in results], indent=2) + "\n")
    failed = [r.name for r in results if r.status == "fail"]
    print("all checks passed" if not failed else f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
