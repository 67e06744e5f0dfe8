"""ImageNet weights (zoo/pretrained): keras.applications parity in every run,
the torchvision mapping on state dicts written with numpy (tests/state_dicts.py)
in every run, torchvision parity where torchvision imports, errors on wrong
files, the transfer case, and the preprocessing the model records.

Full-size parity at 224x224 for every model is scripts/verify_weights.py
(docs/pretrained.md); these use tiny inputs and narrow widths.
"""

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import verify_weights

import zoo
from zoo import pretrained
from zoo.base import LayerBuilder
from zoo.pretrained import catalog, files

import state_dicts

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)
HAS_TORCH = importlib.util.find_spec("torch") is not None


def torchvision_imports():
    """Whether torchvision imports, asked of a fresh process: it crashes when
    imported after TensorFlow (as bench_gpu.py notes), and fails beside a
    CPU-only PyTorch build."""
    result = subprocess.run([sys.executable, "-c", "import torch, torchvision"],
                            capture_output=True, timeout=300)
    return result.returncode == 0


def in_fresh_process(code, *args):
    """Runs `code` (torchvision's side) in a fresh Python; returns its stdout."""
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                            text=True, timeout=600, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": f"{ROOT / 'scripts'}"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def save(state, path):
    """A state dict as .safetensors, or as .pth (torch.save) for a .pth path."""
    if str(path).endswith(".pth"):
        import torch

        torch.save({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, path)
        return path
    return state_dicts.save_safetensors(state, path)


def kernel(model, layer):
    return keras.ops.convert_to_numpy(model.get_layer(layer).kernel)


# === keras.applications: parity in every run ===

@pytest.fixture(scope="module")
def keras_resnet50(tmp_path_factory):
    """keras.applications ResNet50 (random weights, BN statistics and biases
    randomised) at 32x32: its HDF5 file, 4 images, its logits, and itself."""
    path = tmp_path_factory.mktemp("keras") / "resnet50.h5"
    reference = verify_weights.keras_reference("resnet50", (32, 32, 3))
    verify_weights.randomize_keras(reference, seed=1)
    verify_weights.write_keras_h5(reference, path)
    x = verify_weights.images(4, 32, 32, seed=1)
    logits = reference.predict(verify_weights.keras_preprocess("resnet50", x), verbose=0)
    return path, x, logits, reference


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_keras_applications_parity(name, keras_resnet50, tmp_path):
    if name == "resnet50":
        path, x, expected, _ = keras_resnet50
    else:
        reference = verify_weights.keras_reference(name, (32, 32, 3))
        verify_weights.randomize_keras(reference, seed=2)
        path = tmp_path / f"{name}.h5"
        verify_weights.write_keras_h5(reference, path)
        x = verify_weights.images(4, 32, 32, seed=2)
        expected = reference.predict(verify_weights.keras_preprocess(name, x), verbose=0)
    classifier = zoo.create_model(name, weights=path, input_shape=(32, 32, 3),
                                  classifier_activation="linear")
    # The model takes the raw images and normalizes them as the weights expect.
    result = verify_weights.compare(expected, verify_weights.zoo_logits(classifier, x))
    assert result["ok"], result
    model = classifier.network
    assert classifier.contract.class_names[0] == "tench" and classifier.contract.fit == "resize"
    recorded = model.pretrained
    assert recorded["source"] == "keras" and recorded["file"] == path.name
    assert len(recorded["class_names"]) == 1000 and recorded["class_names"][0] == "tench"
    np.testing.assert_allclose(np.asarray(recorded["mean"]) * 255, [123.68, 116.779, 103.939])
    config = model.get_config()
    if name == "resnet50":  # keras.applications' ResNet v1 layout
        assert (config["stride_in_1x1"], config["padding"], config["bn_epsilon"]) == (
            True, "symmetric", 1.001e-5)
    else:
        assert (config["batch_norm"], config["dropout"]) == (False, 0.0)


def test_the_hdf5_writer_is_the_layout_keras_reads(tmp_path):
    """verify_weights.write_keras_h5 writes what Keras' own `load_weights`
    reads from keras.applications' .h5 files (so the parity above is with them)."""
    def small():
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
        x = keras.layers.BatchNormalization(name="bn")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        return keras.Model(inputs, keras.layers.Dense(2, name="predictions")(x))

    source, copy = small(), small()
    verify_weights.randomize_keras(source)
    verify_weights.write_keras_h5(source, tmp_path / "small.h5")
    copy.load_weights(tmp_path / "small.h5")
    for a, b in zip(source.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_keras_resnet_needs_its_layout(keras_resnet50):
    path = keras_resnet50[0]
    with pytest.raises(ValueError, match=r"stride_in_1x1=False is not accepted; expected True "
                                         r"with the keras.applications weights for resnet50"):
        zoo.create_model("resnet50", weights=path, stride_in_1x1=False)


def test_new_head_when_the_classes_differ(keras_resnet50, capsys):
    path = keras_resnet50[0]
    model = zoo.create_model("resnet50", weights=path, input_shape=(32, 32, 3),
                             num_classes=10).network
    message = capsys.readouterr().err
    assert "but not into predictions (the file's classifier has 1000 classes, the model 10)" \
        in message
    with h5py.File(path) as f:
        np.testing.assert_array_equal(kernel(model, "stage4_block3_conv3"),
                                      f["conv5_block3_3_conv/conv5_block3_3_conv/kernel:0"][()])
    assert model.output_shape == (None, 10)
    assert model.pretrained["class_names"] is None and model.pretrained["num_classes"] == 1000


def test_wrong_hdf5_files(keras_resnet50, tmp_path):
    path = keras_resnet50[0]
    with pytest.raises(ValueError, match=r"layer 'block1_conv1' is missing \(vgg16's layer "
                                         r"'block1_conv1' needs it\)"):
        zoo.create_model("vgg16", weights=path, input_shape=(32, 32, 3))
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(ValueError, match=r"'truncated.h5' cannot be read .*damaged or truncated"):
        zoo.create_model("resnet50", weights=truncated)
    changed = tmp_path / "changed.h5"
    shutil.copy(path, changed)
    with h5py.File(changed, "r+") as f:
        del f["conv1_bn"]["conv1_bn"]["gamma:0"]
        f["conv1_bn"]["conv1_bn"]["gamma:0"] = np.ones(32, np.float32)
    with pytest.raises(ValueError, match=r"tensor 'conv1_bn/conv1_bn/gamma:0' has shape \(32,\); "
                                         r"resnet50's layer 'conv1_bn' needs \(64,\)"):
        zoo.create_model("resnet50", weights=changed, input_shape=(32, 32, 3))


# === torchvision: the mapping on numpy state dicts, in every run ===

# zoo model, its options, the state dict's builder: every torchvision family,
# GoogLeNet and ResNet18 at full width, the others narrow.
TORCHVISION_CASES = {
    "alexnet": (dict(filters=[4, 8, 8, 8, 8], hidden_units=16, input_shape=(63, 63, 3)),
                lambda: state_dicts.alexnet(filters=(4, 8, 8, 8, 8), hidden=16)),
    "vgg11": (dict(widths=[4, 8, 16, 32, 32], head=[16, 16], input_shape=(32, 32, 3)),
              lambda: state_dicts.vgg(11, batch_norm=True, width=1 / 16, head=(16, 16))),
    "vgg13": (dict(widths=[4, 8, 16, 32, 32], head=[16, 16], input_shape=(32, 32, 3)),
              lambda: state_dicts.vgg(13, batch_norm=False, width=1 / 16, head=(16, 16))),
    "googlenet": (dict(input_shape=(32, 32, 3)), lambda: state_dicts.googlenet()),
    "resnet18": (dict(input_shape=(32, 32, 3)), lambda: state_dicts.resnet(18)),
    "resnet50": (dict(widths=[4, 8, 8, 8], input_shape=(32, 32, 3)),
                 lambda: state_dicts.resnet(50, widths=(4, 8, 8, 8))),
}


@pytest.fixture(scope="module")
def torchvision_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchvision")
    return {name: (options, state, save(state, root / f"{name}.safetensors"))
            for name, (options, make) in TORCHVISION_CASES.items() for state in [make()]}


def check_mapping(name, model, state):
    """Every layer holds its torchvision tensor, transposed; BatchNorm moving
    means have the conv bias folded in; the first FC reads NHWC."""
    nchw = {"alexnet": "classifier.1", "vgg11": "classifier.0", "vgg13": "classifier.0"}
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    first = {"alexnet": "features.0", "vgg11": "features.0", "vgg13": "features.0",
             "googlenet": "conv1.conv", "resnet18": "conv1", "resnet50": "conv1"}[name]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(convs[0].kernel),
                                  state[f"{first}.weight"].transpose(2, 3, 1, 0))
    if name == "vgg11":  # batch norm after a biased conv: the bias moves into the mean
        bn = model.get_layer("block1_conv1_bn")
        np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean),
                                   state["features.1.running_mean"] - state["features.0.bias"])
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(bn.gamma),
                                      state["features.1.weight"])
    if name in nchw:  # a feature map flattened both ways gives the same output
        height, width, channels = model.get_layer("flatten").input.shape[1:]
        features = RNG.standard_normal((channels, height, width)).astype(np.float32)
        fc = model.get_layer("fc6" if name == "alexnet" else "fc1")
        ours = features.transpose(1, 2, 0).reshape(-1) @ keras.ops.convert_to_numpy(fc.kernel)
        theirs = state[f"{nchw[name]}.weight"] @ features.reshape(-1)
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    head = {"alexnet": "classifier.6", "vgg11": "classifier.6", "vgg13": "classifier.6"}.get(
        name, "fc")
    np.testing.assert_array_equal(kernel(model, "predictions"), state[f"{head}.weight"].T)


