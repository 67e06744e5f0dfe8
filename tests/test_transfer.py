"""Transfer learning (zoo/training/transfer.py, scripts/finetune.py)."""

import json
import sys
from pathlib import Path

import keras
import numpy as np

import zoo
from zoo.training import transfer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def test_frozen_backbone_stays_unchanged_while_the_head_trains(data):
    keras.utils.set_random_seed(0)
    source = zoo.create_model("test_resnet", num_classes=10, input_shape=data["input_shape"])
    original = [w.copy() for w in source.get_weights()]
    x, y = data["x_train"][:64], keras.utils.to_categorical(np.arange(64) % 3, 3)
    new = transfer.replace_head(keras.models.clone_model(source), 3)
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
    _, report = transfer.finetune(source, x, y, x, y, head_epochs=1, finetune_epochs=1,
                                  unfreeze="all", batch_size=32)
    assert report["trainable_params_finetune"] > report["trainable_params_head"] == 27
    assert all(np.array_equal(a, b) for a, b in zip(original, source.get_weights()))


def test_finetune_script_on_a_saved_model(tmp_path):
    import finetune

    source = zoo.create_model("test_resnet", num_classes=10, input_shape=(28, 28, 1))
    source.save(tmp_path / "source.keras")
    report = finetune.main(["--from", str(tmp_path / "source.keras"), "--num-classes", "5",
                            "--dataset", "mnist_sample", "--classes", "5,6,7,8,9",
                            "--limit-train", "64", "--limit-test", "64", "--head-epochs", "1",
                            "--finetune-epochs", "1", "--unfreeze", "1", "--verbose", "0",
                            "--out", str(tmp_path / "ft")])
    saved = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert saved["unfrozen_blocks"] == ["stage2_block1"] and saved["num_train"] == 64
    assert 0 <= report["test_accuracy"] <= 1
    model = keras.saving.load_model(tmp_path / "ft" / "model.keras")
    assert model.output_shape == (None, 5)
