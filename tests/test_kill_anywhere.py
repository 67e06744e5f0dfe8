"""Kill-anywhere for the longer jobs (issue: faults a user meets): a search and
an independent ensemble run are killed with SIGKILL at seeded random moments,
the same command is run again each time, and at the end every trial / member
is there exactly once, the results are complete, nothing temporary is left,
and the search found what an unbroken one finds."""

import json
import os
import random
import signal
import subprocess
import sys
import time

from zoo import atomic

from helpers import ROOT

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_DETERMINISTIC_OPS": "1"}
KILLS = 3


def run_killing(command, started, seed, window):
    """Runs `command` KILLS times, each killed `uniform(0, window)` seconds after
    `started` (a path) exists, then once to the end; returns that last run and
    how many of the kills hit a running process."""
    rng = random.Random(seed)
    hits = 0
    for _ in range(KILLS):
        process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while not started.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0, window))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            hits += 1
        _, err = process.communicate(timeout=300)
        assert process.returncode in (0, -signal.SIGKILL), err[-3000:]
    final = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True,
                           timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    return final, hits


def temporaries(out):
    return sorted(str(p.relative_to(out)) for p in out.rglob(f"{atomic.TEMPORARY_PREFIX}*"))


def tune_command(out):
    return [sys.executable, "scripts/tune.py", "--family", "lenet", "--scale", "tiny",
            "--dataset", "mnist_sample", "--limit-train", "192", "--limit-test", "64",
            "--epochs", "2", "--max-trials", "3", "--out", str(out), "--verbose", "0",
            "--seed", "1"]


def trial_table(out):
    rows = json.loads((out / "results.json").read_text())
    return sorted((r["trial_id"], r["lr"], r["optimizer"], round(r["val_accuracy"], 6))
                  for r in rows)


def test_a_search_killed_anywhere_resumes_to_the_same_result(tmp_path):
    reference = tmp_path / "unbroken"
    subprocess.run(tune_command(reference), cwd=ROOT, env=ENV, check=True, capture_output=True,
                   timeout=600)
    out = tmp_path / "killed"
    final, hits = run_killing(tune_command(out), out / "search.json", seed=7, window=10)
    assert hits >= 1
    assert trial_table(out) == trial_table(reference)  # every trial once, same scores
    search = json.loads((out / "search.json").read_text())
    assert [(s["name"], s["complete"]) for s in search["stages"]] == [("coarse", True)]
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 3
    assert temporaries(out) == []
    # Once complete, the same command says so and changes nothing.
    again = subprocess.run(tune_command(out), cwd=ROOT, env=ENV, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and "already complete (3 trials)" in again.stderr
    assert trial_table(out) == trial_table(reference)
    other = subprocess.run(tune_command(out)[:-2] + ["--seed", "2"], cwd=ROOT, env=ENV,
                           capture_output=True, text=True, timeout=300)
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert "already holds a search with other settings (seed: 1 there, 2 now)" in other.stderr


def test_an_independent_ensemble_killed_anywhere_finishes_each_member_once(tmp_path):
    out = tmp_path / "ensemble"
    command = [sys.executable, "scripts/train.py", "--model", "test_resnet", "--dataset",
               "mnist_sample", "--epochs", "2", "--batch-size", "32", "--limit-train", "96",
               "--limit-test", "64", "--lr", "0.05", "--verbose", "0", "--ensemble",
               "independent", "--members", "3", "--out", str(out)]
    final, hits = run_killing(command, out / ".lock", seed=11, window=12)
    assert hits >= 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["ensemble"]["member_test_accuracy"]) == 3
    assert sorted(p.name for p in out.glob("member_*")) == ["member_0", "member_1", "member_2"]
    for k in range(3):
        member = json.loads((out / f"member_{k}" / "metrics.json").read_text())
        assert member["epochs_completed"] == 2
        rows = (out / f"member_{k}" / "log.csv").read_text().splitlines()[1:]
        assert [r.split(",")[0] for r in rows] == ["0", "1"]  # each epoch once
        assert not (out / f"member_{k}" / "backup").exists()
    assert temporaries(out) == []
