"""The three Keras backends: every family, and an ensemble with EMA and SWA, builds,
trains a step and round-trips under JAX and torch (without TensorFlow); the
training core runs under torch; `.keras` files move between TensorFlow, JAX and
torch with the same predictions; a zoo model trains in a plain PyTorch loop.

The backend is fixed per process, so each check runs in a subprocess.
"""

import importlib.util
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from helpers import BLOCK_TENSORFLOW, ROOT

FAMILIES = ["lenet5", "test_alexnet", "test_vgg", "test_googlenet", "test_resnet",
            "test_resnet_bottleneck"]
TOLERANCE = 1e-5  # max abs difference of probabilities between backends


def needs(module):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None,
                              reason=f"{module} is not installed (.ci/run installs it)")


def run_script(script, env, *args, timeout=600):
    """Runs `script` (TensorFlow blocked) in a subprocess; returns its RESULTS line."""
    result = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW + script, *map(str, args)],
                            capture_output=True, text=True, env=env, timeout=timeout,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("RESULTS "))
    return json.loads(line[len("RESULTS "):])


FAMILY_SCRIPT = """
import json, sys, tempfile
import keras, numpy as np
import zoo
backend, names = sys.argv[1], sys.argv[2:]
assert keras.backend.backend() == backend, keras.backend.backend()
results = {}
for name in names:
    keras.utils.set_random_seed(0)
    model = zoo.create_model(name, num_classes=10, activation="prelu", stochastic_depth=0.1) \\
        if name.startswith("test_resnet") else zoo.create_model(name, num_classes=10)
    x = np.random.default_rng(0).normal(size=(4,) + model.input_shape[1:]).astype("float32")
    y = keras.utils.to_categorical(np.arange(4) % 10, 10)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    changed = all(not np.array_equal(b, keras.ops.convert_to_numpy(v))
                  for b, v in zip(before, model.trainable_variables))
    probs = np.asarray(model.predict(x, verbose=0))
    path = tempfile.mkdtemp() + "/m.keras"
    model.save(path)
    loaded = np.asarray(keras.saving.load_model(path).predict(x, verbose=0))
    results[name] = {
        "loss": float(history.history["loss"][0]), "shape": list(probs.shape),
        "all_changed": changed, "reload_diff": float(np.abs(loaded - probs).max()),
    }
# The ensembles and weight averaging are keras.ops code too.
import ensembles
keras.utils.set_random_seed(0)
members = [zoo.create_model("test_resnet", num_classes=10) for _ in range(2)]
x = np.random.default_rng(1).normal(size=(8, 16, 16, 1)).astype("float32")
y = keras.utils.to_categorical(np.arange(8) % 10, 10)
ensemble = ensembles.EnsembleModel(members, method="geometric")
ensemble.compile(optimizer=ensembles.ema_optimizer(keras.optimizers.SGD(0.05), 0.9),
                 loss="categorical_crossentropy")
ensemble.fit(x, y, epochs=2, batch_size=4, verbose=0,
             callbacks=lambda i: [ensembles.SWA(1, bn_data=x), *ensembles.ema_callbacks()])
probs = np.asarray(ensemble.predict(x, verbose=0))
path = tempfile.mkdtemp() + "/e.keras"
ensemble.save(path)
loaded = np.asarray(keras.saving.load_model(path).predict(x, verbose=0))
results["ensemble"] = {"shape": list(probs.shape),
                       "reload_diff": float(np.abs(loaded - probs).max()),
                       "sums": float(np.abs(probs.sum(-1) - 1).max())}
results["tensorflow_imported"] = "tensorflow" in sys.modules
print("RESULTS " + json.dumps(results))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("jax", marks=needs("jax")),
                                     pytest.param("torch", marks=needs("torch"))])
def test_every_family_under_backend(backend, request):
    if backend == "torch":
        results = request.getfixturevalue("torch_results")["family"]
    else:
        results = run_script(FAMILY_SCRIPT, request.getfixturevalue("jax_env"), backend,
                             *FAMILIES)
    assert not results.pop("tensorflow_imported")
    for name in FAMILIES:
        r = results[name]
        assert r["shape"] == [4, 10], name
        assert r["loss"] == r["loss"] and r["loss"] > 0, name  # finite, not NaN
        assert r["all_changed"], f"{name}: a trainable variable did not change under {backend}"
        assert r["reload_diff"] < 1e-5, name
    ensemble = results["ensemble"]
    assert ensemble["shape"] == [8, 10] and ensemble["sums"] < 1e-5
    assert ensemble["reload_diff"] < 1e-6


CORE_SCRIPT = """
import json, sys, tempfile
from pathlib import Path
sys.path.insert(0, "tests")
import keras, numpy as np
from helpers import tiny_config
from zoo.training import RunDir, train
runs = {  # on-device augmentation: tf.data needs TensorFlow
    "googlenet_augment_monitor": dict(model="test_googlenet", augment="standard",
                                      augment_device="device", monitor=True, epochs=1),
    "mixup_ema": dict(augment="mixup", augment_device="device", ema=0.9),
    "swa": dict(swa_start=1),
    "snapshot": dict(ensemble="snapshot", members=2),
}
results = {}
for name, options in runs.items():
    out = Path(tempfile.mkdtemp())
    metrics = train(tiny_config(out, limit_train=64, limit_test=32, **options))
    run = RunDir(out / "run")
    shape = tuple(run.read_config()["contract"]["image_shape"])
    x = np.random.default_rng(0).integers(0, 256, (4, *shape)).astype("uint8")
    model = keras.saving.load_model(run.path / "model.keras")
    results[name] = {
        "accuracy": metrics["test_accuracy"], "backend": run.read_config()["backend"],
        "grad_norms": [k for k in metrics.get("history", {}) if k.startswith("grad_norm/")],
        "sums": float(np.abs(np.asarray(model.predict(x, verbose=0)).sum(-1) - 1).max()),
    }
