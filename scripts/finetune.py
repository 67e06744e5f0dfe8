"""Transfer learning from a trained zoo model or from ImageNet weights: a new
classifier head, the backbone frozen (BatchNorm in inference mode), the head
trained, then optionally the top k blocks (or all) fine-tuned at a lower
learning rate (docs/pretrained.md: the four scenarios).

    python scripts/finetune.py --from runs/lenet5_mnist/model.keras --num-classes 5 \
        --dataset mnist --data-dir DIR --classes 5,6,7,8,9 --limit-train 300 \
        --head-epochs 20 --finetune-epochs 10 --unfreeze 1 --out runs/finetune
    python scripts/finetune.py --from imagenet:resnet50 --weights torchvision \
        --num-classes 10 --dataset cifar10 --data-dir DIR --limit-train 1000 --out runs/ft_r50

From a .keras file, images are padded and normalized as the source run's
config.json (beside it) says, when it is there. From imagenet:NAME (a zoo model
with the ImageNet weights of --weights: keras, torchvision or a weights file),
images are resized to --image-size (default the weights' 224), grayscale
repeated to RGB, and normalized as the weights expect. Writes DIR/model.keras,
DIR/config.json (what export.py needs) and DIR/metrics.json.
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
from zoo.training import data as data_module
from zoo.training import transfer
from zoo.training.config import TrainConfig
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
    p.add_argument("--num-classes", type=types.positive_int, required=True)
    p.add_argument("--dataset", default="mnist", help=", ".join(datasets.list_datasets()))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--classes", type=types.int_list, default=None,
                   help="keep these labels of the dataset, renumbered from 0")
    p.add_argument("--limit-train", type=types.positive_int, default=None,
                   help="fine-tune on this many images (after --classes)")
    p.add_argument("--limit-test", type=types.positive_int, default=None)
    p.add_argument("--head-epochs", type=types.positive_int, default=20)
    p.add_argument("--finetune-epochs", type=types.nonnegative_int, default=0)
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


def source_settings(parser, args):
    """(model name or None, the source run's config.json or the ImageNet
    weights' settings as such a dict)."""
    name = types.imagenet_name(args.source)
    if name is None:
        if args.weights is not None or args.image_size is not None:
            parser.error("--weights and --image-size go with --from imagenet:NAME (a trained "
                         ".keras file has its weights and input size)")
        source = Path(args.source)
        if not source.is_file():
            parser.error(f"from={args.source!r} is not accepted; expected an existing .keras "
                         "file or imagenet:NAME")
        return None, RunDir(source.parent).read_config() or {}
    types.check_imagenet(parser, "--from", name, args.weights)
    size = args.image_size or pretrained.preprocessing(name, args.weights)["input_size"][0]
    return name, {"model": name, "weights": args.weights, "image_size": size}


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    name, source_config = source_settings(parser, args)
    out = RunDir(args.out)
    try:
        out.check_start(args.overwrite)
        if out.holds_artifacts() and not args.overwrite:
            out.start_fresh(overwrite=False)  # names the files and --overwrite
    except (FileExistsError, RunDirError) as err:
        types.fail(err)
    config = TrainConfig(
        model=source_config.get("model", "lenet5"), dataset=args.dataset, data_dir=args.data_dir,
        classes=tuple(args.classes) if args.classes else None, limit_train=args.limit_train,
        limit_test=args.limit_test, seed=args.seed, image_size=source_config.get("image_size"),
        weights=source_config.get("weights"), val_split=0.0, batch_size=args.batch_size)
    try:
        if name:
            size = source_config["image_size"]
            model = zoo.create_model(name, weights=args.weights, input_shape=(size, size, 3))
        else:
            model = keras.saving.load_model(args.source)
        # Images smaller than the network's input are padded to it, as in training
        # (resized, RGB, with the weights' normalization when they are ImageNet's).
        data = data_module.prepare_data(config, normalization=source_config.get("normalization"),
                                        min_size=min(model.input_shape[1:3]))
        if data["num_classes"] != args.num_classes:
            raise ValueError(f"num_classes={args.num_classes!r} is not accepted; expected "
                             f"{data['num_classes']}, the number of classes in the data")
        new, report = transfer.finetune(
            model, data["x_train"], data["y_train"], data["x_test"], data["y_test"],
            num_classes=args.num_classes, head_epochs=args.head_epochs,
            finetune_epochs=args.finetune_epochs, unfreeze=args.unfreeze, lr=args.lr,
            finetune_lr=args.finetune_lr, batch_size=args.batch_size, seed=args.seed,
            verbose=args.verbose)
    except (ValueError, FileNotFoundError) as err:
        types.fail(err)
    try:
        with out.lock():
            out.start_fresh(args.overwrite)
            out.save_model(new)
            out.write_config(config, source=args.source, num_classes=args.num_classes,
                             input_shape=list(data["input_shape"]), data_source=data["source"],
                             normalization={"mean": data["mean"], "std": data["std"]})
            out.write_metrics({**vars(args), "num_train": len(data["x_train"]), **report})
    except (FileExistsError, RunDirError) as err:
        types.fail(err)
    print(f"fine-tuned {Path(args.source).name} on {len(data['x_train'])} images: test accuracy "
          f"{report['test_accuracy']:.4f} -> {out.path}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
