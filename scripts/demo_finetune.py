"""Transfer learning on real MNIST: LeNet-5 trained on digits 0-4, fine-tuned to
digits 5-9 with a few hundred images, against LeNet-5 trained from scratch on the
same images. Test accuracy on every 5-9 test digit, for each --few size. A few
CPU minutes.

    python scripts/demo_finetune.py --data-dir ../shared/data --out runs/demo_finetune

Every model trains through the training core (`zoo.training.train`; the
fine-tuning through `zoo.training.transfer`). Writes DIR/results.json,
DIR/source/ (the digits 0-4 run) and DIR/scratch_N/ (the from-scratch runs).
"""

import dataclasses
import json
import time
from pathlib import Path

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

from zoo.cli import args as types
from zoo.cli import storage
from zoo.training import TrainConfig, rundir, train, transfer
from zoo.training import data as data_module
from zoo.training.rundir import RunDir, write_json

SOURCE, TARGET = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)


@storage.stopping_on_storage_errors(storage.AGAIN)
def main(argv=None):
    p = types.Parser(description=__doc__)
    p.add_argument("--data-dir", default=None, help="holds mnist/ (the full MNIST files)")
    p.add_argument("--few", type=types.int_list, default=[100, 300],
                   help="comma-separated numbers of 5-9 training images for the transfer")
    p.add_argument("--source-epochs", type=types.positive_int, default=3,
                   help="epochs on digits 0-4")
    p.add_argument("--head-epochs", type=types.positive_int, default=30)
    p.add_argument("--finetune-epochs", type=types.positive_int, default=15)
    p.add_argument("--seed", type=types.nonnegative_int, default=0)
    p.add_argument("--out", default="runs/demo_finetune")
    p.add_argument("--overwrite", action="store_true", help="retrain the runs already in --out")
    args = p.parse_args(argv)
    if min(args.few) < 1:
        p.error(f"argument --few: {args.few!r} is not accepted; expected integers >= 1")
    out = Path(args.out)
    start = time.perf_counter()
    base = TrainConfig(model="lenet5", dataset="mnist", data_dir=args.data_dir, image_size=32,
                       val_split=0.0, seed=args.seed, verbose=0, overwrite=args.overwrite)

    # 1. The source model: LeNet-5 on every 0-4 training digit.
    source_run = RunDir(out / "source")
    source_config = dataclasses.replace(
        base, classes=SOURCE, epochs=args.source_epochs, optimizer="momentum", lr=0.05,
        schedule="cosine", batch_size=128, out=str(source_run.path), verbose=2)
    source_metrics = (source_run.read_metrics() if source_run.is_finished() and not args.overwrite
                      else train(source_config))
    source = rundir.load_model(source_run.model_path)  # raw images in, its normalization inside
    t_source = time.perf_counter() - start

    # 2. For each size: head only; head then everything at a 10x lower learning
    # rate; from scratch on the same images for as many epochs as head + fine-tuning.
    rows = []
    for n in args.few:
        target = dataclasses.replace(base, classes=TARGET, limit_train=n, batch_size=32)
        data = data_module.prepare_data(target)
        few = (data["x_train"], data["y_train"], data["x_test"], data["y_test"])
        _, head = transfer.finetune(source, *few, head_epochs=args.head_epochs, seed=args.seed)
        _, tuned = transfer.finetune(source, *few, head_epochs=args.head_epochs,
                                     finetune_epochs=args.finetune_epochs, unfreeze="all",
                                     lr=1e-3, finetune_lr=1e-4, seed=args.seed)
        scratch = train(dataclasses.replace(
            target, optimizer="adam", lr=1e-3, epochs=args.head_epochs + args.finetune_epochs,
            out=str(out / f"scratch_{n}"), overwrite=True))
        rows.append({
            "target_train_images": n, "head_only_test_accuracy": head["test_accuracy"],
            "head_then_all_test_accuracy": tuned["test_accuracy"],
            "scratch_test_accuracy": scratch["test_accuracy"],
        })
        print(json.dumps(rows[-1]), flush=True)

    results = {
        "source": "lenet5 on MNIST digits 0-4", "source_train_images": source_metrics["num_train"],
        "source_epochs": args.source_epochs, "target_test_images": len(data["x_test"]),
        "data_source": data["source"], "head_epochs": args.head_epochs,
        "finetune_epochs": args.finetune_epochs, "results": rows,
        "source_seconds": t_source, "total_seconds": time.perf_counter() - start,
    }
    write_json(out / "results.json", results)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
