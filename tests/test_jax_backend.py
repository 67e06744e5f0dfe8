"""Every family, and an ensemble with EMA and SWA, builds, trains a step and
round-trips under KERAS_BACKEND=jax.

The backend is fixed per process, so the check runs in a subprocess.
"""

import importlib.util
import json
import subprocess
import sys
import textwrap

import pytest

FAMILIES = ["lenet5", "test_alexnet", "test_vgg", "test_googlenet", "test_resnet",
            "test_resnet_bottleneck"]

SCRIPT = textwrap.dedent("""
    import json, sys, tempfile
    import keras, numpy as np
    import zoo
    assert keras.backend.backend() == "jax", keras.backend.backend()
    results = {}
    for name in sys.argv[1:]:
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
    results["ensemble"] = {"shape": list(probs.shape), "reload_diff": float(np.abs(loaded - probs).max()),
                           "sums": float(np.abs(probs.sum(-1) - 1).max())}
    print("RESULTS " + json.dumps(results))
""")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                    reason="jax is not installed (pip install -e '.[test]' installs it)")
def test_every_family_under_jax(jax_env):
    result = subprocess.run([sys.executable, "-c", SCRIPT, *FAMILIES], capture_output=True,
                            text=True, env=jax_env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(l for l in result.stdout.splitlines() if l.startswith("RESULTS "))
    results = json.loads(line[len("RESULTS "):])
    for name in FAMILIES:
        r = results[name]
        assert r["shape"] == [4, 10], name
        assert r["loss"] == r["loss"] and r["loss"] > 0, name  # finite, not NaN
        assert r["all_changed"], f"{name}: a trainable variable did not change under jax"
        assert r["reload_diff"] < 1e-5, name
    ensemble = results["ensemble"]
    assert ensemble["shape"] == [8, 10] and ensemble["sums"] < 1e-5
    assert ensemble["reload_diff"] < 1e-6


WITHOUT_TENSORFLOW = textwrap.dedent("""
    import sys
    class NoTensorFlow:  # the GPU machine has JAX but no TensorFlow
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "tensorflow":
                raise ModuleNotFoundError(f"No module named {name!r}")
    sys.meta_path.insert(0, NoTensorFlow())
    from zoo.training import TrainConfig, train
    metrics = train(TrainConfig(model="test_resnet", dataset="mnist_sample", limit_train=64,
                                limit_test=32, epochs=1, batch_size=32, verbose=0,
                                out=sys.argv[1], augment="standard", augment_device="device",
                                calibrate="temperature"))
    assert "tensorflow" not in sys.modules
    print("TEST_ERROR", metrics["test_error"])
""")


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_the_training_core_needs_no_tensorflow_under_jax(jax_env, tmp_path):
    result = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, str(tmp_path / "run")],
                            capture_output=True, text=True, env=jax_env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TEST_ERROR" in result.stdout