@pytest.mark.parametrize("name", list(TORCHVISION_CASES))
def test_torchvision_mapping_on_numpy_state_dicts(name, torchvision_files):
    options, state, path = torchvision_files[name]
    model = zoo.create_model(name, weights=path, **options).network
    check_mapping(name, model, state)
    recorded = model.pretrained
    assert recorded["source"] == "torchvision" and recorded["class_names"][1] == "goldfish"
    expected_mean = [0.5] * 3 if name == "googlenet" else list(catalog.IMAGENET_MEAN)
    assert recorded["mean"] == expected_mean
    assert recorded["model"] == {"vgg11": "vgg11_bn"}.get(name, name)  # from the file's BN


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed: .pth files need torch.load")
def test_pth_through_torch_load_weights_only(torchvision_files, tmp_path):
    options, state, _ = torchvision_files["resnet50"]
    model = zoo.create_model("resnet50", weights=save(state, tmp_path / "r.pth"), **options)
    check_mapping("resnet50", model.network, state)


def test_pth_without_torch_names_the_way_out(torchvision_files, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("no torch")
        return real_import(name, *args, **kwargs)

    path = tmp_path / "resnet18.pth"
    path.write_bytes(b"not read")
    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(ValueError, match=r"reading a PyTorch .pth needs PyTorch .* \.safetensors"):
        zoo.create_model("resnet18", weights=path)


def test_wrong_torchvision_files(torchvision_files, tmp_path):
    options, state, path = torchvision_files["resnet18"]
    deeper = save(state_dicts.resnet(34), tmp_path / "resnet34.safetensors")
    with pytest.raises(ValueError, match=r"'resnet34.safetensors': \d+ tensors resnet18 does not "
                                         r"use, such as 'layer1.2."):
        zoo.create_model("resnet18", weights=deeper, **options)
    vgg = torchvision_files["vgg11"][2]
    with pytest.raises(ValueError, match=r"tensor 'conv1.weight' is missing \(resnet18's layer "
                                         r"'conv1' needs shape \(64, 3, 7, 7\)\); the file has "
                                         r"62 tensors such as 'classifier.0.bias'"):
        zoo.create_model("resnet18", weights=vgg, **options)
    missing = dict(state)
    del missing["layer2.0.bn1.running_var"]
    with pytest.raises(ValueError, match=r"tensor 'layer2.0.bn1.running_var' is missing "
                                         r"\(resnet18's layer 'stage2_block1_conv1_bn' needs "
                                         r"shape \(128,\)\)"):
        zoo.create_model("resnet18", weights=save(missing, tmp_path / "m.safetensors"), **options)
    reshaped = {**state, "layer3.1.conv2.weight": np.zeros((256, 256, 1, 1), np.float32)}
    with pytest.raises(ValueError, match=r"tensor 'layer3.1.conv2.weight' has shape "
                                         r"\(256, 256, 1, 1\); resnet18's layer "
                                         r"'stage3_block2_conv2' needs \(256, 256, 3, 3\)"):
        zoo.create_model("resnet18", weights=save(reshaped, tmp_path / "s.safetensors"),
                         **options)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"'truncated.safetensors' cannot be read"):
        zoo.create_model("resnet18", weights=truncated)


