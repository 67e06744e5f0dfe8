"""Image classification datasets as uint8 NHWC arrays, loaded offline when possible.

Named datasets: ``mnist`` (LeCun, Cortes, Burges, "The MNIST database of
handwritten digits", 1998), ``fashion_mnist`` (Xiao, Rasul, Vollgraf,
"Fashion-MNIST", 2017), ``cifar10`` and ``cifar100`` (Krizhevsky, "Learning
Multiple Layers of Features from Tiny Images", 2009), ``mnist_sample`` (a small
MNIST subset shipped in ``augment/data/mnist_sample``), ``synthetic`` (a
learnable random dataset of any shape, for tests and timing) and ``folder`` (a
directory of class sub-folders of images).

Where the data comes from, in order:

1. ``data_dir`` (the ``--data-dir`` flag of the scripts), else the environment
   variable ``ZOO_DATA_DIR``: the standard files, either directly in that
   directory or in its ``mnist/``, ``fashion_mnist/``, ``cifar-10-batches-py/``
   or ``cifar-100-python/`` sub-folder. MNIST and Fashion-MNIST are the four
   IDX ``.gz`` files; CIFAR the python pickle batches.
2. Otherwise ``keras.datasets`` (downloads into the Keras cache). Without a
   network, ``mnist`` falls back to the embedded sample with a warning; the
   other datasets raise.

``Dataset.source`` records which of these was used. The per-channel mean and
standard deviation for zero-centering come from the training split only
(``channel_stats``), as in AlexNet and VGG; the model applies them
(`zoo.contract`).

This module needs numpy, PIL and the project's error format (`zoo.resolve`);
keras.datasets is used only to download, and any Keras backend works
(``KERAS_BACKEND=jax`` included).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import os
import pickle
import socket
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from zoo.resolve import bad_option

DATA_DIR_ENV = "ZOO_DATA_DIR"

# Per-socket-operation timeout (seconds) while keras.datasets downloads; turns a
# blackholed network into a quick failure instead of a hang.
DOWNLOAD_TIMEOUT_S = 10.0

# Values per chunk when computing channel statistics (2**22 float64 = 32 MiB).
STATS_CHUNK = 2**22

SAMPLE_DIR = Path(__file__).resolve().parent / "data" / "mnist_sample"

# MNIST and Fashion-MNIST share these file names.
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
CIFAR10_TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_META_FILE = "batches.meta"
CIFAR100_FILES = {"train": "train", "test": "test", "meta": "meta"}

# Sub-folders of a parent data directory that may hold each dataset's files.
SUBDIRS = {
    "mnist": ["mnist"],
    "fashion_mnist": ["fashion_mnist", "fashion-mnist"],
    "cifar10": ["cifar-10-batches-py", "cifar10"],
    "cifar100": ["cifar-100-python", "cifar100"],
}

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
LABEL_MODES = ("fine", "coarse")


@dataclasses.dataclass(repr=False, eq=False)
class Dataset:
    """A train/test split of images and integer labels.

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

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, (height, width, channels)."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, x_train={self.x_train.shape}, "
            f"x_test={self.x_test.shape}, num_classes={self.num_classes}, "
            f"source={self.source!r})"
        )


# === Public API ===


