"""`TrainConfig` (zoo/training/config.py): validation and the JSON round-trip."""

import json

import pytest

from zoo.training import RunDir, TrainConfig


def test_config_round_trips_through_json(tmp_path):
    config = TrainConfig(model="test_resnet", lr_milestones=(3, 6), classes=(5, 6, 7),
                         model_options={"widths": [4, 8]}, augment_options={"flip": False},
                         schedule="step", epochs=8)
    restored = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())), strict=True)
    assert restored == config and isinstance(restored.lr_milestones, tuple)

    run = RunDir(tmp_path / "run").create()
    run.write_config(config, num_classes=3, normalization={"mean": [0.1], "std": [0.3]})
    assert run.read_train_config() == config
    assert run.read_config()["num_classes"] == 3


def test_unknown_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="config='epoch' is not accepted; expected one of"):
        TrainConfig.from_dict({"epoch": 3}, strict=True)
    assert TrainConfig.from_dict({"epochs": 3, "num_classes": 10}).epochs == 3


@pytest.mark.parametrize("settings, message", [
    ({"optimizer": "adamax"}, "optimizer='adamax' is not accepted; expected one of sgd"),
    ({"lr": 0}, "lr=0 is not accepted; expected a number > 0"),
    ({"warmup_epochs": 10, "epochs": 10}, "warmup_epochs=10 is not accepted; expected fewer"),
    ({"ema": 0.9, "swa_start": 2}, "choose one kind of weight averaging"),
    ({"classes": (1, 1)}, None),  # checked against the dataset when it loads
])
def test_validation_names_the_setting(settings, message):
    config = TrainConfig(**settings)
    if message is None:
        config.validate()
        return
    with pytest.raises(ValueError, match=message):
        config.validate()
