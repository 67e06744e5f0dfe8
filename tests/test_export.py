"""Export to SavedModel, ONNX and LiteRT (zoo.serving.export, scripts/export.py)
and inference with each format's runtime alone (scripts/predict.py): parity with
in-memory predictions for every family, an ensemble and TTA, in a fresh process
per runtime that imports nothing of the project (nor TensorFlow for ONNX and
LiteRT); int8 quantization's cost; errors on bad inputs and options."""

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from augment import datasets
from augment import tta as augment_tta
from zoo.serving import export

import state_dicts

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


def old_path(images, mean, std, size, fit="pad"):
    """The reference input the network gets, computed as before the models
    carried their contract: numpy centred padding (or a resize; always with
    fit="resize"), then (x / 255 - mean) / std."""
    if fit == "pad" and images.shape[1] <= size[0] and images.shape[2] <= size[1]:
        top, left = (size[0] - images.shape[1]) // 2, (size[1] - images.shape[2]) // 2
        fitted = np.pad(images, [(0, 0), (top, size[0] - images.shape[1] - top),
                                 (left, size[1] - images.shape[2] - left), (0, 0)])
    else:
        fitted = keras.ops.convert_to_numpy(keras.ops.image.resize(
            images.astype("float32"), size, interpolation="bilinear", antialias=True))
    return (fitted.astype(np.float32) / 255 - np.float32(mean)) / np.float32(std)


def predict(model, images):
    return keras.ops.convert_to_numpy(model(images, training=False))


def classifier(name, raw_shape, mean, std, **options):
    """Zoo model `name` taking raw images of `raw_shape`, normalized with mean/std."""
    return zoo.create_model(name, **options, preprocessing={
        "image_shape": raw_shape, "mean": mean, "std": std, "dataset": "mnist",
        "class_names": [str(i) for i in range(10)]})


def make_case(name):
    """(the model, raw uint8 images, the reference probabilities, serving kwargs).
    The reference is the network on the old path's input, so the export is
    checked against the preprocessing the models did before they carried it."""
    keras.utils.set_random_seed(1)
    gray, rgb = ([0.13], [0.31]), ([0.49, 0.48, 0.45], [0.25, 0.24, 0.26])
    kwargs = {}
    if name == "lenet5":  # MNIST-sized 28x28 images padded to 32x32 inside the graph
        model, images = classifier("lenet5", (28, 28, 1), *gray), RNG.integers(
            0, 256, (5, 28, 28, 1), np.uint8)
    elif name == "test_resnet":  # 3 channels, 12x12 padded to 16x16
        model = classifier("test_resnet", (12, 12, 3), *rgb, input_shape=(16, 16, 3))
        images = RNG.integers(0, 256, (4, 12, 12, 3), np.uint8)
    elif name == "test_vgg_resize":  # larger images are resized, fixed raw size
        model = classifier("test_vgg", (24, 20, 1), *gray)
        images = RNG.integers(0, 256, (3, 24, 20, 1), np.uint8)
        kwargs = {"raw_shape": (24, 20, 1)}
    elif name == "ensemble_tta":  # soft voting over 10 views of each image, members of two sizes
        model = ensemble_of([classifier("test_resnet", (16, 16, 1), *gray),
                             classifier("test_alexnet", (16, 16, 1), [0.2], [0.25],
                                        input_shape=(20, 20, 1))])
        images = RNG.integers(0, 256, (4, 16, 16, 1), np.uint8)
        kwargs = {"tta": "10crop"}
        tta = augment_tta.TTAModel(model, "10crop", **augment_tta.evaluation_settings())
        return model, images, predict(tta, images), kwargs
    else:  # the other families at their input size
        model, images = classifier(name, (16, 16, 1), *gray), RNG.integers(
            0, 256, (3, 16, 16, 1), np.uint8)
    network = model.network
    c = model.contract
    reference = predict(network, old_path(images, c.mean, c.std, network.input_shape[1:3]))
    return model, images, reference, kwargs


CASES = ("lenet5", "test_alexnet", "test_vgg_resize", "test_googlenet", "test_resnet",
         "ensemble_tta")
FORMATS = tuple(export.FORMATS)


