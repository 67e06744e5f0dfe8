"""The training core and the per-family scripts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from zoo import cli, training
from zoo.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}


def tiny_config(tmp_path, **overrides):
    settings = dict(model="test_resnet", dataset="mnist_sample", image_size=None, epochs=2,
                    batch_size=32, limit_train=128, limit_test=64, out=str(tmp_path / "run"),
                    verbose=0, lr=0.05)
    return TrainConfig(**{**settings, **overrides})


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train_lenet.py", "train.py"])
def test_script_end_to_end_on_real_mnist(script, tmp_path):
    if not (SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"the real MNIST copy is not at {SHARED_DATA / 'mnist'}")
    out = tmp_path / "run"
    extra = ["--model", "lenet5", "--image-size", "32"] if script == "train.py" else []
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), "--data-dir", str(SHARED_DATA),
         "--limit-train", "400", "--limit-test", "200", "--epochs", "2", "--batch-size", "32",
         "--out", str(out),
         *extra],
        capture_output=True, text=True, env={**os.environ, **QUIET}, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert config["model"] == "lenet5" and config["image_size"] == 32
    assert config["data_source"].endswith("mnist") and config["num_train"] == 360
    assert len(config["normalization"]["mean"]) == 1
    assert metrics["epochs_completed"] == 2 and len(metrics["history"]["loss"]) == 2
    for key in ("test_loss", "test_accuracy", "wall_time_s", "train_images_per_sec"):
        assert metrics[key] > 0
    assert metrics["test_accuracy"] > 0.5  # two epochs on 360 digits already learn something
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = keras.saving.load_model(out / "model.keras")
    assert model.input_shape == (None, 32, 32, 1)
    assert (out / "checkpoints" / "best.keras").exists()
    assert not (out / "backup").exists()  # removed once the run finished


def test_killed_run_resumes_where_it_stopped(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, epochs=4)
    original = training.EpochStats.on_epoch_end

    def crash_at_epoch_2(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt("simulated kill")
        original(self, epoch, logs)

    monkeypatch.setattr(training.EpochStats, "on_epoch_end", crash_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        training.train(config)
    out = Path(config.out)
    assert (out / "backup").exists() and not (out / "metrics.json").exists()
    monkeypatch.setattr(training.EpochStats, "on_epoch_end", original)

    metrics = training.train(tiny_config(tmp_path, epochs=4))
    # Epochs 0 and 1 ran before the kill; the resumed run did 2 and 3 only.
    assert metrics["history"]["epoch"] == [0.0, 1.0, 2.0, 3.0]
    assert metrics["epochs_completed"] == 4
    assert not (out / "backup").exists()


def test_finished_run_is_not_overwritten(tmp_path):
    training.train(tiny_config(tmp_path, epochs=1))
    with pytest.raises(FileExistsError, match="already holds a finished run"):
        training.train(tiny_config(tmp_path, epochs=1))
    training.train(tiny_config(tmp_path, epochs=1, overwrite=True))


def test_options_reach_the_model(tmp_path):
    config = tiny_config(tmp_path, epochs=1, activation="prelu", init="xavier", batch_norm=False,
                         l2=1e-4, dropout=0.2, label_smoothing=0.1, optimizer="adamw",
                         weight_decay=1e-4,
                         model_options={"zero_init_residual": True})
    training.train(config)
    model_config = json.loads((Path(config.out) / "config.json").read_text())["model_config"]
    assert model_config["activation"] == "prelu"
    assert model_config["kernel_initializer"] == "glorot_uniform"
    assert model_config["batch_norm"] is False and model_config["dropout"] == 0.2
    assert model_config["kernel_regularizer"] == {"l1": 0.0, "l2": 1e-4}
    assert model_config["zero_init_residual"] is True


@pytest.mark.parametrize("name, cls, extra", [
    ("sgd", keras.optimizers.SGD, {"momentum": 0.0, "nesterov": False}),
    ("momentum", keras.optimizers.SGD, {"momentum": 0.9, "nesterov": False}),
    ("nesterov", keras.optimizers.SGD, {"momentum": 0.9, "nesterov": True}),
    ("adagrad", keras.optimizers.Adagrad, {}),
    ("rmsprop", keras.optimizers.RMSprop, {"rho": 0.9}),
    ("adam", keras.optimizers.Adam, {}),
    ("adamw", keras.optimizers.AdamW, {"weight_decay": 0.05}),
])
def test_optimizers_by_name(name, cls, extra):
    optimizer = training.make_optimizer(TrainConfig(optimizer=name, weight_decay=0.05), 10)
    assert type(optimizer) is cls
    config = optimizer.get_config()
    for key, value in extra.items():
        assert config[key] == pytest.approx(value)
    assert config["weight_decay"] == pytest.approx(0.05)


def lr_at(config, step, steps_per_epoch=10):
    schedule = training.make_schedule(config, steps_per_epoch)
    return schedule if isinstance(schedule, float) else float(schedule(step))


def test_schedules_have_the_textbook_values():
    step = TrainConfig(schedule="step", lr=0.1, epochs=10, lr_milestones=(4, 8))
    assert [lr_at(step, s) for s in (0, 39, 40, 79, 80)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001])
    exp = TrainConfig(schedule="exponential", lr=0.1, lr_gamma=0.5, lr_decay_epochs=2, epochs=10)
    assert lr_at(exp, 40) == pytest.approx(0.1 * 0.5 ** 2)
    cos = TrainConfig(schedule="cosine", lr=0.1, epochs=10)
    assert lr_at(cos, 0) == pytest.approx(0.1) and lr_at(cos, 50) == pytest.approx(0.05)
    assert lr_at(cos, 100) == pytest.approx(0.0, abs=1e-7)
    restarts = TrainConfig(schedule="cosine_restarts", lr=0.1, restart_epochs=2, epochs=10)
    assert lr_at(restarts, 19) < 0.01 and lr_at(restarts, 20) == pytest.approx(0.1)
    warm = TrainConfig(schedule="cosine", lr=0.1, epochs=10, warmup_epochs=2)
    assert lr_at(warm, 0) == pytest.approx(0.1 / 20) and lr_at(warm, 9) == pytest.approx(0.05)
    assert lr_at(warm, 20) == pytest.approx(0.1) and lr_at(warm, 100) == pytest.approx(0.0, abs=1e-7)
    assert lr_at(TrainConfig(schedule="constant", lr=0.3, warmup_epochs=1), 5) == pytest.approx(0.3 * 6 / 10)


def test_warmup_schedule_round_trips_through_keras_serialization():
    schedule = training.make_schedule(TrainConfig(schedule="step", lr=0.1, epochs=10,
                                                  lr_milestones=(5,), warmup_epochs=1), 10)
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    for step in (0, 5, 10, 60):
        assert float(restored(step)) == pytest.approx(float(schedule(step)))


@pytest.mark.parametrize("argv, message", [
    (["--optimizer", "adamax"], "argument --optimizer: invalid choice: 'adamax'"),
    (["--schedule", "linear"], "argument --schedule: invalid choice: 'linear'"),
    (["--epochs", "0"], "argument --epochs: '0' is not accepted; expected an integer >= 1"),
    (["--lr", "-1"], "lr=-1.0 is not accepted; expected a number > 0.0"),
    (["--lr", "fast"], "argument --lr: 'fast' is not accepted; expected a number"),
    (["--val-split", "1.5"], r"val_split=1.5 is not accepted; expected a number in [0, 1)"),
    (["--lr-milestones", "5,200"], "lr_milestones=(5.0, 200.0) is not accepted; expected increasing epochs"),
    (["--schedule", "step"], "lr_milestones=() is not accepted; expected at least one epoch"),
    (["--option", "oops"], "argument --option: 'oops' is not accepted; expected KEY=VALUE"),
    (["--model", "resnet9000"], "model='resnet9000' is not accepted; expected one of alexnet"),
    (["--dataset", "imagenet"], "dataset='imagenet' is not accepted; expected one of"),
])
def test_bad_flags_stop_at_argument_parsing(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_config(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_model_option_fails_before_training(tmp_path, capsys):
    argv = ["--model", "test_resnet", "--dataset", "mnist_sample", "--dropout", "1",
            "--out", str(tmp_path / "run"), "--epochs", "1", "--limit-train", "64"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "dropout=1.0 is not accepted; expected a number in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "run" / "log.csv").exists()


def test_recipes_parse_and_match_their_papers():
    for family, recipe in cli.RECIPES.items():
        config = cli.parse_config([], recipe=recipe)
        assert config.model == recipe["model"], family
    resnet = cli.parse_config([], recipe=cli.RECIPES["resnet"])
    assert (resnet.lr, resnet.batch_size, resnet.lr_milestones) == (0.1, 128, (82, 123))
    lenet = cli.parse_config(["--epochs", "3"], recipe=cli.RECIPES["lenet"])
    assert (lenet.image_size, lenet.epochs, lenet.out) == (32, 3, "runs/lenet5_mnist")
    assert np.isclose(cli.parse_config(["--option", "stochastic_depth=0.1"]).model_options[
        "stochastic_depth"], 0.1)
