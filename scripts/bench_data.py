"""Data at any scale: memory of a run on growing image folders, and the input pipeline's speed.

    python scripts/bench_data.py make-folder --images 50000 --out /data/jpeg50k \
        --data-dir ../shared/data
    python scripts/bench_data.py rss /data/jpeg5k /data/jpeg50k /data/jpeg200k [--compare-code OLD]
    python scripts/bench_data.py throughput /data/jpeg50k --torch-python /venv/bin/python
    python scripts/bench_data.py tfrecords /data/jpeg50k --out /data/shards50k

make-folder: a JPEG folder from the MNIST digits (10 class sub-folders): each
digit resized to a random size between 64 and 400 pixels at a random aspect
ratio (3:4 to 4:3), colourized (a random dark ink on a random light paper),
saved at quality 90, written by --workers processes.

rss: the peak resident memory of `train.py --model resnet18 --dataset folder
--image-size 64 --epochs 1` on each folder (each run in its own process, its
`ru_maxrss`); with --compare-code DIR the same command of the code in DIR (a
checkout of the previous release, which read a folder into memory) beside it.

throughput: images/s of decoding + a random-resized crop to 224 + a flip,
batched, on the same folder, in turns (--rounds): ours (`augment.streams`,
the `inception` train transform), torchvision's `ImageFolder` + `DataLoader`
(PIL, `num_workers=2`, `RandomResizedCrop(224)` + `RandomHorizontalFlip`, run
by --torch-python, an interpreter with torchvision), and Keras'
`image_dataset_from_directory` (decode + resize to 256, then `RandomCrop(224)`
and `RandomFlip`: Keras has no random-resized crop). The ratio is the median
of the per-round ratios.

tfrecords: the time of `make_tfrecords.py` on the folder, and our pipeline's
images/s from the shards against the folder.
"""

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RSS_RUN = ["--model", "resnet18", "--dataset", "folder", "--image-size", "64", "--epochs", "1",
           "--batch-size", "64", "--verbose", "2", "--overwrite"]


# === make-folder ===

def make_images(task):
    """Writes the digits of one worker's share as JPEGs."""
    out, start, digits, labels, seed = task
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng([seed, start])
    for i, (digit, label) in enumerate(zip(digits, labels)):
        side = rng.uniform(64, 400)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        size = (max(8, int(side * aspect ** 0.5)), max(8, int(side / aspect ** 0.5)))
        ink = rng.integers(0, 110, 3)
        paper = rng.integers(150, 256, 3)
        alpha = Image.fromarray(digit).resize(size, Image.BILINEAR)
        weight = np.asarray(alpha, np.float32)[..., None] / 255.0
        image = (weight * ink + (1 - weight) * paper).astype(np.uint8)
        Image.fromarray(image).save(Path(out) / str(label) / f"{start + i:07d}.jpg", quality=90)
    return len(digits)


def make_folder(args):
    import numpy as np

    from augment import datasets

    mnist = datasets.load_dataset("mnist", args.data_dir)
    x = np.concatenate([mnist.x_train, mnist.x_test])[..., 0]
    y = np.concatenate([mnist.y_train, mnist.y_test])
    index = np.random.default_rng(args.seed).integers(0, len(x), args.images)
    out = Path(args.out)
    for label in range(10):
        (out / str(label)).mkdir(parents=True, exist_ok=True)
    chunk = 2000
    tasks = [(str(out), s, x[index[s:s + chunk]], y[index[s:s + chunk]], args.seed)
             for s in range(0, args.images, chunk)]
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        written = sum(pool.imap_unordered(make_images, tasks))
    size = sum(p.stat().st_size for p in out.rglob("*.jpg"))
    print(f"{written:,} JPEGs ({size / 1e9:.2f} GB) -> {out} in "
          f"{time.perf_counter() - start:.0f} s")


# === rss ===

def peak_rss(command, env=None, cwd=None):
    """(peak resident memory in MB, seconds, last output line) of `command`,
    run in a wrapper process so that its `RUSAGE_CHILDREN` is this run's alone."""
    wrapper = ("import resource, subprocess, sys, time; start = time.perf_counter(); "
               "result = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print('RSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
               "time.perf_counter() - start, result.returncode); "
               "print((result.stderr.strip().splitlines() or [''])[-1])")
    result = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True,
                            text=True, env=env, cwd=cwd)
    lines = result.stdout.strip().splitlines()
    line = next(ln for ln in lines if ln.startswith("RSS "))
    kb, seconds, code = line.split()[1:]
    if int(code):
        raise RuntimeError(f"{' '.join(command)} failed: {lines[-1]}")
    return int(kb) / 1024, float(seconds), lines[-1]


