"""SavedModel export (zoo.export, scripts/export.py) and TensorFlow-only inference
(scripts/predict.py): parity with in-memory predictions for every family, an
ensemble and TTA, in a fresh process that imports nothing of the project; errors
on bad inputs."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import state_dicts
import zoo
from augment import datasets
from augment import tta as augment_tta
from zoo.serving import export

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5  # max abs difference of probabilities, exported vs in memory
RNG = np.random.default_rng(0)


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ensemble_of(members):
    """`ensembles.EnsembleModel` (soft voting), as `export.average_models` builds it."""
    return export.average_models(members, name="ensemble")


def normalized(images, mean, std, size):
    """The in-memory reference input: padded (or resized) and normalized as in training."""
    if images.shape[1] <= size[0] and images.shape[2] <= size[1]:
        padded = datasets.pad_to(images, size[0]) if images.shape[1] != size[0] else images
        return datasets.normalize(padded, np.asarray(mean), np.asarray(std))
    resized = keras.ops.convert_to_numpy(keras.ops.image.resize(
        images.astype("float32"), size, interpolation="bilinear", antialias=True))
    return datasets.normalize(resized, np.asarray(mean), np.asarray(std))


def predict(model, images):
    return keras.ops.convert_to_numpy(model(images, training=False))


def make_case(name):
    """(model or wrapper for the reference, raw uint8 images, mean, std, serving kwargs)."""
    keras.utils.set_random_seed(1)
    gray, rgb = ([0.13], [0.31]), ([0.49, 0.48, 0.45], [0.25, 0.24, 0.26])
    if name == "lenet5":  # MNIST-sized 28x28 images padded to 32x32 inside the graph
        return zoo.create_model("lenet5"), RNG.integers(0, 256, (5, 28, 28, 1), np.uint8), *gray, {}
    if name == "test_resnet":  # 3 channels, 12x12 padded to 16x16
        model = zoo.create_model("test_resnet", input_shape=(16, 16, 3))
        return model, RNG.integers(0, 256, (4, 12, 12, 3), np.uint8), *rgb, {}
    if name == "test_vgg_resize":  # larger images are resized, fixed raw size
        model = zoo.create_model("test_vgg")
        images = RNG.integers(0, 256, (3, 24, 20, 1), np.uint8)
        return model, images, *gray, {"raw_shape": (24, 20, 1)}
    if name == "ensemble":
        members = [zoo.create_model("test_resnet"), zoo.create_model("test_alexnet")]
        return ensemble_of(members), RNG.integers(0, 256, (4, 16, 16, 1), np.uint8), *gray, {}
    # the other families at their input size
    return zoo.create_model(name), RNG.integers(0, 256, (3, 16, 16, 1), np.uint8), *gray, {}


CASES = ("lenet5", "test_alexnet", "test_vgg_resize", "test_googlenet", "test_resnet", "ensemble")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Exports every case; returns {name: (dir, images, reference probabilities)}."""
    root = tmp_path_factory.mktemp("export")
    out = {}
    for name in CASES:
        model, images, mean, std, kwargs = make_case(name)
        serving = export.serving_model(model, mean, std, **kwargs)
        export.export_saved_model(serving, root / name)
        size = export.model_input_shape(model)[:2]
        reference = predict(model, normalized(images, mean, std, size))
        out[name] = (root / name, images, reference)
    # TTA through the script, with a training run's config.json beside the model:
    # MNIST normalization and a 4-pixel training crop (TTA shift 2, black fill).
    run = root / "run"
    run.mkdir()
    keras.utils.set_random_seed(2)
    model = zoo.create_model("lenet5")
    model.save(run / "model.keras")
    mean, std = [0.1307], [0.3081]
    (run / "config.json").write_text(json.dumps({
        "model": "lenet5", "dataset": "mnist", "image_size": 32, "input_shape": [32, 32, 1],
        "augment": "standard", "augment_options": {"flip": False},
        "normalization": {"mean": mean, "std": std}}))
    assert load_script("export").main([str(run / "model.keras"), "--out", str(root / "tta"),
                                       "--tta", "10crop"]) == 0
    images = RNG.integers(0, 256, (4, 28, 28, 1), np.uint8)
    tta_model = augment_tta.TTAModel(model, "10crop", padding=2, fill_value=[-mean[0] / std[0]])
    reference = predict(tta_model, normalized(images, mean, std, (32, 32)))
    out["tta"] = (root / "tta", images, reference)
    for name, (directory, images, reference) in out.items():
        np.save(directory.parent / f"{name}_images.npy", images)
    return out