results["tensorflow_imported"] = "tensorflow" in sys.modules
print("RESULTS " + json.dumps(results))
"""


@pytest.mark.slow
@needs("torch")
def test_training_core_under_torch_without_tensorflow(torch_results):
    results = dict(torch_results["core"])
    assert not results.pop("tensorflow_imported")
    for name, r in results.items():
        assert r["backend"] == "torch" and 0 <= r["accuracy"] <= 1, name
        assert r["sums"] < 1e-5, name
    # the monitors' gradient norms, from torch autograd
    assert {"grad_norm/min", "grad_norm/median", "grad_norm/max"} <= set(
        results["googlenet_augment_monitor"]["grad_norms"])


CROSS_NAMES = ("lenet5", "test_googlenet", "test_resnet", "ensemble")  # + test_vgg in it
CROSS = """
import json, sys, time
from pathlib import Path
import keras, numpy as np
import zoo, ensembles
BACKENDS = ("tensorflow", "jax", "torch")


def predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))  # eager: nothing to compile


def randomize(model, seed):
    \"\"\"Seeded weights of every variable, set from numpy: zero-initialized models
    build in seconds under JAX, where each random initializer compiles.\"\"\"
    rng = np.random.default_rng(seed)
    for v in model.weights:
        noise = rng.normal(size=v.shape)
        if v.path.endswith(("gamma", "moving_variance")):
            value = 1.0 + 0.1 * np.abs(noise)
        elif len(v.shape) > 1:  # kernels: unit variance of the outputs
            value = noise / np.sqrt(np.prod(v.shape[:-1]))
        else:
            value = 0.1 * noise
        v.assign(value.astype(v.dtype))
    return model


def build(name, seed):
    if name == "ensemble":
        return ensembles.EnsembleModel([build("test_resnet", seed), build("test_vgg", seed + 1)],
                                       method="geometric")
    options = {"activation": "prelu"} if name == "test_resnet" else {}
    return randomize(zoo.create_model(name, kernel_initializer="zeros", **options), seed)


def save(root, names):
    \"\"\"Saves `names` and their predictions with this process' backend.\"\"\"
    backend = keras.backend.backend()
    (root / backend).mkdir()
    for seed, name in enumerate(names):
        model = build(name, seed + 10 * BACKENDS.index(backend))
        x = np.load(root / f"{name}_x.npy")
        np.save(root / backend / f"{name}.npy", predict(model, x))
        model.save(root / backend / f"{name}.keras")
    (root / backend / "saved").touch()


def load_others(root, names, timeout=300):
    \"\"\"Waits for the other backends' files, loads them:
    {"SAVED>LOADED:NAME": max abs diff}.\"\"\"
    backend, others = keras.backend.backend(), [b for b in BACKENDS if b != keras.backend.backend()]
    deadline = time.monotonic() + timeout
    while not all((root / b / "saved").exists() for b in others):
        assert time.monotonic() < deadline, "the other backends did not save in time"
        time.sleep(0.2)
    diffs = {}
    for saved_by in others:
        for name in names:
            model = keras.saving.load_model(root / saved_by / f"{name}.keras")
            probs = predict(model, np.load(root / f"{name}_x.npy"))
            diffs[f"{saved_by}>{backend}:{name}"] = float(
                np.abs(probs - np.load(root / saved_by / f"{name}.npy")).max())
    return diffs
