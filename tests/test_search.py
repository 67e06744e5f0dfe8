"""Hyperparameter search (zoo/search/, zoo/cli/tune.py, scripts/tune.py) on tiny models and data."""

import csv
import gc
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np
import pytest

from zoo.cli import tune as tune_cli
from zoo.contract import InputContract
from zoo.search import space as search_space
from zoo.search import tuners
from zoo.search.hypermodel import ZooHyperModel
from zoo.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}
# 48 training and 16 validation images of the synthetic dataset, two steps per epoch.
TINY_FLAGS = ["--scale", "tiny", "--dataset", "synthetic", "--limit-train", "64",
              "--limit-test", "32", "--val-split", "0.25", "--epochs", "1", "--batch-size", "32",
              "--verbose", "0", "--run-eagerly"]
TINY = dict(dataset="synthetic", limit_train=64, limit_test=32, val_split=0.25, epochs=1,
            batch_size=32, verbose=0)


def random_hp(hypermodel, seed):
    """A seeded random point of the hypermodel's space, as the random oracle draws it."""
    space = kt.HyperParameters()
    hypermodel.declare_hyperparameters(space)
    hp = kt.HyperParameters()
    for i, p in enumerate(space.space):
        hp.merge([p])
        if hp.is_active(p):
            hp.values[p.name] = p.random_sample(seed + i)
    return hp


@pytest.mark.parametrize("family", search_space.families())
def test_hypermodel_builds_sampled_models_and_trains_a_step(family):
    base = TrainConfig(**TINY)
    contract = InputContract((32, 32, 3), [0.5] * 3, [0.25] * 3)
    hypermodel = ZooHyperModel(family, base, 10, (32, 32, 3), contract, 2, scale="tiny",
                               run_eagerly=True)
    hp = random_hp(hypermodel, seed=sum(map(ord, family)))
    assert set(search_space.COMMON_SPACE) - {"momentum"} <= set(hp.values)
    classifier = hypermodel.build(hp)
    model = classifier.network  # the sampled network, behind the raw-image front
    config = hypermodel.config_for(hp.values)
    v = hp.values
    # The sampled values reach the model and its optimizer through the TrainConfig.
    assert model.get_config()["activation"] == config.activation == v["activation"]
    assert model.get_config()["batch_norm"] is v["batch_norm"]
    assert model.get_config()["kernel_regularizer"] == {"l1": 0.0, "l2": v["l2"]}
    assert classifier.optimizer.__class__.__name__ == {
        "momentum": "SGD", "nesterov": "SGD", "rmsprop": "RMSprop", "adam": "Adam"}[v["optimizer"]]
    if v["optimizer"] in ("momentum", "nesterov"):
        assert classifier.optimizer.momentum == pytest.approx(v["momentum"])
    else:
        assert "momentum" not in v  # conditional: inactive for RMSProp and Adam
    if family == "resnet":
        n = (v["depth"] - 2) // 4
        assert model.get_config()["depths"] == [n, n]
    if family == "vgg":
        assert len(model.get_config()["convs_per_stage"]) == 2
    x = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype("uint8")
    y = keras.utils.to_categorical(np.arange(8) % 10, 10)
    logs = classifier.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])


def test_full_scale_spaces_name_the_registered_variants():
    seen = {}
    for depth in (20, 32, 44, 56):
        name, options = search_space.search_model("resnet", "full", {
            "depth": depth, "width": 2.0, "stochastic_depth": 0.1, "zero_init_residual": True})
        seen[depth] = name
        assert options["widths"] == [32, 64, 128]
    assert seen == {20: "resnet20", 32: "resnet32", 44: "resnet44", 56: "resnet56"}
    name, options = search_space.search_model("vgg", "full", {"depth": 19, "width": 0.25,
                                                        "head_units": 256})
    assert name == "vgg19_cifar" and options["widths"] == [16, 32, 64, 128, 128]
    space = search_space.search_space("alexnet")
    assert space["lr"].log and space["l2"].log and space["momentum"].when[0] == "optimizer"
    assert set(space["optimizer"].values) == {"momentum", "nesterov", "rmsprop", "adam"}


