"""Ensembles in training runs (zoo/training/ensemble_runs.py, the flags)."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from ensembles import EnsembleModel
from zoo import training
from zoo.cli import train as cli
from zoo.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 10


def tiny_run(tmp_path, name, **overrides):
    settings = dict(model="test_vgg", dataset="synthetic", limit_train=96, limit_test=48,
                    epochs=2, batch_size=32, lr=0.05, verbose=0, out=str(tmp_path / name))
    return TrainConfig(**{**settings, **overrides})


def test_snapshot_ema_and_swa_flags_in_training_runs(tmp_path):
    snapshot = training.train(tiny_run(tmp_path, "snap", ensemble="snapshot", members=2))
    assert snapshot["ensemble"]["members"] == 2
    assert len(list((tmp_path / "snap" / "snapshots").glob("snapshot_*.keras"))) == 2
    loaded = keras.saving.load_model(tmp_path / "snap" / "model.keras")
    assert isinstance(loaded, EnsembleModel) and len(loaded.members) == 2

    training.train(tiny_run(tmp_path, "ema", ema=0.9))
    optimizer = keras.saving.load_model(tmp_path / "ema" / "model.keras").optimizer
    assert optimizer.use_ema and optimizer.ema_momentum == pytest.approx(0.9)
    swa = training.train(tiny_run(tmp_path, "swa", swa_start=2, swa_lr=0.01))
    # The schedule holds the SWA rate from the start of epoch 2 (the logged lr
    # is the next step's); the average was taken, then the state went away.
    assert swa["history"]["lr"] == pytest.approx([0.01, 0.01])
    assert not (tmp_path / "swa" / "backup").exists()  # the SWA state went with the backup


def test_independent_members_are_separate_resumable_jobs(tmp_path):
    config = tiny_run(tmp_path, "ind", ensemble="independent", members=2, epochs=1)
    member_1 = training.train(tiny_run(tmp_path, "ind", ensemble="independent", members=2,
                                       epochs=1, member_index=1))
    assert (tmp_path / "ind" / "member_1" / "model.keras").exists()
    assert not (tmp_path / "ind" / "member_0").exists()  # only the member asked for
    stamp = (tmp_path / "ind" / "member_1" / "metrics.json").stat().st_mtime
    metrics = training.train(config)
    assert (tmp_path / "ind" / "member_1" / "metrics.json").stat().st_mtime == stamp  # reused
    report = metrics["ensemble"]
    assert len(report["member_accuracy"]) == 2 and 0.0 <= report["disagreement"] <= 1.0
    assert report["member_test_accuracy"][1] == pytest.approx(member_1["test_accuracy"])
    saved = json.loads((tmp_path / "ind" / "config.json").read_text())
    assert saved["ensemble"] == "independent" and "contract" in saved

    # scripts/ensemble.py combines finished runs (here the two members).
    out = tmp_path / "combined"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ensemble.py"), str(tmp_path / "ind" / "member_0"),
         str(tmp_path / "ind" / "member_1"), "--method", "geometric", "--evaluate",
         "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ensemble (geometric): test accuracy" in result.stdout
    assert isinstance(keras.saving.load_model(out / "model.keras"), EnsembleModel)


@pytest.mark.parametrize("argv, message", [
    (["--ensemble", "bagging"], "invalid choice: 'bagging'"),
    (["--ensemble", "snapshot", "--members", "3", "--epochs", "10"], "divides epochs=10"),
    (["--members", "0"], "'0' is not accepted; expected an integer >= 1"),
    (["--ema", "1.5"], "argument --ema: 1.5 is not accepted; expected a decay in (0, 1)"),
    (["--swa-start", "30", "--epochs", "10"], "argument --swa-start: 30 is not accepted"),
    (["--swa-lr", "0.01"], "argument --swa-lr: 0.01 is not accepted; expected None unless"),
    (["--ema", "0.99", "--swa-start", "2"], "choose one kind of weight averaging"),
])
def test_bad_ensemble_flags_stop_at_argument_parsing(argv, message, capsys):
    with pytest.raises(SystemExit):
        cli.parse_config(argv)
    assert message in capsys.readouterr().err
