"""Datasets through `keras.datasets` (it downloads into the Keras cache), with a
per-operation timeout so that a blackholed network fails quickly."""

import contextlib
import socket

from augment.readers import base

# Per-socket-operation timeout (seconds) while keras.datasets downloads.
DOWNLOAD_TIMEOUT_S = 10.0
MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]


@contextlib.contextmanager
def socket_timeout(seconds):
    """Temporarily sets the default socket timeout (urllib uses it)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def load(name, *, label_mode="fine", **options):
    """Downloads (or reads the Keras cache) through ``keras.datasets``; raises
    OSError naming --data-dir when that fails."""
    import keras  # imported here: starting a backend takes seconds

    loaders = {
        "mnist": keras.datasets.mnist.load_data,
        "fashion_mnist": keras.datasets.fashion_mnist.load_data,
        "cifar10": keras.datasets.cifar10.load_data,
        "cifar100": lambda: keras.datasets.cifar100.load_data(label_mode=label_mode),
    }
    try:
        with socket_timeout(DOWNLOAD_TIMEOUT_S):
            (x_train, y_train), (x_test, y_test) = loaders[name]()
    except Exception as e:
        raise OSError(
            f"Could not load {name} through keras.datasets ({e}). Offline, put the "
            f"dataset's files in a directory and pass --data-dir (data_dir=) or set "
            f"{base.DATA_DIR_ENV}."
        ) from e
    x_train, x_test = (to_nhwc(x) for x in (x_train, x_test))
    info = {
        "mnist": (10, MNIST_CLASSES),
        "fashion_mnist": (10, FASHION_MNIST_CLASSES),
        "cifar10": (10, CIFAR10_CLASSES),
        "cifar100": (100 if label_mode == "fine" else 20, None),
    }
    num_classes, class_names = info[name]
    return base.make(name, x_train, y_train, x_test, y_test, num_classes, "keras.datasets",
                     class_names)


def to_nhwc(x):
    """Adds a grayscale channel axis, or moves a leading channel axis last."""
    if x.ndim == 3:
        return x[..., None]
    if x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        return x.transpose(0, 2, 3, 1)
    return x