def live_counts():
    gc.collect()
    objects = gc.get_objects()
    return {"objects": len(objects),
            "layers": sum(isinstance(o, keras.layers.Layer) for o in objects)}


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory):
    """A 4-trial coarse random search of tiny ResNets, recording live objects after
    each trial."""
    out = tmp_path_factory.mktemp("search") / "tune"
    counts = []
    original = tuners._ZooTunerMixin.on_trial_end

    def recording(self, trial):
        original(self, trial)
        counts.append(live_counts())

    tuners._ZooTunerMixin.on_trial_end = recording
    try:
        result = tune_cli.main(["--family", "resnet", "--max-trials", "4", "--out", str(out),
                              *TINY_FLAGS])
    finally:
        tuners._ZooTunerMixin.on_trial_end = original
    return out, result, counts


def test_random_search_writes_the_results_table_and_plot(search_dir):
    out, result, _ = search_dir
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 == len(result["rows"])
    for column in ("trial_id", "optimizer", "lr", "schedule", "activation", "init",
                   "batch_norm", "l2", "dropout", "depth", "width", "val_accuracy",
                   "val_loss", "seconds"):
        assert column in rows[0]
    assert all(r["status"] == "COMPLETED" and float(r["seconds"]) > 0 for r in rows)
    accuracies = [float(r["val_accuracy"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)  # best first
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    search = json.loads((out / "search.json").read_text())
    assert search["family"] == "resnet" and [s["name"] for s in search["stages"]] == ["coarse"]
    assert (out / "coarse" / "trial_0" / "checkpoint.weights.h5").exists()


def test_memory_stays_flat_across_trials(search_dir):
    _, _, counts = search_dir
    print("live objects after each trial:", counts)
    assert len(counts) == 4
    # The session is cleared after every trial: no model of an earlier trial stays alive.
    layers = [c["layers"] for c in counts]
    assert max(layers) - min(layers) <= 5, counts
    growth = counts[-1]["objects"] - counts[1]["objects"]
    assert growth < 3000, counts  # one trained tiny ResNet alone is ~8,500 objects


def test_refine_narrows_every_range_around_the_best_trials():
    space = search_space.search_space("resnet", "tiny")
    rows = [
        {"stage": "coarse", "trial_id": str(i), "val_accuracy": acc, "optimizer": opt,
         "lr": lr, "momentum": 0.9 if opt != "adam" else None, "schedule": "cosine",
         "activation": act, "init": "he_normal", "batch_norm": True, "l2": 1e-5,
         "dropout": 0.3, "depth": 6, "width": 1.0, "stochastic_depth": 0.0,
         "zero_init_residual": False}
        for i, (acc, opt, lr, act) in enumerate([
            (0.9, "momentum", 0.01, "relu"), (0.8, "nesterov", 0.02, "elu"),
            (0.7, "momentum", 0.005, "relu"), (0.1, "adam", 0.3, "tanh")])]
    refined = search_space.refine_space(space, rows, top_k=3)
    assert refined["lr"].low == pytest.approx(0.005 / 2)
    assert refined["lr"].high == pytest.approx(0.04)
    assert refined["optimizer"].values == ("momentum", "nesterov")
    assert refined["activation"].values == ("relu", "elu")
    assert refined["batch_norm"].values == (True,)
    assert refined["depth"].values == (6,)
    lo, hi = refined["dropout"].low, refined["dropout"].high
    assert space["dropout"].low <= lo < 0.3 < hi <= space["dropout"].high and hi - lo < 0.2


def test_refine_stage_samples_inside_the_narrowed_space(search_dir):
    out, _, _ = search_dir
    result = tune_cli.main(["--out", str(out), "--refine", "--refine-top", "2", "--max-trials",
                          "1", "--verbose", "0", "--run-eagerly"])
    search = json.loads((out / "search.json").read_text())
    assert [s["name"] for s in search["stages"]] == ["coarse", "fine1"]
    space = search_space.space_from_json(search["stages"][1]["space"])
    fine = [r for r in result["rows"] if r["stage"] == "fine1"]
    assert len(fine) == 1 and len(result["rows"]) == 5
    for name, p in space.items():
        value = fine[0].get(name)
        if value is None:
            continue
        if p.kind == "float":
            assert p.low <= value <= p.high, name
        else:
            assert value in p.values, name
    coarse = search_space.space_from_json(search["stages"][0]["space"])
    assert space["lr"].high - space["lr"].low < coarse["lr"].high - coarse["lr"].low


def test_best_trials_become_one_ensemble(search_dir):
    out, _, _ = search_dir
    result = tune_cli.main(["--out", str(out), "--ensemble-top", "2"])["ensemble"]
    path = out / "ensemble_top2.keras"
    assert result["path"] == str(path) and len(result["members"]) == 2
    ensemble = keras.saving.load_model(path)
    x = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype("float32")
    probs = keras.ops.convert_to_numpy(ensemble(x))
    assert probs.shape == (4, 10) and np.allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert len(result["test"]["member_accuracy"]) == 2


@pytest.mark.parametrize("argv, message", [
    (["--family", "mobilenet"], "argument --family: 'mobilenet' is not accepted; expected one "
     "of lenet, alexnet, vgg, googlenet, resnet"),
    (["--model", "mobilenet"], "argument --model: 'mobilenet' is not accepted; expected one of "
     "lenet, alexnet, vgg, googlenet, resnet"),  # the old name of --family
    (["--family", "lenet", "--tuner", "grid"], "argument --tuner: 'grid' is not accepted; "
     "expected one of random, hyperband, bayesian"),
    (["--family", "lenet", "--max-trials", "0"], "argument --max-trials: '0' is not accepted; "
     "expected an integer >= 1"),
    (["--refine", "--out", "{tmp}/none"], "out='{tmp}/none' is not accepted; expected a "
     "directory holding an earlier search (search.json) with --refine"),
    (["--ensemble-top", "3", "--out", "{tmp}/none"], "out='{tmp}/none' is not accepted; "
     "expected a directory holding an earlier search (search.json) with --ensemble-top"),
    (["--family", "lenet", "--dataset", "imagenet"], "dataset='imagenet' is not accepted"),
])
def test_bad_flags_stop_at_argument_parsing(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        tune_cli.parse_args(argv)
    assert exit_info.value.code == 2
    assert message.replace("{tmp}", str(tmp_path)) in capsys.readouterr().err


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_distributed_search_with_a_chief_and_two_workers(tmp_path, monkeypatch):
    """keras-tuner's chief/worker mode on localhost: the chief (the oracle's gRPC
    server) runs in this process, which has TensorFlow imported already; the two
    workers are separate processes running scripts/tune.py."""
    out = tmp_path / "tune"
    argv = ["--family", "lenet", "--max-trials", "4", "--out", str(out), *TINY_FLAGS]
    oracle = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(free_port())}
    for key, value in {**oracle, "KERASTUNER_TUNER_ID": "chief"}.items():
        monkeypatch.setenv(key, value)
    chief_result = {}

    def chief():
        try:
            chief_result.update(tune_cli.main(argv))
        except BaseException as err:  # reported by the assertion below
            chief_result["error"] = repr(err)

    chief_thread = threading.Thread(target=chief, daemon=True)
    chief_thread.start()
    workers = {
        tuner_id: subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "tune.py"), *argv],
            env={**os.environ, **QUIET, **oracle, "KERASTUNER_TUNER_ID": tuner_id},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for tuner_id in ("worker0", "worker1")}
    try:
        logs = {tuner_id: p.communicate(timeout=180)[0] for tuner_id, p in workers.items()}
    finally:
        for p in workers.values():
            p.kill()
    for tuner_id, p in workers.items():
        assert p.returncode == 0, f"{tuner_id}:\n{logs[tuner_id][-3000:]}"
    chief_thread.join(timeout=60)
    assert not chief_thread.is_alive() and "error" not in chief_result, chief_result
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 4 == len(chief_result["rows"])
    assert all(r["status"] == "COMPLETED" for r in rows)
    assert {r["tuner_id"] for r in rows} == {"worker0", "worker1"}  # both workers ran trials
    assert (out / "results.csv").exists() and (out / "results.png").exists()
