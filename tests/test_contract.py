"""The input contract a model carries (zoo/contract.py): raw images in, the
normalization and class names inside, round trips, ensembles of any members,
and runs written before the contract existed."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import zoo
from ensembles import EnsembleModel, metrics
from zoo import contract as contract_module
from zoo.contract import Classifier, FitToSize, InputContract, contract_of
from zoo.training import rundir, train

from helpers import tiny_config

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "legacy_v0"
MNIST = {"image_shape": (28, 28, 1), "mean": [0.1], "std": [0.3], "dataset": "mnist",
         "class_names": [str(i) for i in range(10)]}


def old_path(images, size, mean, std):
    """What the toolkit did before the contract: numpy centred zero padding to
    `size`, then (x / 255 - mean) / std, the network fed the result."""
    x = np.asarray(images)
    (top, bottom), (left, right) = contract_module.centre_padding(
        x.shape[1], x.shape[2], size, size)
    x = np.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)]).astype(np.float32) / 255.0
    return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def digits(count=8, seed=0, size=28):
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 1), np.uint8)


def classifiers(model):
    """Every `Classifier` inside a model (itself, ensemble members, wrapped ones)."""
    if isinstance(model, Classifier):
        return [model]
    found = []
    for inner in (getattr(model, "members", None) or []) + [getattr(model, "model", None)] + \
            list(getattr(model, "layers", None) or []):
        if isinstance(inner, keras.Model) and inner is not model:
            found += [c for c in classifiers(inner) if all(c is not f for f in found)]
    return found


def assert_takes_raw_images(model, images):
    """`model` carries a contract, and each classifier in it predicts on uint8
    images what its network predicts on the old path's normalized input."""
    assert contract_of(model) is not None
    inner = classifiers(model)
    assert inner, f"{model.name} holds no Classifier"
    for classifier in inner:
        c = classifier.contract
        size = classifier.network.input_shape[1]
        expected = classifier.network.predict(old_path(images, size, c.mean, c.std), verbose=0)
        np.testing.assert_allclose(classifier.predict(images, verbose=0), expected, atol=2e-5)


# === The contract and the fit rule ===

def test_contract_checks_its_fields_and_round_trips():
    contract = InputContract(**MNIST, fit="pad", classes=(3, 5))
    assert InputContract.from_config(json.loads(json.dumps(contract.to_config()))) == contract
    with pytest.raises(ValueError, match="image_shape=.*1 or 3 channels"):
        InputContract((28, 28, 2), [0.1], [0.3])
    with pytest.raises(ValueError, match="mean/std=.*one mean and one std"):
        InputContract((28, 28, 1), [0.1, 0.2], [0.3])
    with pytest.raises(ValueError, match="fit='zoom' is not accepted; expected one of pad"):
        InputContract((28, 28, 1), [0.1], [0.3], fit="zoom")
    with pytest.raises(ValueError, match="contract='size' is not accepted"):
        InputContract.from_config({**MNIST, "size": 3})


def test_fit_to_size_pads_resizes_and_crops_the_same_with_known_and_unknown_sizes():
    images = np.random.default_rng(0).integers(0, 256, (3, 40, 60, 3)).astype(np.uint8)
    small = images[:, :20, :25]
    padded = keras.ops.convert_to_numpy(FitToSize(32, 32, mode="pad")(small))
    np.testing.assert_allclose(padded, old_path(small, 32, 0.0, 1 / 255.0), atol=1e-3)
    for mode in ("pad", "resize", "crop"):
        layer = FitToSize(32, 32, mode=mode)
        known = keras.ops.convert_to_numpy(layer(images))
        dynamic = keras.Model(*(lambda i: (i, layer(i)))(keras.Input((None, None, 3))))
        np.testing.assert_allclose(dynamic.predict(images, verbose=0), known, atol=1e-3)
        assert known.shape == (3, 32, 32, 3)
    # The crop keeps the centre: a 64x64 image whose centre 56x56 is white.
    square = np.zeros((1, 64, 64, 1), np.uint8)
    square[:, 4:60, 4:60] = 255
    cropped = keras.ops.convert_to_numpy(FitToSize(32, 32, mode="crop")(square))
    assert cropped.min() > 254


def test_fit_to_size_converts_channels_as_pil_does():
    rgb = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    luma = keras.ops.convert_to_numpy(FitToSize(8, 8, channels=1)(rgb))
    pil = np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in rgb])[..., None]
    assert np.max(np.abs(luma - pil)) <= 1.0  # PIL rounds to integers
    gray = rgb[..., :1]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(FitToSize(8, 8, 3)(gray)),
                                  np.repeat(gray, 3, -1).astype(np.float32))


# === The Classifier ===