# One fresh process with TensorFlow only: the signatures of every export and
# predict.py end to end on a .npy array and on PNG files.
FRESH_SCRIPT = textwrap.dedent("""
    import io, json, runpy, sys, contextlib
    from pathlib import Path
    import numpy as np
    import tensorflow as tf
    root, names, predict_py = Path(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
    result = {}
    for name in names:
        serve = tf.saved_model.load(str(root / name)).signatures["serve"]
        images = np.load(root / f"{name}_images.npy")
        probs = serve(images=tf.constant(images))["probabilities"].numpy()
        np.save(root / f"{name}_exported.npy", probs)
    predict = runpy.run_path(predict_py)  # its functions; __name__ is not __main__
    pngs = sorted(str(p) for p in root.glob("*.png"))
    for key, args in (("npy", [str(root / "lenet5"), str(root / "lenet5_images.npy"),
                               "--top-k", "3", "--save", str(root / "predict_npy.npy")]),
                      ("png", [str(root / "test_resnet"), *pngs, "--top-k", "2"])):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            predict["main"](args)
        result[key] = out.getvalue()
    project = ("zoo", "augment", "ensembles", "keras")
    result["modules"] = sorted(m for m in project if m in sys.modules)
    print("RESULT " + json.dumps(result))
""")


@pytest.fixture(scope="module")
def fresh(exported):
    root = next(iter(exported.values()))[0].parent
    images = exported["test_resnet"][1]
    from PIL import Image
    for i, image in enumerate(images[:2]):
        Image.fromarray(image).save(root / f"image{i}.png")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", FRESH_SCRIPT, str(root), ",".join(exported),
         str(ROOT / "scripts" / "predict.py")],
        capture_output=True, text=True, env=env, timeout=300, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("RESULT "))
    return root, json.loads(line[len("RESULT "):])


@pytest.mark.parametrize("name", CASES + ("tta",))
def test_exported_predictions_match_in_memory(exported, fresh, name):
    root, _ = fresh
    _, images, reference = exported[name]
    probs = np.load(root / f"{name}_exported.npy")
    assert probs.shape == reference.shape
    assert np.max(np.abs(probs - reference)) <= TOLERANCE, name
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)


def test_fresh_process_imports_nothing_of_the_project(fresh):
    _, result = fresh
    assert not {"zoo", "augment", "ensembles"} & set(result["modules"]), result["modules"]


def test_predict_script_on_npy_and_png(exported, fresh):
    root, result = fresh
    lines = result["npy"].strip().splitlines()
    reference = exported["lenet5"][2]
    assert len(lines) == len(reference)
    for i, line in enumerate(lines):
        assert line.startswith(f"{root / 'lenet5_images.npy'}[{i}] ")
        top = [int(tok) for tok in line.split()[1::2]]
        assert top == list(np.argsort(-reference[i], kind="stable")[:3])
    np.testing.assert_allclose(np.load(root / "predict_npy.npy"), reference, atol=TOLERANCE)
    png_lines = result["png"].strip().splitlines()
    assert [ln.split()[0] for ln in png_lines] == [str(root / f"image{i}.png") for i in range(2)]
    for i, line in enumerate(png_lines):  # PNG round trip is lossless: same top class
        assert int(line.split()[1]) == int(np.argmax(exported["test_resnet"][2][i]))


def test_metadata_describes_the_signature(exported):
    meta = json.loads((exported["tta"][0] / export.METADATA_FILE).read_text())
    assert meta["input"]["shape"] == [None, None, None, 1] and meta["input"]["dtype"] == "uint8"
    assert meta["tta"] == "10crop" and meta["class_names"] == datasets.MNIST_CLASSES
    assert meta["num_classes"] == 10
    fixed = json.loads((exported["test_vgg_resize"][0] / export.METADATA_FILE).read_text())
    assert fixed["input"]["shape"] == [None, 24, 20, 1]


@pytest.fixture(scope="module")
def lenet5_saved(exported):
    return tf.saved_model.load(str(exported["lenet5"][0]))


