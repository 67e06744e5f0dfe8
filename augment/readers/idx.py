"""MNIST and Fashion-MNIST in their IDX files (LeCun, Cortes, Burges, "The MNIST
database of handwritten digits", 1998; Xiao, Rasul, Vollgraf, "Fashion-MNIST",
2017), and the embedded MNIST sample shipped in ``augment/data/mnist_sample``."""

from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import numpy as np

from augment.readers import base, download
from augment.readers.download import FASHION_MNIST_CLASSES, MNIST_CLASSES
from zoo.resolve import bad_option

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "mnist_sample"
# MNIST and Fashion-MNIST share these file names.
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


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
    data = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape,
                                                        ">u4").tobytes() + array.tobytes()
    path = Path(path)
    with open(path, "wb") as f:
        if path.suffix == ".gz":
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0) as gz:
                gz.write(data)
        else:
            f.write(data)


def mnist(data_dir, **options):
    if data_dir is not None:
        return load_idx_dir("mnist", data_dir, MNIST_CLASSES)
    try:
        return download.load("mnist", **options)
    except Exception as e:  # keras raises a bare Exception on download failure
        warnings.warn(
            "\n" + "!" * 72 + "\n"
            f"Could not load MNIST through keras.datasets ({e.__cause__ or e}).\n"
            f"FALLING BACK TO THE EMBEDDED SAMPLE in {SAMPLE_DIR} "
            "(5000 train / 1000 test images), NOT the full dataset.\n"
            f"For full MNIST pass --data-dir (data_dir=) or set {base.DATA_DIR_ENV} to a "
            "directory with the four IDX .gz files.\n" + "!" * 72,
            UserWarning,
            stacklevel=3,
        )
        ds = mnist_sample(None)
        ds.name = "mnist"
        return ds


def mnist_sample(data_dir, **options):
    ds = load_idx_dir("mnist_sample", SAMPLE_DIR, MNIST_CLASSES)
    ds.source = "embedded sample"
    return ds


def fashion_mnist(data_dir, **options):
    if data_dir is None:
        return download.load("fashion_mnist", **options)
    return load_idx_dir("fashion_mnist", data_dir, FASHION_MNIST_CLASSES)


def load_idx_dir(name, data_dir, class_names):
    key = "mnist" if name == "mnist_sample" else name
    root = base.find_dir(key, data_dir, list(IDX_FILES.values()))
    arrays = {k: read_idx(root / f) for k, f in IDX_FILES.items()}
    for k in ("x_train", "x_test"):
        if arrays[k].ndim != 3:
            raise ValueError(
                f"{root / IDX_FILES[k]} holds shape {arrays[k].shape}, expected (N, H, W) images."
            )
        arrays[k] = arrays[k][..., None]
    return base.make(name, num_classes=10, source=str(root), class_names=class_names, **arrays)
