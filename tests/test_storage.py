"""A full disk or a refused permission at any write (zoo/cli/storage.py,
zoo/atomic.py): one line naming the path, the cause and what to do, exit
status 1, nothing half-written, and the same command resumes once there is
room. Faults are injected at each write site in the test process; one test
fills a real 400 KB tmpfs where the machine lets a user mount one."""

import contextlib
import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo import atomic
from zoo.cli import storage
from zoo.cli import train as train_cli
from zoo.training import callbacks

from helpers import ROOT

ARGV = ["--model", "test_resnet", "--dataset", "mnist_sample", "--epochs", "2",
        "--batch-size", "64", "--limit-train", "64", "--limit-test", "32", "--lr", "0.05",
        "--verbose", "0", "--seed", "3"]
RESUME_HINT = "run the same command again: it resumes from the last complete epoch"


def test_messages_name_the_path_the_cause_and_what_to_do():
    full = OSError(errno.ENOSPC, "No space left on device", "runs/a/model.keras")
    assert storage.storage_message(full) == (
        "runs/a/model.keras: no space left on the device; free some space or choose a folder "
        f"on another disk, then {RESUME_HINT}")
    denied = PermissionError(errno.EACCES, "Permission denied", "/srv/runs/.tmp123_config.json")
    assert storage.storage_message(denied, "run it again").startswith(
        "/srv/runs/config.json: permission denied; make the folder writable")
    # TensorFlow's file errors are not OSErrors; HDF5's name the file in their text.
    tf_like = RuntimeError("runs/t/oracle.json; No space left on device")
    assert storage.storage_message(tf_like).startswith("runs/t/oracle.json: no space left")
    hdf5 = OSError(errno.ENOSPC, "Can't synchronously write data (file write failed: ..., "
                   "filename = 'runs/a/backup/.tmp77_epoch_1.weights.h5', errno = 28)")
    assert storage.storage_message(hdf5).startswith("runs/a/backup/epoch_1.weights.h5: no space")
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded", "x.npz")
        except OSError as cause:
            raise ValueError("while saving") from cause
    except ValueError as wrapped:
        assert storage.storage_message(wrapped).startswith("x.npz: the disk quota is used up")
    for other in (ValueError("bad"), FileNotFoundError(errno.ENOENT, "missing", "x"),
                  OSError(errno.EIO, "I/O error")):
        assert storage.storage_message(other) is None


def test_an_error_other_than_storage_passes_through():
    with pytest.raises(ValueError, match="not storage"):
        with storage.stops_on_storage_errors():
            raise ValueError("not storage")


