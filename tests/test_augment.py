"""Augmentation layers, presets, the tf.data pipeline, on-device augmentation and TTA."""

import importlib.util
import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import zoo
from augment import datasets, layers, pipelines, tta
from zoo import training
from zoo.cli import train as cli

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(8, 16, 16, 3), dtype=np.uint8)
LABELS = keras.utils.to_categorical(np.arange(8) % 4, 4).astype("float32")
MEAN, STD = datasets.channel_stats(IMAGES)
PCA_STATS = layers.pca_lighting_stats(IMAGES)


def make_layer(name, seed=1):
    return {
        "pad_crop": lambda: layers.RandomPadCrop(4, flip=True, seed=seed),
        "pca": lambda: layers.PCALighting(*PCA_STATS, std=0.1, seed=seed),
    }[name]()


def stack(preset, seed=0, **options):
    spec = pipelines.resolve_spec(preset, options)
    return pipelines.build_augmenter(spec, mean=MEAN, image_shape=IMAGES.shape[1:],
                                     dataset="cifar10", pca_stats=PCA_STATS, seed=seed)


def run(layer, images=IMAGES, labels=None, training=True):
    if labels is None:
        return keras.ops.convert_to_numpy(layer(images, training=training))
    out = layer({"images": images, "labels": labels}, training=training)
    return keras.ops.convert_to_numpy(out["images"]), keras.ops.convert_to_numpy(out["labels"])


@pytest.mark.parametrize("name", ["pad_crop", "pca"])
def test_same_seed_same_output_and_training_false_is_identity(name):
    a, b = run(make_layer(name, 7)), run(make_layer(name, 7))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, run(make_layer(name, 8)))
    assert a.shape == IMAGES.shape and a.dtype == np.float32
    np.testing.assert_array_equal(run(make_layer(name), training=False), IMAGES)
    single = keras.ops.convert_to_numpy(make_layer(name)(IMAGES[0]))  # one (H, W, C) image
    assert single.shape == IMAGES.shape[1:]


@pytest.mark.parametrize("preset", pipelines.PRESET_NAMES)
def test_presets_keep_shapes_are_seeded_and_are_the_identity_in_inference(preset):
    first = run(stack(preset, seed=3), labels=LABELS)
    again = run(stack(preset, seed=3), labels=LABELS)
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    images, labels = first
    assert images.shape == IMAGES.shape
    assert images.dtype == (np.uint8 if preset == "none" else np.float32)
    np.testing.assert_allclose(labels.sum(axis=-1), 1.0, rtol=1e-5)
    # training=False leaves the pixel values as they are: the model normalizes them.
    np.testing.assert_array_equal(run(stack(preset), training=False), IMAGES)
    assert images.max() > 2.0  # pixel values, not normalized


@pytest.mark.parametrize("preset", ["mixup", "cutmix"])
def test_mixing_changes_labels_that_still_sum_to_one(preset):
    _, labels = run(stack(preset, seed=1), labels=LABELS)
    assert not np.array_equal(labels, LABELS)
    np.testing.assert_allclose(labels.sum(axis=-1), 1.0, rtol=1e-5)
    assert labels.min() >= 0.0


def test_pad_crop_is_a_per_image_shift_with_zero_fill():
    images = RNG.integers(1, 256, size=(16, 8, 8, 1)).astype("float32")
    out = run(layers.RandomPadCrop(2, seed=0), images)
    padded = np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)])
    offsets = set()
    for k in range(len(images)):
        found = [(r, c) for r in range(5) for c in range(5)
                 if np.array_equal(out[k], padded[k, r:r + 8, c:c + 8])]
        assert found, f"image {k} is not a crop of its padded image"
        offsets.add(found[0])
    assert len(offsets) > 1  # offsets are drawn per image, not per batch


