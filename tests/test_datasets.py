"""Tests for augment.datasets: local files, the embedded sample, synthetic data, stats."""

import gzip
import os
import pickle
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from augment import datasets
from augment.datasets import (
    DATA_DIR_ENV,
    IDX_FILES,
    channel_stats,
    list_datasets,
    load_dataset,
    read_idx,
    write_idx,
)
from augment.readers import download

ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir():
    """The real-data folder: $ZOO_DATA_DIR, else ../shared/data beside the repo."""
    for candidate in (os.environ.get(DATA_DIR_ENV), ROOT.parent / "shared" / "data"):
        if candidate and all((Path(candidate) / "mnist" / f).is_file() for f in IDX_FILES.values()):
            return Path(candidate)
    return None


@pytest.fixture(autouse=True)
def no_env_data_dir(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


@pytest.fixture(scope="module")
def real_mnist():
    data_dir = _shared_data_dir()
    if data_dir is None:
        pytest.skip(f"real MNIST not found in ${DATA_DIR_ENV} or ../shared/data/mnist")
    return load_dataset("mnist", data_dir=data_dir)


def _write_idx_dataset(directory, x_train, y_train, x_test, y_test):
    directory.mkdir(parents=True, exist_ok=True)
    arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    for key, name in IDX_FILES.items():
        write_idx(directory / name, arrays[key])


def _cifar_rows(x):
    """NHWC uint8 -> CIFAR rows: 1024 red, 1024 green, 1024 blue bytes, row-major."""
    return x.transpose(0, 3, 1, 2).reshape(len(x), 3072)


def _pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _random_images(rng, n, shape=(32, 32, 3)):
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


# === Names and errors ===


def test_list_datasets():
    names = list_datasets()
    assert names == sorted(names)
    for name in ("mnist", "mnist_sample", "fashion_mnist", "cifar10", "cifar100", "synthetic",
                 "folder"):
        assert name in names


def test_unknown_dataset_names_option_value_and_choices():
    with pytest.raises(ValueError, match="dataset='imagenet' is not accepted; expected one of") \
            as info:
        load_dataset("imagenet")
    assert "mnist_sample" in str(info.value) and "cifar100" in str(info.value)


def test_bad_label_mode():
    with pytest.raises(ValueError, match="label_mode"):
        load_dataset("synthetic", label_mode="medium")


def test_missing_files_are_named(tmp_path):
    write_idx(tmp_path / IDX_FILES["x_train"], np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    for key in ("y_train", "x_test", "y_test"):
        assert IDX_FILES[key] in message
    assert f"missing file(s) {IDX_FILES['x_train']}" not in message


def test_missing_cifar_files_are_named(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(FileNotFoundError, match="data_batch_3.*test_batch"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_nonexistent_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("cifar100", data_dir=tmp_path / "nowhere")


def test_corrupt_idx_magic(tmp_path):
    x = np.zeros((3, 28, 28), np.uint8)
    _write_idx_dataset(tmp_path, x, np.zeros(3, np.uint8), x, np.zeros(3, np.uint8))
    write_idx(tmp_path / "plain.idx", x)
    raw = bytearray((tmp_path / "plain.idx").read_bytes())
    raw[2] = 0x0D  # float data instead of uint8
    with gzip.open(tmp_path / IDX_FILES["x_train"], "wb") as f:
        f.write(bytes(raw))
    with pytest.raises(ValueError, match="magic"):
        load_dataset("mnist", data_dir=tmp_path)


def test_idx_round_trip_is_deterministic(tmp_path):
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", x)
    write_idx(tmp_path / "b.gz", x)
    write_idx(tmp_path / "c", x)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), x)
    np.testing.assert_array_equal(read_idx(tmp_path / "c"), x)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


# === MNIST: real files, embedded sample, fallback ===


def test_real_mnist(real_mnist):
    ds = real_mnist
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert set(np.unique(ds.y_train)) == set(range(10)) == set(np.unique(ds.y_test))
    assert ds.num_classes == 10 and ds.input_shape == (28, 28, 1)
    assert ds.source.endswith("mnist") and ds.x_train.max() == 255


def test_real_mnist_from_env_and_direct_dir(monkeypatch, real_mnist):
    direct = Path(real_mnist.source)
    monkeypatch.setenv(DATA_DIR_ENV, str(direct.parent))
    ds = load_dataset("mnist", limit_train=10, limit_test=10)
    assert ds.source == str(direct)
    ds = load_dataset("mnist", data_dir=direct, limit_train=10, limit_test=10)
    assert ds.source == str(direct)


def test_embedded_sample_offline():
    ds = load_dataset("mnist_sample")
    assert ds.source == "embedded sample"
    assert ds.x_train.shape == (5000, 28, 28, 1) and ds.x_test.shape == (1000, 28, 28, 1)
    assert ds.x_train.dtype == np.uint8 and ds.y_test.dtype == np.int64
    counts = np.bincount(ds.y_train, minlength=10)
    assert counts.min() >= 400 and counts.max() <= 600
    sizes = [(datasets.SAMPLE_DIR / f).stat().st_size for f in IDX_FILES.values()]
    assert sum(sizes) < 1_500_000
    readme = (datasets.SAMPLE_DIR / "README.md").read_text()
    assert "LeCun" in readme and "CC BY-SA 3.0" in readme and "make_mnist_sample.py" in readme


def test_embedded_sample_is_a_subset_of_real_mnist(real_mnist):
    sample = load_dataset("mnist_sample")
    real = {img.tobytes(): label for img, label in zip(real_mnist.x_test, real_mnist.y_test)}
    for img, label in zip(sample.x_test[:50], sample.y_test[:50]):
        assert real[img.tobytes()] == label


def test_mnist_falls_back_to_sample_when_keras_fails(monkeypatch):
    def offline(name, **options):
        raise OSError("no network")

    monkeypatch.setattr(download, "load", offline)
    with pytest.warns(UserWarning, match=DATA_DIR_ENV) as record:
        ds = load_dataset("mnist", limit_train=100)
    assert "--data-dir" in str(record[0].message)
    assert ds.name == "mnist" and ds.source == "embedded sample"
    assert len(ds.x_train) == 100 and len(ds.x_test) == 1000


def test_other_datasets_raise_when_keras_fails(monkeypatch):
    def offline(name, **options):
        raise OSError(f"could not download {name}")

    monkeypatch.setattr(download, "load", offline)
    with pytest.raises(OSError, match="cifar10"):
        load_dataset("cifar10")


def test_keras_download_failure_is_fast(monkeypatch):
    """The real keras.datasets path, forced offline through a refused proxy."""
    cache = Path(os.path.expanduser(os.environ.get("KERAS_HOME",
                                                   "~/.keras"))) / "datasets" / "mnist.npz"
    if cache.exists():
        pytest.skip(f"keras has MNIST cached at {cache}; the download is not attempted")
    with socket.socket() as s:  # a port nothing listens on: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(download, "DOWNLOAD_TIMEOUT_S", 2.0)
    pytest.importorskip("keras")
    start = time.perf_counter()
    with pytest.warns(UserWarning, match="EMBEDDED SAMPLE"):
        ds = load_dataset("mnist", limit_train=10, limit_test=10)
    assert ds.source == "embedded sample"
    assert time.perf_counter() - start < 5.0


# === Fashion-MNIST and CIFAR from files in the real formats ===


def test_fashion_mnist_from_idx_files(tmp_path):
    rng = np.random.default_rng(1)
    x_train, x_test = _random_images(rng, 12, (28, 28)), _random_images(rng, 5, (28, 28))
    y_train, y_test = np.arange(12, dtype=np.uint8) % 10, np.arange(5, dtype=np.uint8)
    _write_idx_dataset(tmp_path / "fashion_mnist", x_train, y_train, x_test, y_test)
    ds = load_dataset("fashion_mnist", data_dir=tmp_path)
    assert ds.source == str(tmp_path / "fashion_mnist")
    np.testing.assert_array_equal(ds.x_train[..., 0], x_train)
    np.testing.assert_array_equal(ds.y_test, y_test)
    assert ds.y_train.dtype == np.int64 and ds.class_names[9] == "Ankle boot"


def test_env_var_points_at_data(tmp_path, monkeypatch):
    x = np.zeros((4, 28, 28), np.uint8)
    _write_idx_dataset(tmp_path, x, np.arange(4, dtype=np.uint8), x, np.arange(4, dtype=np.uint8))
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert load_dataset("fashion_mnist").source == str(tmp_path)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "missing")):
        load_dataset("fashion_mnist")


