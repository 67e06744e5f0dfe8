"""Training images/s on an accelerator: our models in float32 and mixed
precision, next to the same networks in plain PyTorch in the same run.

    KERAS_BACKEND=jax python scripts/bench_gpu.py                # the GPU table
    python scripts/bench_gpu.py --models resnet50 --batch-size 128 --steps 50
    python scripts/bench_gpu.py --mixed mixed_bfloat16           # bf16 (torch: autocast bf16)
    python scripts/bench_gpu.py --quick                          # tiny CPU smoke run (--cpu)

Models at their usual input: resnet20 at 32x32 (CIFAR, --small-batch-size),
resnet50, vgg16 (no batch norm, as torchvision's vgg16) and googlenet (no
auxiliary heads) at --image-size (224) with --batch-size. Each measurement
builds the model under the precision policy (`zoo.training.distribute.precision_policy`;
`compile` adds loss scaling for mixed_float16), compiles it (SGD momentum
0.9, categorical cross-entropy, `jit_compile` from --jit), puts one synthetic
batch on the device, runs --warmup `train_on_batch` calls (tracing / XLA
compilation) and times --steps more; images/s is batch / median step time.
`train_on_batch` returns the loss to the host every step, which syncs the
device each step.

PyTorch (optional; skipped with a note when torch/torchvision are missing):
torchvision's resnet50, vgg16 and googlenet (aux_logits=False) with the same
batch, classes, optimizer and loss, channels-last, on the same kind of
device; mixed precision is `torch.autocast` with the same 16-bit dtype (plus a
`GradScaler` for float16; bfloat16 on a CPU); steps synchronize like ours. resnet20 has no
torchvision counterpart.

Run it under `KERAS_BACKEND=jax` on a GPU machine without TensorFlow: this
script imports neither TensorFlow nor the tf.data code (a test checks it), and
uses synthetic numpy data only. Stdout gets a markdown table and the ratios
mixed/fp32 and ours/torch; `--json PATH` writes every measurement.
"""

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import benchlib

RESULT_PREFIX = "BENCH_GPU "
LR, MOMENTUM = 0.01, 0.9


@dataclasses.dataclass(frozen=True)
class Entry:
    """One benchmarked network.

    Args:
        model: the registered zoo name.
        options: zoo model options.
        small: CIFAR geometry (32x32, --small-batch-size, 10 classes).
        torch: the torchvision builder's name, or None.
        torch_options: its keyword arguments.
    """

    model: str
    options: dict = dataclasses.field(default_factory=dict)
    small: bool = False
    torch: str | None = None
    torch_options: dict = dataclasses.field(default_factory=dict)


ENTRIES = {
    "resnet20": Entry("resnet20", small=True),
    "resnet50": Entry("resnet50", torch="resnet50"),
    "vgg16": Entry("vgg16", {"batch_norm": False}, torch="vgg16"),
    "googlenet": Entry("googlenet", {"aux_logits": False}, torch="googlenet",
                       torch_options={"aux_logits": False, "init_weights": True}),
    # A tiny registered network for the test of this script (not in the defaults).
    "test_resnet": Entry("test_resnet", small=True),
}
DEFAULTS = dict(models="resnet20,resnet50,vgg16,googlenet", image_size=224, batch_size=64,
                small_batch_size=128, steps=20, warmup=3)
QUICK = dict(models="resnet20,resnet50,vgg16,googlenet", image_size=32, batch_size=2,
             small_batch_size=2, steps=2, warmup=1)


def setting(entry, args):
    """(input shape, batch size, classes) of one entry."""
    side = 32 if entry.small else args.image_size
    return ((side, side, 3), args.small_batch_size if entry.small else args.batch_size,
            10 if entry.small else args.num_classes)


def synthetic(shape, batch, classes, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, *shape)).astype("float32")
    labels = rng.integers(0, classes, size=batch)
    return x, labels


def bench_ours(entry, precision, args):
    """Images/s of one zoo model under `precision` (a keras dtype policy)."""
    import keras
    import numpy as np

    import zoo
    from zoo.training import distribute

    shape, batch, classes = setting(entry, args)
    x, labels = synthetic(shape, batch, classes)
    y = np.eye(classes, dtype="float32")[labels]
    with distribute.precision_policy(precision):
        model = zoo.create_model(entry.model, num_classes=classes, input_shape=shape,
                                 **entry.options)
        model.compile(optimizer=keras.optimizers.SGD(LR, momentum=MOMENTUM),
                      loss="categorical_crossentropy", jit_compile=args.jit)
        x_dev, y_dev = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
        start = time.perf_counter()
        for _ in range(args.warmup):
            loss = model.train_on_batch(x_dev, y_dev)
        warmup_s = time.perf_counter() - start
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            loss = model.train_on_batch(x_dev, y_dev)  # returns host floats: a device sync
            times.append(time.perf_counter() - start)
        out_dtype = keras.backend.standardize_dtype(model(x_dev[:1], training=False).dtype)
    return {"images_per_sec": benchlib.median_rate(times, batch), "warmup_s": warmup_s,
            "loss": float(np.ravel(loss)[0]), "output_dtype": out_dtype,
            "optimizer": type(model.optimizer).__name__}


def torch_available():
    try:
        import torch  # noqa: F401  (only whether they import)
        import torchvision  # noqa: F401  (only whether they import)
    except ImportError as err:
        return str(err)
    return None


