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
from zoo.pretrained import catalog

import state_dicts

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train_lenet.py", "train.py"])
def test_script_end_to_end_on_real_mnist(script, tmp_path):
    if not (SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"the real MNIST copy is not at {SHARED_DATA / 'mnist'}")
    out = tmp_path / "run"
    extra = ["--model", "lenet5"] if script == "train.py" else []  # 28x28 padded to 32x32
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), "--data-dir", str(SHARED_DATA),
         "--limit-train", "400", "--limit-test", "200", "--epochs", "2", "--batch-size", "32",
         "--out", str(out),
         *extra],
        capture_output=True, text=True, env={**os.environ, **QUIET}, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    if script == "train.py":
        assert "lenet5 takes images of at least 32x32: the model pads the 28x28 images to 32x32" \
            in result.stderr
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert config["model"] == "lenet5" and config["image_size"] == 32
    assert config["data_source"].endswith("mnist") and config["num_train"] == 360
    assert len(config["contract"]["mean"]) == 1 and config["contract"]["image_shape"] == [28, 28, 1]
    assert metrics["epochs_completed"] == 2 and len(metrics["history"]["loss"]) == 2
    for key in ("test_loss", "test_accuracy", "wall_time_s", "train_images_per_sec"):
        assert metrics[key] > 0
    assert metrics["test_accuracy"] > 0.5  # two epochs on 360 digits already learn something
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = keras.saving.load_model(out / "model.keras")
    assert model.contract.image_shape == (28, 28, 1)
    assert model.network.input_shape == (None, 32, 32, 1)
    assert (out / "checkpoints" / "best.keras").exists()
    assert not (out / "backup").exists()  # removed once the run finished