def test_cifar10_pixel_layout_and_batches(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    batches = [_random_images(rng, 3) for _ in range(6)]
    # A hand-made first image: red plane 10, green 20, blue 30, two marked pixels.
    rows = _cifar_rows(batches[0])
    rows[0, :1024], rows[0, 1024:2048], rows[0, 2048:] = 10, 20, 30
    rows[0, 1] = 99  # red, row 0, column 1
    rows[0, 1024 + 32] = 77  # green, row 1, column 0
    labels = [[i % 10 for i in range(3)] for _ in range(6)]
    for i in range(5):
        data = rows if i == 0 else _cifar_rows(batches[i])
        _pickle(root / f"data_batch_{i + 1}", {b"batch_label": b"x", b"labels": labels[i],
                                               b"data": data})
    _pickle(root / "test_batch", {b"labels": labels[5], b"data": _cifar_rows(batches[5])})
    _pickle(root / "batches.meta",
            {b"label_names": [n.encode() for n in datasets.CIFAR10_CLASSES[::-1]]})

    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.x_train.shape == (15, 32, 32, 3) and ds.x_test.shape == (3, 32, 32, 3)
    first = ds.x_train[0]
    assert tuple(first[5, 7]) == (10, 20, 30)
    assert tuple(first[0, 1]) == (99, 20, 30) and tuple(first[1, 0]) == (10, 77, 30)
    np.testing.assert_array_equal(ds.x_train[3:], np.concatenate(batches[1:5]))
    np.testing.assert_array_equal(ds.x_test, batches[5])
    np.testing.assert_array_equal(ds.y_train, np.concatenate(labels[:5]))
    assert ds.y_train.dtype == np.int64 and ds.num_classes == 10
    assert ds.class_names[0] == "truck"  # read from batches.meta


def test_cifar100_fine_and_coarse(tmp_path):
    rng = np.random.default_rng(3)
    x_train, x_test = _random_images(rng, 6), _random_images(rng, 4)
    fine = [0, 99, 50, 3, 4, 5]
    coarse = [0, 19, 10, 1, 1, 2]
    _pickle(tmp_path / "train", {b"data": _cifar_rows(x_train), b"fine_labels": fine,
                                 b"coarse_labels": coarse})
    _pickle(tmp_path / "test", {b"data": _cifar_rows(x_test), b"fine_labels": [1, 2, 3, 4],
                                b"coarse_labels": [5, 6, 7, 8]})
    _pickle(tmp_path / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})
    ds = load_dataset("cifar100", data_dir=tmp_path)
    np.testing.assert_array_equal(ds.x_train, x_train)
    np.testing.assert_array_equal(ds.y_train, fine)
    assert ds.num_classes == 100 and ds.class_names[99] == "f99"
    ds = load_dataset("cifar100", data_dir=tmp_path, label_mode="coarse")
    np.testing.assert_array_equal(ds.y_test, [5, 6, 7, 8])
    assert ds.num_classes == 20 and len(ds.class_names) == 20


