"""What the readers share: the two dataset kinds, the class and size subsets,
and where a dataset's files are."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from zoo.resolve import bad_option

DATA_DIR_ENV = "ZOO_DATA_DIR"
LABEL_MODES = ("fine", "coarse")

# Sub-folders of a parent data directory that may hold each dataset's files.
SUBDIRS = {
    "mnist": ["mnist"],
    "fashion_mnist": ["fashion_mnist", "fashion-mnist"],
    "cifar10": ["cifar-10-batches-py", "cifar10"],
    "cifar100": ["cifar-100-python", "cifar100"],
}


@dataclasses.dataclass(repr=False, eq=False)
class Dataset:
    """A train/test split of images and integer labels, in memory.

    Attributes:
        name: Dataset name, as passed to `load_dataset`.
        x_train: uint8 images, NHWC (grayscale keeps a channel axis of 1).
        y_train: int64 labels, shape (N,).
        x_test: uint8 images, NHWC.
        y_test: int64 labels, shape (N,).
        num_classes: Number of classes.
        source: Where the data came from: a directory, "keras.datasets",
            "embedded sample" or "synthetic".
        class_names: Optional names of the classes, indexed by label.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str
    class_names: list[str] | None = None
    streaming = False

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, (height, width, channels)."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    def select_classes(self, classes):
        """Keeps the images of `classes` in both splits, labels renumbered 0..k-1."""
        remap = class_remap(classes, self.num_classes, self.name)
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            keep = remap[y] >= 0
            setattr(self, f"x_{split}", x[keep])
            setattr(self, f"y_{split}", remap[y[keep]])
        self._rename(classes)

    def limit(self, limit_train, limit_test, seed):
        """Seeded random subsets of the splits (in their original order)."""
        self.x_train, self.y_train = subset(self.x_train, self.y_train, limit_train, seed, 0)
        self.x_test, self.y_test = subset(self.x_test, self.y_test, limit_test, seed, 1)

    def _rename(self, classes):
        if self.class_names is not None:
            self.class_names = [self.class_names[c] for c in classes]
        self.num_classes = len(classes)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, x_train={self.x_train.shape}, "
            f"x_test={self.x_test.shape}, num_classes={self.num_classes}, "
            f"source={self.source!r})"
        )


@dataclasses.dataclass(repr=False, eq=False)
class StreamingDataset:
    """A dataset read image by image while training: each split says where
    its images are (`augment.streams` reads, decodes and transforms them);
    nothing is decoded up front.

    Attributes:
        name: "folder" or "tfrecord".
        train, test: the splits (`readers.folder.FileSplit`,
            `readers.tfrecord.RecordSplit`): `len()`, `select_classes`,
            `limit`, `holdout`.
        num_classes, class_names, source: as for `Dataset`.
        bad_files: [(path, why)] left out when the files were checked.
    """

    name: str
    train: object
    test: object
    num_classes: int
    source: str
    class_names: list[str]
    bad_files: list = dataclasses.field(default_factory=list)
    streaming = True

    def select_classes(self, classes):
        remap = class_remap(classes, self.num_classes, self.name)
        self.train, self.test = (split.select_classes(remap) for split in (self.train,
                                                                           self.test))
        self.class_names = [self.class_names[c] for c in classes]
        self.num_classes = len(classes)

    def limit(self, limit_train, limit_test, seed):
        self.train = self.train.limit(limit_train, seed, 0)
        self.test = self.test.limit(limit_test, seed, 1)

    def __repr__(self) -> str:
        return (f"StreamingDataset(name={self.name!r}, train={len(self.train)} images, "
                f"test={len(self.test)} images, num_classes={self.num_classes}, "
                f"source={self.source!r})")


def make(name, x_train, y_train, x_test, y_test, num_classes, source, class_names=None):
    """A Dataset with canonical dtypes, its labels and shapes checked."""
    x_train, x_test = (np.ascontiguousarray(x, np.uint8) for x in (x_train, x_test))
    y_train, y_test = (np.asarray(y, np.int64).reshape(-1) for y in (y_train, y_test))
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise ValueError(f"{name} {split} split: {len(x)} images but {len(y)} labels "
                             f"({source}).")
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} {split} labels outside [0, {num_classes}) ({source}).")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"{name}: train images {x_train.shape[1:]} but test images "
                         f"{x_test.shape[1:]}.")
    if class_names is not None:
        class_names = [c.decode() if isinstance(c, bytes) else str(c) for c in class_names]
    return Dataset(name, x_train, y_train, x_test, y_test, int(num_classes), source, class_names)


def class_remap(classes, num_classes, name):
    """An int64 table: label -> its new label (0..k-1, in the order of
    `classes`), -1 for the labels left out."""
    classes = [int(c) for c in classes]
    if not classes or len(set(classes)) != len(classes) or not all(
            0 <= c < num_classes for c in classes):
        raise bad_option("classes", list(classes),
                         f"distinct labels in [0, {num_classes}) of {name}")
    remap = np.full(num_classes, -1, np.int64)
    remap[classes] = np.arange(len(classes))
    return remap


def subset_indices(count, limit, seed, stream):
    """Sorted indices of a seeded random subset of `limit` of `count` items (all
    when `limit` is None or not smaller)."""
    if limit is None or limit >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng([seed, 100 + stream]).choice(count, int(limit),
                                                                      replace=False))


def subset(x, y, limit, seed, stream):
    """A seeded random subset of ``limit`` samples (in their original order)."""
    index = subset_indices(len(x), limit, seed, stream)
    return (x, y) if len(index) == len(x) else (x[index], y[index])


def find_dir(name, data_dir, files):
    """Returns ``data_dir`` or its standard sub-folder, whichever holds ``files``."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"Data directory {root} for dataset {name!r} does not exist "
            f"(from data_dir / --data-dir or {DATA_DIR_ENV})."
        )
    candidates = [root] + [root / sub for sub in SUBDIRS[name]]
    missing = {c: [f for f in files if not (c / f).is_file()] for c in candidates if c.is_dir()}
    for candidate, absent in missing.items():
        if not absent:
            return candidate
    best = min(missing, key=lambda c: len(missing[c]))
    raise FileNotFoundError(
        f"Dataset {name!r}: missing file(s) {', '.join(missing[best])} in {best} "
        f"(looked in {', '.join(str(c) for c in candidates)})."
    )
