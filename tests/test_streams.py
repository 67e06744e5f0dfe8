"""Streamed data (augment/readers/folder.py, tfrecord.py, augment/streams.py,
augment/transforms.py, scripts/make_tfrecords.py, scripts/data_service.py):
folders and shards the tests write themselves, bad files, the transforms, the
seeded order, sharding between workers, the tf.data service, a run end to end."""

import hashlib
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from augment import datasets, streams, transforms
from zoo.contract import FitToSize

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


def save(path, array=None, mode="RGB", size=(30, 24), **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    if array is None:
        array = RNG.integers(0, 256, (size[1], size[0], 3), np.uint8)
    Image.fromarray(array).convert(mode).save(path, **kwargs)
    return path


def bomb_png(path, side=20_000):
    """A PNG whose header says side x side pixels (only its header: checks
    must refuse it without decoding it)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three classes of photos of mixed sizes, formats and modes, plus every kind
    of bad file: ({class: count of good files}, root, [bad paths])."""
    root = tmp_path_factory.mktemp("photos")
    good = {"cat": 0, "dog": 0, "eel": 0}
    kinds = [("jpg", "RGB", {"quality": 90}), ("png", "L", {}), ("jpg", "CMYK", {}),
             ("png", "RGBA", {}), ("gif", "P", {}), ("bmp", "RGB", {}), ("webp", "RGB", {}),
             ("png", "I;16", {})]
    for c, cls in enumerate(good):
        for i in range(8):
            ext, mode, options = kinds[(i + c) % len(kinds)]
            size = (int(RNG.integers(20, 90)), int(RNG.integers(20, 90)))
            array = RNG.integers(0, 256, (size[1], size[0], 3), np.uint8)
            array[..., c] = 255  # the class is the dominant colour: learnable
            if mode == "I;16":
                Image.fromarray(array[..., c].astype(np.uint16) * 257).save(root / cls / f"{i}.png")
            else:
                save(root / cls / f"{i}.{ext}", array, mode, **options)
            good[cls] += 1
    whole = save(root / "x.jpg", quality=90).read_bytes()
    (root / "x.jpg").unlink()
    bad = [root / "cat" / "truncated.jpg", root / "dog" / "text.jpg", root / "eel" / "empty.png",
           bomb_png(root / "eel" / "bomb.png"), root / "fish"]
    bad[0].write_bytes(whole[:len(whole) // 2])
    bad[1].write_text("not an image")
    bad[2].write_bytes(b"")
    bad[4].mkdir()
    return good, root, bad


def image_hashes(stream_or_dataset):
    out = []
    for images, _ in stream_or_dataset:
        out += [hashlib.sha1(np.asarray(image).tobytes()).hexdigest() for image in images]
    return sorted(out)


def test_a_folder_is_listed_and_bad_files_are_named_and_left_out(photos, capsys):
    good, root, bad = photos
    ds = datasets.load_dataset("folder", root, seed=0)
    assert ds.class_names == ["cat", "dog", "eel"]  # the empty "fish" folder is left out
    assert len(ds.train) + len(ds.test) == sum(good.values())
    err = capsys.readouterr().err
    assert "left out 5 of 28 image files that cannot be used" in err
    for path, why in zip(bad, ("a truncated JPEG file", "not an image",
                               "an empty file", "a decompression bomb", "an empty class folder")):
        assert f"  {path}: {why}" in err, (path, err)
    with pytest.raises(ValueError, match=r"bad_images='error': 5 of 28 image files cannot be "
                                         r"used:\n  ") as error:
        datasets.load_dataset("folder", root, bad_images="error")
    assert all(str(path) in str(error.value) for path in bad)


@pytest.mark.parametrize("preset", transforms.TRAIN)
def test_every_train_transform_decodes_any_image_to_a_uint8_crop(photos, preset):
    _, root, _ = photos
    ds = datasets.load_dataset("folder", root, seed=0)
    stream = streams.Stream(ds.train, 3, 20, preset, training=True, seed=1)
    images, labels = next(iter(stream.dataset(len(ds.train))))
    assert images.shape == (len(ds.train), 20, 20, 3) and images.dtype == tf.uint8
    assert labels.shape == (len(ds.train), 3)


def test_the_eval_crop_is_the_models_own_fit_rule(photos):
    """What evaluation feeds the model is what the model does to a raw image
    (`FitToSize` "crop"): an exported model given the original file sees the
    same crop."""
    _, root, _ = photos
    ds = datasets.load_dataset("folder", root, seed=0)
    stream = streams.Stream(ds.test, 3, 24, "center")
    images, labels = next(stream.batches(len(ds.test)))
    order = np.random.default_rng([0, 7]).permutation(len(ds.test))
    for image, path in zip(images, ds.test.paths[order]):
        raw = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        fitted = keras.ops.convert_to_numpy(FitToSize(24, 24, mode="crop")(raw))
        assert np.abs(fitted - image.astype(np.float32)).max() <= 1.0, path


def test_the_training_order_is_seeded_and_reshuffled_every_epoch(photos):
    _, root, _ = photos
    ds = datasets.load_dataset("folder", root, seed=0)

    def epochs(seed, count=2):
        stream = streams.Stream(ds.train, 3, 16, "resize", training=True, seed=seed, flip=False)
        batches = iter(stream.dataset(len(ds.train)))
        return [np.argmax(next(batches)[1], -1).tolist() for _ in range(count)]

    first, second = epochs(0)
    assert first != second and sorted(first) == sorted(second)  # reshuffled, same images
    assert epochs(0) == [first, second] and epochs(1)[0] != first
    train, val = ds.train.holdout(0.25, seed=3)
    assert len(val) == round(0.25 * len(ds.train)) and not set(val.paths) & set(train.paths)


def test_workers_read_disjoint_shares_that_cover_every_image(photos):
    _, root, _ = photos
    ds = datasets.load_dataset("folder", root, seed=0)
    every = image_hashes(streams.Stream(ds.train, 3, 16, "resize").batches(64))
    shares = [image_hashes(streams.Stream(ds.train, 3, 16, "resize", shard=(2, i)).batches(64))
              for i in range(2)]
    assert sorted(shares[0] + shares[1]) == every and abs(len(shares[0]) - len(shares[1])) <= 1


WORKER_SCRIPT = """
import hashlib, json, sys
import numpy as np
from zoo.training import TrainConfig, data
from zoo.training.distribute import worker_share
config = TrainConfig(model="test_resnet", dataset="folder", data_dir=sys.argv[1], image_size=16,
                     val_split=0.0, strategy="multiworker", train_transform="resize",
                     augment_options={"flip": False})
stream = data.prepare_data(config)["x_train"]
assert stream.shard == worker_share("multiworker"), stream.shard
epoch = stream._images().as_numpy_iterator()  # one pass of this worker's share, shuffled
seen = [hashlib.sha1(image.tobytes()).hexdigest() for image, _ in epoch]
print("SEEN " + json.dumps(seen))
"""


def test_two_workers_of_a_multiworker_run_read_every_image_once(photos):
    """Two processes with TF_CONFIG, as `--strategy multiworker` runs them: each
    streams its own share; together one epoch has every image exactly once."""
    _, root, _ = photos
    cluster = {"worker": ["localhost:1", "localhost:2"]}
    runs = [subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, str(root)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                                                "TF_CONFIG": json.dumps(
                                                    {"cluster": cluster,
                                                     "task": {"type": "worker", "index": i}})})
            for i in range(2)]
    seen = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-3000:]
        seen.append(json.loads(next(ln for ln in out.splitlines()
                                    if ln.startswith("SEEN "))[5:]))
    ds = datasets.load_dataset("folder", root, seed=0)
    every = image_hashes(streams.Stream(ds.train, 3, 16, "resize").batches(64))
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == every


