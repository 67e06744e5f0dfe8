"""Sanity checks and the LR finder (zoo/training/babysit.py, check.py, lr_find.py)."""

import csv
import json
import math
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import zoo
from zoo import training
from zoo.cli import train as cli
from zoo.training import TrainConfig, babysit, builder, monitors, transfer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def tiny_config(tmp_path, **overrides):
    settings = dict(model="test_resnet", dataset="mnist_sample", epochs=1, batch_size=32,
                    limit_train=128, limit_test=64, out=str(tmp_path / "run"), verbose=0,
                    optimizer="adam", lr=0.01, val_split=0.25)
    return TrainConfig(**{**settings, **overrides})


def test_checks_pass_on_a_healthy_model(tmp_path):
    import check

    code = check.main(["--model", "test_vgg", "--dataset", "mnist_sample", "--limit-train", "128",
                       "--optimizer", "adam", "--lr", "0.01", "--examples", "20",
                       "--max-steps", "250", "--json", str(tmp_path / "checks.json")])
    results = json.loads((tmp_path / "checks.json").read_text())
    by_name = {r["name"]: r for r in results}
    assert code == 0 and [r["status"] for r in results] == ["ok", "ok", "ok"], results
    assert by_name["initial loss"]["values"]["loss"] == pytest.approx(math.log(10), rel=0.5)
    assert by_name["regularization"]["values"]["regularized_loss"] > by_name["regularization"][
        "values"]["loss"]
    assert by_name["overfit"]["values"]["train_accuracy"] >= babysit.OVERFIT_TARGET
    assert 1 <= by_name["overfit"]["values"]["steps"] <= 250


def blow_up_init(monkeypatch, factor=3.0):
    """Every kernel of the models `training.build_model` makes scaled by `factor`."""
    build = training.build_model

    def huge_build(*args, **kwargs):
        model = build(*args, **kwargs)
        for layer in monitors.weighted_layers(model):
            layer.kernel.assign(layer.kernel * factor)
        return model

    monkeypatch.setattr(builder, "build_model", huge_build)


def test_checks_flag_a_huge_init_and_a_huge_learning_rate(tmp_path, data, monkeypatch):
    blow_up_init(monkeypatch)
    huge = tiny_config(tmp_path, model="test_vgg", batch_norm=False)
    first, _ = babysit.initial_loss_check(huge, data["x_train"], data["y_train"], 10,
                                          data["input_shape"], data["contract"])
    assert first.status == "fail" and "far too high" in first.message, first.line()
    monkeypatch.undo()
    wild = tiny_config(tmp_path, model="test_vgg", optimizer="sgd", lr=10.0, batch_norm=False)
    result = babysit.overfit_check(wild, data["x_train"], data["y_train"], 10,
                                   data["input_shape"], data["contract"], examples=20,
                                   max_steps=15)
    assert result.status == "fail" and "could not overfit 20 examples with sgd lr=10" in \
        result.message
    with pytest.raises(babysit.SanityCheckError, match="overfit"):
        babysit.raise_on_failure([result])


def test_check_flag_stops_training_with_a_clear_message(tmp_path, monkeypatch, capsys):
    blow_up_init(monkeypatch)
    monkeypatch.setattr(babysit, "overfit_check", lambda *a, **k: babysit.CheckResult(
        "overfit", "ok", "skipped here", {}))
    argv = ["--model", "test_vgg", "--dataset", "mnist_sample", "--limit-train", "64",
            "--epochs", "1", "--no-bn", "--check", "--out",
            str(tmp_path / "run")]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "sanity check failed" in err and "initial loss" in err
    assert not (tmp_path / "run" / "log.csv").exists()


def test_lr_finder_suggests_a_rate_inside_the_sweep(tmp_path, data):
    config = tiny_config(tmp_path, optimizer="momentum")
    keras.utils.set_random_seed(0)
    model = training.build_model(config, 10, data["input_shape"], data["contract"])
    before = [w.copy() for w in model.get_weights()]
    result = babysit.find_lr(model, data["x_train"], data["y_train"], config, min_lr=1e-5,
                             max_lr=10.0, num_steps=40, plot_path=tmp_path / "lr.png")
    assert 1e-5 <= result.suggested_lr <= 10.0
    assert result.suggested_lr == pytest.approx(min(result.min_loss_lr / 10, 10.0))
    assert 2 <= len(result.lrs) <= 40 and result.lrs == sorted(result.lrs)
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_suggestion_stays_in_range_when_the_loss_is_lowest_at_the_start():
    lrs = [1e-4, 1e-3, 1e-2]
    assert babysit.suggest_lr(lrs, [1.0, 2.0, 3.0], 1e-4, 1e-2) == (1e-4, 1e-4)
    assert babysit.suggest_lr(lrs, [float("nan")] * 3, 1e-4, 1e-2)[0] == 1e-4


