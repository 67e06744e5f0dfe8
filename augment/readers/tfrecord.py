"""TFRecord shards, streamed: the layout TensorFlow's ImageNet tools
(`build_imagenet_data.py`), TFDS and `scripts/make_tfrecords.py` write, so an
existing ImageNet conversion is used as it is.

    DIR/train-00000-of-01024 ... DIR/validation-00000-of-00128   (TF's ImageNet tools)
    DIR/imagenet2012-train.tfrecord-00000-of-01024 ...           (TFDS)
    DIR/train-00000-of-00008.tfrecord ... DIR/dataset.json       (make_tfrecords.py)

Each record is a `tf.train.Example` with the encoded image (`image/encoded`, or
TFDS's `image`) and its label (`image/class/label`, or `label`), optionally the
class name (`image/class/text`). The shards of a split are the files whose
names hold "train", and "validation", "val" or "test" for the test split.

What the records hold beside the images (the class names, how many records
each split and class has, whether labels start at 0 or at 1 as TensorFlow's
ImageNet tools write them with 0 for "background") comes from `dataset.json`
(make_tfrecords.py), from TFDS's `dataset_info.json` and `*.labels.txt`, or,
for shards without either, from one pass over the labels, saved to
`dataset.json` beside them when the folder is writable.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

from augment.readers import base
from zoo import atomic

METADATA = "dataset.json"
IMAGE_KEYS = ("image/encoded", "image")
LABEL_KEYS = ("image/class/label", "label")
TEXT_KEY = "image/class/text"
SPLIT_PATTERNS = {"train": ("train",), "test": ("validation", "val", "test")}


@dataclasses.dataclass(frozen=True)
class RecordSplit:
    """The shards of one split and what is taken from them: a class subset
    (`remap`), the first `limit` records in a fixed, seeded order, and a
    seeded holdout (`holdout`: (fraction, seed, "rest" or "held")), all
    applied in the tf.data pipeline (`augment.streams`).

    Attributes:
        shards: the files, in a fixed order.
        count: records in the shards.
        class_counts: records per (original) label, or None when unknown.
        label_offset: subtracted from every label (1 for labels 1..K).
        image_key, label_key: the features holding the image and its label.
    """

    shards: tuple
    count: int
    class_counts: tuple | None = None
    label_offset: int = 0
    image_key: str = IMAGE_KEYS[0]
    label_key: str = LABEL_KEYS[0]
    remap: tuple | None = None
    limit_to: int | None = None
    limit_seed: int = 0
    holdout_spec: tuple | None = None

    def __len__(self):
        count = self.count
        if self.remap is not None and self.class_counts is not None:
            count = sum(n for n, new in zip(self.class_counts, self.remap) if new >= 0)
        elif self.remap is not None:  # per-class counts unknown (TFDS): the classes' share
            count = round(count * sum(new >= 0 for new in self.remap) / len(self.remap))
        if self.limit_to is not None:
            count = min(count, self.limit_to)
        if self.holdout_spec is not None:
            fraction, _, part = self.holdout_spec
            held = max(1, int(round(count * fraction)))
            count = held if part == "held" else count - held
        return count

    def select_classes(self, remap):
        return dataclasses.replace(self, remap=tuple(int(r) for r in remap))

    def limit(self, limit, seed, stream):
        if limit is None or limit >= len(self):
            return self
        return dataclasses.replace(self, limit_to=int(limit), limit_seed=seed)

    def holdout(self, fraction, seed):
        """(the rest, a seeded `fraction` of the records), chosen per record
        by a hash of its shard and position (`augment.streams`)."""
        return (dataclasses.replace(self, holdout_spec=(float(fraction), int(seed), "rest")),
                dataclasses.replace(self, holdout_spec=(float(fraction), int(seed), "held")))


def tfrecord(data_dir, *, log=print, **options):
    """The `StreamingDataset` of a folder of TFRecord shards (module docstring)."""
    if data_dir is None:
        raise base.bad_option("data_dir", None, "a folder of TFRecord shards (--data-dir) for "
                              "dataset='tfrecord'")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Data directory {root} does not exist.")
    shards = find_shards(root)
    meta = read_metadata(root, shards, log)
    splits = {name: RecordSplit(tuple(str(p) for p in shards[name]), **meta["splits"][name])
              for name in ("train", "test")}
    class_names = meta["class_names"]
    return base.StreamingDataset("tfrecord", splits["train"], splits["test"], len(class_names),
                                 str(root), class_names)


def find_shards(root):
    """{"train": [paths], "test": [paths]} by file name (module docstring)."""
    files = sorted(p for p in root.iterdir() if p.is_file() and p.name != METADATA
                   and not p.name.startswith(".") and not p.suffix == ".json"
                   and not p.name.endswith(".txt"))
    found = {}
    for split, words in SPLIT_PATTERNS.items():
        for word in words:
            matched = [p for p in files if re.search(rf"(^|[-_.]){word}([-_.]|$)", p.name)]
            if matched:
                found[split] = matched
                break
    missing = [split for split in SPLIT_PATTERNS if split not in found]
    if missing:
        raise FileNotFoundError(
            f"{root} has no {' or '.join(missing)} shards: expected TFRecord files whose names "
            "hold 'train' and 'validation', 'val' or 'test' (train-00000-of-00008, ...)")
    return found


def read_metadata(root, shards, log=print):
    """{"class_names", "splits": {split: RecordSplit fields}} from dataset.json,
    TFDS's files, or one pass over the labels (saved to dataset.json)."""
    path = root / METADATA
    if path.is_file():
        meta = json.loads(path.read_text())
        return {"class_names": meta["class_names"],
                "splits": {name: split_fields(meta["splits"][name]) for name in ("train", "test")}}
    tfds = read_tfds(root, shards)
    if tfds is not None:
        return tfds
    meta = count_labels(shards, log)
    try:
        atomic.write_json(path, meta, indent=1)
    except OSError:
        pass  # a read-only dataset: counted again next time
    return {"class_names": meta["class_names"],
            "splits": {name: split_fields(meta["splits"][name]) for name in ("train", "test")}}