def write_run(directory, dataset, seed):
    """A training run the previous release wrote: a bare model.keras (random
    LeNet-5, normalized input) and config.json with MNIST normalization and a
    4-pixel training crop."""
    directory.mkdir()
    keras.utils.set_random_seed(seed)
    model = zoo.create_model("lenet5")
    model.save(directory / "model.keras")
    (directory / "config.json").write_text(json.dumps({
        "model": "lenet5", "dataset": dataset, "image_size": 32, "input_shape": [32, 32, 1],
        "augment": "standard", "augment_options": {"flip": False},
        "normalization": {"mean": [0.1307], "std": [0.3081]}}))
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Exports every case in every format; returns {(name, format): (dir, images,
    reference probabilities)}. A SavedModel takes any size unless the case fixes
    one; ONNX and LiteRT take the images' size."""
    root = tmp_path_factory.mktemp("export")
    out = {}
    for name in CASES:
        model, images, reference, kwargs = make_case(name)
        for format in FORMATS:
            fixed = {"raw_shape": images.shape[1:]} if format != "savedmodel" else {}
            serving = export.serving_model(model, **{**kwargs, **fixed})
            export.export_model(serving, root / f"{name}_{format}", format)
            out[name, format] = (root / f"{name}_{format}", images, reference)
    # TTA through the script, on a run the previous release wrote (upgraded on
    # load; dataset mnist: 28x28 for the fixed-size formats).
    network = write_run(root / "run", "mnist", seed=2)
    images = RNG.integers(0, 256, (4, 28, 28, 1), np.uint8)
    upgraded = zoo.Classifier(network, {"image_shape": (28, 28, 1), "mean": [0.1307],
                                        "std": [0.3081]})
    reference = predict(augment_tta.TTAModel(upgraded, "10crop", padding=2), images)
    for format in FORMATS:
        assert load_script("export").main([str(root / "run" / "model.keras"), "--out",
                                           str(root / f"tta_{format}"), "--tta", "10crop",
                                           "--format", format]) == 0
        out["tta", format] = (root / f"tta_{format}", images, reference)
    for (name, format), (_, images, _) in out.items():
        np.save(root / f"{name}_{format}_images.npy", images)
    return out


# One fresh process per runtime with that runtime only: every export of its
# format through predict.py's loader, and predict.py end to end on a .npy array
# and on PNG files.
FRESH_SCRIPT = textwrap.dedent("""
    import io, json, runpy, sys, contextlib
    from pathlib import Path
    import numpy as np
    root, format, runtime, names, predict_py = (Path(sys.argv[1]), sys.argv[2], sys.argv[3],
                                                sys.argv[4].split(","), sys.argv[5])
    predict = runpy.run_path(predict_py)  # its functions; __name__ is not __main__
    result = {}
    for name in names:
        run, meta, used = predict["load_exported"](root / f"{name}_{format}", runtime)
        assert used == runtime and meta["runtime"] == runtime, (used, meta)
        images = np.load(root / f"{name}_{format}_images.npy")
        np.save(root / f"{name}_{format}_exported.npy", predict["predict"](run, images))
    pngs = sorted(str(p) for p in root.glob("*.png"))
    for key, args in (("npy", [str(root / f"lenet5_{format}"),
                               str(root / f"lenet5_{format}_images.npy"), "--top-k", "3",
                               "--save", str(root / f"predict_{format}.npy")]),
                      ("png", [str(root / f"test_resnet_{format}"), *pngs, "--top-k", "2"])):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            predict["main"](args)
        result[key] = out.getvalue()
    others = ("zoo", "augment", "ensembles", "keras", "tensorflow", "onnxruntime",
              "ai_edge_litert", "jax", "torch")
    result["modules"] = sorted(m for m in others if m in sys.modules)
    print("RESULT " + json.dumps(result))
""")