def test_a_tf_data_service_serves_every_image_once_per_epoch(photos, tmp_path):
    from zoo import training

    _, root, _ = photos
    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
    address = dispatcher.target.removeprefix("grpc://")
    workers = [service.WorkerServer(service.WorkerConfig(dispatcher_address=address))
               for _ in range(2)]
    ds = datasets.load_dataset("folder", root, seed=0)
    stream = streams.Stream(ds.train, 3, 16, "resize", training=True, flip=False,
                            service=dispatcher.target)
    epoch = stream._images().batch(4).apply(service.distribute(
        processing_mode="distributed_epoch", service=dispatcher.target))
    every = image_hashes(streams.Stream(ds.train, 3, 16, "resize").batches(64))
    assert image_hashes(epoch) == every
    metrics = training.train(training.TrainConfig(
        model="test_resnet", dataset="folder", data_dir=str(root), image_size=16, epochs=1,
        batch_size=4, data_service=dispatcher.target, out=str(tmp_path / "run"), verbose=0))
    assert metrics["epochs_completed"] == 1 and metrics["num_train"] == len(stream) - round(
        0.1 * len(stream))
    del workers


def test_make_tfrecords_writes_shards_atomically_and_resumes(photos, tmp_path, capsys):
    import make_tfrecords

    _, root, _ = photos
    out = tmp_path / "shards"
    meta = make_tfrecords.main([str(root), str(out), "--shards", "3", "--workers", "2"])
    names = sorted(p.name for p in out.glob("*.tfrecord"))
    assert names == [f"{s}-{i:05d}-of-00003.tfrecord" for s in ("test", "train") for i in range(3)]
    assert meta["class_names"] == ["cat", "dog", "eel"] and len(meta["bad_files"]) == 5
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tfrecord")}
    # A kill: the metadata and one shard never written, a temporary file left behind.
    (out / "dataset.json").unlink()
    (out / names[-1]).unlink()
    (out / f".tmp999_{names[-1]}").write_bytes(b"half a shard")
    make_tfrecords.main([str(root), str(out), "--shards", "3"])
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tfrecord")}
    assert set(after) == set(before) and not list(out.glob(".tmp*"))
    assert all(after[n] == before[n] for n in names[:-1])  # kept, not rewritten
    assert "5 written" not in capsys.readouterr().err
    with pytest.raises(SystemExit):
        make_tfrecords.main([str(root), str(out), "--shards", "4"])
    assert "holds shards of another conversion" in capsys.readouterr().err
    ds = datasets.load_dataset("tfrecord", out)
    assert ds.class_names == ["cat", "dog", "eel"]
    assert len(ds.train) + len(ds.test) == meta["splits"]["train"]["count"] + meta["splits"][
        "test"]["count"]
    folder = datasets.load_dataset("folder", root, seed=0)
    shards_images = image_hashes(streams.Stream(ds.train, 3, 16, "resize").batches(64))
    assert shards_images == image_hashes(streams.Stream(folder.train, 3, 16, "resize").batches(64))


