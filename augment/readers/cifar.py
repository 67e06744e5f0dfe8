"""CIFAR-10 and CIFAR-100 (Krizhevsky, "Learning Multiple Layers of Features from
Tiny Images", 2009) in their python pickle batches, read with an unpickler that
refuses anything but the arrays, lists, dicts, bytes and numbers they hold."""

import pickle

import numpy as np

from augment.readers import base, download
from augment.readers.download import CIFAR10_CLASSES

CIFAR10_TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_META_FILE = "batches.meta"
CIFAR100_FILES = {"train": "train", "test": "test", "meta": "meta"}


def cifar10(data_dir, **options):
    if data_dir is None:
        return download.load("cifar10", **options)
    files = CIFAR10_TRAIN_FILES + [CIFAR10_TEST_FILE]
    root = base.find_dir("cifar10", data_dir, files)
    parts = [read_cifar_batch(root / f, "labels") for f in CIFAR10_TRAIN_FILES]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = read_cifar_batch(root / CIFAR10_TEST_FILE, "labels")
    class_names = CIFAR10_CLASSES
    if (root / CIFAR10_META_FILE).is_file():
        class_names = read_pickle(root / CIFAR10_META_FILE).get("label_names", class_names)
    return base.make("cifar10", x_train, y_train, x_test, y_test, 10, str(root), class_names)


def cifar100(data_dir, *, label_mode="fine", **options):
    if data_dir is None:
        return download.load("cifar100", label_mode=label_mode, **options)
    files = [CIFAR100_FILES["train"], CIFAR100_FILES["test"]]
    root = base.find_dir("cifar100", data_dir, files)
    key = f"{label_mode}_labels"
    x_train, y_train = read_cifar_batch(root / CIFAR100_FILES["train"], key)
    x_test, y_test = read_cifar_batch(root / CIFAR100_FILES["test"], key)
    class_names = None
    if (root / CIFAR100_FILES["meta"]).is_file():
        class_names = read_pickle(root / CIFAR100_FILES["meta"]).get(f"{label_mode}_label_names")
    num_classes = 100 if label_mode == "fine" else 20
    return base.make("cifar100", x_train, y_train, x_test, y_test, num_classes, str(root),
                     class_names)


class CifarUnpickler(pickle.Unpickler):
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


def read_pickle(path):
    """Loads a CIFAR pickle (python 2 or 3) with `_CifarUnpickler`, decoding bytes
    keys to str."""
    try:
        with open(path, "rb") as f:
            data = CifarUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path} is not accepted as a CIFAR batch: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a CIFAR pickle (no dict inside).")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def read_cifar_batch(path, label_key):
    """Reads a CIFAR batch: rows of 3072 bytes (R, G, B planes of 32x32) to NHWC."""
    data = read_pickle(path)
    if "data" not in data or label_key not in data:
        raise ValueError(f"{path} lacks the {'data' if 'data' not in data else label_key!r} entry.")
    x = np.asarray(data["data"], np.uint8)
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: data has shape {x.shape}, expected (N, 3072).")
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(data[label_key])