@pytest.fixture(scope="module")
def fresh(exported):
    """{format: its fresh process' result}; the PNGs are 12x12 RGB test_resnet inputs."""
    root = next(iter(exported.values()))[0].parent
    images = exported["test_resnet", "savedmodel"][1]
    from PIL import Image
    for i, image in enumerate(images[:2]):
        Image.fromarray(image).save(root / f"image{i}.png")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    results = {}
    for format in FORMATS:
        result = subprocess.run(
            [sys.executable, "-c", FRESH_SCRIPT, str(root), format, export.FORMATS[format].runtime,
             ",".join(CASES + ("tta",)), str(ROOT / "scripts" / "predict.py")],
            capture_output=True, text=True, env=env, timeout=300, cwd=root)
        assert result.returncode == 0, result.stderr[-3000:]
        line = next(ln for ln in result.stdout.splitlines() if ln.startswith("RESULT "))
        results[format] = json.loads(line[len("RESULT "):])
    return root, results


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("name", CASES + ("tta",))
def test_exported_predictions_match_in_memory(exported, fresh, name, format):
    root, _ = fresh
    _, images, reference = exported[name, format]
    probs = np.load(root / f"{name}_{format}_exported.npy")
    assert probs.shape == reference.shape
    assert np.max(np.abs(probs - reference)) <= TOLERANCE, (name, format)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("format", FORMATS)
def test_fresh_process_imports_only_the_runtime(fresh, format):
    _, results = fresh
    modules = set(results[format]["modules"])
    if format == "savedmodel":  # loading a SavedModel imports Keras (TensorFlow's own doing)
        assert "tensorflow" in modules
        assert not {"zoo", "augment", "ensembles", "onnxruntime", "ai_edge_litert"} & modules
    else:
        assert modules == {"onnx": {"onnxruntime"}, "litert": {"ai_edge_litert"}}[format], modules


@pytest.mark.parametrize("format", FORMATS)
def test_predict_script_on_npy_and_png(exported, fresh, format):
    root, results = fresh
    result = results[format]
    lines = result["npy"].strip().splitlines()
    reference = exported["lenet5", format][2]
    assert len(lines) == len(reference)
    for i, line in enumerate(lines):
        assert line.startswith(f"{root / f'lenet5_{format}_images.npy'}[{i}] ")
        top = [int(tok) for tok in line.split()[1::2]]
        assert top == list(np.argsort(-reference[i], kind="stable")[:3])
    np.testing.assert_allclose(np.load(root / f"predict_{format}.npy"), reference, atol=TOLERANCE)
    png_lines = result["png"].strip().splitlines()
    assert [ln.split()[0] for ln in png_lines] == [str(root / f"image{i}.png") for i in range(2)]
    for i, line in enumerate(png_lines):  # PNG round trip is lossless: same top class
        assert int(line.split()[1]) == int(np.argmax(exported["test_resnet", format][2][i]))


def test_metadata_describes_the_input(exported):
    meta = json.loads((exported["tta", "savedmodel"][0] / export.METADATA_FILE).read_text())
    assert meta["input"]["shape"] == [None, None, None, 1] and meta["input"]["dtype"] == "uint8"
    assert meta["tta"] == "10crop" and meta["class_names"] == datasets.MNIST_CLASSES
    assert meta["contract"]["image_shape"] == [28, 28, 1] and meta["contract"]["fit"] == "pad"
    assert meta["preprocessing"].startswith("28x28x1 uint8 images (others zero-padded")
    ensemble = json.loads((exported["ensemble_tta", "savedmodel"][0]
                           / export.METADATA_FILE).read_text())
    assert [m["mean"] for m in ensemble["members"]] == [[0.13], [0.2]]
    assert meta["num_classes"] == 10 and meta["format"] == "savedmodel"
    assert meta["fixed_size"] is None and meta["runtime"] == "tf"
    fixed = json.loads((exported["test_vgg_resize", "savedmodel"][0]
                        / export.METADATA_FILE).read_text())
    assert fixed["input"]["shape"] == [None, 24, 20, 1]
    assert fixed["fixed_size"] == "24x20, chosen with raw_shape (--raw-size)"
    for format in ("onnx", "litert"):  # the script's default size: the dataset's images
        meta = json.loads((exported["tta", format][0] / export.METADATA_FILE).read_text())
        assert meta["input"]["shape"] == [None, 28, 28, 1], format
        assert meta["fixed_size"].startswith(f"{format} cannot hold a dynamic-size input")
        assert meta["fixed_size"].endswith("images must be 28x28")
        assert meta["file"] == export.FORMATS[format].file
        assert (exported["tta", format][0] / meta["file"]).is_file()
        assert meta["input"]["name"] == "images" and meta["output"]["name"] == "probabilities"