def test_a_file_without_classifier_gives_a_new_head(torchvision_files, tmp_path, capsys):
    options, state, _ = torchvision_files["resnet50"]
    backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
    model = zoo.create_model("resnet50", weights=save(backbone, tmp_path / "b.safetensors"),
                             **options)
    assert "predictions (the file has no classifier)" in capsys.readouterr().err
    pretrained = model.network.pretrained
    assert pretrained["class_names"] is None and pretrained["num_classes"] is None
    assert model.contract.class_names is None


def test_googlenet_aux_heads_stay_new_and_file_aux_heads_are_ignored(tmp_path, capsys):
    state = state_dicts.googlenet(width=1 / 16, aux=True)
    path = save(state, tmp_path / "googlenet.safetensors")
    model = zoo.create_model("googlenet", weights=path, width_scale=1 / 16,
                             input_shape=(80, 80, 3)).network
    assert not model.aux_logits and model.get_config()["branch5_kernel"] == 3
    model = zoo.create_model("googlenet", weights=path, width_scale=1 / 16, aux_logits=True,
                             input_shape=(80, 80, 3))
    assert "aux1_fc (not in the weights)" in capsys.readouterr().err


def test_bad_weights_values(torchvision_files, tmp_path):
    path = torchvision_files["resnet18"][2]
    accepted = r"expected None, 'keras', 'torchvision', or the path of a weights file"
    for value in ("imagenet", tmp_path / "weights.txt", 3):
        with pytest.raises(ValueError, match=rf"weights=.* is not accepted; {accepted}"):
            zoo.create_model("resnet18", weights=value)
    with pytest.raises(ValueError, match=r"no such file"):
        zoo.create_model("resnet18", weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"weights='keras' is not accepted; expected None for "
                                         r"resnet18: the keras.applications ImageNet weights are "
                                         r"for vgg16, vgg19, resnet50, resnet101, resnet152"):
        zoo.create_model("resnet18", weights="keras")
    with pytest.raises(ValueError, match=r"expected None for lenet5"):
        zoo.create_model("lenet5", weights=path)
    with pytest.raises(ValueError, match=r"padding='same' is not accepted; expected 'symmetric' "
                                         r"with the torchvision weights for resnet18"):
        zoo.create_model("resnet18", weights=path, padding="same")
    pretrained.check("resnet18", "torchvision", {"dropout": 0.1})


