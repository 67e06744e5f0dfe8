"""Transfer learning (zoo/training/transfer.py, scripts/finetune.py)."""

import json
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import zoo
from zoo.pretrained import catalog
from zoo.training import TrainConfig, prepare_data, transfer

import state_dicts

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def test_frozen_backbone_stays_unchanged_while_the_head_trains(data):
    keras.utils.set_random_seed(0)
    source = zoo.create_model("test_resnet", num_classes=10, input_shape=data["input_shape"],
                              preprocessing=data["contract"].to_config())
    original = [w.copy() for w in source.get_weights()]
    raw, y = data["x_train"][:64], keras.utils.to_categorical(np.arange(64) % 3, 3)
    x = keras.ops.convert_to_numpy(source.preprocess(raw))  # what the network sees
    new = transfer.replace_head(keras.models.clone_model(source.network), 3)
    new.set_weights([*source.get_weights()[:-2], *new.get_weights()[-2:]])
    assert transfer.freeze(new, "none") == []
    backbone = {v.path: keras.ops.convert_to_numpy(v).copy() for v in new.weights
                if not v.path.startswith("predictions")}
    head = keras.ops.convert_to_numpy(new.get_layer("predictions").kernel).copy()
    new.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy")
    new.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for v in new.weights:  # BatchNorm moving statistics included
        if v.path in backbone:
            assert np.array_equal(backbone[v.path], keras.ops.convert_to_numpy(v)), v.path
    assert not np.allclose(head, keras.ops.convert_to_numpy(new.get_layer("predictions").kernel))

    assert transfer.freeze(new, 1) == ["stage2_block1"]
    trainable = {layer.name for layer in new.layers if layer.trainable and layer.weights}
    assert trainable == {"stage2_block1_conv1", "stage2_block1_conv2", "stage2_block1_proj",
                         "predictions"}  # BatchNorm stays frozen
    tuned, report = transfer.finetune(source, raw, y, raw, y, head_epochs=1, finetune_epochs=1,
                                      unfreeze="all", batch_size=32)
    assert report["trainable_params_finetune"] > report["trainable_params_head"] == 27
    # The new model keeps the source's normalization and fit, for the new images.
    assert tuned.contract.mean == source.contract.mean and tuned.contract.class_names is None
    assert all(np.array_equal(a, b) for a, b in zip(original, source.get_weights()))


def test_finetune_script_on_a_saved_model(tmp_path, capsys):
    import finetune

    source = zoo.create_model("test_resnet", num_classes=10, input_shape=(28, 28, 1),
                              preprocessing={"image_shape": (28, 28, 1), "mean": [0.13],
                                             "std": [0.31]})
    source.save(tmp_path / "source.keras")
    common = ["--from", str(tmp_path / "source.keras"), "--dataset", "mnist_sample",
              "--classes", "5,6,7,8,9", "--limit-train", "64", "--limit-test", "64",
              "--verbose", "0"]
    report = finetune.main([*common, "--num-classes", "5", "--head-epochs", "1",
                            "--finetune-epochs", "1", "--unfreeze", "1", "--out",
                            str(tmp_path / "ft")])
    saved = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert saved["unfrozen_blocks"] == ["stage2_block1"] and saved["num_train"] == 64
    assert 0 <= report["test_accuracy"] <= 1
    model = keras.saving.load_model(tmp_path / "ft" / "model.keras")
    assert model.compute_output_shape((None, 28, 28, 1)) == (None, 5)
    assert model.contract.class_names == ("5", "6", "7", "8", "9")
    assert model.contract.mean == (0.13,)  # the source's normalization
    # --num-classes is the data's by default; --epochs is the head phase's.
    finetune.main([*common, "--epochs", "1", "--out", str(tmp_path / "ft2")])
    assert json.loads((tmp_path / "ft2" / "metrics.json").read_text())["head_epochs"] == 1
    with pytest.raises(SystemExit):
        finetune.main([*common, "--num-classes", "3", "--out", str(tmp_path / "ft3")])
    assert "argument --num-classes: 3 is not accepted; expected 5, the number of classes in " \
        "the data" in capsys.readouterr().err


