"""One training run end to end (zoo/training/loop.py): resume, overwrite, options."""

import json
from pathlib import Path

import pytest
from helpers import tiny_config

from zoo import training
from zoo.training import callbacks

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}


def test_killed_run_resumes_where_it_stopped(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, epochs=4)
    original = callbacks.EpochStats.on_epoch_end

    def crash_at_epoch_2(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt("simulated kill")
        original(self, epoch, logs)

    monkeypatch.setattr(callbacks.EpochStats, "on_epoch_end", crash_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        training.train(config)
    out = Path(config.out)
    assert (out / "backup").exists() and not (out / "metrics.json").exists()
    monkeypatch.setattr(callbacks.EpochStats, "on_epoch_end", original)

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