def test_fixed_size_formats_refuse_a_dynamic_size(tmp_path):
    serving = export.serving_model(classifier("test_resnet", (16, 16, 1), [0.1], [0.3]))
    for format in ("onnx", "litert"):
        with pytest.raises(ValueError, match=rf"raw_shape=\(None, None, 1\) is not accepted; "
                                             rf"expected a fixed .*{format} cannot hold"):
            export.export_model(serving, tmp_path / format, format)
    assert not any(tmp_path.iterdir())


def test_a_format_without_its_packages_or_a_failing_writer_leaves_nothing(tmp_path, monkeypatch):
    onnx = export.FORMATS["onnx"]
    monkeypatch.setitem(export.FORMATS, "onnx", dataclasses.replace(onnx, packages=("no_such",)))
    with pytest.raises(ValueError, match=r"format='onnx' is not accepted; expected a format whose "
                                         r"packages are installed \(no_such missing: pip install"):
        export.check_format("onnx")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setitem(export.FORMATS, "onnx", dataclasses.replace(onnx, write=broken))
    serving = export.serving_model(classifier("test_resnet", (16, 16, 1), [0.1], [0.3]),
                                   raw_shape=(16, 16, 1))
    with pytest.raises(OSError, match="disk full"):
        export.export_model(serving, tmp_path / "out", "onnx")
    assert not any(tmp_path.iterdir())  # neither the output nor its temporary folder


def test_int8_litert_export_reports_its_cost(tmp_path, capsys):
    """Calibrated on training images of the dataset the model names (the
    embedded MNIST sample), the cost measured on its test split in export.json;
    predict.py serves the file."""
    write_run(tmp_path / "run", "mnist_sample", seed=3)
    out = tmp_path / "int8"
    assert load_script("export").main([str(tmp_path / "run" / "model.keras"), "--out", str(out),
                                       "--format", "litert", "--quantize", "int8"]) == 0
    assert "int8: test accuracy" in capsys.readouterr().out
    meta = json.loads((out / export.METADATA_FILE).read_text())
    cost = meta["quantization"]
    assert meta["quantize"] == "int8" and cost["images"] == len(datasets.load_dataset(
        "mnist_sample").x_test)
    assert cost["top1_agreement"] >= 0.9 and abs(cost["accuracy_change"]) <= 0.05
    float_size = (tmp_path / "run" / "model.keras").stat().st_size
    assert (out / "model.tflite").stat().st_size < float_size / 2  # int8 weights


@pytest.fixture(scope="module")
def lenet5_saved(exported):
    return tf.saved_model.load(str(exported["lenet5", "savedmodel"][0]))


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
    serve = tf.saved_model.load(str(exported["test_vgg_resize", "savedmodel"][0])).signatures[
        "serve"]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"\(N, 24, 20, 1\); received shape.*\[1 16 16 1\]"):
        serve(images=tf.constant(np.zeros((1, 16, 16, 1), np.uint8)))


def test_predict_checks_images():
    predict = load_script("predict")
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
    with pytest.raises(ValueError, match=r"\(16 height\) is not accepted; expected uint8 images "
                                         r"shaped \(N, 28, 28, 1\)"):
        predict.check_images(np.zeros((1, 16, 28, 1), np.uint8), (None, 28, 28, 1), "x.npy")
    assert predict.check_images(np.full((1, 28, 28), 7.0), shape, "x.npy").dtype == np.uint8


