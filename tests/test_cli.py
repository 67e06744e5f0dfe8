"""The training command line (zoo/cli/train.py) and the per-family scripts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import zoo
from zoo.cli import train as cli

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}


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


@pytest.mark.parametrize("argv, message", [
    (["--optimizer", "adamax"], "argument --optimizer: invalid choice: 'adamax'"),
    (["--schedule", "linear"], "argument --schedule: invalid choice: 'linear'"),
    (["--epochs", "0"], "argument --epochs: '0' is not accepted; expected an integer >= 1"),
    (["--lr", "-1"], "argument --lr: '-1' is not accepted; expected a number > 0 or 'find'"),
    (["--lr", "fast"], "argument --lr: 'fast' is not accepted; expected a number > 0"),
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
    for family in zoo.list_families():
        recipe = cli.recipe_of(family)
        config = cli.parse_config([], recipe=recipe)
        assert config.model == recipe["model"], family
    resnet = cli.parse_config([], recipe=cli.recipe_of("resnet"))
    assert (resnet.lr, resnet.batch_size, resnet.lr_milestones) == (0.1, 128, (82, 123))
    lenet = cli.parse_config(["--epochs", "3"], recipe=cli.recipe_of("lenet"))
    assert (lenet.image_size, lenet.epochs, lenet.out) == (32, 3, "runs/lenet5_mnist")
    assert np.isclose(cli.parse_config(["--option", "stochastic_depth=0.1"]).model_options[
        "stochastic_depth"], 0.1)