# === Synthetic and folder ===


def test_synthetic_shapes_and_determinism():
    ds = load_dataset("synthetic", image_shape=(8, 12, 5), num_classes=4, synthetic_size=(40, 12),
                      seed=3)
    assert ds.x_train.shape == (40, 8, 12, 5) and ds.x_test.shape == (12, 8, 12, 5)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert set(ds.y_train) == set(range(4)) and ds.num_classes == 4 and ds.source == "synthetic"
    again = load_dataset("synthetic", image_shape=(8, 12, 5), num_classes=4,
                         synthetic_size=(40, 12), seed=3)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    np.testing.assert_array_equal(ds.y_test, again.y_test)
    other = load_dataset("synthetic", image_shape=(8, 12, 5), num_classes=4,
                         synthetic_size=(40, 12), seed=4)
    assert not np.array_equal(ds.x_train, other.x_train)
    assert load_dataset("synthetic").input_shape == (32, 32, 3)


def test_synthetic_is_learnable():
    ds = load_dataset("synthetic", image_shape=(16, 16, 1), synthetic_size=(500, 200))
    x_train = ds.x_train.reshape(len(ds.x_train), -1).astype(np.float32)
    x_test = ds.x_test.reshape(len(ds.x_test), -1).astype(np.float32)
    means = np.stack([x_train[ds.y_train == c].mean(0) for c in range(10)])
    predicted = np.argmin(((x_test[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == ds.y_test).mean() > 0.9


def _save_png(path, size, color, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_folder_with_train_and_val(tmp_path):
    """A folder is listed, not loaded: the splits hold the files and labels
    (augment/streams.py decodes them; tests/test_streams.py)."""
    for split, count in (("train", 3), ("val", 1)):
        for i in range(count):
            _save_png(tmp_path / split / "dog" / f"{i}.png", (20, 10), (200, 0, 0))
            _save_png(tmp_path / split / "cat" / f"{i}.PNG", (8, 8), 100, mode="L")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    ds = load_dataset("folder", data_dir=tmp_path)
    assert ds.streaming and ds.class_names == ["cat", "dog"] and ds.num_classes == 2
    assert len(ds.train) == 6 and len(ds.test) == 2
    np.testing.assert_array_equal(ds.train.labels, [0, 0, 0, 1, 1, 1])
    assert all(p.endswith((".png", ".PNG")) for p in ds.train.paths)


def test_folder_flat_split(tmp_path):
    for cls in ("a", "b", "c"):
        for i in range(10):
            _save_png(tmp_path / cls / f"{i}.png", (4, 4), (i * 20, 0, 0))
    ds = load_dataset("folder", data_dir=tmp_path, seed=1)
    assert len(ds.train) == 24 and len(ds.test) == 6
    np.testing.assert_array_equal(np.bincount(ds.test.labels), [2, 2, 2])
    again = load_dataset("folder", data_dir=tmp_path, seed=1)
    np.testing.assert_array_equal(ds.test.paths, again.test.paths)
    assert not set(ds.test.paths) & set(ds.train.paths)
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset("folder")


# === Statistics, limits, padding ===


def test_channel_stats(monkeypatch):
    ds = load_dataset("synthetic", image_shape=(8, 8, 3), synthetic_size=(300, 50))
    mean, std = channel_stats(ds.x_train)
    assert mean.dtype == np.float32 and mean.shape == (3,) and std.shape == (3,)
    direct = ds.x_train.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, direct.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, direct.std(0), rtol=1e-5)
    monkeypatch.setattr(datasets, "STATS_CHUNK", 100)  # several chunks, same answer
    np.testing.assert_allclose(channel_stats(ds.x_train)[1], std, rtol=1e-5)


def test_channel_stats_of_padded_images_without_padding_them():
    x = load_dataset("synthetic", image_shape=(6, 5, 1), synthetic_size=(40, 8)).x_train
    padded = np.pad(x, [(0, 0), (1, 1), (2, 1), (0, 0)])
    for ours, direct in zip(channel_stats(x, (8, 8)), channel_stats(padded)):
        np.testing.assert_allclose(ours, direct, rtol=1e-5)


def test_channel_stats_grayscale_and_constant():
    mean, std = channel_stats(np.full((5, 4, 4, 1), 51, np.uint8))
    np.testing.assert_allclose(mean, [0.2], rtol=1e-6)
    assert std[0] < 1e-6


def test_limit_takes_seeded_random_subset():
    full = load_dataset("synthetic", synthetic_size=(200, 50))
    ds = load_dataset("synthetic", synthetic_size=(200, 50), limit_train=20, limit_test=7)
    assert ds.x_train.shape[0] == 20 and ds.x_test.shape[0] == 7
    assert not np.array_equal(ds.x_train, full.x_train[:20])
    rows = {img.tobytes() for img in full.x_train}
    assert all(img.tobytes() in rows for img in ds.x_train)
    again = load_dataset("synthetic", synthetic_size=(200, 50), limit_train=20, limit_test=7)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    assert len(load_dataset("synthetic", synthetic_size=(200, 50), limit_train=1000).x_train) == 200
    for bad in (0, -3):
        with pytest.raises(ValueError, match="limit_train"):
            load_dataset("synthetic", limit_train=bad)


def test_dataset_repr_is_short():
    text = repr(load_dataset("synthetic"))
    assert "synthetic" in text and len(text) < 200


class _RunsCode:
    """What a malicious pickle holds: unpickling calls a function of its choice."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_cifar_pickles_cannot_run_code(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    marker = tmp_path / "pwned"
    for i in range(1, 6):
        _pickle(root / f"data_batch_{i}", {b"labels": [0, 1], b"data": _cifar_rows(
            _random_images(rng, 2))})
    _pickle(root / "test_batch", {b"labels": [0, 1], b"data": _RunsCode(marker)})
    with pytest.raises(ValueError, match=r"test_batch is not accepted as a CIFAR batch: "
                                         r"refusing to load "):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not marker.exists()
