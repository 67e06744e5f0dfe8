"""LeNet-5 training images/s on MNIST under each Keras backend, and in plain PyTorch.

    python scripts/bench_backends.py --data-dir ../shared/data   # full MNIST, 3 epochs each
    python scripts/bench_backends.py --quick                     # embedded sample, seconds

Each measurement runs in its own process (Keras fixes its backend per process),
one after the other, on the same data (MNIST padded to 32x32, the training
split's normalization, 10% held out for validation):

- tensorflow, jax, torch: the training core (`zoo.training.train`) with LeNet-5's
  recipe (`zoo.lenet.RECIPE`: SGD momentum 0.9, lr 0.05, cosine, batch 128, l2 5e-5)
  and no augmentation; each epoch's training images/s from its logs (the
  `EpochStats` callback), the median of the epochs after the first (which
  traces or compiles);
- pytorch: the same network in `torch.nn` (conv-BN-ReLU x3 with max pools, F6 84
  ReLU, a 10-way output; cross-entropy on logits) with the same optimizer,
  schedule, weight decay and batches, timed the same way.

Prints a markdown table (images/s and the ratio to TensorFlow); `--json PATH`
writes every measurement. A backend whose package is missing is skipped with a note.
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib

BACKENDS = ("tensorflow", "jax", "torch", "pytorch")  # pytorch: the torch.nn network
PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "pytorch": "torch"}


def data_config(args, out):
    """The LeNet-5 recipe on this run's data (a `zoo.training.TrainConfig`)."""
    from zoo.lenet import RECIPE
    from zoo.training import TrainConfig

    return TrainConfig(**{**RECIPE, "dataset": args.dataset, "data_dir": args.data_dir,
                          "epochs": args.epochs, "limit_train": args.limit_train,
                          "out": out, "verbose": 0, "limit_test": args.limit_test})


def run_core(args):
    """images/s of each epoch of the training core under this process' backend."""
    import keras

    from zoo.training import train

    with tempfile.TemporaryDirectory(prefix="bench_backends_") as out:
        metrics = train(data_config(args, out))
    speeds = metrics["history"]["train_images_per_sec"]
    return {"backend": keras.backend.backend(), "keras": keras.__version__,
            "epoch_images_per_sec": speeds, "test_accuracy": metrics["test_accuracy"],
            "num_train": metrics["num_train"]}


def torch_lenet5():
    """The zoo's lenet5 in torch.nn: C1 6@5x5, S2, C3 16@5x5, S4, C5 120@5x5 (each
    conv without bias, batch norm momentum 0.1 = Keras' 0.9, ReLU), F6 84, output."""
    from torch import nn

    def conv(cin, cout):
        return [nn.Conv2d(cin, cout, 5, bias=False), nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1),
                nn.ReLU()]

    return nn.Sequential(*conv(1, 6), nn.MaxPool2d(2), *conv(6, 16), nn.MaxPool2d(2),
                         *conv(16, 120), nn.Flatten(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))


def run_pytorch(args):
    """images/s of each epoch of the same network and recipe in a plain PyTorch loop."""
    import numpy as np
    import torch

    from zoo.contract import preprocess
    from zoo.training import prepare_data

    with tempfile.TemporaryDirectory(prefix="bench_backends_") as out:
        config = data_config(args, out)
        data = prepare_data(config)
    torch.manual_seed(0)
    def network_input(images):  # padded and normalized as the zoo's model does it inside
        images = preprocess(data["contract"], data["input_shape"], images)
        return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))

    x = network_input(data["x_train"])
    y = torch.from_numpy(data["y_train"].argmax(-1))
    model = torch_lenet5().train()
    steps = -(-len(x) // config.batch_size)
    # Keras' l2 adds l2 * sum(w^2) to the loss on kernels: weight decay 2 * l2 on them.
    decay = [p for p in model.parameters() if p.dim() > 1]
    rest = [p for p in model.parameters() if p.dim() <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": 2 * config.l2},
                                 {"params": rest}], lr=config.lr, momentum=config.momentum)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps * config.epochs)
    speeds = []
    for _ in range(config.epochs):
        start = time.perf_counter()
        for index in torch.randperm(len(x)).split(config.batch_size):
            loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        speeds.append(len(x) / (time.perf_counter() - start))
    model.eval()
    with torch.no_grad():
        logits = model(network_input(data["x_test"]))
    accuracy = float((logits.argmax(-1).numpy() == data["y_test"].argmax(-1)).mean())
    return {"backend": "pytorch", "torch": torch.__version__, "epoch_images_per_sec": speeds,
            "test_accuracy": accuracy, "num_train": len(x)}