def test_download_checks_the_published_hash(tmp_path, monkeypatch):
    path = tmp_path / "resnet18-abc.pth"
    path.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    calls = []

    def get_file(fname, origin, cache_subdir, file_hash):
        calls.append((fname, origin, cache_subdir, file_hash))
        return str(path)

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    good = catalog.Checkpoint("x", "https://example.org/x-1.pth", digest[:8], 0, 0)
    assert files.fetch(good) == str(path)
    assert calls[-1] == ("x-1.pth", "https://example.org/x-1.pth", "models", None)
    assert files.fetch(catalog.KERAS["vgg16"]) == str(path)  # md5: get_file checks it
    assert calls[-1][-1] == "64373286793e3c8b2b4e3219cbf3544b"
    bad = catalog.Checkpoint("x", "https://example.org/x-1.pth", "00000000", 0, 0)
    with pytest.raises(ValueError, match=r"has sha256 .* not 00000000.*removed"):
        files.fetch(bad)
    assert not path.exists()

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example.org: None -- no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(ValueError, match=r"cannot download .* pass the path of a downloaded copy"):
        zoo.create_model("resnet18", weights="torchvision")


def test_catalog_covers_every_model_of_each_source():
    assert set(pretrained.SOURCES["keras"].FAMILY) == set(catalog.KERAS)
    names = {pretrained.SOURCES["torchvision"].checkpoint_name(n, {"batch_norm": bn})
             for n in pretrained.SOURCES["torchvision"].FAMILY for bn in (True, False)}
    assert names == set(catalog.TORCHVISION)
    assert all(c.file.startswith(n) for n, c in catalog.TORCHVISION.items())
    assert len(catalog.imagenet_class_names()) == 1000