def rss(args):
    rows = []
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for folder in args.folders:
        images = sum(1 for _ in Path(folder).rglob("*.jpg"))
        codes = [("streamed (this code)", ROOT)] + (
            [("in memory (previous release)", Path(args.compare_code))] if args.compare_code
            else [])
        for label, code in codes:
            with tempfile.TemporaryDirectory() as out:
                command = [sys.executable, str(code / "scripts" / "train.py"), *RSS_RUN,
                           "--data-dir", folder, "--out", out]
                mb, seconds, last = peak_rss(command, {**env, "PYTHONPATH": str(code)})
            rows.append({"folder": folder, "images": images, "code": label, "peak_rss_mb": mb,
                         "seconds": seconds, "result": last})
            print(f"  {label}, {images:,} images: {mb:,.0f} MB peak RSS, {seconds:.0f} s",
                  file=sys.stderr, flush=True)
    print("| images | loader | peak RSS (MB) | run s |")
    print("| ---: | --- | ---: | ---: |")
    for r in rows:
        print(f"| {r['images']:,} | {r['code']} | {r['peak_rss_mb']:,.0f} | {r['seconds']:.0f} |")
    ours = [r for r in rows if r["code"].startswith("streamed")]
    if len(ours) > 1:
        growth = ours[-1]["peak_rss_mb"] / ours[0]["peak_rss_mb"] - 1
        print(f"\nstreamed: {ours[-1]['images'] / ours[0]['images']:.0f}x the images, "
              f"{100 * growth:+.1f}% peak RSS (target: within +10%)")
    return rows


# === throughput ===

TORCH_SCRIPT = """
import json, sys, time
import torch, torchvision
from torchvision import datasets, transforms
folder, images, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
transform = transforms.Compose([transforms.RandomResizedCrop(224),
                                transforms.RandomHorizontalFlip(),
                                transforms.PILToTensor()])
data = datasets.ImageFolder(folder, transform=transform)
order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
subset = torch.utils.data.Subset(data, order[:images].tolist())
loader = torch.utils.data.DataLoader(subset, batch_size=batch, shuffle=True, num_workers=2,
                                     persistent_workers=False)
start, seen = time.perf_counter(), 0
for x, y in loader:
    seen += len(x)
print("RESULT " + json.dumps({"images": seen, "seconds": time.perf_counter() - start,
                              "torch": torch.__version__, "torchvision": torchvision.__version__}))
"""


def ours_rate(folder, images, batch):
    from augment import datasets, streams

    ds = datasets.load_dataset("folder", folder, limit_train=images, seed=0)
    stream = streams.Stream(ds.train, ds.num_classes, 224, "inception", training=True, seed=0)
    dataset = stream.dataset(batch).take(stream.steps(batch))
    start, seen = time.perf_counter(), 0
    for x, _ in dataset:
        seen += int(x.shape[0])
    return seen / (time.perf_counter() - start)