def child(args):
    result = run_pytorch(args) if args.child == "pytorch" else run_core(args)
    print("BENCH " + json.dumps(result), flush=True)


def measure(backend, args):
    """Runs one backend's measurement in its own process; its result dict or None."""
    env = {**os.environ, "KERAS_BACKEND": "torch" if backend == "pytorch" else backend,
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, __file__, "--child", backend, "--dataset", args.dataset,
               "--epochs", str(args.epochs)]
    for flag in ("data_dir", "limit_train", "limit_test"):
        if getattr(args, flag) is not None:
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if result.returncode or line is None:
        print(f"  {backend}: failed\n{result.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(line[len("BENCH "):])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="the embedded MNIST sample, 1,024 images, 2 epochs (seconds)")
    parser.add_argument("--data-dir", help="where MNIST is (e.g. ../shared/data)")
    parser.add_argument("--dataset", default="mnist", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=benchlib.positive_int,
                        help="epochs per backend, the first untimed (default 3; quick 2)")
    parser.add_argument("--limit-train", type=benchlib.positive_int, help="training images")
    parser.add_argument("--limit-test", type=benchlib.positive_int, help="test images")
    parser.add_argument("--backends", type=benchlib.comma_choices("backends", BACKENDS),
                        default=list(BACKENDS), help=f"comma-separated: {', '.join(BACKENDS)}")
    parser.add_argument("--json", help="also write every measurement to this file")
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.dataset = "mnist_sample"
        args.limit_train, args.limit_test = args.limit_train or 1024, args.limit_test or 256
    args.epochs = args.epochs or (2 if args.quick else 3)
    if args.epochs < 2:
        parser.error(f"--epochs={args.epochs} is not accepted; expected an integer >= 2 "
                     "(the first epoch is not timed)")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return child(args)
    report, results = benchlib.Report("bench_backends"), {}
    for backend in args.backends:
        if importlib.util.find_spec(PACKAGES[backend]) is None:
            print(f"  {backend}: skipped ({PACKAGES[backend]} is not installed)", file=sys.stderr)
            continue
        results[backend] = measure(backend, args)
        print(f"  {backend}: done", file=sys.stderr, flush=True)
    rates = {b: statistics.median(r["epoch_images_per_sec"][1:]) for b, r in results.items() if r}
    print("| LeNet-5, MNIST 32x32, batch 128 | training images/s | / TensorFlow | test accuracy |")
    print("| --- | ---: | ---: | ---: |")
    names = {"tensorflow": "Keras, TensorFlow backend", "jax": "Keras, JAX backend",
             "torch": "Keras, torch backend", "pytorch": "plain PyTorch (torch.nn)"}
    for backend, rate in rates.items():
        ratio = f"{rate / rates['tensorflow']:.2f}" if "tensorflow" in rates else "-"
        print(f"| {names[backend]} | {rate:,.0f} | {ratio} | "
              f"{results[backend]['test_accuracy']:.4f} |")
    first = next((r for r in results.values() if r), {})
    print(f"\n{first.get('num_train')} training images, {args.epochs} epochs each (median of "
          f"epochs 2-{args.epochs})")
    report.finish({"results": results}, args.json, args)
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
