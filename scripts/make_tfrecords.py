"""Convert an image folder to TFRecord shards: in parallel, each shard written
atomically, resumable after a kill.

    python scripts/make_tfrecords.py photos/ shards/ --shards 16
    python scripts/train_resnet.py --model resnet18 --dataset tfrecord --data-dir shards/

FOLDER is read as `--dataset folder` reads it (train/ + test/ or val/ of class
sub-folders, or class sub-folders split per class by --seed), every file
checked (those that cannot be used are named and left out). Each split becomes
--shards files, OUT/train-00000-of-00016.tfrecord ..., the images spread over
them in a seeded order so every shard mixes the classes. A record is a
`tf.train.Example` in the layout of TensorFlow's ImageNet tools: the file's
bytes as they are (`image/encoded`, `image/format`), `image/class/label`
(from 0), `image/class/text`, `image/height`, `image/width`, `image/filename`.

Each shard is written to a temporary name and renamed when complete, by one of
--workers processes; OUT/dataset.json (the class names, the records per split
and class) is written last: the conversion is finished when it exists. Run the
same command again after a kill: the shards already there are kept, the others
written. Another FOLDER, --shards or --seed for the same OUT is refused
(--overwrite starts over).
"""

import json
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

import numpy as np

from augment.readers import folder as folder_reader
from augment.readers import tfrecord as tfrecord_reader
from zoo import atomic
from zoo.cli import args as types
from zoo.cli import storage

PLAN = ".plan.json"  # what the shards are made of, for a resume to check


def build_parser():
    p = types.Parser(description=__doc__)
    p.add_argument("folder", metavar="FOLDER", help="class sub-folders of images")
    p.add_argument("out", metavar="OUT", help="the shards' folder")
    p.add_argument("--shards", type=types.positive_int, default=8,
                   help="files per split (a few hundred MB each suits large sets)")
    p.add_argument("--workers", type=types.positive_int, default=os.cpu_count() or 1,
                   help="processes writing shards at once")
    p.add_argument("--seed", type=types.nonnegative_int, default=0,
                   help="of the 80/20 split of a flat folder and of the order in the shards")
    p.add_argument("--bad-images", choices=folder_reader.BAD_IMAGES, default="skip",
                   help="skip (and name) files that cannot be used, or stop (error)")
    p.add_argument("--overwrite", action="store_true", help="start OUT over")
    return p


def plan(dataset, shards, seed):
    """{split: [[(path, label), ...] per shard]}: a seeded order, dealt round robin."""
    jobs = {}
    for name, split in (("train", dataset.train), ("test", dataset.test)):
        order = np.random.default_rng([seed, 11]).permutation(len(split))
        files = [(str(split.paths[i]), int(split.labels[i])) for i in order]
        count = min(shards, max(1, len(files)))
        jobs[name] = [files[k::count] for k in range(count)]
    return jobs


def shard_name(split, index, count):
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def write_shard(task):
    """Writes one shard to a temporary file, then renames it into place."""
    path, files, class_names = task
    import tensorflow as tf
    from PIL import Image

    def feature(value):
        if isinstance(value, int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        return tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[value if isinstance(value, bytes) else value.encode()]))

    with atomic.atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for file, label in files:
            with Image.open(file) as image:
                width, height = image.size
                fmt = image.format
            example = tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": feature(Path(file).read_bytes()),
                "image/format": feature(fmt),
                "image/class/label": feature(label),
                "image/class/text": feature(class_names[label]),
                "image/height": feature(height), "image/width": feature(width),
                "image/filename": feature(Path(file).name)}))
            writer.write(example.SerializeToString())
    return len(files)


@storage.stopping_on_storage_errors("run the same command again: it keeps the finished shards")
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        dataset = folder_reader.folder(args.folder, seed=args.seed, bad_images=args.bad_images)
    except (ValueError, FileNotFoundError) as error:
        types.fail(error)
    jobs = plan(dataset, args.shards, args.seed)
    intent = {"folder": str(Path(args.folder).resolve()), "shards": args.shards,
              "seed": args.seed, "images": {k: sum(map(len, v)) for k, v in jobs.items()}}
    if out.exists() and args.overwrite:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    plan_path = out / PLAN
    if plan_path.exists() and json.loads(plan_path.read_text()) != intent:
        types.fail(f"OUT={str(out)!r} holds shards of another conversion "
                   f"({plan_path.read_text().strip()}); pass --overwrite to start over or choose "
                   "another OUT")
    if (out / tfrecord_reader.METADATA).exists() and not args.overwrite:
        print(f"{out} is already complete ({tfrecord_reader.METADATA}); --overwrite redoes it",
              file=sys.stderr)
        return json.loads((out / tfrecord_reader.METADATA).read_text())
    plan_path.write_text(json.dumps(intent))
    for stale in out.glob(".tmp*"):
        stale.unlink()
    tasks, kept = [], 0
    for split, shards in jobs.items():
        for index, files in enumerate(shards):
            path = out / shard_name(split, index, len(shards))
            if path.exists():
                kept += 1
                continue
            tasks.append((str(path), files, dataset.class_names))
    start = time.perf_counter()
    if tasks:
        context = multiprocessing.get_context("spawn")  # TensorFlow does not survive a fork
        with context.Pool(min(args.workers, len(tasks))) as pool:
            for done, _ in enumerate(pool.imap_unordered(write_shard, tasks), start=1):
                if sys.stderr.isatty():
                    print(f"\rshards written: {done}/{len(tasks)}", end="", file=sys.stderr,
                          flush=True)
        if sys.stderr.isatty():
            print(file=sys.stderr)
    meta = {"format": "keras-cnn-zoo tfrecord (scripts/make_tfrecords.py)",
            "source": str(Path(args.folder).resolve()), "class_names": dataset.class_names,
            "bad_files": [{"path": str(p), "why": why} for p, why in dataset.bad_files],
            "splits": {}}
    for split, shards in jobs.items():
        labels = np.array([label for files in shards for _, label in files], np.int64)
        meta["splits"][split] = {
            "shards": [shard_name(split, i, len(shards)) for i in range(len(shards))],
            "count": int(len(labels)), "label_offset": 0,
            "class_counts": np.bincount(labels, minlength=len(dataset.class_names)).tolist()}
    # Last: its presence says the conversion is complete.
    atomic.write_json(out / tfrecord_reader.METADATA, meta, indent=1)
    total = sum(s["count"] for s in meta["splits"].values())
    print(f"{total:,} images in {sum(len(s) for s in jobs.values())} shards -> {out} "
          f"({len(tasks)} written in {time.perf_counter() - start:.1f} s, {kept} kept)",
          file=sys.stderr)
    return meta


if __name__ == "__main__":
    main()