def test_lr_find_and_monitor_flags_in_a_training_run(tmp_path, monkeypatch):
    monkeypatch.setattr(babysit, "find_lr", _short_find_lr(babysit.find_lr))
    config = cli.parse_config(["--model", "test_resnet", "--dataset", "mnist_sample",
                               "--limit-train", "128", "--limit-test", "64", "--epochs", "2",
                               "--batch-size", "32", "--lr", "find", "--monitor",
                               "--verbose", "0", "--out", str(tmp_path / "run")])
    assert config.lr == "find" and config.monitor
    metrics = training.train(config)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["lr"] == saved["lr_finder"]["suggested_lr"]
    assert saved["lr_finder"]["min_lr"] <= saved["lr"] <= saved["lr_finder"]["max_lr"]
    assert (tmp_path / "run" / "lr_finder.png").exists()
    with open(tmp_path / "run" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    columns = rows[0].keys()
    for layer in ("conv1", "stage2_block1_conv2", "predictions"):
        assert f"update_ratio/{layer}" in columns and f"grad_norm/{layer}" in columns
    for key in ("dead_frac", "act_std", "act_mean"):
        assert f"{key}/stage1_block1_out_act" in columns
    for row in rows:
        assert 0 < float(row["update_ratio/conv1"]) < 1
        assert float(row["grad_norm/predictions"]) > 0
        assert 0 <= float(row["dead_frac/stage1_block1_out_act"]) <= 1
    assert len(columns) < 60
    assert metrics["history"]["update_ratio/conv1"]


def _short_find_lr(find_lr):
    def short(*args, **kwargs):
        return find_lr(*args, **{**kwargs, "num_steps": 20})
    return short


@pytest.mark.parametrize("argv, message", [
    (["--lr", "fast"], "argument --lr: 'fast' is not accepted; expected a number > 0 or 'find'"),
    (["--lr", "0"], "argument --lr: '0' is not accepted; expected a number > 0 or 'find'"),
])
def test_bad_lr_flags_stop_at_argument_parsing(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_config(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert cli.parse_config(["--lr", "find"]).lr == "find"


@pytest.mark.parametrize("script, argv, message", [
    ("check", ["--examples", "1"], "examples=1 is not accepted; expected an integer in [2, 1000]"),
    ("check", ["--lr", "fast"], "argument --lr: 'fast' is not accepted"),
    ("lr_find", ["--min-lr", "1", "--max-lr", "0.1"],
     "min_lr=1.0 is not accepted; expected a number in (0, max_lr=0.1)"),
    ("plot_activations", ["--model", "vgg99"], "model='vgg99' is not accepted; expected one of"),
    ("finetune", ["--from", "x.keras", "--num-classes", "0"],
     "argument --num-classes: '0' is not accepted; expected an integer >= 1"),
    ("finetune", ["--from", "x.keras", "--num-classes", "5", "--unfreeze", "some"],
     "argument --unfreeze: 'some' is not accepted; expected none, all or a number"),
    ("finetune", ["--from", "missing.keras", "--num-classes", "5"],
     "argument --from: model='missing.keras' is not accepted; expected an existing .keras file"),
])
def test_bad_script_arguments_stop_at_parsing(script, argv, message, capsys):
    module = __import__(script)
    with pytest.raises(SystemExit) as exit_info:
        module.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_library_arguments_name_the_option():
    with pytest.raises(ValueError, match="unfreeze='some' is not accepted; expected 'none'"):
        transfer.freeze(zoo.create_model("test_vgg"), "some")
    with pytest.raises(ValueError, match="min_lr=1 is not accepted"):
        babysit.LRRangeTest(min_lr=1, max_lr=0.1)
    with pytest.raises(ValueError, match="update_every=0 is not accepted"):
        monitors.TrainingMonitor(None, None, update_every=0)