def bench_torch(entry, precision, args):
    """Images/s of the torchvision counterpart under torch.autocast."""
    import torch
    import torchvision

    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    shape, batch, classes = setting(entry, args)
    x, labels = synthetic(shape, batch, classes)
    torch.manual_seed(0)
    model = getattr(torchvision.models, entry.torch)(num_classes=classes, weights=None,
                                                     **entry.torch_options)
    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    x_dev = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(
        memory_format=torch.channels_last).to(device)
    y_dev = torch.from_numpy(labels).to(device)
    mixed = precision != "float32"
    dtype = torch.bfloat16 if precision == "mixed_bfloat16" or device.type == "cpu" \
        else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=mixed and dtype == torch.float16)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=mixed):
            loss = loss_fn(model(x_dev), y_dev)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.item()  # a device sync, as train_on_batch's

    start = time.perf_counter()
    for _ in range(args.warmup):
        loss = step()
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - start)
    return {"images_per_sec": benchlib.median_rate(times, batch), "warmup_s": warmup_s,
            "loss": loss,
            "device": str(device),
            "autocast_dtype": str(dtype).replace("torch.", "") if mixed else None}


def fmt(value, digits=None):
    """A rate with no decimals, or one below 10 (CPU runs); a ratio with `digits`."""
    if value is None:
        return "-"
    return f"{value:,.{digits if digits is not None else (1 if value < 10 else 0)}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def report(rows, mixed, torch_note):
    """The markdown table, one row per model."""
    lines = [
        f"| model | input | batch | ours fp32 | ours {mixed} | torch fp32 | torch {mixed} | "
        "ours mixed/fp32 | ours/torch fp32 | ours/torch mixed |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        o32, omx = r["ours"].get("float32"), r["ours"].get(mixed)
        t32, tmx = r["torch"].get("float32"), r["torch"].get(mixed)
        lines.append(
            f"| {r['model']} | {'x'.join(map(str, r['input_shape']))} | {r['batch_size']} | "
            f"{fmt(o32)} | {fmt(omx)} | {fmt(t32)} | {fmt(tmx)} | {fmt(ratio(omx, o32), 2)} | "
            f"{fmt(ratio(o32, t32), 2)} | {fmt(ratio(omx, tmx), 2)} |")
    lines.append("")
    lines.append("Training images/s (median step). " + (torch_note or ""))
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--models", default=None, help=f"comma-separated, from {', '.join(ENTRIES)}")
    add("--image-size", type=benchlib.positive_int, default=None,
        help="side of the ImageNet-geometry inputs")
    add("--batch-size", type=benchlib.positive_int, default=None,
        help="batch of the 224x224 models")
    add("--small-batch-size", type=benchlib.positive_int, default=None,
        help="batch of resnet20 (32x32)")
    add("--num-classes", type=benchlib.positive_int, default=1000,
        help="classes of the ImageNet-geometry models")
    add("--steps", type=benchlib.positive_int, default=None, help="timed steps")
    add("--warmup", type=benchlib.positive_int, default=None,
        help="untimed steps first (tracing/compilation)")
    add("--mixed", default="mixed_float16", choices=("mixed_float16", "mixed_bfloat16"))
    add("--precisions", default="float32,mixed", help="float32 and/or mixed")
    add("--jit", default="auto", choices=("auto", "on", "off"), help="compile(jit_compile=)")
    add("--torch", default="auto", choices=("auto", "off"), help="the PyTorch columns")
    add("--quick", "--cpu", dest="quick", action="store_true",
        help="tiny smoke run on the CPU: 32x32 inputs, batch 2, 2 steps")
    add("--json", default=None, help="write every measurement to this file")
    args = p.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.cpu = args.quick
    args.jit = {"auto": "auto", "on": True, "off": False}[args.jit]
    unknown = [m for m in args.models.split(",") if m not in ENTRIES]
    if unknown:
        p.error(f"--models {unknown[0]!r} is not accepted; expected names from "
                f"{', '.join(ENTRIES)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    # torch before keras: importing torch after TensorFlow (KERAS_BACKEND=tensorflow)
    # crashed the process with torch 2.13 and TF 2.21 on this project's CPU machine.
    missing = None if args.torch == "auto" else "--torch off"
    missing = missing or torch_available()
    import keras

    precisions = [args.mixed if p.strip() == "mixed" else p.strip()
                  for p in args.precisions.split(",")]
    torch_note = None if missing is None else (
        f"PyTorch columns skipped: {missing} (pip install torch torchvision to add them).")
    harness = benchlib.Report("bench_gpu")
    devices = keras.distribution.list_devices()
    print(f"backend {keras.backend.backend()}, keras {keras.__version__}, devices {devices}, "
          f"{platform.processor() or platform.machine()}", file=sys.stderr)
    rows = []
    for name in args.models.split(","):
        entry = ENTRIES[name]
        shape, batch, _ = setting(entry, args)
        row = {"model": name, "input_shape": list(shape), "batch_size": batch, "ours": {},
               "torch": {}, "ours_detail": {}, "torch_detail": {}}
        for precision in precisions:
            print(f"{name} {precision} ...", file=sys.stderr, flush=True)
            result = bench_ours(entry, precision, args)
            row["ours"][precision] = result["images_per_sec"]
            row["ours_detail"][precision] = result
            if entry.torch and missing is None:
                result = bench_torch(entry, precision, args)
                row["torch"][precision] = result["images_per_sec"]
                row["torch_detail"][precision] = result
        rows.append(row)
    summary = {"backend": keras.backend.backend(), "keras_version": keras.__version__,
               "devices": devices, "mixed": args.mixed, "quick": args.quick,
               "torch": torch_note or "measured", "rows": rows,
               "tensorflow_imported": "tensorflow" in sys.modules}
    print(report(rows, args.mixed, torch_note))
    print(RESULT_PREFIX + json.dumps(summary))
    harness.finish(summary, args.json)
    return summary


if __name__ == "__main__":
    main()
