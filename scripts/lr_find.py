"""LR range test (Smith 2017): the learning rate grows exponentially from
--min-lr to --max-lr over --steps training steps; the loss against the LR goes to
OUT/lr_finder.png (log axis; --out as for training, the folder a run with
`--lr find` writes it to) and the suggested LR (lowest smoothed loss / 10) is printed.

    python scripts/lr_find.py --model resnet20 --dataset cifar10 --data-dir DIR \
        --optimizer momentum --out runs/lr_resnet20

Takes every training flag (the model, data, optimizer and batch size are used);
`--lr find` on the training scripts runs the same test before training.
"""

import argparse
import json
import sys
from pathlib import Path

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

from zoo.cli import args as types
from zoo.cli import storage
from zoo.cli.train import parse_with_extras
from zoo.training import babysit


def add_arguments(parser):
    parser.add_argument("--steps", type=types.positive_int, default=200, help="steps of the sweep")
    parser.add_argument("--min-lr", type=types.positive_number, default=1e-6)
    parser.add_argument("--max-lr", type=types.positive_number, default=10.0)
    parser.add_argument("--png", default=None, help=argparse.SUPPRESS)  # before --out DIR


@storage.stopping_on_storage_errors(storage.AGAIN)
def main(argv=None):
    config, extras, parser = parse_with_extras(argv, add_arguments, __doc__)
    if extras["steps"] < 2:
        parser.error(f"steps={extras['steps']!r} is not accepted; expected an integer >= 2")
    if not 0 < extras["min_lr"] < extras["max_lr"]:
        parser.error(f"min_lr={extras['min_lr']!r} is not accepted; expected a number in "
                     f"(0, max_lr={extras['max_lr']!r})")
    plot = Path(config.out) / "lr_finder.png"
    if extras["png"]:
        print("notice: --png is replaced by --out DIR (the plot is DIR/lr_finder.png); --png "
              "works for one more release", file=sys.stderr)
        plot = Path(extras["png"])
    plot.parent.mkdir(parents=True, exist_ok=True)
    result = babysit.find_lr_for_config(config, min_lr=extras["min_lr"], max_lr=extras["max_lr"],
                                        num_steps=extras["steps"], plot_path=plot)
    print(json.dumps(result.summary()))
    print(f"suggested lr {result.suggested_lr:.3g} -> {plot}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
