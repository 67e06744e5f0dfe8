"""Mixed precision, data-parallel strategies and the GPU benchmark (zoo/scale.py)."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import zoo
from zoo import training
from zoo.cli import train as cli
from zoo.training import TrainConfig
from zoo.training import distribute as scale

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = [*zoo.list_models("test_*"), "lenet5"]
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}


def tiny_config(tmp_path, **overrides):
    settings = dict(model="test_resnet", dataset="mnist_sample", epochs=2, batch_size=32,
                    limit_train=128, limit_test=64, out=str(tmp_path / "run"), verbose=0, lr=0.05)
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture(autouse=True)
def float32_policy_after():
    yield
    assert keras.config.dtype_policy().name == "float32", "a test leaked its precision policy"


@pytest.mark.parametrize("name,precision", [(name, "mixed_float16") for name in FAMILIES]
                         + [("test_resnet", "mixed_bfloat16")])
def test_every_family_trains_a_step_with_float32_outputs_under_mixed_precision(name, precision):
    y = keras.utils.to_categorical([1, 3], 10)
    with scale.precision_policy(precision):
        model = zoo.create_model(name, num_classes=10)
        x = np.random.default_rng(0).normal(size=(2, *model.input_shape[1:])).astype("float32")
        # Eagerly: tracing one step of a tiny GoogLeNet under mixed precision took
        # 30 s on the 2-core CPU, the eager step 3 s. The traced (and jitted)
        # step runs in the train() tests below and in scripts/bench_gpu.py.
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      loss="categorical_crossentropy", run_eagerly=True)
        loss = model.train_on_batch(x, y)
        probs = model(x, training=False)
        compute = {keras.backend.standardize_dtype(layer.compute_dtype) for layer in model.layers
                   if layer.weights}
    assert keras.backend.standardize_dtype(probs.dtype) == "float32"
    np.testing.assert_allclose(np.sum(keras.ops.convert_to_numpy(probs), axis=-1), 1.0,
                               atol=1e-5)
    assert np.isfinite(loss)
    assert precision.removeprefix("mixed_") in compute  # the body computes in 16 bits
    assert all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in model.weights)
    # Keras adds dynamic loss scaling for float16 when compiling (none needed for bfloat16).
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (precision == "mixed_float16")


def test_train_in_mixed_precision_with_on_device_augmentation(tmp_path):
    config = tiny_config(tmp_path, precision="mixed_float16", augment="mixup",
                         augment_device="device", tta="flip", epochs=1)
    metrics = training.train(config)
    assert np.isfinite(metrics["test_loss"]) and metrics["epochs_completed"] == 1
    assert metrics["test_accuracy_tta"] is not None
    assert json.loads((Path(config.out) / "config.json").read_text())["precision"] == \
        "mixed_float16"
    # Restored after the run; the saved model rebuilds under the policy of the loader.
    assert keras.config.dtype_policy().name == "float32"
    loaded = keras.saving.load_model(Path(config.out) / "model.keras", compile=False)
    out = loaded(np.zeros((1, *loaded.contract.image_shape), "uint8"))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


@pytest.mark.parametrize("preset", ["strong", "mixup", "cutmix"])
@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_augmentation_stacks_stay_float32_under_mixed_precision(preset, precision):
    from augment import pipelines

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 32, 32, 3)).astype("uint8")
    y = keras.utils.to_categorical([0, 1, 2, 3], 10)
    with scale.precision_policy(precision):
        augmenter = pipelines.build_augmenter(
            pipelines.resolve_spec(preset), mean=[0.5] * 3, image_shape=(32, 32, 3),
            dataset="cifar10")
        images, labels = pipelines.apply_augmenter(
            augmenter, x, y if preset in ("mixup", "cutmix") else None)
    assert keras.backend.standardize_dtype(images.dtype) == "float32"
    assert labels is None or keras.backend.standardize_dtype(labels.dtype) == "float32"


def test_mirrored_strategy_trains_on_the_one_cpu(tmp_path):
    metrics = training.train(tiny_config(tmp_path, strategy="mirrored", epochs=1))
    assert np.isfinite(metrics["test_loss"]) and metrics["epochs_completed"] == 1
    strategy = scale._strategies["mirrored"]
    assert strategy.num_replicas_in_sync == len(keras.distribution.list_devices())


def test_multiworker_without_tf_config_names_the_option(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match=r"strategy='multiworker' is not accepted.*TF_CONFIG"):
        TrainConfig(strategy="multiworker").validate()
    with pytest.raises(SystemExit):
        cli.parse_config(["--strategy", "multiworker"])


def test_flags_reach_the_config_and_bad_values_stop_at_parsing(capsys):
    config = cli.parse_config(["--precision", "mixed_bfloat16", "--strategy", "mirrored"])
    assert (config.precision, config.strategy) == ("mixed_bfloat16", "mirrored")
    assert (TrainConfig().precision, TrainConfig().strategy) == ("float32", "none")
    with pytest.raises(SystemExit):
        cli.parse_config(["--precision", "float16"])
    assert "--precision" in capsys.readouterr().err
    with pytest.raises(ValueError, match="precision='float16'"):
        TrainConfig(precision="float16").validate()


@pytest.mark.parametrize("tf_config,chief", [
    ({}, True),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}},
     False),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}},
     True),
])
def test_only_the_chief_writes_the_artifacts(tf_config, chief, monkeypatch, tmp_path):
    assert scale.is_chief(tf_config) == chief
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    private = scale.worker_dir(tmp_path / "run")
    assert private == scale.worker_dir(tmp_path / "run")  # the same on a retry: resumable
    assert tmp_path not in private.parents


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_train_in_step_with_multiworker_mirrored_strategy(tmp_path):
    cluster = {"worker": [f"localhost:{free_port()}", f"localhost:{free_port()}"]}
    out = tmp_path / "run"
    procs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "multiworker_worker.py"), str(tmp_path),
             str(out)],
            env={**os.environ, **QUIET, "CUDA_VISIBLE_DEVICES": "",
                 "TF_CONFIG": json.dumps({"cluster": cluster,
                                          "task": {"type": "worker", "index": i}})},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        assert proc.returncode == 0, err[-3000:]
    results = [json.loads((tmp_path / f"losses_{i}.json").read_text()) for i in range(2)]
    weights = [np.load(tmp_path / f"weights_{i}.npz") for i in range(2)]
    assert [r["chief"] for r in results] == [True, False]
    assert "model.keras" in results[0]["out_files"]  # the chief's artifacts, in --out
    loss = results[0]["loss"]
    assert results[1]["loss"] == loss  # logged losses are averaged over both workers
    assert loss[-1] < loss[0]
    # Gradients are all-reduced: every trainable weight ends equal on both workers.
    # (BatchNorm's moving statistics are per worker, from its own half of each batch.)
    for key in weights[0].files:
        if key.startswith("trainable_"):
            np.testing.assert_array_equal(weights[0][key], weights[1][key])
    assert sum(k.startswith("trainable_") for k in weights[0].files) > 0


@pytest.mark.slow
def test_bench_gpu_quick_runs_under_jax_without_tensorflow(jax_env):
    pytest.importorskip("jax")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_gpu.py"), "--quick", "--models",
         "test_resnet", "--precisions", "mixed", "--steps", "1"],
        capture_output=True, text=True, timeout=240,
        env={**jax_env, **QUIET})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| test_resnet | 32x32x3 | 2 |" in result.stdout
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("BENCH_GPU "))
    summary = json.loads(line[len("BENCH_GPU "):])
    assert summary["backend"] == "jax" and not summary["tensorflow_imported"]
    detail = summary["rows"][0]["ours_detail"]["mixed_float16"]
    assert detail["images_per_sec"] > 0 and detail["output_dtype"] == "float32"
    assert detail["optimizer"] == "LossScaleOptimizer"
    # (Not `import torch` here: it would load PyTorch after TensorFlow in this process.)
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
        assert "PyTorch columns skipped" in result.stdout
