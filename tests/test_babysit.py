"""Babysitting the learning process: sanity checks, LR finder, monitors, transfer."""

import csv
import json
import math
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import zoo
from zoo import babysit, cli, monitors, training, transfer
from zoo.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def tiny_config(tmp_path, **overrides):
    settings = dict(model="test_resnet", dataset="mnist_sample", epochs=1, batch_size=32,
                    limit_train=128, limit_test=64, out=str(tmp_path / "run"), verbose=0,
                    optimizer="adam", lr=0.01, val_split=0.25)
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def data():
    return training.prepare_data(TrainConfig(dataset="mnist_sample", limit_train=128,
                                             limit_test=64, val_split=0.25))


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

    monkeypatch.setattr(training, "build_model", huge_build)


def test_checks_flag_a_huge_init_and_a_huge_learning_rate(tmp_path, data, monkeypatch):
    blow_up_init(monkeypatch)
    huge = tiny_config(tmp_path, model="test_vgg", batch_norm=False)
    first, _ = babysit.initial_loss_check(huge, data["x_train"], data["y_train"], 10,
                                          data["input_shape"])
    assert first.status == "fail" and "far too high" in first.message, first.line()
    monkeypatch.undo()
    wild = tiny_config(tmp_path, model="test_vgg", optimizer="sgd", lr=10.0, batch_norm=False)
    result = babysit.overfit_check(wild, data["x_train"], data["y_train"], 10,
                                   data["input_shape"], examples=20, max_steps=15)
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
    model = training.build_model(config, 10, data["input_shape"])
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


def test_monitor_summarizes_many_layers_and_finds_dead_relus(data):
    keras.utils.set_random_seed(0)
    model = zoo.create_model("test_resnet", num_classes=10, input_shape=data["input_shape"])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    monitor = monitors.TrainingMonitor(data["x_val"][:32], data["y_val"][:32], update_every=1,
                                       max_layers=2)
    history = model.fit(data["x_train"][:64], data["y_train"][:64], batch_size=32, epochs=1,
                        callbacks=[monitor], verbose=0).history
    assert {"update_ratio/median", "grad_norm/max", "act_std/min", "dead_frac/mean"} <= set(
        history)
    assert not any(key.startswith("update_ratio/conv") for key in history)
    # A ReLU layer fed only negative numbers: every unit dead.
    inputs = keras.Input((4,))
    dead = keras.Model(inputs, keras.layers.Activation("relu", name="x_act")(
        keras.layers.Dense(3, kernel_initializer="zeros", bias_initializer=keras.initializers
                           .Constant(-1.0), name="d")(inputs)))
    stats = monitors.activation_stats(dead, np.ones((8, 4), "float32"))
    assert stats["x_act"]["dead_frac"] == 1.0


def test_small_init_collapses_tanh_activations_and_he_keeps_relu_spread(tmp_path):
    small = monitors.init_activation_stats("test_vgg", "small_normal", "tanh", batch=16)
    he = monitors.init_activation_stats("test_vgg", "he", "relu", batch=16)
    small_std = [s["std"] for s in small.values()]
    he_std = [s["std"] for s in he.values()]
    assert small_std[-1] < 1e-3 * small_std[0] and min(he_std) > 0.1
    import plot_activations

    plot_activations.main(["--model", "test_vgg", "--batch", "8", "--png",
                           str(tmp_path / "a.png")])
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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


@pytest.mark.parametrize("argv, message", [
    (["--lr", "fast"], "argument --lr: 'fast' is not accepted; expected a number or 'find'"),
    (["--lr", "0"], "lr=0.0 is not accepted; expected a number > 0.0"),
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
     "from='missing.keras' is not accepted; expected an existing .keras file"),
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