@pytest.mark.parametrize("argv, message", [
    (["--optimizer", "adamax"], "argument --optimizer: invalid choice: 'adamax'"),
    (["--schedule", "linear"], "argument --schedule: invalid choice: 'linear'"),
    (["--epochs", "0"], "argument --epochs: '0' is not accepted; expected an integer >= 1"),
    (["--lr", "-1"], "argument --lr: '-1' is not accepted; expected a number > 0 or 'find'"),
    (["--lr", "fast"], "argument --lr: 'fast' is not accepted; expected a number > 0"),
    (["--val-split", "1.5"],
     r"argument --val-split: 1.5 is not accepted; expected a number in [0, 1)"),
    (["--lr-milestones", "5,200"],
     "argument --lr-milestones: (5.0, 200.0) is not accepted; expected increasing epochs"),
    (["--schedule", "step"],
     "argument --lr-milestones: () is not accepted; expected at least one epoch"),
    (["--option", "oops"], "argument --option: 'oops' is not accepted; expected KEY=VALUE"),
    (["--model", "resnet9000"],
     "argument --model: 'resnet9000' is not accepted; expected one of alexnet"),
    (["--dataset", "imagenet"], "argument --dataset: 'imagenet' is not accepted; expected one of"),
    (["--model", "resnet20", "--option", "depths=foo"],
     "argument --option: depths='foo' is not accepted; expected a non-empty list of integers"),
    (["--activation", "relux"], "argument --activation: 'relux' is not accepted; expected one of"),
    (["--init", "bogus"], "argument --init: 'bogus' is not accepted; expected one of"),
    (["--option", "stochastic_depth=0.1"], "argument --option: unknown model option(s) "
                                            "['stochastic_depth']"),
    (["--model", "resnet18", "--weights", "imagenet"],
     "argument --weights: 'imagenet' is not accepted; expected None, 'keras', 'torchvision', or "
     "the path of a weights file"),
    (["--model", "lenet5", "--weights", "torchvision"],
     "argument --weights: 'torchvision' is not accepted; expected None for lenet5"),
    (["--model", "resnet18", "--weights", "missing.pth"], "(.h5, .hdf5, .pth, .pt, .safetensors): "
                                                           "no such file"),
    (["--model", "resnet18", "--weights", "torchvision", "--option", "padding=same"],
     "argument --option: padding='same' is not accepted; expected 'symmetric' with the "
     "torchvision weights for resnet18"),
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
    assert "argument --dropout: 1.0 is not accepted; expected a number in [0, 1)" in \
        capsys.readouterr().err
    assert not (tmp_path / "run" / "log.csv").exists()


def test_training_from_imagenet_weights_offline(tmp_path, capsys):
    """--weights FILE: the model starts from the file (a narrow torchvision
    resnet18), the images are RGB, resized and normalized as the weights say,
    and the run records all of it."""
    weights = state_dicts.resnet18_file(tmp_path / "resnet18.safetensors")
    out = tmp_path / "run"
    cli.main(["--model", "resnet18", "--option", "widths=[4,8,8,8]", "--weights", str(weights),
              "--dataset", "mnist_sample", "--limit-train", "32", "--limit-test", "16",
              "--epochs", "1", "--batch-size", "16", "--out", str(out), "--verbose", "0"])
    assert "resnet18 takes images of at least 32x32: the model resizes the 28x28 images to " \
        "32x32" in capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["weights"] == str(weights) and config["input_shape"] == [32, 32, 3]
    np.testing.assert_allclose(config["contract"]["mean"], catalog.IMAGENET_MEAN)
    np.testing.assert_allclose(config["contract"]["std"], catalog.IMAGENET_STD)
    assert config["model_config"]["padding"] == "symmetric"
    model = keras.saving.load_model(out / "model.keras")
    assert model.network.pretrained["file"] == "resnet18.safetensors"
    assert model.network.pretrained["class_names"] is None  # 10 classes: the head was new
    # The model takes the raw grayscale digits: resized, repeated to RGB, normalized inside.
    assert model.contract.image_shape == (28, 28, 1) and model.contract.fit == "resize"
    np.testing.assert_allclose(model.contract.mean, catalog.IMAGENET_MEAN)
    assert model.contract.class_names == tuple(str(i) for i in range(10))


def test_recipes_parse_and_match_their_papers():
    for family in zoo.list_families():
        recipe = cli.recipe_of(family)
        config = cli.parse_config([], recipe=recipe)
        assert config.model == recipe["model"], family
    resnet = cli.parse_config([], recipe=cli.recipe_of("resnet"))
    assert (resnet.lr, resnet.batch_size, resnet.lr_milestones) == (0.1, 128, (82, 123))
    lenet = cli.parse_config(["--epochs", "3"], recipe=cli.recipe_of("lenet"))
    assert (lenet.image_size, lenet.epochs, lenet.out) == (32, 3, "runs/lenet5_mnist")
    assert np.isclose(cli.parse_config(["--model", "resnet20", "--option",
                                        "stochastic_depth=0.1"]).model_options[
        "stochastic_depth"], 0.1)


# Where each family's recipe takes MNIST: the padded side (None: 28x28 fits) and the
# step milestones scaled to one epoch.
FAMILY_ON_MNIST = {
    "lenet": (32, []), "alexnet": (None, [0.3333, 0.6667]),
    "vgg": (32, [0.4054, 0.6757, 0.8784]), "googlenet": (None, []), "resnet": (None, [0.5, 0.75]),
}
TF_NOISE = ("cuda", "cpu_feature_guard", "absl::InitializeLog", "oneDNN custom operations")


@pytest.mark.parametrize("family", list(FAMILY_ON_MNIST))
def test_every_family_script_runs_on_mnist_with_a_short_budget(family, tmp_path):
    data = (["--dataset", "mnist", "--data-dir", str(SHARED_DATA)]
            if (SHARED_DATA / "mnist").is_dir() else ["--dataset", "mnist_sample"])
    out = tmp_path / family
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / f"train_{family}.py"), *data, "--epochs", "1",
         "--limit-train", "96", "--limit-test", "32", "--batch-size", "32", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not [line for line in result.stderr.splitlines() if any(n in line for n in TF_NOISE)]
    size, milestones = FAMILY_ON_MNIST[family]
    config = json.loads((out / "config.json").read_text())
    assert config["image_size"] == size and config["lr_milestones"] == milestones
    assert json.loads((out / "metrics.json").read_text())["epochs_completed"] == 1


def test_recipes_scale_with_epochs_and_explicit_flags_win():
    resnet = zoo.get_family("resnet").recipe
    assert cli.parse_config(["--epochs", "2"], recipe=resnet).lr_milestones == (1.0, 1.5)
    assert cli.parse_config([], recipe=resnet).lr_milestones == (82, 123)
    explicit = cli.parse_config(["--epochs", "2", "--lr-milestones", "1"], recipe=resnet)
    assert explicit.lr_milestones == (1.0,)
    googlenet = cli.parse_config(["--epochs", "25"], recipe=zoo.get_family("googlenet").recipe)
    assert googlenet.lr_decay_epochs == 2.0  # 8 of 100 epochs
    assert cli.scale_recipe({"epochs": 10, "swa_start": 8, "warmup_epochs": 1}, 5) == {
        "swa_start": 4, "warmup_epochs": 0.5}


def test_messages_name_the_flag_as_typed(tmp_path, capsys):
    def error_of(argv):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
        return capsys.readouterr().err

    (tmp_path / "file").write_text("")
    base = ["--model", "test_resnet", "--dataset", "mnist_sample", "--limit-train", "64",
            "--epochs", "1"]
    assert "argument --image-size: 8 is not accepted; expected at least the images' 28x28" in \
        error_of([*base, "--image-size", "8", "--out", str(tmp_path / "a")])
    assert not (tmp_path / "a").exists()  # nothing written for a run that cannot start
    assert f"argument --out: '{tmp_path / 'file'}' is not accepted; expected a directory" in \
        error_of([*base, "--out", str(tmp_path / "file")])


def test_output_is_one_line_per_epoch_in_a_pipe():
    assert cli.parse_config([]).verbose == 2  # pytest captures stdout: not a terminal
    assert cli.parse_config(["--verbose", "1"]).verbose == 1