def test_data_for_imagenet_weights_are_rgb_resized_and_normalized_as_theirs(tmp_path, capsys):
    from zoo.contract import FitToSize
    from zoo.training import builder

    weights = str(state_dicts.resnet18_file(tmp_path / "resnet18.safetensors"))
    config = TrainConfig(model="resnet18", dataset="mnist_sample", limit_train=8, limit_test=4,
                         val_split=0.0, weights=weights, image_size=40,
                         model_options={"widths": [4, 8, 8, 8]})
    data = prepare_data(config)
    raw = data["x_train"]
    assert raw.shape[1:] == (28, 28, 1) and raw.dtype == np.uint8  # kept as they are
    assert data["input_shape"] == (40, 40, 3)
    contract = data["contract"]
    assert contract.fit == "resize" and contract.image_shape == (28, 28, 1)
    np.testing.assert_allclose(contract.mean, catalog.IMAGENET_MEAN)
    model = builder.build_classifier(config, data)
    rgb = keras.ops.convert_to_numpy(FitToSize(40, 40, 3, "resize")(raw))
    assert np.array_equal(rgb[..., 0], rgb[..., 2])  # grayscale repeated
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.preprocess(raw)),
                               (rgb / 255 - np.float32(catalog.IMAGENET_MEAN))
                               / np.float32(catalog.IMAGENET_STD), rtol=1e-4, atol=1e-4)
    small = prepare_data(TrainConfig(model="resnet18", dataset="mnist_sample", limit_train=8,
                                     limit_test=4, val_split=0.0, weights=weights))
    assert small["input_shape"] == (32, 32, 3)  # resnet18's minimum, resized up
    assert "the model resizes the 28x28 images to 32x32 (bilinear" in capsys.readouterr().err


def test_finetune_script_from_imagenet_weights(tmp_path, capsys):
    """--from imagenet:resnet18 --weights FILE, offline; the run exports with
    the weights' preprocessing."""
    import finetune

    weights = state_dicts.resnet18_file(tmp_path / "resnet18.safetensors",
                                        widths=(64, 128, 256, 512))
    out = tmp_path / "ft"
    report = finetune.main(["--from", "imagenet:resnet18", "--weights", str(weights),
                            "--image-size", "32", "--num-classes", "5", "--dataset",
                            "mnist_sample", "--classes", "5,6,7,8,9", "--limit-train", "32",
                            "--limit-test", "16", "--head-epochs", "1", "--finetune-epochs", "1",
                            "--unfreeze", "1", "--verbose", "0", "--out", str(out)])
    assert report["unfrozen_blocks"] == ["stage4_block2"]
    config = json.loads((out / "config.json").read_text())
    assert config["weights"] == str(weights)
    model = keras.saving.load_model(out / "model.keras")
    assert model.network.input_shape == (None, 32, 32, 3)
    assert model.contract.fit == "resize" and model.contract.image_shape == (28, 28, 1)
    np.testing.assert_allclose(model.contract.mean, catalog.IMAGENET_MEAN)
    for argv, message in ((["--from", "imagenet:resnet18"], "needs --weights"),
                          (["--from", str(out / "model.keras"), "--weights", "keras"],
                           "--weights and --image-size go with --from imagenet:NAME"),
                          (["--from", "imagenet:lenet5", "--weights", "torchvision"],
                           "argument --from: 'imagenet:lenet5' is not accepted; expected "
                           "imagenet: and a model with ImageNet weights: alexnet, "),
                          (["--from", "imagenet:vgg11", "--weights", "keras"],
                           "argument --weights: weights='keras' is not accepted; expected None "
                           "for vgg11")):
        with pytest.raises(SystemExit):
            finetune.main([*argv, "--num-classes", "5", "--out", str(tmp_path / "bad")])
        assert message in capsys.readouterr().err