def keras_rate(folder, images, batch):
    import keras
    import tensorflow as tf

    data = keras.utils.image_dataset_from_directory(
        folder, image_size=(256, 256), batch_size=batch, seed=0, shuffle=True, verbose=False)
    crop, flip = keras.layers.RandomCrop(224, 224, seed=0), keras.layers.RandomFlip("horizontal",
                                                                                   seed=0)
    data = data.take(-(-images // batch)).map(
        lambda x, y: (flip(crop(x, training=True), training=True), y),
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    start, seen = time.perf_counter(), 0
    for x, _ in data:
        seen += int(x.shape[0])
    return seen / (time.perf_counter() - start)


def torch_rate(python, folder, images, batch):
    result = subprocess.run([python, "-c", TORCH_SCRIPT, folder, str(images), str(batch)],
                            capture_output=True, text=True)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"torchvision run failed: {result.stderr[-2000:]}")
    found = json.loads(line[len("RESULT "):])
    return found["images"] / found["seconds"], found


def throughput(args):
    import startup  # noqa: F401  (TensorFlow without its start-up noise)

    rounds = []
    versions = {}
    for r in range(args.rounds):
        row = {"ours": ours_rate(args.folder, args.images, args.batch_size)}
        if args.torch_python:
            row["torchvision"], versions = torch_rate(args.torch_python, args.folder,
                                                      args.images, args.batch_size)
        row["keras"] = keras_rate(args.folder, args.images, args.batch_size)
        rounds.append(row)
        print(f"  round {r}: " + ", ".join(f"{k} {v:,.0f} images/s" for k, v in row.items()),
              file=sys.stderr, flush=True)
    print(f"| pipeline (decode + random-resized crop 224 + flip, {args.images:,} JPEGs) | "
          "images/s (median) | ours / it (median of rounds) |")
    print("| --- | ---: | ---: |")
    names = {"ours": "ours: augment.streams (tf.data)",
             "torchvision": "torchvision ImageFolder + DataLoader (PIL, 2 workers)",
             "keras": "Keras image_dataset_from_directory (resize 256, RandomCrop 224)"}
    for key in rounds[0]:
        rate = statistics.median(r[key] for r in rounds)
        ratio = statistics.median(r["ours"] / r[key] for r in rounds)
        print(f"| {names[key]} | {rate:,.0f} | {'-' if key == 'ours' else f'{ratio:.2f}'} |")
    return {"rounds": rounds, "versions": versions}


# === tfrecords ===

def tfrecords(args):
    import startup  # noqa: F401  (TensorFlow without its start-up noise)

    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_tfrecords.py"), args.folder,
                    args.out, "--shards", str(args.shards), "--overwrite"], check=True)
    seconds = time.perf_counter() - start
    from augment import datasets, streams

    rates = {}
    for name, source in (("folder", args.folder), ("tfrecord", args.out)):
        ds = datasets.load_dataset(name, source, limit_train=args.images, seed=0)
        stream = streams.Stream(ds.train, ds.num_classes, 224, "inception", training=True)
        dataset = stream.dataset(args.batch_size).take(stream.steps(args.batch_size))
        begin, seen = time.perf_counter(), 0
        for x, _ in dataset:
            seen += int(x.shape[0])
        rates[name] = seen / (time.perf_counter() - begin)
    print(f"make_tfrecords.py: {seconds:.0f} s for {args.folder} ({args.shards} shards per split)")
    print(f"decode + random-resized crop 224 + flip: folder {rates['folder']:,.0f} images/s, "
          f"TFRecord shards {rates['tfrecord']:,.0f} images/s")
    return {"make_tfrecords_s": seconds, "images_per_sec": rates}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="part", required=True)
    make = sub.add_parser("make-folder", help="write a JPEG folder from the MNIST digits")
    make.add_argument("--images", type=benchlib.positive_int, required=True)
    make.add_argument("--out", required=True)
    make.add_argument("--data-dir", default=str(SHARED) if (SHARED / "mnist").is_dir() else None)
    make.add_argument("--workers", type=benchlib.positive_int, default=os.cpu_count() or 1)
    make.add_argument("--seed", type=int, default=0)
    mem = sub.add_parser("rss", help="peak RSS of a 1-epoch resnet18 run per folder")
    mem.add_argument("folders", nargs="+")
    mem.add_argument("--compare-code", help="a checkout of the previous release to run beside")
    speed = sub.add_parser("throughput", help="pipeline images/s against torchvision and Keras")
    speed.add_argument("folder")
    speed.add_argument("--images", type=benchlib.positive_int, default=5000)
    speed.add_argument("--batch-size", type=benchlib.positive_int, default=64)
    speed.add_argument("--rounds", type=benchlib.positive_int, default=3)
    speed.add_argument("--torch-python", help="a python with torch and torchvision")
    shards = sub.add_parser("tfrecords", help="make_tfrecords.py's time, shards' images/s")
    shards.add_argument("folder")
    shards.add_argument("--out", required=True)
    shards.add_argument("--shards", type=benchlib.positive_int, default=16)
    shards.add_argument("--images", type=benchlib.positive_int, default=5000)
    shards.add_argument("--batch-size", type=benchlib.positive_int, default=64)
    for parser in (make, mem, speed, shards):
        parser.add_argument("--json", help="also write the results here")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    report = benchlib.Report(f"bench_data {args.part}")
    run = {"make-folder": make_folder, "rss": rss, "throughput": throughput,
           "tfrecords": tfrecords}[args.part]
    report.finish({"results": run(args)}, args.json, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
