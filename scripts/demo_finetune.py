"""Transfer learning on real MNIST: LeNet-5 trained on digits 0-4, fine-tuned to
digits 5-9 with a few hundred images, against LeNet-5 trained from scratch on the
same images. Test accuracy on every 5-9 test digit, for each --few size. A few
CPU minutes.

    python scripts/demo_finetune.py --data-dir ../shared/data --out runs/demo_finetune

Writes DIR/results.json and DIR/source_0-4.keras (the digits 0-4 model).
"""

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np

import zoo
from augment import datasets
from zoo import transfer
from zoo.training import TrainConfig, compile_model, write_json

SOURCE, TARGET = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help="holds mnist/ (the full MNIST files)")
    p.add_argument("--few", default="100,300",
                   help="comma-separated numbers of 5-9 training images for the transfer")
    p.add_argument("--source-epochs", type=int, default=3, help="epochs on digits 0-4")
    p.add_argument("--head-epochs", type=int, default=30)
    p.add_argument("--finetune-epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/demo_finetune")
    args = p.parse_args(argv)
    try:
        sizes = [int(n) for n in args.few.split(",")]
    except ValueError:
        sizes = [0]
    if min(sizes) < 1:
        p.error(f"few={args.few!r} is not accepted; expected comma-separated integers >= 1")
    for option in ("source_epochs", "head_epochs"):
        if getattr(args, option) < 1:
            p.error(f"{option}={getattr(args, option)!r} is not accepted; expected an integer >= 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    ds = datasets.load_dataset("mnist", args.data_dir, seed=args.seed)
    x_src, y_src = transfer.select_classes(ds.x_train, ds.y_train, SOURCE)
    x_tgt, y_tgt = transfer.select_classes(ds.x_train, ds.y_train, TARGET)
    x_test, y_test = transfer.select_classes(ds.x_test, ds.y_test, TARGET)
    order = np.random.default_rng(args.seed).permutation(len(x_tgt))
    mean, std = datasets.channel_stats(datasets.pad_to(x_src, 32))

    def prep(x, y):
        x = datasets.normalize(datasets.pad_to(x, 32), mean, std)
        return x, keras.utils.to_categorical(y, 5).astype("float32")

    (x_src, y_src), (x_tgt, y_tgt), (x_test, y_test) = (
        prep(x_src, y_src), prep(x_tgt, y_tgt), prep(x_test, y_test))

    # 1. The source model: LeNet-5 on every 0-4 training digit.
    keras.utils.set_random_seed(args.seed)
    config = TrainConfig(model="lenet5", epochs=args.source_epochs, optimizer="momentum", lr=0.05,
                         schedule="cosine", batch_size=128)
    steps = int(np.ceil(len(x_src) / config.batch_size))
    source = zoo.create_model("lenet5", num_classes=5, input_shape=(32, 32, 1))
    compile_model(source, config, steps)
    source.fit(x_src, y_src, batch_size=128, epochs=args.source_epochs, verbose=2)
    source.save(out / "source_0-4.keras")
    t_source = time.perf_counter() - start

    # 2. For each size: head only; head then everything at a 10x lower learning
    # rate; from scratch on the same images for as many epochs as head + fine-tuning.
    rows = []
    for n in sizes:
        x_few, y_few = x_tgt[order[:n]], y_tgt[order[:n]]
        _, head = transfer.finetune(source, x_few, y_few, x_test, y_test,
                                    head_epochs=args.head_epochs, seed=args.seed)
        _, tuned = transfer.finetune(source, x_few, y_few, x_test, y_test,
                                     head_epochs=args.head_epochs,
                                     finetune_epochs=args.finetune_epochs, unfreeze="all",
                                     lr=1e-3, finetune_lr=1e-4, seed=args.seed)
        keras.utils.set_random_seed(args.seed)
        scratch = zoo.create_model("lenet5", num_classes=5, input_shape=(32, 32, 1))
        scratch.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                        metrics=["accuracy"])
        scratch.fit(x_few, y_few, batch_size=32, epochs=args.head_epochs + args.finetune_epochs,
                    verbose=0)
        rows.append({
            "target_train_images": n, "head_only_test_accuracy": head["test_accuracy"],
            "head_then_all_test_accuracy": tuned["test_accuracy"],
            "scratch_test_accuracy": float(scratch.evaluate(x_test, y_test, batch_size=256,
                                                            verbose=0)[1]),
        })
        print(json.dumps(rows[-1]), flush=True)

    results = {
        "source": "lenet5 on MNIST digits 0-4", "source_train_images": len(x_src),
        "source_epochs": args.source_epochs, "target_test_images": len(x_test),
        "data_source": ds.source, "head_epochs": args.head_epochs,
        "finetune_epochs": args.finetune_epochs, "results": rows,
        "source_seconds": t_source, "total_seconds": time.perf_counter() - start,
    }
    write_json(out / "results.json", results)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