def list_datasets() -> list[str]:
    """Names accepted by `load_dataset`, sorted."""
    return sorted(_LOADERS)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    limit_train: int | None = None,
    limit_test: int | None = None,
    seed: int = 0,
    image_shape: tuple[int, int, int] = (32, 32, 3),
    num_classes: int = 10,
    synthetic_size: tuple[int, int] = (512, 128),
    label_mode: str = "fine",
    classes: list[int] | tuple[int, ...] | None = None,
) -> Dataset:
    """Loads a dataset by name.

    Args:
        name: One of `list_datasets()`; case and "-" vs "_" do not matter.
        data_dir: Directory with the dataset's standard files, or a parent of
            the standard sub-folder (e.g. ``mnist/``). Defaults to the
            ``ZOO_DATA_DIR`` environment variable; either one, once set, must
            hold the files (no download is tried). If neither is set, the
            named datasets download through ``keras.datasets``. Required for
            ``folder`` (the environment variable is not used there); ignored by
            ``synthetic`` and ``mnist_sample``.
        limit_train: Keep a seeded random subset of this many training images.
        limit_test: Keep a seeded random subset of this many test images.
        seed: Seed for the subsets, the synthetic data and the folder split.
        image_shape: (height, width, channels) of ``synthetic`` images, and the
            size ``folder`` images are resized and converted to (1 or 3
            channels).
        num_classes: Number of ``synthetic`` classes.
        synthetic_size: (train, test) image counts of ``synthetic``.
        label_mode: ``cifar100`` labels, "fine" (100 classes) or "coarse" (20).
        classes: Keep only these labels, renumbered 0, 1, ... in the order
            given (before the limits apply), e.g. (5, 6, 7, 8, 9).

    Returns:
        The `Dataset`.

    Raises:
        ValueError: Unknown name, invalid argument or corrupt file.
        FileNotFoundError: The directory lacks the dataset's files.
        OSError: No directory given and ``keras.datasets`` could not download
            (all but ``mnist``, which falls back to the embedded sample).
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in _LOADERS:
        raise bad_option("dataset", name, "one of " + ", ".join(list_datasets()))
    if label_mode not in LABEL_MODES:
        raise bad_option("label_mode", label_mode, "one of " + ", ".join(LABEL_MODES))
    for arg, value in (("limit_train", limit_train), ("limit_test", limit_test)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise bad_option(arg, value, "an integer >= 1")
    if data_dir is None and key != "folder":
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    options = dict(
        seed=seed,
        image_shape=image_shape,
        num_classes=num_classes,
        synthetic_size=synthetic_size,
        label_mode=label_mode,
    )
    ds = _LOADERS[key](data_dir, **options)
    if classes is not None:
        _select_classes(ds, classes)
    ds.x_train, ds.y_train = _subset(ds.x_train, ds.y_train, limit_train, seed, 0)
    ds.x_test, ds.y_test = _subset(ds.x_test, ds.y_test, limit_test, seed, 1)
    return ds


def channel_stats(x: np.ndarray, padded_size: tuple[int, int] | None = None,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of ``x / 255``.

    Computed over chunks of about `STATS_CHUNK` values with float64 sums, so
    memory stays small even for large uint8 arrays.

    Args:
        x: Images, shape (N, H, W, C) (any shape whose last axis is channels).
        padded_size: (height, width) the images are zero-padded to before the
            network sees them (MNIST 28x28 in LeNet-5's 32x32): the statistics
            of the padded images, without making them.

    Returns:
        (mean, std), each float32 of shape (C,).
    """
    x = np.asarray(x)
    if x.ndim < 2 or x.size == 0:
        raise bad_option("x", f"an array shaped {x.shape}", "a non-empty array (N, ..., C)")
    channels = x.shape[-1]
    total = np.zeros(channels, np.float64)
    total_sq = np.zeros(channels, np.float64)
    rows = max(1, STATS_CHUNK // (x[0].size or 1))
    for start in range(0, len(x), rows):
        chunk = x[start:start + rows].reshape(-1, channels).astype(np.float64) / 255.0
        total += chunk.sum(axis=0)
        total_sq += np.square(chunk).sum(axis=0)
    count = x.size // channels
    if padded_size is not None:  # the padding adds zeros: the sums stay, the count grows
        count = len(x) * int(np.prod(padded_size))
    mean = total / count
    var = np.maximum(total_sq / count - np.square(mean), 0.0)
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads a (gzip-compressed if named ``.gz``) uint8 IDX file.

    Args:
        path: The file.

    Returns:
        The array, shaped as the header says.

    Raises:
        ValueError: Bad magic number, non-uint8 data or wrong length.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"Corrupt IDX file {path}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(
            f"Corrupt IDX file {path}: bad magic number {raw[:4].hex()} "
            "(expected 000008xx, uint8 data)."
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], ">u4"))
    if len(shape) != ndim or len(raw) - header != int(np.prod(shape)):
        raise ValueError(
            f"Corrupt IDX file {path}: header shape {shape} does not match "
            f"{len(raw) - header} data bytes."
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes a uint8 array as an IDX file, gzip-compressed if named ``.gz``.

    The gzip header carries no time stamp, so equal arrays give equal files.

    Args:
        path: Destination file.
        array: uint8 array of 1 to 255 dimensions.
    """
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8 or not 1 <= array.ndim <= 255:
        raise bad_option("array", f"{array.dtype} of shape {array.shape}",
                         "a uint8 array of 1 to 255 dimensions")
    data = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes() + array.tobytes()
    path = Path(path)
    with open(path, "wb") as f:
        if path.suffix == ".gz":
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0) as gz:
                gz.write(data)
        else:
            f.write(data)


# === Loaders: each takes (data_dir, **options) and returns a Dataset ===


def _load_mnist(data_dir, **options):
    if data_dir is not None:
        return _load_idx_dir("mnist", data_dir, MNIST_CLASSES)
    try:
        return _load_from_keras("mnist", **options)
    except Exception as e:  # keras raises a bare Exception on download failure
        warnings.warn(
            "\n" + "!" * 72 + "\n"
            f"Could not load MNIST through keras.datasets ({e.__cause__ or e}).\n"
            f"FALLING BACK TO THE EMBEDDED SAMPLE in {SAMPLE_DIR} "
            "(5000 train / 1000 test images), NOT the full dataset.\n"
            f"For full MNIST pass --data-dir (data_dir=) or set {DATA_DIR_ENV} to a "
            "directory with the four IDX .gz files.\n" + "!" * 72,
            UserWarning,
            stacklevel=3,
        )
        ds = _load_mnist_sample(None)
        ds.name = "mnist"
        return ds


def _load_mnist_sample(data_dir, **options):
    ds = _load_idx_dir("mnist_sample", SAMPLE_DIR, MNIST_CLASSES)
    ds.source = "embedded sample"
    return ds


def _load_fashion_mnist(data_dir, **options):
    if data_dir is None:
        return _load_from_keras("fashion_mnist", **options)
    return _load_idx_dir("fashion_mnist", data_dir, FASHION_MNIST_CLASSES)


def _load_cifar10(data_dir, **options):
    if data_dir is None:
        return _load_from_keras("cifar10", **options)
    files = CIFAR10_TRAIN_FILES + [CIFAR10_TEST_FILE]
    root = _find_dir("cifar10", data_dir, files)
    parts = [_read_cifar_batch(root / f, "labels") for f in CIFAR10_TRAIN_FILES]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = _read_cifar_batch(root / CIFAR10_TEST_FILE, "labels")
    class_names = CIFAR10_CLASSES
    if (root / CIFAR10_META_FILE).is_file():
        class_names = _read_pickle(root / CIFAR10_META_FILE).get("label_names", class_names)
    return _make("cifar10", x_train, y_train, x_test, y_test, 10, str(root), class_names)


def _load_cifar100(data_dir, *, label_mode="fine", **options):
    if data_dir is None:
        return _load_from_keras("cifar100", label_mode=label_mode, **options)
    files = [CIFAR100_FILES["train"], CIFAR100_FILES["test"]]
    root = _find_dir("cifar100", data_dir, files)
    key = f"{label_mode}_labels"
    x_train, y_train = _read_cifar_batch(root / CIFAR100_FILES["train"], key)
    x_test, y_test = _read_cifar_batch(root / CIFAR100_FILES["test"], key)
    class_names = None
    if (root / CIFAR100_FILES["meta"]).is_file():
        class_names = _read_pickle(root / CIFAR100_FILES["meta"]).get(f"{label_mode}_label_names")
    num_classes = 100 if label_mode == "fine" else 20
    return _make("cifar100", x_train, y_train, x_test, y_test, num_classes, str(root), class_names)


def _load_synthetic(data_dir, *, seed=0, image_shape=(32, 32, 3), num_classes=10,
                    synthetic_size=(512, 128), **options):
    """Class templates (smooth random patterns) plus Gaussian noise."""
    shape = tuple(image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise bad_option("image_shape", image_shape, "(height, width, channels), all > 0")
    if num_classes < 1:
        raise bad_option("num_classes", num_classes, "an integer >= 1")
    if len(synthetic_size) != 2 or min(synthetic_size) < 1:
        raise bad_option("synthetic_size", synthetic_size, "two positive counts (train, test)")
    height, width, channels = shape
    grid = 4  # templates vary on a 4x4 grid, upsampled to the image size
    coarse = np.random.default_rng([seed, 0]).normal(size=(num_classes, grid, grid, channels))
    rows = np.arange(height) * grid // height
    cols = np.arange(width) * grid // width
    templates = coarse[:, rows][:, :, cols]  # (classes, H, W, C)

    def draw(count, stream):
        rng = np.random.default_rng([seed, stream])
        y = rng.permutation(np.arange(count) % num_classes)
        noise = rng.normal(size=(count, height, width, channels)).astype(np.float32)
        x = 128.0 + 40.0 * templates[y] + 30.0 * noise  # pixel units
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), y

    x_train, y_train = draw(int(synthetic_size[0]), 1)
    x_test, y_test = draw(int(synthetic_size[1]), 2)
    return _make("synthetic", x_train, y_train, x_test, y_test, num_classes, "synthetic")


def _load_folder(data_dir, *, seed=0, image_shape=(32, 32, 3), **options):
    if data_dir is None:
        raise bad_option("data_dir", None, "a folder of class sub-folders (--data-dir) for "
                         "dataset='folder'")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Data directory {root} does not exist.")
    height, width, channels = tuple(image_shape)
    if channels not in (1, 3):
        raise bad_option("image_shape", image_shape, "1 or 3 channels for dataset='folder'")
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if (root / "train").is_dir() or test_dir is not None:
        if test_dir is None or not (root / "train").is_dir():
            raise FileNotFoundError(f"{root} needs both train/ and test/ (or val/) folders, or only class folders.")
        class_names = _class_folders(root / "train")
        train_files, y_train = _image_files(root / "train", class_names)
        extra = sorted(set(_class_folders(test_dir)) - set(class_names))
        if extra:
            raise ValueError(f"{test_dir} has classes missing from {root / 'train'}: {', '.join(extra)}.")
        test_files, y_test = _image_files(test_dir, class_names)
    else:
        class_names = _class_folders(root)
        files, labels = _image_files(root, class_names)
        is_test = np.zeros(len(files), bool)
        rng = np.random.default_rng([seed, 3])
        for label in range(len(class_names)):  # 80/20 within each class
            idx = np.flatnonzero(labels == label)
            n_test = int(round(0.2 * len(idx))) if len(idx) > 1 else 0
            is_test[rng.permutation(idx)[:n_test]] = True
        train_files, y_train = [f for f, t in zip(files, is_test) if not t], labels[~is_test]
        test_files, y_test = [f for f, t in zip(files, is_test) if t], labels[is_test]
    mode = "L" if channels == 1 else "RGB"
    x_train = _read_images(train_files, (height, width), mode)
    x_test = _read_images(test_files, (height, width), mode)
    return _make("folder", x_train, y_train, x_test, y_test, len(class_names), str(root), class_names)


_LOADERS = {
    "mnist": _load_mnist,
    "mnist_sample": _load_mnist_sample,
    "fashion_mnist": _load_fashion_mnist,
    "cifar10": _load_cifar10,
    "cifar100": _load_cifar100,
    "synthetic": _load_synthetic,
    "folder": _load_folder,
}


# === Helpers ===


def _make(name, x_train, y_train, x_test, y_test, num_classes, source, class_names=None):
    """Builds a Dataset with canonical dtypes, checking labels and shapes."""
    x_train, x_test = (np.ascontiguousarray(x, np.uint8) for x in (x_train, x_test))
    y_train, y_test = (np.asarray(y, np.int64).reshape(-1) for y in (y_train, y_test))
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise ValueError(f"{name} {split} split: {len(x)} images but {len(y)} labels ({source}).")
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} {split} labels outside [0, {num_classes}) ({source}).")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"{name}: train images {x_train.shape[1:]} but test images {x_test.shape[1:]}.")
    if class_names is not None:
        class_names = [c.decode() if isinstance(c, bytes) else str(c) for c in class_names]
    return Dataset(name, x_train, y_train, x_test, y_test, int(num_classes), source, class_names)


def _select_classes(ds, classes):
    """Keeps the images of `classes` in both splits, labels renumbered 0..k-1."""
    classes = [int(c) for c in classes]
    if not classes or len(set(classes)) != len(classes) or not all(
            0 <= c < ds.num_classes for c in classes):
        raise bad_option("classes", list(classes),
                         f"distinct labels in [0, {ds.num_classes}) of {ds.name}")
    remap = np.full(ds.num_classes, -1, np.int64)
    remap[classes] = np.arange(len(classes))
    for split in ("train", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        keep = remap[y] >= 0
        setattr(ds, f"x_{split}", x[keep])
        setattr(ds, f"y_{split}", remap[y[keep]])
    if ds.class_names is not None:
        ds.class_names = [ds.class_names[c] for c in classes]
    ds.num_classes = len(classes)


def _subset(x, y, limit, seed, stream):
    """A seeded random subset of ``limit`` samples (in their original order)."""
    if limit is None or limit >= len(x):
        return x, y
    idx = np.sort(np.random.default_rng([seed, 100 + stream]).choice(len(x), int(limit), replace=False))
    return x[idx], y[idx]


def _find_dir(name, data_dir, files):
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


def _load_idx_dir(name, data_dir, class_names):
    key = "mnist" if name == "mnist_sample" else name
    root = _find_dir(key, data_dir, list(IDX_FILES.values()))
    arrays = {k: read_idx(root / f) for k, f in IDX_FILES.items()}
    for k in ("x_train", "x_test"):
        if arrays[k].ndim != 3:
            raise ValueError(
                f"{root / IDX_FILES[k]} holds shape {arrays[k].shape}, expected (N, H, W) images."
            )
        arrays[k] = arrays[k][..., None]
    return _make(name, num_classes=10, source=str(root), class_names=class_names, **arrays)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles what the CIFAR batches hold (dicts, lists, bytes, numbers and
    numpy arrays) and nothing else: a pickle may otherwise call any function,
    so a malicious file in --data-dir could run code. Any other global is
    refused with the file and the name."""

    ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # bytes pickled by Python 3 at protocol 2
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a CIFAR batch holds only arrays, lists, "
            "dicts, bytes and numbers")


