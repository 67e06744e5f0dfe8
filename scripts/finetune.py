"""Transfer learning from a trained zoo model or from ImageNet weights: a new
classifier head, the backbone frozen (BatchNorm in inference mode), the head
trained, then optionally the top k blocks (or all) fine-tuned at a lower
learning rate (docs/pretrained.md: the four scenarios).

    python scripts/finetune.py --from runs/lenet5_mnist/model.keras \
        --dataset mnist --data-dir DIR --classes 5,6,7,8,9 --limit-train 300 \
        --head-epochs 20 --finetune-epochs 10 --unfreeze 1 --out runs/finetune
    python scripts/finetune.py --from imagenet:resnet50 --weights torchvision \
        --dataset cifar10 --data-dir DIR --limit-train 1000 --out runs/ft_r50

The source model carries its input contract, so the new model takes the new
data's raw images and fits and normalizes them as the source did (zero padding
and the training statistics of a trained model; for imagenet:NAME, a zoo model
with the ImageNet weights of --weights, a resize to --image-size (default the
weights' 224), grayscale repeated to RGB, the weights' normalization). The new
head has the data's classes (--num-classes is checked against them when
given). Writes DIR/model.keras (with the new class names), DIR/config.json and
DIR/metrics.json.
"""

import argparse
import sys
from pathlib import Path

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

import keras

import zoo
from augment import datasets
from zoo import pretrained
from zoo.cli import args as types
from zoo.cli import storage
from zoo.contract import contract_of
from zoo.training import rundir, transfer
from zoo.training.rundir import RunDir, RunDirError


def build_parser():
    p = types.Parser(description=__doc__)
    p.add_argument("--from", dest="source", required=True,
                   help="a trained model.keras, or imagenet:NAME (zoo model NAME with the "
                        "ImageNet weights of --weights, e.g. imagenet:resnet50)")
    p.add_argument("--weights", default=None, metavar="SOURCE|FILE",
                   help="with --from imagenet:NAME: keras, torchvision (downloaded once) or a "
                        "weights file (.h5, .pth, .safetensors)")
    p.add_argument("--image-size", type=types.positive_int, default=None,
                   help="with --from imagenet:NAME: the side images are resized to (default: "
                        "the weights' own, 224)")
    p.add_argument("--num-classes", type=types.positive_int, default=None,
                   help="the new head's classes (default: the data's; checked against them)")
    p.add_argument("--dataset", default="mnist", help=", ".join(datasets.list_datasets()))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--classes", type=types.int_list, default=None,
                   help="keep these labels of the dataset, renumbered from 0")
    p.add_argument("--limit-train", type=types.positive_int, default=None,
                   help="fine-tune on this many images (after --classes)")
    p.add_argument("--limit-test", type=types.positive_int, default=None)
    p.add_argument("--head-epochs", "--epochs", dest="head_epochs", type=types.positive_int,
                   default=20, help="epochs of the head phase (--epochs is the same flag)")
    p.add_argument("--finetune-epochs", type=types.nonnegative_int, default=0,
                   help="epochs of the fine-tuning phase after it (0: none)")
    p.add_argument("--unfreeze", type=_unfreeze, default="none",
                   help="blocks trainable in the fine-tuning phase: none, all or a number")
    p.add_argument("--lr", type=types.positive_number, default=1e-3, help="head phase (Adam)")
    p.add_argument("--finetune-lr", type=types.positive_number, default=1e-4)
    p.add_argument("--batch-size", type=types.positive_int, default=32)
    p.add_argument("--seed", type=types.nonnegative_int, default=0)
    p.add_argument("--out", default="runs/finetune")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    return p


def _unfreeze(text):
    try:
        return transfer.parse_unfreeze(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not accepted; expected none, all or a number of top blocks") from None


def load_source(parser, args):
    """The source model (raw images in, its contract inside)."""
    name = types.imagenet_name(args.source)
    if name is None:
        if args.weights is not None or args.image_size is not None:
            parser.error("--weights and --image-size go with --from imagenet:NAME (a trained "
                         ".keras file has its weights and input size)")
        try:
            model = rundir.load_model(args.source)
        except ValueError as err:
            parser.error(f"argument --from: {err}")
        if contract_of(model) is None:
            parser.error(f"from={args.source!r} is not accepted: a bare network (no input "
                         "contract, no run config.json beside it); expected a model the toolkit "
                         "trained")
        return model
    types.check_imagenet(parser, "--from", name, args.weights)
    size = args.image_size or pretrained.preprocessing(name, args.weights)["input_size"][0]
    try:
        return zoo.create_model(name, weights=args.weights, input_shape=(size, size, 3))
    except ValueError as err:
        parser.error(f"argument --weights: {err}")


def load_data(args):
    """The new task's raw images and one-hot labels."""
    ds = datasets.load_dataset(args.dataset, args.data_dir, classes=args.classes,
                               limit_train=args.limit_train, limit_test=args.limit_test,
                               seed=args.seed)
    onehot = keras.utils.to_categorical
    return ds, (ds.x_train, onehot(ds.y_train, ds.num_classes).astype("float32"),
                ds.x_test, onehot(ds.y_test, ds.num_classes).astype("float32"))


@storage.stopping_on_storage_errors(storage.AGAIN)
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    model = load_source(parser, args)
    out = RunDir(args.out)
    try:
        out.check_start(args.overwrite)
        if out.holds_artifacts() and not args.overwrite:
            out.start_fresh(overwrite=False)  # names the files and --overwrite
        ds, data = load_data(args)
    except (FileExistsError, RunDirError, ValueError, FileNotFoundError, OSError) as err:
        types.fail(err)
    if args.num_classes is not None and args.num_classes != ds.num_classes:
        parser.error(f"argument --num-classes: {args.num_classes} is not accepted; expected "
                     f"{ds.num_classes}, the number of classes in the data (or leave it out)")
    contract = contract_of(model).replace(
        image_shape=tuple(ds.x_train.shape[1:]), dataset=ds.name,
        class_names=ds.class_names or [str(i) for i in range(ds.num_classes)],
        classes=args.classes)
    try:
        new, report = transfer.finetune(
            model, *data, num_classes=ds.num_classes, head_epochs=args.head_epochs,
            finetune_epochs=args.finetune_epochs, unfreeze=args.unfreeze, lr=args.lr,
            finetune_lr=args.finetune_lr, batch_size=args.batch_size, seed=args.seed,
            verbose=args.verbose, contract=contract)
    except ValueError as err:
        types.fail(err)
    try:
        with out.lock():
            out.start_fresh(args.overwrite)
            out.save_model(new)
            out.write_config(None, source=args.source, weights=args.weights,
                             dataset=args.dataset, data_dir=args.data_dir, classes=args.classes,
                             num_classes=ds.num_classes, data_source=ds.source,
                             contract=contract.to_config())
            out.write_metrics({**vars(args), "num_train": len(ds.x_train), **report})
    except (FileExistsError, RunDirError) as err:
        types.fail(err)
    print(f"fine-tuned {Path(args.source).name} on {len(ds.x_train)} images: test accuracy "
          f"{report['test_accuracy']:.4f} -> {out.path}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