@pytest.mark.parametrize("shape, dtype, match", [
    ((2, 28, 28, 3), np.uint8,
     r"expected a uint8 batch shaped \(N, H, W, 1\); received shape.*\[2 28 28 3\]"),
    ((28, 28, 1), np.uint8, r"received shape.*\[28 28 1\]"),
    ((1, 2, 28, 28, 1), np.uint8, r"received shape.*\[1 2 28 28 1\]"),
    ((2, 28, 28, 1), np.float32, r"uint8"),
])
def test_signature_rejects_bad_inputs(lenet5_saved, shape, dtype, match):
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError), match=match):
        lenet5_saved.signatures["serve"](images=tf.constant(np.zeros(shape, dtype)))


def test_signature_with_fixed_size_rejects_other_sizes(exported):
    serve = tf.saved_model.load(str(exported["test_vgg_resize"][0])).signatures["serve"]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"\(N, 24, 20, 1\); received shape.*\[1 16 16 1\]"):
        serve(images=tf.constant(np.zeros((1, 16, 16, 1), np.uint8)))


def test_predict_script_errors(exported, tmp_path, capsys):
    predict = load_script("predict")
    directory = str(exported["lenet5"][0])
    shape = (None, None, None, 1)
    with pytest.raises(ValueError, match=r"shape \(2, 28, 28, 3\) uint8 \(3 channels\) is not "
                                         r"accepted; expected uint8 images shaped \(N, H, W, 1\)"):
        predict.check_images(np.zeros((2, 28, 28, 3), np.uint8), shape, "x.npy")
    with pytest.raises(ValueError, match=r"\(rank 2\) is not accepted; expected uint8 images"):
        predict.check_images(np.zeros((28, 28), np.uint8), shape, "x.npy")
    with pytest.raises(ValueError, match=r"\(rank 3\).*add a leading axis"):
        predict.check_images(np.zeros((32, 32, 3), np.uint8), (None, None, None, 3), "x.npy")
    with pytest.raises(ValueError, match=r"float32 is not accepted; expected pixel values"):
        predict.check_images(np.full((1, 28, 28), 0.5, np.float32), shape, "x.npy")
    assert predict.check_images(np.full((1, 28, 28), 7.0), shape, "x.npy").dtype == np.uint8
    for argv, match in [
        ([directory, str(tmp_path / "missing.npy")], r"INPUTS=\[.*missing.npy'\] is not accepted; "
                                                     r"expected existing files"),
        ([str(tmp_path), str(tmp_path / "missing.npy")],
         r"DIR=.* is not accepted; expected a SavedModel"),
        ([directory, str(exported["lenet5"][0].parent / "lenet5_images.npy"), "--top-k", "11"],
         r"--top-k=11 is not accepted; expected an integer in \[1, 10\]"),
    ]:
        with pytest.raises(SystemExit):
            predict.main(argv)
        assert re.search(match, capsys.readouterr().err), argv
    bad = tmp_path / "rgb.npy"
    np.save(bad, np.zeros((2, 28, 28, 3), np.uint8))
    with pytest.raises(SystemExit):
        predict.main([directory, str(bad)])
    err = capsys.readouterr().err
    assert "rgb.npy: shape (2, 28, 28, 3) uint8 (3 channels) is not accepted" in err
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 28, 28), np.uint8))
    with pytest.raises(SystemExit) as info:
        predict.main([directory, str(empty)])
    assert info.value.code == 2
    assert "empty.npy: shape (0, 28, 28) uint8 is not accepted; expected at least one " \
        "image" in capsys.readouterr().err