@pytest.mark.parametrize("format", FORMATS)
def test_predict_script_errors(exported, tmp_path, capsys, format):
    predict = load_script("predict")
    directory = str(exported["lenet5", format][0])
    images = str(exported["lenet5", format][0].parent / f"lenet5_{format}_images.npy")
    other = {"savedmodel": "onnx", "onnx": "litert", "litert": "tf"}[format]
    for argv, match in [
        ([directory, str(tmp_path / "missing.npy")], r"INPUTS=\[.*missing.npy'\] is not accepted; "
                                                     r"expected existing files"),
        ([str(tmp_path), str(tmp_path / "missing.npy")],
         r"DIR=.* is not accepted; expected a folder written by scripts/export.py \(with "
         r"saved_model.pb, model.onnx, model.tflite\)"),
        ([directory, images, "--top-k", "11"],
         r"--top-k=11 is not accepted; expected an integer in \[1, 10\]"),
        ([directory, images, "--runtime", "tensorrt"],
         r"--runtime='tensorrt' is not accepted; expected one of tf, onnx, litert"),
        ([directory, images, "--runtime", other],
         rf"--runtime='{other}' is not accepted for DIR=.*; expected "
         rf"{export.FORMATS[format].runtime} "
         rf"\(the folder holds {export.FORMATS[format].file}\)"),
    ]:
        with pytest.raises(SystemExit) as info:
            predict.main(argv)
        assert info.value.code == 2
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
    if format == "onnx":  # without export.json, the runtime's own refusal: a one-line error
        bare = tmp_path / "bare"
        shutil.copytree(directory, bare)
        (bare / export.METADATA_FILE).unlink()
        with pytest.raises(SystemExit) as info:
            predict.main([str(bare), str(bad)])
        assert info.value.code == 2
        assert "invalid dimensions for input" in capsys.readouterr().err


@pytest.mark.parametrize("format, match", [
    ("savedmodel", r"expected a uint8 batch shaped \(N, H, W, 1\); received shape.*\[1 28 28 3\]"),
    ("onnx", r"invalid dimensions for input: images.*index: 3 Got: 3 Expected: 1"),
])
def test_runtime_rejects_what_the_checks_let_through(exported, format, match):
    """Without export.json's shape, the runtime itself refuses a wrong batch."""
    predict = load_script("predict")
    run, _, _ = predict.load_exported(exported["lenet5", format][0])
    with pytest.raises(predict.Rejected, match=match):
        run(np.zeros((1, 28, 28, 3), np.uint8))


