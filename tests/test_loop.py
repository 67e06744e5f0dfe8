"""One training run end to end (zoo/training/loop.py): resume, overwrite, options."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from zoo import training
from zoo.training import callbacks

from helpers import kill_at_epoch, tiny_config

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}


def test_killed_run_resumes_where_it_stopped(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, epochs=4)
    monkeypatch.setattr(callbacks.EpochStats, "on_epoch_end", kill_at_epoch(2))
    with pytest.raises(KeyboardInterrupt):
        training.train(config)
    out = Path(config.out)
    assert (out / "backup").exists() and not (out / "metrics.json").exists()
    monkeypatch.undo()

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


def test_test_loss_is_the_plain_cross_entropy(tmp_path):
    # Trained with label smoothing and an L2 penalty; the reported test loss is
    # neither: the mean negative log-likelihood of the true classes.
    config = tiny_config(tmp_path, epochs=1, label_smoothing=0.2, l2=1e-3)
    metrics = training.train(config)
    data = training.prepare_data(config)
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    probs = model.predict(data["x_test"], verbose=0)
    nll = -np.mean(np.log(np.clip(probs[np.arange(len(probs)), data["y_test"].argmax(-1)],
                                  1e-7, 1)))
    assert metrics["test_loss"] == pytest.approx(nll, rel=1e-5)


def test_normalization_statistics_exclude_the_validation_images():
    from augment import datasets

    config = training.TrainConfig(dataset="mnist_sample", limit_train=200, val_split=0.5,
                                  image_size=None)
    data = training.prepare_data(config)
    # lenet5 takes 32x32: the statistics are those of the padded training images.
    assert data["input_shape"] == (32, 32, 1) and data["x_train"].shape[1:] == (28, 28, 1)
    mean, std = datasets.channel_stats(data["x_train"], (32, 32))
    contract = data["contract"]
    assert contract.mean == pytest.approx(mean.tolist()) and contract.std == pytest.approx(
        std.tolist())
    everything = datasets.channel_stats(np.concatenate([data["x_train"], data["x_val"]]),
                                        (32, 32))[0]
    assert contract.mean != pytest.approx(everything.tolist(), abs=1e-6)


def test_small_images_are_padded_for_checks_and_the_tuner(tmp_path, capsys):
    from zoo.search import run as search_run
    from zoo.training import babysit

    config = training.TrainConfig(model="lenet5", dataset="mnist_sample", limit_train=64,
                                  limit_test=32, epochs=1, batch_size=32, image_size=None,
                                  out=str(tmp_path / "search"), verbose=0)
    results = babysit.run_checks(config, examples=8, max_steps=2, log=None)
    assert [r.name for r in results] == ["initial loss", "regularization", "overfit"]
    assert "the model pads the 28x28 images to 32x32" in capsys.readouterr().err
    rows = search_run.run_search("lenet", config, tmp_path / "search", max_trials=1,
                                 scale="tiny", verbose=0, run_eagerly=True)
    assert len(rows) == 1 and rows[0]["val_accuracy"] is not None


def test_check_runs_on_googlenet_with_auxiliary_heads(tmp_path):
    from zoo.training import babysit

    config = tiny_config(tmp_path, model="test_googlenet", lr=0.01, optimizer="adam")
    data = training.prepare_data(config)
    first, _ = babysit.initial_loss_check(config, data["x_train"], data["y_train"],
                                          data["num_classes"], data["input_shape"], batch=16)
    assert first.name == "initial loss" and np.isfinite(first.values["loss"])
