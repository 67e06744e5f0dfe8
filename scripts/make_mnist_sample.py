"""Cuts the embedded MNIST sample (augment/data/mnist_sample) from full MNIST.

MNIST: Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten
digits". The sample is a seeded, class-balanced random subset written in the
original IDX ``.gz`` format under the original file names, so any MNIST loader
reads it. It lets ``load_dataset("mnist")`` work offline on a fresh machine.

Usage:
    python scripts/make_mnist_sample.py --data-dir /path/to/data
"""

import argparse
import hashlib
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, when not installed

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

from augment.datasets import DATA_DIR_ENV, IDX_FILES, load_dataset, write_idx
from zoo.cli import storage

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 2_000_000  # the four .gz files together must stay under this

README = """# Embedded MNIST sample

A seeded, class-balanced random subset of MNIST: {n_train} training images (from
the 60,000) and {n_test} test images (from the 10,000), {per_train} and {per_test}
per digit, in random order, 28x28 grayscale uint8. The files use the original IDX
format, gzip-compressed, under the original file names, so any MNIST loader reads
them. `augment.load_dataset("mnist_sample")` loads them, and `load_dataset("mnist")`
falls back to them (with a warning) when no data directory is given and
`keras.datasets` cannot download.

**Source:** the MNIST database of handwritten digits, Y. LeCun, C. Cortes and
C. J. C. Burges (http://yann.lecun.com/exdb/mnist/).

**Licence:** Creative Commons Attribution-Share Alike 3.0 (CC BY-SA 3.0), the
licence under which MNIST is commonly distributed. This subset is distributed
under the same licence.

**Made by** (seed {seed}, from the four original `.gz` files):

    python scripts/make_mnist_sample.py --data-dir <dir with MNIST> --train {n_train} \
        --test {n_test} --seed {seed}

| file | images/labels | bytes | md5 |
| --- | --- | --- | --- |
{rows}
"""


def balanced_subset(y, count, rng):
    """Indices of ``count`` samples, as equal per class as possible, shuffled."""
    classes = np.unique(y)
    per_class = np.full(len(classes), count // len(classes))
    per_class[: count % len(classes)] += 1
    picks = [rng.choice(np.flatnonzero(y == c), n, replace=False) for c, n in zip(classes,
                                                                                  per_class)]
    return rng.permutation(np.concatenate(picks))


@storage.stopping_on_storage_errors(storage.AGAIN)
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get(DATA_DIR_ENV),
                        help=f"directory with full MNIST (or its parent); default ${DATA_DIR_ENV}")
    parser.add_argument("--out", type=Path, default=ROOT / "augment" / "data" / "mnist_sample")
    parser.add_argument("--train", type=int, default=5000, help="training images to keep")
    parser.add_argument("--test", type=int, default=1000, help="test images to keep")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.data_dir:
        parser.error(f"give --data-dir or set {DATA_DIR_ENV}: the sample must come from full "
                     "MNIST files")

    ds = load_dataset("mnist", data_dir=args.data_dir)
    if len(ds.x_train) != 60000 or len(ds.x_test) != 10000:
        parser.error(f"{ds.source} is not full MNIST ({len(ds.x_train)}/{len(ds.x_test)} images)")
    rng = np.random.default_rng(args.seed)
    train = balanced_subset(ds.y_train, args.train, rng)
    test = balanced_subset(ds.y_test, args.test, rng)
    arrays = {
        "x_train": ds.x_train[train, ..., 0],
        "y_train": ds.y_train[train].astype(np.uint8),
        "x_test": ds.x_test[test, ..., 0],
        "y_test": ds.y_test[test].astype(np.uint8),
    }

    args.out.mkdir(parents=True, exist_ok=True)
    rows, total = [], 0
    for key, name in IDX_FILES.items():
        path = args.out / name
        write_idx(path, arrays[key])
        data = path.read_bytes()
        total += len(data)
        digest = hashlib.md5(data).hexdigest()
        rows.append(f"| {name} | {len(arrays[key])} | {len(data)} | {digest} |")
    (args.out / "README.md").write_text(README.format(
        n_train=args.train, n_test=args.test, per_train=args.train // 10, per_test=args.test // 10,
        seed=args.seed, rows="\n".join(rows)))
    print(f"wrote {args.out}: {total} bytes in the four .gz files (from {ds.source})")
    if total > MAX_BYTES:
        sys.exit(f"sample is {total} bytes, over the {MAX_BYTES} byte budget")


if __name__ == "__main__":
    main()