"""
CROSS_SCRIPT = CROSS + """
root, names = Path(sys.argv[1]), sys.argv[2:]
save(root, names)
print("RESULTS " + json.dumps(load_others(root, names)))
"""


@pytest.mark.slow
@needs("torch")
@needs("jax")
def test_keras_files_load_under_every_backend(tmp_path, torch_env, jax_env):
    """TensorFlow (this process), JAX and torch (two processes, at once) each save
    the families and an ensemble, then load the other two's: all six directions."""
    for name in CROSS_NAMES:
        shape = (32, 32, 1) if name == "lenet5" else (16, 16, 1)
        np.save(tmp_path / f"{name}_x.npy",
                np.random.default_rng(0).normal(size=(3, *shape)).astype("float32"))
    namespace = {}
    exec(CROSS, namespace)
    namespace["save"](tmp_path, CROSS_NAMES)
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(run_script, CROSS_SCRIPT, env, tmp_path, *CROSS_NAMES)
                for env in (torch_env, jax_env)]
        diffs = namespace["load_others"](tmp_path, CROSS_NAMES)
        for run in runs:
            diffs.update(run.result())
    backends = ("tensorflow", "jax", "torch")
    assert set(diffs) == {f"{a}>{b}:{name}" for a in backends for b in backends if a != b
                          for name in CROSS_NAMES}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= TOLERANCE, (worst, diffs[worst])
    for name in CROSS_NAMES:  # the compared outputs are no flat distributions
        assert np.load(tmp_path / "tensorflow" / f"{name}.npy").std(axis=-1).min() > 1e-3, name


PYTORCH_LOOP_SCRIPT = """
import json, sys, tempfile
import keras, numpy as np, torch
import zoo
from augment import datasets
keras.utils.set_random_seed(0)
ds = datasets.load_dataset("mnist_sample", limit_train=512, limit_test=256)
x_train, x_test = ds.x_train, ds.x_test  # raw uint8 digits: the model pads and normalizes
mean, std = datasets.channel_stats(x_train, (32, 32))

model = zoo.create_model("lenet5", preprocessing={  # a torch.nn.Module under this backend
    "image_shape": (28, 28, 1), "mean": mean, "std": std})
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
x, y = torch.from_numpy(x_train), torch.from_numpy(ds.y_train)


def accuracy():
    return float(np.mean(np.argmax(model.predict(x_test, verbose=0), -1) == ds.y_test))


before, losses = accuracy(), []
for epoch in range(3):
    for index in torch.randperm(len(x)).split(32):
        probs = model(x[index], training=True)  # zoo models end in a softmax
        loss = torch.nn.functional.nll_loss(torch.log(probs.clamp_min(1e-7)), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
path = tempfile.mkdtemp() + "/m.keras"
model.save(path)
reloaded = keras.saving.load_model(path).predict(x_test, verbose=0)
sys.path.insert(0, "scripts")
from bench_backends import torch_lenet5  # the benchmark's torch.nn twin of this network
print("RESULTS " + json.dumps({
    "module": isinstance(model, torch.nn.Module),
    "twin_parameters": sum(p.numel() for p in torch_lenet5().parameters()), "before": before,
    "after": accuracy(),
    "first_loss": float(np.mean(losses[:5])), "last_loss": float(np.mean(losses[-5:])),
    "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    "keras_parameters": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
    "reload_diff": float(np.abs(reloaded - model.predict(x_test, verbose=0)).max())}))
"""


@pytest.mark.slow
@needs("torch")
def test_zoo_model_in_a_plain_pytorch_loop(torch_results):
    r = torch_results["loop"]
    assert r["module"] and r["parameters"] == r["keras_parameters"] == r["twin_parameters"]
    assert r["last_loss"] < r["first_loss"] / 2
    assert r["after"] > max(0.5, r["before"] + 0.3), r
    assert r["reload_diff"] < 1e-6


# The torch checks share one process (each starts torch and Keras in seconds):
# every script runs in its own namespace, its RESULTS line caught.
RUN_SCRIPTS = """
import json, sys
results = {}
for key, (source, argv) in json.loads(sys.argv[1]).items():
    lines = []
    sys.argv = ["-c", *argv]
    exec(compile(source, key, "exec"), {"__name__": "__main__", "print": lines.append})
    results[key] = json.loads(next(ln for ln in lines if ln.startswith("RESULTS "))[8:])
print("RESULTS " + json.dumps(results))
"""


@pytest.fixture(scope="module")
def torch_results(torch_env):
    """{"family", "core", "loop": each script's results} from one torch process."""
    scripts = {"family": (FAMILY_SCRIPT, ["torch", *FAMILIES]), "core": (CORE_SCRIPT, []),
               "loop": (PYTORCH_LOOP_SCRIPT, [])}
    return run_script(RUN_SCRIPTS, torch_env, json.dumps(scripts))


JAX_CORE_SCRIPT = """
import json, sys
from zoo.training import TrainConfig, train
metrics = train(TrainConfig(model="test_resnet", dataset="mnist_sample", limit_train=64,
                            limit_test=32, epochs=1, batch_size=32, verbose=0, out=sys.argv[1],
                            augment="standard", augment_device="device",
                            calibrate="temperature"))
assert "tensorflow" not in sys.modules
print("RESULTS " + json.dumps({"test_error": metrics["test_error"]}))
"""


@needs("jax")
def test_the_training_core_needs_no_tensorflow_under_jax(jax_env, tmp_path):
    # What the GPU machine has: JAX, no TensorFlow (on-device augmentation, calibration).
    result = run_script(JAX_CORE_SCRIPT, jax_env, tmp_path / "run")
    assert 0.0 <= result["test_error"] <= 1.0
