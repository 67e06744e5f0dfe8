"""Temperature scaling (ensembles/calibration.py) and its place in runs and exports."""

import json

import keras
import numpy as np
import pytest

import ensembles
import zoo
from ensembles import calibration, metrics
from zoo import training

from helpers import tiny_config


def synthetic_logits(n=4000, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (n, classes))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = np.array([rng.choice(classes, p=p) for p in probs])  # calibrated at T = 1
    return logits, labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fitting_recovers_a_known_temperature(true_t):
    logits, labels = synthetic_logits()
    # A model whose logits are the calibrated ones divided by T is fixed by T.
    distorted = np.exp(logits / true_t) / np.exp(logits / true_t).sum(-1, keepdims=True)
    fitted = ensembles.fit_temperature(distorted, labels)
    assert fitted == pytest.approx(1.0 / true_t, rel=0.1)
    after = ensembles.apply_temperature(distorted, fitted)
    assert metrics.nll(after, labels) <= metrics.nll(distorted, labels) + 1e-9
    assert np.array_equal(after.argmax(-1), distorted.argmax(-1))  # accuracy unchanged


def test_the_temperature_lives_in_the_saved_model(tmp_path):
    model = zoo.create_model("test_resnet")
    wrapped = ensembles.calibrated(model, 2.0)
    x = np.random.default_rng(0).normal(size=(4, 16, 16, 1)).astype("float32")
    expected = ensembles.apply_temperature(model.predict(x, verbose=0), 2.0)
    np.testing.assert_allclose(wrapped.predict(x, verbose=0), expected, atol=1e-5)
    wrapped.save(tmp_path / "calibrated.keras")
    loaded = keras.saving.load_model(tmp_path / "calibrated.keras")
    assert calibration.temperature_of(loaded) == 2.0
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-5)


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), "2"])
def test_bad_temperatures_are_named(value):
    with pytest.raises(ValueError, match="temperature=.* is not accepted; expected a number > 0"):
        ensembles.TemperatureScaling(value)


def test_calibrate_flag_reports_before_and_after(tmp_path):
    metrics_ = training.train(tiny_config(tmp_path, epochs=2, calibrate="temperature",
                                          val_split=0.25))
    report = metrics_["calibration"]
    assert report["temperature"] > 0 and report["after"]["nll"] <= report["before"]["nll"] + 0.05
    assert report["after"]["accuracy"] == report["before"]["accuracy"]
    assert metrics_["test_nll"] == pytest.approx(report["after"]["nll"])
    saved = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert calibration.temperature_of(saved) == pytest.approx(report["temperature"])
    assert (tmp_path / "run" / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"test_nll", "test_brier", "test_ece", "test_mce"} <= set(on_disk)
    with pytest.raises(ValueError, match="calibrate='temperature' is not accepted; expected "
                                         "None when val_split=0"):
        tiny_config(tmp_path, calibrate="temperature", val_split=0.0).validate()
