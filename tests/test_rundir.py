"""The run directory's promises (zoo/training/rundir.py, docs/training.md): one commit
point, --overwrite starts clean, atomic writes survive a kill or a full disk, one run
per directory, a resume continues the same run. Faults are injected in the test
process where possible; two tests kill a child process with a real SIGKILL."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest

from ensembles import EnsembleModel
from zoo import training
from zoo.training import callbacks, evaluate, plots, rundir
from zoo.training.callbacks import ResumeStateError
from zoo.training.rundir import RunDir, RunDirError

from helpers import ROOT, kill_at_epoch, tiny_config


def weights_of(path):
    return keras.saving.load_model(path).get_weights()


def test_overwrite_starts_clean_and_never_combines_old_snapshots(tmp_path):
    first = tiny_config(tmp_path, ensemble="snapshot", members=3, epochs=3, lr=0.1)
    training.train(first)
    assert (tmp_path / "run" / "snapshots" / "snapshot_3.keras").exists()
    metrics = training.train(tiny_config(tmp_path, ensemble="snapshot", members=2, epochs=2,
                                         lr=0.1, overwrite=True))
    assert sorted(p.name for p in (tmp_path / "run" / "snapshots").iterdir()) == [
        "snapshot_1.keras", "snapshot_2.keras"]
    assert metrics["ensemble"]["members"] == 2
    assert len(keras.saving.load_model(tmp_path / "run" / "model.keras").members) == 2
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["ensemble"]["members"] == 2 and saved["epochs_completed"] == 2


def test_a_failed_backup_write_leaves_the_previous_state(tmp_path, monkeypatch):
    real_replace = os.replace

    def disk_full_at_epoch_3(src, dst):
        if str(dst).endswith("epoch_3.weights.h5"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", disk_full_at_epoch_3)
    with pytest.raises(OSError, match="No space left"):
        training.train(tiny_config(tmp_path, epochs=4))
    monkeypatch.setattr(os, "replace", real_replace)
    backup = tmp_path / "run" / "backup"
    assert json.loads((backup / "state.json").read_text())["epoch"] == 2
    assert sorted(p.name for p in backup.glob("*.weights.h5")) == ["epoch_2.weights.h5"]

    metrics = training.train(tiny_config(tmp_path, epochs=4))  # resumes after epoch 2
    assert metrics["history"]["epoch"] == [0.0, 1.0, 2.0, 3.0]
    assert not backup.exists()


def test_a_damaged_backup_is_reported_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(callbacks.EpochStats, "on_epoch_end", kill_at_epoch(2))
    with pytest.raises(KeyboardInterrupt):
        training.train(tiny_config(tmp_path, epochs=4))
    monkeypatch.undo()
    weights = tmp_path / "run" / "backup" / "epoch_2.weights.h5"
    weights.write_bytes(weights.read_bytes()[:200])  # a truncated write
    with pytest.raises(ResumeStateError, match=r"damaged \(epoch_2.weights.h5: .*pass "
                                               r"--overwrite .* or delete .*backup"):
        training.train(tiny_config(tmp_path, epochs=4))
    metrics = training.train(tiny_config(tmp_path, epochs=4, overwrite=True))
    assert metrics["epochs_completed"] == 4


def test_a_resume_with_other_settings_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(callbacks.EpochStats, "on_epoch_end", kill_at_epoch(1))
    with pytest.raises(KeyboardInterrupt):
        training.train(tiny_config(tmp_path, epochs=4))
    monkeypatch.undo()
    with pytest.raises(RunDirError, match=r"unfinished run with other settings \(epochs: 4 "
                                          r"there, 6 now\); run the same command"):
        training.train(tiny_config(tmp_path, epochs=6))
    # How it reports may change: verbose is not a setting of the computation.
    assert training.train(tiny_config(tmp_path, epochs=4, verbose=1))["epochs_completed"] == 4


def test_a_kill_after_the_last_epoch_resumes_there(tmp_path, monkeypatch):
    reference = training.train(tiny_config(tmp_path / "ref", epochs=3))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while evaluating")

    monkeypatch.setattr(evaluate, "evaluate_test", killed)
    with pytest.raises(KeyboardInterrupt):
        training.train(tiny_config(tmp_path, epochs=3))
    monkeypatch.undo()
    assert (tmp_path / "run" / "backup" / "state.json").exists()  # the training is not lost
    assert not (tmp_path / "run" / "metrics.json").exists()

    metrics = training.train(tiny_config(tmp_path, epochs=3))
    assert metrics["history"]["epoch"] == [0.0, 1.0, 2.0]  # no epoch trained again
    assert metrics["test_loss"] == reference["test_loss"]
    for ours, theirs in zip(weights_of(tmp_path / "run" / "model.keras"),
                            weights_of(tmp_path / "ref" / "run" / "model.keras")):
        np.testing.assert_array_equal(ours, theirs)


def test_metrics_come_last_so_a_run_without_curves_is_not_finished(tmp_path, monkeypatch):
    def no_curves(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(plots, "plot_curves", no_curves)
    with pytest.raises(OSError):
        training.train(tiny_config(tmp_path, epochs=1))
    assert not (tmp_path / "run" / "metrics.json").exists()
    monkeypatch.undo()
    training.train(tiny_config(tmp_path, epochs=1))  # not refused: it resumes and finishes
    assert (tmp_path / "run" / "curves.png").exists()


def test_a_second_run_on_the_same_directory_is_refused(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from zoo.training.rundir import RunDir
            with RunDir({str(tmp_path / 'run')!r}).lock():
                print("held", flush=True)
                time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=rf"in use by another run \(process {holder.pid}\)"):
            training.train(tiny_config(tmp_path, epochs=1))
    finally:
        holder.kill()
        holder.wait()
    # The OS released the dead holder's lock: no stale lock to clean by hand.
    assert training.train(tiny_config(tmp_path, epochs=1))["epochs_completed"] == 1
    with RunDir(tmp_path / "run").lock(), pytest.raises(RunDirError, match=str(os.getpid())):
        with RunDir(tmp_path / "run").lock():
            pass


def test_out_naming_a_file_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "taken").write_text("notes")
    with pytest.raises(RunDirError, match="out=.*taken' is not accepted; expected a directory"):
        training.train(tiny_config(tmp_path, out=str(tmp_path / "taken")))


def test_ensemble_script_refuses_a_run_directory_without_overwrite(tmp_path):
    training.train(tiny_config(tmp_path / "a", epochs=1))
    training.train(tiny_config(tmp_path / "b", epochs=1))
    script = [sys.executable, str(ROOT / "scripts" / "ensemble.py"), str(tmp_path / "a" / "run"),
              str(tmp_path / "b" / "run"), "--out", str(tmp_path / "a" / "run")]
    refused = subprocess.run(script, capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "already holds a run's files" in refused.stderr and "--overwrite" in refused.stderr
    assert isinstance(keras.saving.load_model(tmp_path / "a" / "run" / "model.keras"),
                      keras.Model) and (tmp_path / "a" / "run" / "metrics.json").exists()
    replaced = subprocess.run(script + ["--overwrite"], capture_output=True, text=True, cwd=ROOT)
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert not (tmp_path / "a" / "run" / "metrics.json").exists()  # not the old run's figures
    assert not (tmp_path / "a" / "run" / "checkpoints").exists()
    assert isinstance(keras.saving.load_model(tmp_path / "a" / "run" / "model.keras"),
                      EnsembleModel)


def test_trim_log_drops_partial_and_repeated_rows(tmp_path):
    run = RunDir(tmp_path).create()
    run.log_path.write_text("epoch,loss\n0,1.0\n1,0.5\n2,0.4\n2,0.3\n3,0.")
    run.trim_log(2)
    assert run.log_path.read_text().splitlines() == ["epoch,loss", "0,1.0", "1,0.5"]


KILLER = """
import os, signal, sys
from zoo.training import callbacks, evaluate, TrainConfig, train
when = sys.argv[1]
if when == "mid-epoch":
    original = callbacks.EpochStats.on_epoch_begin
    def begin(self, epoch, logs=None):
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, epoch, logs)
    callbacks.EpochStats.on_epoch_begin = begin
else:  # after the last epoch, before the test evaluation and the final save
    evaluate.evaluate_test = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
train(TrainConfig(model="test_resnet", dataset="mnist_sample", epochs=3, batch_size=32,
                  limit_train=128, limit_test=64, out=sys.argv[2], verbose=0, lr=0.05))
"""


@pytest.mark.parametrize("when", ["mid-epoch", "end-of-training"])
def test_a_real_sigkill_loses_no_finished_epoch(when, tmp_path):
    out = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", KILLER, when, str(out)], cwd=ROOT,
                            capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    state = json.loads((out / "backup" / "state.json").read_text())
    assert state["epoch"] == (2 if when == "mid-epoch" else 3)
    start = time.perf_counter()
    metrics = training.train(tiny_config(tmp_path, epochs=3))
    assert metrics["history"]["epoch"] == [0.0, 1.0, 2.0]
    assert rundir.RunDir(out).is_finished() and not (out / "backup").exists()
    assert time.perf_counter() - start < 120