def split_fields(entry):
    return {"count": int(entry["count"]),
            "class_counts": tuple(entry["class_counts"]) if entry.get("class_counts") else None,
            "label_offset": int(entry.get("label_offset", 0)),
            "image_key": entry.get("image_key", IMAGE_KEYS[0]),
            "label_key": entry.get("label_key", LABEL_KEYS[0])}


def read_tfds(root, shards):
    """TFDS's `dataset_info.json` (split sizes) and `<feature>.labels.txt` (class
    names), or None when the folder has no such files."""
    info_path = root / "dataset_info.json"
    labels = sorted(root.glob("*.labels.txt"))
    if not info_path.is_file() or not labels:
        return None
    info = json.loads(info_path.read_text())
    sizes = {}
    for split in info.get("splits", []):
        lengths = split.get("shardLengths") or []
        sizes[split["name"]] = sum(int(n) for n in lengths) or int(split.get("numExamples", 0))
    names = labels[0].read_text().splitlines()
    test = next((s for s in ("validation", "val", "test") if s in sizes), None)
    if "train" not in sizes or test is None:
        return None
    fields = {"image_key": "image", "label_key": "label"}
    return {"class_names": names,
            "splits": {"train": {"count": sizes["train"], **fields},
                       "test": {"count": sizes[test], **fields}}}


def count_labels(shards, log=print):
    """One pass over the records' labels (and class texts): counts per split and
    class, the label offset, the class names; the metadata dataset.json keeps."""
    import tensorflow as tf

    start = time.perf_counter()
    if log:
        log(f"reading the labels of {sum(len(v) for v in shards.values())} TFRecord shards once "
            f"(saved to {METADATA})", file=sys.stderr)
    keys = None
    counts, texts = {}, {}
    for split, paths in shards.items():
        records = tf.data.TFRecordDataset([str(p) for p in paths],
                                          num_parallel_reads=tf.data.AUTOTUNE)
        if keys is None:
            keys = detect_keys(next(iter(records)).numpy())
        image_key, label_key = keys
        spec = {label_key: tf.io.FixedLenFeature([], tf.int64),
                TEXT_KEY: tf.io.FixedLenFeature([], tf.string, default_value="")}
        labels = []
        for batch in records.batch(4096).map(lambda r, spec=spec: tf.io.parse_example(r, spec)):
            labels.append(batch[label_key].numpy())
            for label, text in zip(batch[label_key].numpy(), batch[TEXT_KEY].numpy()):
                if text:
                    texts.setdefault(int(label), text.decode())
        counts[split] = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    everything = np.concatenate(list(counts.values()))
    offset = 1 if everything.min() >= 1 and 0 not in texts else 0
    num_classes = int(everything.max()) + 1 - offset
    names = [texts.get(i + offset, str(i)) for i in range(num_classes)]
    meta = {"class_names": names, "splits": {}}
    for split, labels in counts.items():
        meta["splits"][split] = {
            "count": int(len(labels)), "label_offset": offset,
            "class_counts": np.bincount(labels - offset, minlength=num_classes).tolist(),
            "image_key": keys[0], "label_key": keys[1]}
    if log:
        log(f"read {len(everything):,} labels in {time.perf_counter() - start:.0f} s",
            file=sys.stderr)
    return meta


def detect_keys(record):
    """(image key, label key) of a serialized `tf.train.Example`."""
    import tensorflow as tf

    features = tf.train.Example.FromString(record).features.feature
    image = next((k for k in IMAGE_KEYS if k in features), None)
    label = next((k for k in LABEL_KEYS if k in features), None)
    if image is None or label is None:
        raise ValueError(f"a TFRecord example with features {sorted(features)} is not accepted; "
                         f"expected the image in one of {', '.join(IMAGE_KEYS)} and the label in "
                         f"one of {', '.join(LABEL_KEYS)}")
    return image, label
