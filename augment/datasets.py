"""The dataset registry: image classification datasets by name, offline when possible.

In memory (uint8 NHWC arrays, `Dataset`): ``mnist``, ``fashion_mnist``,
``cifar10``, ``cifar100``, ``mnist_sample`` (a small MNIST subset shipped with
the project) and ``synthetic``. Streamed (`StreamingDataset`: listed, never
loaded whole; `augment.streams` reads them): ``folder`` (class sub-folders of
images) and ``tfrecord`` (TFRecord shards). Each format is one module of
`augment.readers`.

Where the data comes from, in order:

1. ``data_dir`` (the ``--data-dir`` flag of the scripts), else the environment
   variable ``ZOO_DATA_DIR``: the standard files, either directly in that
   directory or in its ``mnist/``, ``fashion_mnist/``, ``cifar-10-batches-py/``
   or ``cifar-100-python/`` sub-folder. MNIST and Fashion-MNIST are the four
   IDX ``.gz`` files; CIFAR the python pickle batches.
2. Otherwise ``keras.datasets`` (downloads into the Keras cache). Without a
   network, ``mnist`` falls back to the embedded sample with a warning; the
   other datasets raise.

``source`` records which of these was used. The per-channel mean and standard
deviation for zero-centering come from the training split only
(``channel_stats``), as in AlexNet and VGG; the model applies them
(`zoo.contract`).
"""

from __future__ import annotations

import os

import numpy as np

from augment.readers import cifar, folder, idx, synthetic, tfrecord
from augment.readers.base import DATA_DIR_ENV, LABEL_MODES, Dataset, StreamingDataset
from augment.readers.download import CIFAR10_CLASSES, FASHION_MNIST_CLASSES, MNIST_CLASSES
from augment.readers.folder import BAD_IMAGES, IMAGE_EXTENSIONS
from augment.readers.idx import IDX_FILES, SAMPLE_DIR, read_idx, write_idx
from zoo.resolve import bad_option

READERS = {
    "mnist": idx.mnist,
    "mnist_sample": idx.mnist_sample,
    "fashion_mnist": idx.fashion_mnist,
    "cifar10": cifar.cifar10,
    "cifar100": cifar.cifar100,
    "synthetic": synthetic.synthetic,
    "folder": folder.folder,
    "tfrecord": tfrecord.tfrecord,
}
STREAMING = ("folder", "tfrecord")  # need --data-dir; never loaded whole
STATS_CHUNK = 2**22  # values per chunk of `channel_stats` (2**22 float64 = 32 MiB)

__all__ = ["BAD_IMAGES", "CIFAR10_CLASSES", "DATA_DIR_ENV", "FASHION_MNIST_CLASSES",
           "IDX_FILES", "IMAGE_EXTENSIONS", "MNIST_CLASSES", "READERS", "SAMPLE_DIR", "STREAMING",
           "Dataset", "StreamingDataset", "channel_stats", "list_datasets", "load_dataset",
           "read_idx", "write_idx"]


def list_datasets() -> list[str]:
    """Names accepted by `load_dataset`, sorted."""
    return sorted(READERS)


def load_dataset(name, data_dir=None, *, limit_train=None, limit_test=None, seed=0,
                 image_shape=(32, 32, 3), num_classes=10, synthetic_size=(512, 128),
                 label_mode="fine", classes=None, bad_images="skip"):
    """Loads (or, for ``folder`` and ``tfrecord``, lists) a dataset by name.

    Args:
        name: One of `list_datasets()`; case and "-" vs "_" do not matter.
        data_dir: Directory with the dataset's standard files, or a parent of
            the standard sub-folder (e.g. ``mnist/``). Defaults to the
            ``ZOO_DATA_DIR`` environment variable; either one, once set, must
            hold the files (no download is tried). If neither is set, the
            named datasets download through ``keras.datasets``. Required for
            ``folder`` and ``tfrecord`` (the environment variable is not used
            there); ignored by ``synthetic`` and ``mnist_sample``.
        limit_train: Keep a seeded random subset of this many training images.
        limit_test: Keep a seeded random subset of this many test images.
        seed: Seed for the subsets, the synthetic data and the folder split.
        image_shape: (height, width, channels) of ``synthetic`` images.
        num_classes: Number of ``synthetic`` classes.
        synthetic_size: (train, test) image counts of ``synthetic``.
        label_mode: ``cifar100`` labels, "fine" (100 classes) or "coarse" (20).
        classes: Keep only these labels, renumbered 0, 1, ... in the order
            given (before the limits apply), e.g. (5, 6, 7, 8, 9).
        bad_images: ``folder``: "skip" (leave out, and name, the files that
            cannot be used) or "error" (stop, naming them).

    Returns:
        A `Dataset` (arrays) or a `StreamingDataset` (``folder``, ``tfrecord``).

    Raises:
        ValueError: Unknown name, invalid argument or corrupt file.
        FileNotFoundError: The directory lacks the dataset's files.
        OSError: No directory given and ``keras.datasets`` could not download
            (all but ``mnist``, which falls back to the embedded sample).
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in READERS:
        raise bad_option("dataset", name, "one of " + ", ".join(list_datasets()))
    if label_mode not in LABEL_MODES:
        raise bad_option("label_mode", label_mode, "one of " + ", ".join(LABEL_MODES))
    for arg, value in (("limit_train", limit_train), ("limit_test", limit_test)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise bad_option(arg, value, "an integer >= 1")
    if data_dir is None and key not in STREAMING:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    ds = READERS[key](data_dir, seed=seed, image_shape=image_shape, num_classes=num_classes,
                      synthetic_size=synthetic_size, label_mode=label_mode,
                      bad_images=bad_images)
    if classes is not None:
        ds.select_classes(classes)
    ds.limit(limit_train, limit_test, seed)
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