def test_atomic_writes_name_the_target_and_leave_nothing(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(OSError) as info:
        with atomic.atomic_path(target) as tmp:
            Path(tmp).write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")  # as zipfile raises it
    assert info.value.filename == str(target) and info.value.errno == errno.ENOSPC
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == [target.name]


class DiskFull:
    """Fails the `fail_at`-th atomic write (and the run log's appends, counted
    with them) with ENOSPC after writing half a file; records every target."""

    def __init__(self, monkeypatch, fail_at=None):
        self.fail_at, self.targets = fail_at, []
        original = atomic.atomic_path

        @contextlib.contextmanager
        def atomic_path(path):
            with original(path) as tmp:
                self._maybe_fail(path, lambda: Path(tmp).write_bytes(b"half a file"))
                yield tmp

        log_epoch_end = callbacks.RunLog.on_epoch_end

        def on_epoch_end(log, epoch, logs=None):
            try:
                self._maybe_fail(log.filename, lambda: None)
            except OSError as error:  # as a stream raises it: no file name
                raise atomic.naming(OSError(error.errno, error.strerror), log.filename) from error
            log_epoch_end(log, epoch, logs)

        monkeypatch.setattr(atomic, "atomic_path", atomic_path)
        monkeypatch.setattr(callbacks.RunLog, "on_epoch_end", on_epoch_end)

    def _maybe_fail(self, path, write_half):
        self.targets.append(Path(path))
        if len(self.targets) == self.fail_at:
            write_half()
            raise OSError(errno.ENOSPC, "No space left on device")


def leftovers(out):
    return sorted(str(p.relative_to(out)) for p in out.rglob(f"{atomic.TEMPORARY_PREFIX}*"))


def test_a_full_disk_at_each_write_of_a_run_stops_cleanly_and_resumes(tmp_path, monkeypatch,
                                                                      capsys):
    reference = tmp_path / "reference"
    with monkeypatch.context() as patch:
        sites = DiskFull(patch)
        train_cli.main([*ARGV, "--out", str(reference)])
    expected = json.loads((reference / "metrics.json").read_text())
    # Each kind of write once: the first time each file is written.
    firsts = {}
    for index, target in enumerate(sites.targets, start=1):
        firsts.setdefault(target.relative_to(reference), index)
    assert {"config.json", "log.csv", "backup/epoch_1.weights.h5", "backup/state.json",
            "checkpoints/best.keras", "model.keras", "metrics.json",
            "curves.png"} <= {str(p) for p in firsts}
    capsys.readouterr()
    for name, index in firsts.items():
        out = tmp_path / str(name).replace("/", "_")
        with monkeypatch.context() as patch:
            DiskFull(patch, fail_at=index)
            with pytest.raises(SystemExit) as info:
                train_cli.main([*ARGV, "--out", str(out)])
        assert info.value.code == 1, name
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == (f"error: {out / name}: no space left on the device; free some space "
                           f"or choose a folder on another disk, then {RESUME_HINT}"), name
        assert "Traceback" not in "\n".join(err) and leftovers(out) == [], name
        assert not (out / "metrics.json").exists(), name  # written last: not finished
        train_cli.main([*ARGV, "--out", str(out)])  # room again: the same command
        capsys.readouterr()
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["epochs_completed"] == 2 and leftovers(out) == [], name
        assert not (out / "backup").exists(), name
        log = (out / "log.csv").read_text().splitlines()
        assert [row.split(",")[0] for row in log[1:]] == ["0", "1"], (name, log)
        # Resumed from the last complete epoch: the run it would have been.
        assert np.isclose(metrics["test_accuracy"], expected["test_accuracy"], atol=0.02), name


def test_a_stale_temporary_file_of_a_killed_writer_is_removed_on_resume(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / ".tmp4242_best.keras").write_bytes(b"half")
    (out / ".tmp4242_config.json").write_text("{")
    train_cli.main([*ARGV, "--epochs", "1", "--out", str(out)])
    assert leftovers(out) == []


# A real full file system: 400 KB of tmpfs, mounted in a user namespace where
# the kernel allows it (skipped elsewhere). HDF5 fails inside Keras'
# save_weights there (LeNet-5's weights and momenta take 480 KB); before, the
# process died with SIGSEGV at exit.
REAL_DISK = """
set -e
mount -t tmpfs -o size=400k tmpfs "$1"
cd "$2"
set +e
"$3" scripts/train.py "${@:5}" --out "$1/run" 2> "$4/err.txt"
echo $? > "$4/rc.txt"
ls -aR "$1/run" > "$4/files.txt" 2>&1 || true
"""


def test_a_real_full_disk_exits_1_with_one_line(tmp_path):
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        pytest.skip("needs Linux and unshare(1) to mount a small tmpfs")
    mount = tmp_path / "disk"
    mount.mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1k tmpfs "
                            f"{mount}"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"this machine does not let a user mount a tmpfs ({probe.stderr.strip()})")
    subprocess.run(["unshare", "-rm", "bash", "-c", REAL_DISK, "bash", str(mount), str(ROOT),
                    sys.executable, str(tmp_path), *ARGV, "--model", "lenet5"], check=True,
                   timeout=300,
                   env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3",
                        "HOME": str(tmp_path)})
    err = (tmp_path / "err.txt").read_text()
    assert (tmp_path / "rc.txt").read_text().strip() == "1", err[-3000:]
    assert err.strip().splitlines()[-1].startswith(f"error: {mount}/run/"), err[-3000:]
    assert "no space left on the device" in err and "Traceback" not in err, err[-3000:]
    assert ".tmp" not in (tmp_path / "files.txt").read_text()