# === the preprocessing the model records, through .keras and export ===

def test_pretrained_metadata_round_trips_through_keras_and_export(torchvision_files, tmp_path):
    from zoo.serving import export

    options, _, path = torchvision_files["vgg11"]
    model = zoo.create_model("vgg11", weights=path, **options)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.network.pretrained == model.network.pretrained
    assert loaded.contract == model.contract
    assert type(model).from_config(model.get_config()).contract == model.contract
    contract = loaded.contract
    assert contract.fit == "resize" and contract.class_names[0] == "tench"
    serving = export.serving_model(loaded)
    images = RNG.integers(0, 256, (2, 20, 24, 3), np.uint8)  # smaller: resized, not padded
    resized = keras.ops.image.resize(images.astype("float32"), (32, 32),
                                     interpolation="bilinear", antialias=True)
    expected = model.network.predict((keras.ops.convert_to_numpy(resized) / 255
                                      - np.float32(contract.mean)) / np.float32(contract.std),
                                     verbose=0)
    np.testing.assert_allclose(serving.predict(images, verbose=0), expected, atol=1e-6)
    info = export.export_model(serving, tmp_path / "exported")
    assert info["preprocessing"].startswith("32x32x3 uint8 images (others resized (bilinear)")
    assert info["class_names"][0] == "tench"


def test_serving_graph_is_keras_applications_caffe_pipeline(keras_resnet50):
    """Raw uint8 RGB images through the export's graph (resize, then the
    recorded mean/std) equal keras.applications' own pipeline: resize, then
    preprocess_input (RGB -> BGR, minus the mean pixel), then ResNet50."""
    from zoo.serving import export

    path, _, _, reference = keras_resnet50
    model = zoo.create_model("resnet50", weights=path, input_shape=(32, 32, 3),
                             classifier_activation="linear")
    serving = export.serving_model(model)
    images = RNG.integers(0, 256, (3, 24, 28, 3), np.uint8)
    resized = keras.ops.convert_to_numpy(keras.ops.image.resize(
        images.astype("float32"), (32, 32), interpolation="bilinear", antialias=True))
    expected = reference.predict(verify_weights.keras_preprocess("resnet50", resized), verbose=0)
    assert verify_weights.compare(expected, serving.predict(images, verbose=0))["ok"]


# === the layers and options the sources' architectures need ===

