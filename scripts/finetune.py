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
import sys
from pathlib import Path

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)
import keras

from augment import datasets
from zoo.cli import args as types
from zoo.training import data as data_module
from zoo.training import transfer
from zoo.training.config import TrainConfig
from zoo.training.rundir import RunDir, RunDirError


def build_parser():
    p = types.Parser(description=__doc__)
    p.add_argument("--from", dest="source", required=True, help="a trained model.keras")
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


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    source = Path(args.source)
    if not source.is_file():
        parser.error(f"from={args.source!r} is not accepted; expected an existing .keras file")
    source_config = RunDir(source.parent).read_config() or {}
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
        val_split=0.0, batch_size=args.batch_size)
    try:
        model = keras.saving.load_model(source)
        # Images smaller than the network's input are padded to it, as in training.
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
            out.write_metrics({**vars(args), "num_train": len(data["x_train"]), **report})
    except (FileExistsError, RunDirError) as err:
        types.fail(err)
    print(f"fine-tuned {source.name} on {len(data['x_train'])} images: test accuracy "
          f"{report['test_accuracy']:.4f} -> {out.path}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
