"""Transfer learning from a trained zoo model: a new classifier head, the
backbone frozen (BatchNorm in inference mode), the head trained, then optionally
the top k blocks (or all) fine-tuned at a lower learning rate.

    python scripts/finetune.py --from runs/lenet5_mnist/model.keras --num-classes 5 \
        --dataset mnist --data-dir DIR --classes 5,6,7,8,9 --limit-train 300 \
        --head-epochs 20 --finetune-epochs 10 --unfreeze 1 --out runs/finetune

Images are padded and normalized as the source run's config.json (beside the
.keras file) says, when it is there. Writes DIR/model.keras and DIR/metrics.json.
"""

import argparse
import json
import sys
from pathlib import Path

import keras
import numpy as np

from augment import datasets
from zoo import resolve, transfer
from zoo.training import write_json


def _arg(convert, accepted):
    def parse(text):
        try:
            return convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not accepted; expected {accepted}") from None
    return parse


def _positive(text):
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _nonnegative(text):
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _rate(text):
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def _classes(text):
    values = [int(c) for c in text.split(",") if c.strip()]
    if not values or len(set(values)) != len(values) or min(values) < 0:
        raise ValueError(text)
    return values


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="source", required=True, help="a trained model.keras")
    p.add_argument("--num-classes", type=_arg(_positive, "an integer >= 1"), required=True)
    p.add_argument("--dataset", default="mnist", help=", ".join(datasets.list_datasets()))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--classes", type=_arg(_classes, "distinct labels such as 5,6,7,8,9"),
                   default=None, help="keep these labels of the dataset, renumbered from 0")
    p.add_argument("--limit-train", type=_arg(_positive, "an integer >= 1"), default=None,
                   help="fine-tune on this many images (after --classes)")
    p.add_argument("--limit-test", type=_arg(_positive, "an integer >= 1"), default=None)
    p.add_argument("--head-epochs", type=_arg(_positive, "an integer >= 1"), default=20)
    p.add_argument("--finetune-epochs", type=_arg(_nonnegative, "an integer >= 0"), default=0)
    p.add_argument("--unfreeze", type=_arg(transfer.parse_unfreeze,
                                           "none, all or a number of top blocks"), default="none",
                   help="blocks trainable in the fine-tuning phase")
    p.add_argument("--lr", type=_arg(_rate, "a number > 0"), default=1e-3, help="head phase (Adam)")
    p.add_argument("--finetune-lr", type=_arg(_rate, "a number > 0"), default=1e-4)
    p.add_argument("--batch-size", type=_arg(_positive, "an integer >= 1"), default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/finetune")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2)
    return p


def load_data(args, source_config):
    ds = datasets.load_dataset(args.dataset, args.data_dir, seed=args.seed)
    x_train, y_train, x_test, y_test = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if args.classes:
        if max(args.classes) >= ds.num_classes:
            raise resolve.bad_option("classes", args.classes,
                                     f"labels below {ds.num_classes} for {args.dataset}")
        x_train, y_train = transfer.select_classes(x_train, y_train, args.classes)
        x_test, y_test = transfer.select_classes(x_test, y_test, args.classes)
    rng = np.random.default_rng(args.seed)
    if args.limit_train and args.limit_train < len(x_train):
        keep = rng.permutation(len(x_train))[:args.limit_train]
        x_train, y_train = x_train[keep], y_train[keep]
    if args.limit_test and args.limit_test < len(x_test):
        keep = rng.permutation(len(x_test))[:args.limit_test]
        x_test, y_test = x_test[keep], y_test[keep]
    size = source_config.get("image_size")
    if size:
        x_train, x_test = datasets.pad_to(x_train, size), datasets.pad_to(x_test, size)
    norm = source_config.get("normalization")
    mean, std = (np.array(norm["mean"]), np.array(norm["std"])) if norm else \
        datasets.channel_stats(x_train)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    onehot = lambda y: keras.utils.to_categorical(y, num_classes).astype("float32")  # noqa: E731
    return (datasets.normalize(x_train, mean, std), onehot(y_train),
            datasets.normalize(x_test, mean, std), onehot(y_test))


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    source = Path(args.source)
    if not source.exists():
        parser.error(f"from={args.source!r} is not accepted; expected an existing .keras file")
    config_path = source.parent / "config.json"
    source_config = json.loads(config_path.read_text()) if config_path.exists() else {}
    try:
        x, y, x_test, y_test = load_data(args, source_config)
        if y.shape[-1] != args.num_classes:
            raise resolve.bad_option("num_classes", args.num_classes,
                                     f"{y.shape[-1]}, the number of classes in the data")
        model = keras.saving.load_model(source)
        new, report = transfer.finetune(
            model, x, y, x_test, y_test, num_classes=args.num_classes,
            head_epochs=args.head_epochs, finetune_epochs=args.finetune_epochs,
            unfreeze=args.unfreeze, lr=args.lr, finetune_lr=args.finetune_lr,
            batch_size=args.batch_size, seed=args.seed, verbose=args.verbose)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    new.save(out / "model.keras")
    write_json(out / "metrics.json", {**vars(args), "num_train": len(x), **report})
    print(f"fine-tuned {source.name} on {len(x)} images: test accuracy "
          f"{report['test_accuracy']:.4f} -> {out}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