def test_pad_crop_flip_mirrors_about_half_of_the_images():
    images = RNG.integers(1, 256, size=(64, 6, 6, 1)).astype("float32")
    out = run(layers.RandomPadCrop(0, flip=True, seed=0), images)
    mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images)]
    kept = [np.array_equal(o, i) for o, i in zip(out, images)]
    assert all(m or k for m, k in zip(mirrored, kept)) and 16 < sum(mirrored) < 48


def test_pca_lighting_shifts_colour_along_the_principal_axes_only():
    images = np.repeat(IMAGES, 64, axis=0)  # 512 images
    out = run(layers.PCALighting(*PCA_STATS, std=0.1, seed=0), images)
    delta = (out - images).reshape(len(images), -1, 3)
    # One colour shift per image, the same for every pixel.
    np.testing.assert_allclose(delta, delta[:, :1, :].repeat(delta.shape[1], 1), atol=1e-3)
    shift = delta[:, 0, :]
    largest = 255 * 0.1 * max(PCA_STATS[0])  # std of the shift along the first axis
    assert np.abs(shift).max() > 0.5 * largest  # the noise is there ...
    assert np.all(np.abs(shift.mean(axis=0)) < 0.2 * largest)  # ... and averages out
    assert np.all(np.abs(out.mean(axis=(0, 1, 2)) - images.mean(axis=(0, 1, 2))) < 1.0)


@pytest.mark.parametrize("preset", ["mixup"])  # labels through the stack: the longer path
def test_on_device_stack_trains_googlenet_with_its_auxiliary_heads(preset):
    """The network's own loss weighs its auxiliary outputs; metrics see the main one."""
    keras.utils.set_random_seed(0)
    model = zoo.create_model("test_googlenet", num_classes=4, input_shape=(16, 16, 3),
                             preprocessing={"image_shape": (16, 16, 3), "mean": MEAN, "std": STD})
    y = keras.utils.to_categorical(np.arange(len(IMAGES)) % 4, 4)
    wrapper = pipelines.AugmentedModel(model, stack(preset))
    for net in (model, wrapper):  # the network computes the loss: compiled too
        net.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    inputs = {"images": IMAGES, "labels": y} if preset == "mixup" else IMAGES
    history = wrapper.fit(inputs, y, batch_size=4, epochs=1, verbose=0).history
    # ln(4) for the main head plus 0.3 * ln(4) for each of the two auxiliary heads
    assert 1.3 * np.log(4) < history["loss"][0] < 3 * 1.6 * np.log(4)
    assert 0 <= history["accuracy"][0] <= 1


@pytest.mark.parametrize("name", ["pad_crop", "pca"])
def test_layers_round_trip_through_their_config(name):
    layer = make_layer(name, seed=5)
    clone = type(layer).from_config(layer.get_config())
    np.testing.assert_allclose(run(clone), run(layer), rtol=1e-6)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert restored.get_config() == layer.get_config()