@pytest.mark.parametrize("name", zoo.list_models("test_*"))
def test_every_family_takes_raw_images_and_round_trips(name, tmp_path):
    keras.utils.set_random_seed(0)
    model = zoo.create_model(name, preprocessing={**MNIST, "image_shape": (12, 12, 1)})
    images = digits(4, size=12)
    assert_takes_raw_images(model, images)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode on
    assert loaded.contract == model.contract
    np.testing.assert_allclose(loaded.predict(images, verbose=0),
                               model.predict(images, verbose=0), atol=1e-6)


def test_ensemble_takes_members_of_any_size_normalization_and_family(tmp_path):
    keras.utils.set_random_seed(0)
    members = [
        zoo.create_model("lenet5", preprocessing=MNIST),                      # 28 -> 32 padded
        zoo.create_model("test_resnet", input_shape=(20, 20, 1),
                         preprocessing={**MNIST, "mean": [0.2], "std": [0.25]}),  # resized
        zoo.create_model("test_vgg", input_shape=(24, 24, 3),
                         preprocessing={**MNIST, "image_shape": (24, 24, 1), "mean": [0.5] * 3,
                                        "std": [0.2] * 3, "fit": "resize"}),  # gray -> RGB
    ]
    ensemble = EnsembleModel(members)
    images = digits(6)
    expected = np.mean([m.predict(images, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.predict(images, verbose=0), expected, atol=1e-6)
    rundir.save_model(ensemble, tmp_path / "ensemble.keras")
    loaded = keras.saving.load_model(tmp_path / "ensemble.keras")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), expected, atol=1e-6)
    assert contract_of(loaded).class_names == tuple(MNIST["class_names"])


def test_ensemble_refuses_members_with_other_classes():
    a = zoo.create_model("test_resnet", num_classes=3,
                         preprocessing={**MNIST, "class_names": ["3", "5", "8"]})
    b = zoo.create_model("test_resnet", num_classes=3,
                         preprocessing={**MNIST, "class_names": ["0", "1", "2"]})
    with pytest.raises(ValueError, match=r"classes \['3', '5', '8'\] and .* classes "
                                         r"\['0', '1', '2'\].* is not accepted; expected models "
                                         r"with the same class list"):
        EnsembleModel([a, b])


# === What the training application writes ===

def test_every_kind_of_model_a_run_writes_takes_raw_images(tmp_path):
    """Models, best checkpoints, snapshots, EMA and SWA weights, calibrated
    models, ensembles, distilled students and fine-tuned models: raw images in,
    the same predictions as the old path (pad, normalize, predict)."""
    from zoo.training import transfer

    images = zoo_images = digits(6, seed=3)
    runs = {
        "snapshot_calibrated": tiny_config(tmp_path / "a", model="lenet5", epochs=2,
                                           ensemble="snapshot", members=2,
                                           calibrate="temperature"),
        "ema": tiny_config(tmp_path / "b", model="lenet5", epochs=1, ema=0.9),
        "swa_augmented": tiny_config(tmp_path / "c", model="lenet5", epochs=2, swa_start=1,
                                     augment="standard", augment_device="device"),
        "independent": tiny_config(tmp_path / "d", epochs=1, ensemble="independent", members=2,
                                   image_size=32),
    }
    for config in runs.values():
        train(config)
    student = tiny_config(tmp_path / "e", epochs=1,
                          distill_from=str(Path(runs["independent"].out) / "model.keras"))
    train(student)
    files = [Path(c.out) / "model.keras" for c in (*runs.values(), student)]
    files += [Path(runs["snapshot_calibrated"].out) / "checkpoints" / "best.keras",
              *sorted((Path(runs["snapshot_calibrated"].out) / "snapshots").glob("*.keras")),
              Path(runs["swa_augmented"].out) / "checkpoints" / "best.keras"]
    for path in files:
        assert_takes_raw_images(rundir.load_model(path), zoo_images)
    source = rundir.load_model(files[1])
    y = keras.utils.to_categorical(np.arange(6) % 3, 3)
    tuned, _ = transfer.finetune(source, images, y, head_epochs=1)
    assert tuned.contract.image_shape == (28, 28, 1)
    assert_takes_raw_images(tuned, images)


def test_a_model_copied_alone_exports_and_predicts_as_from_its_run(tmp_path):
    import export as export_script
    import predict

    config = tiny_config(tmp_path, model="lenet5", epochs=1, classes=(3, 5, 8))
    train(config)
    alone = tmp_path / "elsewhere" / "model.keras"
    alone.parent.mkdir()
    shutil.copy(Path(config.out) / "model.keras", alone)
    images = digits(5)
    outputs = []
    for source, out in ((Path(config.out) / "model.keras", "from_run"), (alone, "alone")):
        assert export_script.main([str(source), "--out", str(tmp_path / out)]) == 0
        run, meta, _ = predict.load_exported(tmp_path / out)
        assert meta["class_names"] == ["3", "5", "8"]
        assert meta["contract"]["classes"] == [3, 5,
                                               8] and meta["contract"]["dataset"] == "mnist_sample"
        assert meta["models"] == [{"file": "model.keras", "sha256": meta["models"][0]["sha256"]}]
        outputs.append(predict.predict(run, images))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_allclose(outputs[0], rundir.load_model(alone).predict(images, verbose=0),
                               atol=1e-5)


