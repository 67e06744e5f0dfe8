"""Per-layer activation histograms at initialization (Glorot & Bengio 2010; He
et al. 2015; CS231n's demonstration): with a small N(0, 0.01) init the
activations of a deep tanh network collapse towards zero, Xavier keeps them
spread for tanh, He keeps them spread for ReLU. Batch norm is off.

    python scripts/plot_activations.py --model vgg16_cifar --init small_normal --activation tanh
    python scripts/plot_activations.py --model vgg16_cifar --compare --out docs/activations.png
"""

import argparse
import sys

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

import zoo
from zoo.cli import args as types
from zoo.cli import storage
from zoo.training import monitors

COMPARE = [("tanh", "small_normal"), ("tanh", "xavier"), ("tanh", "he"),
           ("relu", "small_normal"), ("relu", "xavier"), ("relu", "he")]


@storage.stopping_on_storage_errors(storage.AGAIN)
def main(argv=None):
    p = types.Parser(description=__doc__)
    p.add_argument("--model", default="vgg16_cifar", help="a registered zoo model")
    p.add_argument("--init", default="small_normal", help="kernel initializer")
    p.add_argument("--activation", default="tanh")
    p.add_argument("--compare", action="store_true",
                   help="rows for small_normal/xavier/he with tanh and relu")
    p.add_argument("--layers", type=types.positive_int, default=8,
                   help="activation layers shown (evenly spaced)")
    p.add_argument("--batch", type=types.positive_int, default=64, help="random N(0, 1) inputs")
    p.add_argument("--out", default="activations.png", help="the PNG to write")
    p.add_argument("--png", dest="out", action=types.deprecated_alias("--out"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.model not in zoo.list_models():
        p.error(f"model={args.model!r} is not accepted; expected one of "
                + ", ".join(zoo.list_models()))
    settings = COMPARE if args.compare else [(args.activation, args.init)]
    rows = {}
    try:
        for activation, init in settings:
            stats = monitors.init_activation_stats(args.model, init, activation, batch=args.batch,
                                                   max_layers=args.layers)
            rows[f"{activation}, {init}"] = stats
            stds = " ".join(f"{s['std']:.3g}" for s in stats.values())
            print(f"{activation:5} {init:13} activation std by layer: {stds}")
    except ValueError as err:
        types.fail(err)
    monitors.plot_activation_histograms(rows, args.out)
    print(f"-> {args.out}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