def test_model_with_stack_and_tta_models_round_trip_through_keras_files(tmp_path):
    model = zoo.create_model("test_vgg", num_classes=4, input_shape=(16, 16, 3),
                             preprocessing={"image_shape": (16, 16, 3), "mean": MEAN, "std": STD})
    x = IMAGES
    wrapper = pipelines.AugmentedModel(model, stack("alexnet"))
    wrapper.save(tmp_path / "wrapped.keras")
    loaded = keras.saving.load_model(tmp_path / "wrapped.keras")
    # Inference through the wrapper is the model alone (it normalizes itself).
    np.testing.assert_allclose(loaded.predict(IMAGES, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)
    for views in tta.VIEWS:
        tta_model = tta.TTAModel(model, views, padding=2)
        probs = tta_model.predict(x, verbose=0)
        tta_model.save(tmp_path / f"{views}.keras")
        again = keras.saving.load_model(tmp_path / f"{views}.keras").predict(x, verbose=0)
        np.testing.assert_allclose(again, probs, atol=1e-6)
        np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
    identity = tta.TTAModel(model, "identity").predict(x, verbose=0)
    np.testing.assert_allclose(identity, model.predict(x, verbose=0), atol=1e-6)
    # Another size is fitted to the model's own first (here padded), then cut into views.
    small = IMAGES[:, 2:14, 2:14]
    padded = np.pad(small, [(0, 0), (2, 2), (2, 2), (0, 0)])
    np.testing.assert_allclose(tta.TTAModel(model, "flip").predict(small, verbose=0),
                               tta.TTAModel(model, "flip").predict(padded, verbose=0), atol=1e-6)


def test_tta_views_are_the_crops_and_flips():
    x = keras.ops.convert_to_tensor(RNG.normal(size=(2, 6, 6, 1)).astype("float32"))
    views = [keras.ops.convert_to_numpy(v) for v in tta.make_views(x, "10crop", padding=1)]
    assert len(views) == tta.NUM_VIEWS["10crop"]
    base = keras.ops.convert_to_numpy(x)
    padded = np.pad(base, [(0, 0), (1, 1), (1, 1), (0, 0)])
    np.testing.assert_array_equal(views[0], base)  # the centre crop
    np.testing.assert_array_equal(views[1], padded[:, :6, :6])  # top left
    np.testing.assert_array_equal(views[4], padded[:, 2:, 2:])  # bottom right
    np.testing.assert_array_equal(views[5], base[:, :, ::-1])  # mirrored centre
    assert len(tta.make_views(x, "flip")) == 2 and len(tta.make_views(x, "5crop")) == 5


def test_tf_data_pipeline_batches_and_shuffles_with_a_seed():
    ds = pipelines.make_dataset(IMAGES, LABELS, stack("none"), batch_size=3, seed=1)
    batches = list(ds.as_numpy_iterator())
    assert [len(x) for x, _ in batches] == [3, 3, 2]
    assert batches[0][0].dtype == np.uint8 and batches[0][1].shape == (3, 4)  # as given
    again = list(pipelines.make_dataset(IMAGES, LABELS, stack("none"), batch_size=3,
                                        seed=1).as_numpy_iterator())
    for (x1, y1), (x2, y2) in zip(batches, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    seen = np.concatenate([x for x, _ in batches])
    assert sorted(map(float, seen[:, 0, 0, 0])) == sorted(map(float, IMAGES[:, 0, 0, 0]))
    x, y = next(iter(pipelines.make_dataset(IMAGES, LABELS, stack("cutmix"), batch_size=8)))
    assert x.shape == (8, 16, 16, 3) and np.allclose(np.sum(y, axis=-1), 1.0)


def test_tf_data_augmentation_is_reproducible_with_a_seed():
    images = np.repeat(IMAGES, 16, axis=0)
    labels = np.repeat(LABELS, 16, axis=0)

    def epoch(seed, jit_compile=True, pca_lighting=0.1):
        augmenter = stack("cutmix", seed=seed, pca_lighting=pca_lighting)
        ds = pipelines.make_dataset(images, labels, augmenter, batch_size=16, seed=seed,
                                    jit_compile=jit_compile)
        return [x for x, _ in ds.as_numpy_iterator()]

    first, again, other = epoch(1), epoch(1), epoch(2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    # XLA compiles the crop, CutMix runs op by op: the same draws,
    # the same images up to float rounding. (XLA draws other normal numbers
    # for PCA lighting from the same seed, so it is left out here.)
    fused, op_by_op = (epoch(1, jit, pca_lighting=0.0) for jit in (True, False))
    for a, b in zip(fused, op_by_op):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_xla_groups_are_the_runs_of_compilable_layers_in_order():
    def names(preset, **options):
        return [(compilable, [layer.name for layer in group])
                for compilable, group in pipelines.xla_groups(stack(preset, **options))]

    assert names("standard") == [(True, ["pad_crop_flip"])]
    assert names("mixup", pca_lighting=0.1) == [
        (True, ["pad_crop_flip", "pca_lighting"]), (False, ["mixup"])]
    assert names("strong") == [(True, ["pad_crop_flip"]), (False, ["randaugment"]),
                               (True, ["erasing"])]


@pytest.mark.parametrize("device, preset", [("host", "standard"), ("device", "mixup")])
def test_training_with_augmentation_reports_plain_and_tta_accuracy(device, preset, tmp_path):
    config = training.TrainConfig(
        model="test_resnet", dataset="mnist_sample", epochs=1, batch_size=32, limit_train=96,
        limit_test=32, out=str(tmp_path / "run"), verbose=0, augment=preset,
        augment_device=device, tta="5crop")
    metrics = training.train(config)
    assert 0 <= metrics["test_accuracy_tta"] <= 1 and metrics["tta"] == "5crop"
    assert 0 <= metrics["test_accuracy"] <= 1
    saved = keras.saving.load_model(tmp_path / "run" / "model.keras")
    # The model that takes raw images, not the augmentation wrapper.
    assert type(saved).__name__ == "Classifier" and type(saved.network).__name__ == "ResNet"
    settings = json.loads((tmp_path / "run" / "config.json").read_text())
    assert settings["augment"] == preset and settings["augment_device"] == device


def test_digits_get_no_flip_unless_asked():
    spec = pipelines.resolve_spec("standard")
    names = [layer.name for layer in pipelines.build_augmenter(
        spec, mean=[0.1], image_shape=(32, 32, 1), dataset="mnist").layers]
    assert names == ["pad_crop"]
    spec = pipelines.resolve_spec("standard", {"flip": True})
    assert pipelines.build_augmenter(spec, mean=[0.1], image_shape=(32, 32, 1),
                                     dataset="mnist").layers[0].flip
    spec = pipelines.resolve_spec("none", {"flip": True})  # a flip without a crop: Keras' own
    assert isinstance(pipelines.build_augmenter(spec, mean=[0.1],
                                                image_shape=(32, 32, 1)).layers[0],
                      keras.layers.RandomFlip)


@pytest.mark.parametrize("make, message", [
    (lambda: pipelines.resolve_spec("autoaugment"),
     "augment='autoaugment' is not accepted; expected one of none, standard, alexnet"),
    (lambda: pipelines.resolve_spec("standard", {"erasing": 1.5}),
     "erasing=1.5 is not accepted; expected a number in [0.0, 1.0]"),
    (lambda: pipelines.resolve_spec("standard", {"crop_padding": -1}),
     "crop_padding=-1 is not accepted; expected an integer in [0, 64]"),
    (lambda: pipelines.resolve_spec("standard", {"blur": 1}),
     "augment option='blur' is not accepted; expected one of flip, crop_padding"),
    (lambda: layers.RandomPadCrop(-1), "padding=-1 is not accepted; expected an integer >= 0"),
    (lambda: pipelines.make_dataset(IMAGES, LABELS, stack("standard"), jit_compile="yes"),
     "jit_compile='yes' is not accepted; expected True or False"),
    (lambda: layers.PCALighting([1.0], [[1.0]], std=-1),
     "std=-1 is not accepted; expected a number in [0, 10)"),
    (lambda: layers.PCALighting([1.0, 2.0], [[1.0]]),
     "eigenvalues/eigenvectors=((2,), (1, 1)) is not accepted"),
    (lambda: tta.TTAModel(keras.Sequential(), "3crop"),
     "tta='3crop' is not accepted; expected one of identity, flip, 5crop, 10crop"),
])
def test_bad_parameters_raise_at_construction(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value)


@pytest.mark.parametrize("argv, message", [
    (["--augment", "autoaugment"], "argument --augment: invalid choice: 'autoaugment'"),
    (["--augment-device", "tpu"], "argument --augment-device: invalid choice: 'tpu'"),
    (["--tta", "3crop"], "argument --tta: invalid choice: '3crop'"),
    (["--mixup", "-1"], "mixup=-1.0 is not accepted; expected a number in [0.0, 100.0]"),
    (["--cutmix", "2"], "cutmix=2.0 is not accepted; expected a number in [0.0, 1.0]"),
    (["--randaugment", "20"], "randaugment=20 is not accepted; expected an integer in [0, 14]"),
])
def test_bad_augment_flags_stop_at_argument_parsing(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_config(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_flags_override_the_preset_pieces():
    config = cli.parse_config(["--augment", "standard", "--no-flip", "--erasing", "0.25",
                               "--tta", "10crop", "--augment-device", "device"])
    assert config.augment_options == {"flip": False, "erasing": 0.25}
    spec = pipelines.resolve_spec(config.augment, config.augment_options)
    assert (spec.flip, spec.crop_padding, spec.erasing) == (False, 4, 0.25)
    assert cli.parse_config([], recipe=cli.recipe_of("resnet")).augment == "standard"


JAX_SCRIPT = textwrap.dedent("""
    import json, tempfile
    import keras, numpy as np
    import zoo
    from augment import datasets, layers, pipelines, tta
    assert keras.backend.backend() == "jax"
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(16, 16, 16, 1), dtype=np.uint8)
    y = keras.utils.to_categorical(np.arange(16) % 4, 4).astype("float32")
    mean, std = datasets.channel_stats(x)
    results = {}
    for preset in ("mixup",):
        # crop, flip, PCA lighting and mixup in one stack; the model normalizes
        spec = pipelines.resolve_spec(preset, {"pca_lighting": 0.1})
        aug = pipelines.build_augmenter(spec, mean=mean, image_shape=(16, 16, 1),
                                        pca_stats=layers.pca_lighting_stats(x), seed=0)
        model = zoo.create_model("test_vgg", num_classes=4, preprocessing={
            "image_shape": (16, 16, 1), "mean": mean, "std": std})
        wrapper = pipelines.AugmentedModel(model, aug)
        wrapper.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
        inputs = {"images": x, "labels": y} if spec.mixes_labels else x
        before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
        history = wrapper.fit(inputs, y, batch_size=8, epochs=1, verbose=0)
        changed = any(not np.array_equal(b, keras.ops.convert_to_numpy(v))
                      for b, v in zip(before, model.trainable_variables))
        draw = np.asarray(aug(x[:4], training=True))
        path = tempfile.mkdtemp() + "/t.keras"
        tta_model = tta.TTAModel(model, "10crop")
        probs = np.asarray(tta_model.predict(x, verbose=0))
        tta_model.save(path)
        again = np.asarray(keras.saving.load_model(path).predict(x, verbose=0))
        results[preset] = {"loss": float(history.history["loss"][0]), "changed": changed,
                           "shape": list(draw.shape), "dtype": str(draw.dtype),
                           "tta_diff": float(np.abs(probs - again).max())}
    print("RESULTS " + json.dumps(results))
""")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_on_device_stack_trains_a_model_under_jax(jax_env):
    result = subprocess.run([sys.executable, "-c", JAX_SCRIPT], capture_output=True, text=True,
                            env=jax_env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("RESULTS "))
    for preset, r in json.loads(line[len("RESULTS "):]).items():
        assert r["loss"] == r["loss"] and r["loss"] > 0, preset
        assert r["changed"], preset
        assert r["shape"] == [4, 16, 16, 1] and r["dtype"] == "float32", preset
        assert r["tta_diff"] < 1e-5, preset


def test_grayscale_drops_randaugment_with_a_notice(capsys):
    augmenter = pipelines.build_augmenter(pipelines.resolve_spec("strong"), mean=[0.1],
                                          image_shape=(32, 32, 1))
    names = [layer.name for layer in augmenter.layers]
    assert names == ["pad_crop_flip", "erasing"]
    assert "RandAugment left out: its colour operations need RGB" in capsys.readouterr().err
    out = pipelines.apply_augmenter(augmenter, np.full((2, 32, 32, 1), 128, np.uint8))[0]
    assert out.shape == (2, 32, 32, 1)
