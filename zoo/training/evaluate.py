"""Test-set figures of a trained model or ensemble."""

import time

import numpy as np

from augment import pipelines
from augment import tta as augment_tta


def cross_entropy(probs, labels, eps=1e-7):
    """Mean negative log-likelihood of the true classes: the plain test loss,
    without the label smoothing or the weight penalties a model was trained with."""
    probs = np.clip(np.asarray(probs, np.float64), eps, 1.0)
    labels = np.asarray(labels)
    return float(-np.mean(np.sum(labels * np.log(probs), axis=-1)))


def evaluate_test(model, config, data):
    """Test loss (plain cross-entropy), accuracy and (with `config.tta`) the
    accuracy over TTA views."""
    batch_size = max(config.batch_size, 256)
    probs = model.predict(data["x_test"], batch_size=batch_size, verbose=0)
    labels = data["y_test"]
    test_loss = cross_entropy(probs, labels)
    test_accuracy = float(np.mean(np.argmax(probs, -1) == np.argmax(labels, -1)))
    tta_accuracy = None
    if config.tta:
        crop = pipelines.resolve_spec(config.augment, config.augment_options).crop_padding
        tta_accuracy, _ = augment_tta.evaluate_tta(
            model, data["x_test"], data["y_test"], config.tta, batch_size=batch_size,
            **augment_tta.evaluation_settings(data["mean"], data["std"], crop))
    return float(test_loss), float(test_accuracy), tta_accuracy


def summarize_ensemble(ensemble, config, data, single):
    """Per-member and ensemble test figures, the members' disagreement and the
    inference cost against one member. `single` holds the single model's
    test figures (a snapshot run's last snapshot, or member 0)."""
    if config.ensemble_method == "weighted" and data["x_val"] is not None:
        ensemble.fit_weights(data["x_val"], data["y_val"])
    report = ensemble.report(data["x_test"], data["y_test"])
    x = data["x_test"]
    timings = {}
    for name, net in (("single", ensemble.members[-1]), ("ensemble", ensemble)):
        net.predict(x[:256], verbose=0)  # traced before timing
        start = time.perf_counter()
        net.predict(x, batch_size=256, verbose=0)
        timings[name] = time.perf_counter() - start
    return {
        "kind": config.ensemble, "method": config.ensemble_method, "members": len(ensemble.members),
        **report, "single_test_accuracy": single["test_accuracy"],
        "single_test_accuracy_tta": single.get("test_accuracy_tta"),
        "inference_seconds": timings["ensemble"], "single_inference_seconds": timings["single"],
        "inference_cost": timings["ensemble"] / timings["single"],
    }