def test_a_folder_run_exports_the_folder_class_names(tmp_path):
    import export as export_script

    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), np.uint8)).save(
                tmp_path / "photos" / name / f"{i}.png")
    config = tiny_config(tmp_path, dataset="folder", data_dir=str(tmp_path / "photos"),
                         epochs=1, limit_train=None, limit_test=None)
    train(config)
    export_script.main([str(Path(config.out) / "model.keras"), "--out", str(tmp_path / "exp")])
    meta = json.loads((tmp_path / "exp" / "export.json").read_text())
    assert meta["class_names"] == ["cat", "dog"]


# === Runs written before the contract ===

@pytest.fixture
def legacy(tmp_path):
    """A writable copy of the runs and export the previous release wrote."""
    shutil.copytree(FIXTURE, tmp_path / "legacy")
    return tmp_path / "legacy", np.load(FIXTURE / "expected.npz")


def test_a_legacy_run_upgrades_once_with_identical_predictions(legacy, capsys):
    root, expected = legacy
    for seed in (0, 1):
        path = root / f"run_seed{seed}" / "model.keras"
        model = rundir.load_model(path)
        assert "from before the input contract; upgraded in place" in capsys.readouterr().err
        assert (root / f"run_seed{seed}" / "model.pre-contract.keras").exists()
        probs = model.predict(expected["images"], verbose=0)
        np.testing.assert_allclose(probs, expected[f"run_seed{seed}"], atol=1e-5)
        np.testing.assert_array_equal(probs.argmax(-1), expected[f"run_seed{seed}"].argmax(-1))
        again = rundir.load_model(path)  # upgraded once: no second notice
        assert capsys.readouterr().err == ""
        assert contract_of(again).class_names == tuple(str(i) for i in range(10))
        np.testing.assert_allclose(again.predict(expected["images"], verbose=0), probs, atol=1e-6)


def test_legacy_runs_with_different_normalizations_ensemble_and_serve(legacy, tmp_path):
    import ensemble as ensemble_script
    import export as export_script
    import predict

    root, expected = legacy
    ensemble_script.main([str(root / "run_seed0"), str(root / "run_seed1"),
                          "--out", str(tmp_path / "ab")])
    export_script.main([str(tmp_path / "ab" / "model.keras"), "--out", str(tmp_path / "exp")])
    run, _, _ = predict.load_exported(tmp_path / "exp")
    mean = (expected["run_seed0"] + expected["run_seed1"]) / 2
    np.testing.assert_allclose(predict.predict(run, expected["images"]), mean, atol=1e-5)
    # The export the previous release wrote still serves, with its own predictions.
    old, meta, _ = predict.load_exported(root / "export_seed0")
    np.testing.assert_allclose(predict.predict(old, expected["images"]),
                               expected["export_seed0"], atol=1e-6)
    scores = metrics.scores(mean, expected["labels"])
    assert 0 <= scores["accuracy"] <= 1


def test_ensemble_script_combines_runs_of_other_seeds_data_sizes_and_families(tmp_path, capsys):
    """The README's `ensemble.py runs/a runs/b`: runs with different seeds and
    --limit-train (so different normalizations), and three families trained at
    different input sizes, ensemble with --evaluate."""
    import ensemble as ensemble_script

    runs = {
        "a": tiny_config(tmp_path / "a", model="lenet5", epochs=1, seed=0, limit_train=96),
        "b": tiny_config(tmp_path / "b", model="lenet5", epochs=1, seed=1, limit_train=160),
        "c": tiny_config(tmp_path / "c", model="test_resnet", epochs=1, seed=2),  # 28x28 input
        "d": tiny_config(tmp_path / "d", model="test_vgg", epochs=1, seed=3, image_size=36),
    }
    for config in runs.values():
        train(config)
    means = {rundir.load_model(Path(c.out) / "model.keras").contract.mean for c in runs.values()}
    assert len(means) == 4  # four normalizations
    report = ensemble_script.main([runs["a"].out, runs["b"].out, "--out", str(tmp_path / "ab"),
                                   "--evaluate"])
    assert len(report["member_scores"]) == 2
    report = ensemble_script.main([runs["a"].out, runs["c"].out, runs["d"].out, "--out",
                                   str(tmp_path / "acd"), "--evaluate"])
    assert "ensemble (soft): test accuracy" in capsys.readouterr().out
    assert 0 <= report["ensemble_scores"]["accuracy"] <= 1
    combined = rundir.load_model(tmp_path / "acd" / "model.keras")
    assert [m.network.input_shape[1] for m in combined.members] == [32, 28, 36]