def write_imagenet_style(directory, labels_from=1, tfds=False):
    """Shards as TensorFlow's ImageNet tools write them (labels 1..K, synset
    texts, no metadata), or as TFDS does (keys image/label, dataset_info.json)."""
    directory.mkdir()
    texts = ["n01440764", "n01443537", "n01484850"]
    for split, count in (("train", 12), ("validation", 6)):
        name = f"data-{split}.tfrecord-00000-of-00001" if tfds else f"{split}-00000-of-00001"
        with tf.io.TFRecordWriter(str(directory / name)) as writer:
            for i in range(count):
                image = RNG.integers(0, 256, (20, 24, 3), np.uint8)
                label = i % 3
                feature = {("image" if tfds else "image/encoded"): tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[tf.io.encode_jpeg(image).numpy()])),
                    ("label" if tfds else "image/class/label"): tf.train.Feature(
                        int64_list=tf.train.Int64List(value=[label + labels_from]))}
                if not tfds:
                    feature["image/class/text"] = tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[texts[label].encode()]))
                writer.write(tf.train.Example(features=tf.train.Features(
                    feature=feature)).SerializeToString())
    if tfds:
        (directory / "dataset_info.json").write_text(json.dumps({"splits": [
            {"name": "train", "shardLengths": ["12"]},
            {"name": "validation", "shardLengths": ["6"]}]}))
        (directory / "label.labels.txt").write_text("\n".join(texts))
    return texts


@pytest.mark.parametrize("tfds", [False, True])
def test_imagenet_tools_and_tfds_shards_are_read_as_they_are(tmp_path, tfds):
    texts = write_imagenet_style(tmp_path / "shards", labels_from=0 if tfds else 1, tfds=tfds)
    ds = datasets.load_dataset("tfrecord", tmp_path / "shards")
    assert ds.class_names == texts and len(ds.train) == 12 and len(ds.test) == 6
    labels = [np.argmax(y, -1) for _, y in streams.Stream(ds.test, 3, 16, "center").dataset(6)]
    assert sorted(np.concatenate(labels).tolist()) == [0, 0, 1, 1, 2, 2]  # 1..K read as 0..K-1
    subset = datasets.load_dataset("tfrecord", tmp_path / "shards", classes=[2, 0])
    assert subset.class_names == [texts[2], texts[0]]
    assert len(subset.train) == 8  # known per class, or estimated from the share of classes
    kept = image_hashes(streams.Stream(subset.train, 2, 16, "center").batches(8))
    assert len(kept) == 8
    held = streams.Stream(subset.train.holdout(0.5, seed=0)[1], 2, 16, "center")
    rest = streams.Stream(subset.train.holdout(0.5, seed=0)[0], 2, 16, "center")
    assert len(image_hashes(held.batches(8))) + len(image_hashes(rest.batches(8))) == 8
    assert not set(image_hashes(held.batches(8))) & set(image_hashes(rest.batches(8)))
    if not tfds:  # the labels were read once and saved beside the shards
        assert json.loads((tmp_path / "shards" / "dataset.json").read_text())["splits"][
            "train"]["label_offset"] == 1


def test_a_family_recipe_on_a_folder_end_to_end(photos, tmp_path):
    """train_resnet.py on photos (its train and eval transforms), export, and
    predict.py on a JPEG: the exported model crops it as evaluation did."""
    _, root, _ = photos
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_resnet.py"), "--model", "test_resnet",
         "--dataset", "folder", "--data-dir", str(root), "--image-size", "24", "--epochs", "2",
         "--batch-size", "8", "--out", str(run), "--verbose", "0"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())
    assert config["train_transform"] == "resnet" and config["eval_transform"] == "center"
    assert config["contract"]["fit"] == "crop" and config["contract"]["image_shape"] == [24, 24, 3]
    assert json.loads((run / "metrics.json").read_text())["epochs_completed"] == 2
    exported = tmp_path / "exported"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "export.py"),
                             str(run / "model.keras"), "--out", str(exported)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    photo = str(root / "cat" / "0.jpg")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"), str(exported),
                             photo, "--top-k", "3", "--save", str(tmp_path / "p.npy")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(photo) and "cat" in result.stdout
    model = keras.saving.load_model(run / "model.keras")
    decoded = np.asarray(Image.open(photo).convert("RGB"))[None]
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), model.predict(decoded, verbose=0),
                               atol=1e-4)