def test_export_script_errors(tmp_path, capsys):
    script = load_script("export")
    model_path = tmp_path / "model.keras"
    zoo.create_model("test_resnet").save(model_path)  # a bare network
    contract_path = tmp_path / "contract.keras"
    classifier("test_resnet", (16, 16, 1), [0.1], [0.3]).save(contract_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text("{}")
    (tmp_path / "junk.keras").write_text("not a zip archive")
    for argv, match in [
        ([str(model_path), "--out", str(tmp_path / "a")],
         r"model.keras' is a bare network \(no input contract and no run config.json beside it\): "
         "pass --mean and --std"),
        ([str(contract_path), "--out", str(tmp_path / "a"), "--mean", "0.1", "--std", "0.3"],
         "--mean/--std are not accepted for .*carries its own normalization"),
        ([str(model_path), "--out", str(tmp_path / "a"), "--mean", "0.1"],
         "--mean and --std go together"),
        ([str(model_path), "--out", str(tmp_path / "a"), "--tta", "3crop"],
         "--tta='3crop' is not accepted; expected one of identity, flip, 5crop, 10crop"),
        ([str(tmp_path / "nope.keras"), "--out", str(tmp_path / "a")],
         "MODEL.keras=.*nope.keras' is not accepted \\(a missing file\\); expected a model "),
        ([str(model_path), "--out", str(tmp_path / "a"), "--mean", "0.1,0.2", "--std", "0.3,0.3"],
         r"--mean/--std: mean/std=.* is not accepted; expected one mean and one std >= 0 per "
         r"channel"),
        ([str(tmp_path / "other" / "config.json"), "--out", str(tmp_path / "a")],
         r"config.json' is not accepted \(not a .keras file\); expected a model saved as .keras"),
        ([str(tmp_path / "junk.keras"), "--out", str(tmp_path / "a")],
         r"junk.keras' is not accepted; expected a model saved as .keras \(it does not load"),
        ([str(model_path), "--out", str(tmp_path / "a"), "--format", "tflite"],
         r"--format='tflite' is not accepted; expected one of savedmodel, onnx, litert"),
        ([str(model_path), "--out", str(tmp_path / "a"), "--format", "onnx", "--quantize", "int8"],
         r"--quantize='int8' is not accepted; expected none for --format onnx \(int8 is offered "
         r"for litert\)"),
        ([str(model_path), "--out", str(tmp_path / "a"), "--format", "litert", "--quantize", "fp8"],
         r"--quantize='fp8' is not accepted; expected one of int8 for --format litert"),
        ([str(model_path), "--out", str(tmp_path / "a"), "--format", "litert", "--quantize", "int8",
          "--mean", "0.1", "--std", "0.3"],
         r"--quantize='int8' needs training images: dataset=None is not accepted; expected a "
         r"model whose contract names the dataset"),
    ]:
        with pytest.raises(SystemExit):
            script.main(argv)
        assert re.search(match, capsys.readouterr().err), argv


def test_serving_model_rejects_bad_raw_shape_and_bare_networks():
    model = classifier("test_resnet", (16, 16, 1), [0.1], [0.3])
    with pytest.raises(ValueError, match=r"raw_shape=\(16, 16, 3\) is not accepted; expected "
                                         r"\(height, width, 1\)"):
        export.serving_model(model, raw_shape=(16, 16, 3))
    with pytest.raises(ValueError, match=r"model='test_resnet' is not accepted; expected a model "
                                         r"that carries its input contract"):
        export.serving_model(zoo.create_model("test_resnet"))


def test_tta_evaluation_settings_mirror_training():
    # Half the training crop padding, 2 pixels when training used none.
    assert augment_tta.evaluation_settings(4) == {"padding": 2}
    assert augment_tta.evaluation_settings(0) == {"padding": 2}
    assert augment_tta.evaluation_settings(8) == {"padding": 4}


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
    contract = info["contract"]
    assert contract["mean"] == [0.485, 0.456, 0.406] and contract["image_shape"] == [224, 224, 3]
    assert contract["fit"] == "resize" and contract["dataset"] == "imagenet"
    assert info["models"] == [{"model": "imagenet:resnet18", "weights": "resnet18.safetensors"}]
    serve = tf.saved_model.load(str(tmp_path / "r18")).signatures["serve"]
    images = RNG.integers(0, 256, (2, 40, 32, 3), np.uint8)
    model = zoo.create_model("resnet18", weights=weights).network
    expected = predict(model, old_path(images, contract["mean"], contract["std"], (224, 224),
                                       fit="resize"))
    exported = serve(images=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(exported, expected, atol=TOLERANCE)
    for argv, message in (
            (["imagenet:resnet18"], "needs --weights (keras, torchvision or a weights file)"),
            (["imagenet:lenet5", "--weights", str(weights)],
             "argument MODEL.keras: 'imagenet:lenet5' is not accepted; expected imagenet: and a "
             "model with ImageNet weights: alexnet, googlenet, "),
            (["imagenet:vgg11", "--weights", "keras"],
             "argument --weights: weights='keras' is not accepted; expected None for vgg11"),
            ([str(tmp_path / "x.keras"), "--weights", "keras"], "--weights goes with "
                                                                 "MODEL.keras=imagenet:NAME")):
        with pytest.raises(SystemExit):
            script.main([*argv, "--out", str(tmp_path / "bad")])
        assert message in capsys.readouterr().err


def test_predict_top_k_default_fits_the_model(tmp_path, monkeypatch, capsys):
    """A default is never refused: --top-k defaults to min(5, classes)."""
    predict = load_script("predict")
    probs = np.array([[0.2, 0.5, 0.3]], np.float32)
    meta = {"input": {"shape": [None, 4, 4, 1]}, "num_classes": 3,
            "class_names": ["cat", "dog", "owl"]}
    monkeypatch.setattr(predict, "load_exported",
                        lambda directory, runtime: (lambda x: probs[:len(x)], meta, "tf"))
    images = tmp_path / "x.npy"
    np.save(images, np.zeros((1, 4, 4, 1), np.uint8))
    assert predict.main([str(tmp_path), str(images)]) == 0
    assert capsys.readouterr().out.split()[1:] == ["dog", "(1)", "0.5000", "owl", "(2)",
                                                   "0.3000", "cat", "(0)", "0.2000"]
    meta["num_classes"] = 8
    with pytest.raises(SystemExit):
        predict.main([str(tmp_path), str(images), "--top-k", "9"])
    assert "--top-k=9 is not accepted; expected an integer in [1, 8]" in capsys.readouterr().err