def test_adaptive_average_pooling_is_pytorchs_at_every_size():
    for size, out in (((1, 1), 6), ((3, 5), 7), ((14, 13), 7), ((7, 7), 7)):
        x = RNG.standard_normal((2, *size, 3)).astype(np.float32)
        inputs = keras.Input((*size, 3))
        model = keras.Model(inputs, zoo.AdaptiveAveragePooling(out)(inputs))
        expected = np.zeros((2, out, out, 3), np.float32)
        for i in range(out):
            rows = slice(i * size[0] // out, -(-(i + 1) * size[0] // out))
            for j in range(out):
                cols = slice(j * size[1] // out, -(-(j + 1) * size[1] // out))
                expected[:, i, j] = x[:, rows, cols].mean(axis=(1, 2))
        np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def numpy_max_pool(x, pool, stride, before, after):
    """Max pooling with -inf padding `before`/`after` on each spatial side."""
    x = np.pad(x, ((0, 0), (before, after[0]), (before, after[1]), (0, 0)),
               constant_values=-np.inf)
    rows = (x.shape[1] - pool) // stride + 1
    cols = (x.shape[2] - pool) // stride + 1
    return np.stack([np.stack([x[:, i * stride:i * stride + pool, j * stride:j * stride + pool]
                               .max(axis=(1, 2)) for j in range(cols)], 1) for i in range(rows)], 1)


@pytest.mark.parametrize("size", [(8, 8), (7, 9), (8, 9), (14, 15)])
def test_symmetric_and_ceil_mode_pools_are_pytorchs(size):
    builder = LayerBuilder(padding="symmetric")
    x = RNG.standard_normal((2, *size, 3)).astype(np.float32)
    inputs = keras.Input((*size, 3))
    symmetric = keras.Model(inputs, builder.max_pool(inputs, 3, 2, "pool"))
    np.testing.assert_array_equal(symmetric.predict(x, verbose=0),
                                  numpy_max_pool(x, 3, 2, 1, (1, 1)))
    for pool in (3, 2):  # GoogLeNet's pools; any sign (no zero padding)
        ceil = keras.Model(inputs, builder.max_pool(inputs, pool, 2, "pool", ceil_mode=True))
        ceil_out = [-(-(s - pool) // 2) + 1 for s in size]
        np.testing.assert_array_equal(
            ceil.predict(x, verbose=0),
            numpy_max_pool(x, pool, 2, 0, [(o - 1) * 2 + pool - s for o, s in zip(ceil_out, size)]))


def test_source_layout_options_round_trip():
    model = zoo.create_model("googlenet", padding="symmetric", branch5_kernel=3, pool_4e_size=2,
                             bn_epsilon=1e-3, aux_logits=False, width_scale=1 / 32,
                             input_shape=(40, 44, 3))
    clone = type(model).from_config(model.get_config())
    x = RNG.standard_normal((2, 40, 44, 3)).astype(np.float32)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    assert clone.get_layer("conv1_bn").epsilon == 1e-3
    with pytest.raises(ValueError, match=r"padding='valid' is not accepted; expected one of "
                                         r"same, symmetric"):
        zoo.create_model("resnet18", padding="valid")
    with pytest.raises(ValueError, match=r"adaptive_pool=0 is not accepted"):
        zoo.create_model("vgg11", adaptive_pool=0)


# === torchvision itself, where it imports ===

needs_torchvision = pytest.mark.skipif(  # find_spec first: no subprocess where it is absent
    importlib.util.find_spec("torchvision") is None or not torchvision_imports(),
    reason="torchvision does not import here (it needs PyTorch's full build); "
           "scripts/verify_weights.py dump runs it elsewhere")


SHAPES_CODE = """
import json, torch, torchvision
shapes = {}
for name in %r:
    kwargs = {"aux_logits": True, "init_weights": False} if name == "googlenet" else {}
    with torch.device("meta"):  # names and shapes, no memory
        model = getattr(torchvision.models, name)(weights=None, **kwargs)
    shapes[name] = [[k, list(v.shape)] for k, v in model.state_dict().items()]
print(json.dumps(shapes))
""" % (verify_weights.TORCHVISION_MODELS,)


@needs_torchvision
def test_numpy_state_dicts_match_torchvisions():
    real = json.loads(in_fresh_process(SHAPES_CODE))
    for name in verify_weights.TORCHVISION_MODELS:
        ours = state_dicts.torchvision_model(name, values=False,
                                             **({"aux": True} if name == "googlenet" else {}))
        assert real[name] == [[k, list(v.shape)] for k, v in ours.items()], name


@needs_torchvision
@pytest.mark.parametrize("name", ["alexnet", "vgg11_bn", "googlenet", "resnet18", "resnet50"])
def test_torchvision_parity(name, tmp_path):
    """torchvision's own network (a fresh process: `verify_weights.py dump`)
    against the zoo's conversion of its .pth and .safetensors."""
    size = (95, 95) if name == "alexnet" else (64, 64)
    in_fresh_process("import sys, verify_weights; verify_weights.main(sys.argv[1:])", "dump",
                     "--out", tmp_path, "--models", name, "--sizes", f"{size[0]}x{size[1]}",
                     "--images", 4, "--seed", 3)
    for fmt in ("pth", "safetensors") if HAS_TORCH else ("safetensors",):
        result = verify_weights.verify_torchvision(name, size, tmp_path, fmt)
        assert result["ok"], (name, fmt, result)