def _read_pickle(path):
    """Loads a CIFAR pickle (python 2 or 3) with `_CifarUnpickler`, decoding bytes
    keys to str."""
    try:
        with open(path, "rb") as f:
            data = _CifarUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path} is not accepted as a CIFAR batch: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a CIFAR pickle (no dict inside).")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def _read_cifar_batch(path, label_key):
    """Reads a CIFAR batch: rows of 3072 bytes (R, G, B planes of 32x32) to NHWC."""
    data = _read_pickle(path)
    if "data" not in data or label_key not in data:
        raise ValueError(f"{path} lacks the {'data' if 'data' not in data else label_key!r} entry.")
    x = np.asarray(data["data"], np.uint8)
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: data has shape {x.shape}, expected (N, 3072).")
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(data[label_key])


@contextlib.contextmanager
def _socket_timeout(seconds):
    """Temporarily sets the default socket timeout (urllib uses it)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _load_from_keras(name, *, label_mode="fine", **options):
    """Downloads (or reads the Keras cache) through ``keras.datasets``."""
    import keras  # imported here: starting a backend takes seconds

    loaders = {
        "mnist": keras.datasets.mnist.load_data,
        "fashion_mnist": keras.datasets.fashion_mnist.load_data,
        "cifar10": keras.datasets.cifar10.load_data,
        "cifar100": lambda: keras.datasets.cifar100.load_data(label_mode=label_mode),
    }
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            (x_train, y_train), (x_test, y_test) = loaders[name]()
    except Exception as e:
        raise OSError(
            f"Could not load {name} through keras.datasets ({e}). Offline, put the "
            f"dataset's files in a directory and pass --data-dir (data_dir=) or set {DATA_DIR_ENV}."
        ) from e
    x_train, x_test = (_to_nhwc(x) for x in (x_train, x_test))
    info = {
        "mnist": (10, MNIST_CLASSES),
        "fashion_mnist": (10, FASHION_MNIST_CLASSES),
        "cifar10": (10, CIFAR10_CLASSES),
        "cifar100": (100 if label_mode == "fine" else 20, None),
    }
    num_classes, class_names = info[name]
    return _make(name, x_train, y_train, x_test, y_test, num_classes, "keras.datasets", class_names)


def _to_nhwc(x):
    """Adds a grayscale channel axis, or moves a leading channel axis last."""
    if x.ndim == 3:
        return x[..., None]
    if x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        return x.transpose(0, 2, 3, 1)
    return x


def _class_folders(directory):
    classes = sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"No class sub-folders in {directory}.")
    return classes


def _image_files(directory, class_names):
    files, labels = [], []
    for label, cls in enumerate(class_names):
        folder = directory / cls
        if not folder.is_dir():
            continue
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        files += found
        labels += [label] * len(found)
    if not files:
        raise FileNotFoundError(
            f"No images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in the class sub-folders of {directory}."
        )
    return files, np.asarray(labels, np.int64)


def _read_images(files, size, mode):
    height, width = size
    out = np.empty((len(files), height, width, 1 if mode == "L" else 3), np.uint8)
    for i, path in enumerate(files):
        with Image.open(path) as img:
            img = img.convert(mode)
            if img.size != (width, height):
                img = img.resize((width, height), Image.BILINEAR)
            out[i] = np.asarray(img).reshape(height, width, -1)
    return out