def test_export_script_errors(tmp_path, capsys):
    script = load_script("export")
    model_path = tmp_path / "model.keras"
    zoo.create_model("test_resnet").save(model_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text("{}")
    (tmp_path / "junk.keras").write_text("not a zip archive")
    for argv, match in [
        ([str(model_path), "--out", str(tmp_path / "a")],
         "no config.json beside .*pass --mean and --std"),
        ([str(model_path), "--out", str(tmp_path / "a"), "--mean", "0.1"],
         "--mean and --std go together"),
        ([str(model_path), "--out", str(tmp_path / "a"), "--tta", "3crop"],
         "--tta='3crop' is not accepted; expected one of identity, flip, 5crop, 10crop"),
        ([str(tmp_path / "nope.keras"), "--out", str(tmp_path / "a")],
         "MODEL.keras=.*nope.keras' is not accepted \\(a missing file\\); expected a model "),
        ([str(model_path), "--out", str(tmp_path / "a"), "--mean", "0.1,0.2", "--std", "0.3,0.3"],
         r"mean/std=.* is not accepted; expected 1 values each"),
        ([str(tmp_path / "other" / "config.json"), "--out", str(tmp_path / "a")],
         r"config.json' is not accepted \(not a .keras file\); expected a model saved as .keras"),
        ([str(tmp_path / "junk.keras"), "--out", str(tmp_path / "a")],
         r"junk.keras' is not accepted: it does not load as a Keras model"),
    ]:
        with pytest.raises(SystemExit):
            script.main(argv)
        assert re.search(match, capsys.readouterr().err), argv


def test_serving_model_rejects_bad_raw_shape():
    model = zoo.create_model("test_resnet")
    with pytest.raises(ValueError, match=r"raw_shape=\(16, 16, 3\) is not accepted; expected "
                                         r"\(height, width, 1\)"):
        export.serving_model(model, [0.1], [0.3], raw_shape=(16, 16, 3))


def test_fit_to_size_round_trips():
    layer = export.FitToSize(32, 32)
    clone = export.FitToSize.from_config(layer.get_config())
    images = RNG.integers(0, 256, (2, 28, 28, 1), np.uint8)
    padded = keras.ops.convert_to_numpy(clone(images))
    np.testing.assert_array_equal(padded, datasets.pad_to(images, 32).astype("float32"))


def test_tta_evaluation_settings_mirror_training():
    # Black border (the normalized value of pixel 0), half the training crop padding, 4 if none.
    assert augment_tta.evaluation_settings([0.5], [0.25], 4) == {"padding": 2, "fill_value": [-2.0]}
    assert augment_tta.evaluation_settings([0.5, 0.2], [0.0, 0.1], 0) == {
        "padding": 2, "fill_value": [-0.5, -2.0]}
    assert augment_tta.evaluation_settings([0.5], [0.25], 8)["padding"] == 4


def test_export_script_from_imagenet_weights(tmp_path, capsys):
    """imagenet:NAME --weights FILE: the model, its preprocessing (resize, the
    weights' mean/std) and the ImageNet class names in one SavedModel, offline."""
    weights = state_dicts.resnet18_file(tmp_path / "resnet18.safetensors",
                                        widths=(64, 128, 256, 512))
    script = load_script("export")
    assert script.main(["imagenet:resnet18", "--weights", str(weights),
                        "--out", str(tmp_path / "r18")]) == 0
    info = json.loads((tmp_path / "r18" / export.METADATA_FILE).read_text())
    assert info["class_names"][:2] == ["tench", "goldfish"] and info["num_classes"] == 1000
    assert info["mean"] == [0.485, 0.456, 0.406] and info["model_input_shape"] == [224, 224, 3]
    assert info["preprocessing"].startswith("resize (bilinear) to the model input")
    serve = tf.saved_model.load(str(tmp_path / "r18")).signatures["serve"]
    images = RNG.integers(0, 256, (2, 40, 32, 3), np.uint8)
    model = zoo.create_model("resnet18", weights=weights)
    resized = keras.ops.image.resize(images.astype("float32"), (224, 224),
                                     interpolation="bilinear", antialias=True)
    expected = predict(model, datasets.normalize(keras.ops.convert_to_numpy(resized),
                                                 np.float32(info["mean"]), np.float32(info["std"])))
    exported = serve(images=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(exported, expected, atol=TOLERANCE)
    for argv, message in (
            (["imagenet:resnet18"], "needs --weights (keras, torchvision or a weights file)"),
            (["imagenet:lenet5", "--weights", str(weights)],
             "argument --weights: weights=" + repr(str(weights)) + " is not accepted; expected "
             "None for lenet5"),
            ([str(tmp_path / "x.keras"), "--weights", "keras"], "--weights goes with "
                                                                 "MODEL.keras=imagenet:NAME")):
        with pytest.raises(SystemExit):
            script.main([*argv, "--out", str(tmp_path / "bad")])
        assert message in capsys.readouterr().err
