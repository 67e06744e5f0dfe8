"""Test-set figures of a trained model or ensemble: accuracy, the proper scoring
rules and calibration (`ensembles.metrics`), TTA accuracy, temperature scaling."""

import time

import numpy as np

import ensembles
from augment import corruptions, pipelines
from augment import tta as augment_tta
from ensembles import metrics
from zoo.training import data as data_module

TIMED_IMAGES = 2048  # test images the ensemble's inference cost is timed on


def evaluate_test(model, config, data, probs=None):
    """The test figures of `model` (or of the given test `probs`): loss (the plain
    cross-entropy, i.e. the NLL: no label smoothing, no weight penalty), accuracy,
    error, NLL, Brier score, ECE, MCE and, with `config.tta`, the accuracy over TTA
    views. Returns (figures, test probabilities)."""
    batch = max(config.batch_size, 256)
    probs = data_module.predict(model, data, "test", batch) if probs is None else probs
    s = metrics.scores(probs, data["y_test"])
    figures = {"test_loss": s["nll"], "test_accuracy": s["accuracy"], "test_error": s["error"],
               "test_nll": s["nll"], "test_brier": s["brier"], "test_ece": s["ece"],
               "test_mce": s["mce"], "tta": config.tta, "test_accuracy_tta": None,
               "test_error_tta": None}
    if config.tta:
        crop = pipelines.resolve_spec(config.augment, config.augment_options).crop_padding
        tta = augment_tta.TTAModel(model, config.tta, **augment_tta.evaluation_settings(crop))
        tta_accuracy = metrics.scores(data_module.predict(tta, data, "test", batch),
                                      data["y_test"])["accuracy"]
        figures.update(test_accuracy_tta=tta_accuracy, test_error_tta=1.0 - tta_accuracy)
    return figures, probs


def calibrate(model, config, data, test_probs):
    """Temperature scaling fitted on the validation split (`config.calibrate`).

    Returns (the model with the temperature in it, a report: the temperature and
    the test scores before and after)."""
    val_probs = data_module.predict(model, data, "val", max(config.batch_size, 256))
    temperature = ensembles.fit_temperature(val_probs, data["y_val"])
    after = ensembles.apply_temperature(test_probs, temperature)
    report = {"method": config.calibrate, "temperature": temperature,
              "fitted_on": f"{len(val_probs)} validation images",
              "before": metrics.scores(test_probs, data["y_test"]),
              "after": metrics.scores(after, data["y_test"])}
    return ensembles.calibrated(model, temperature, name=model.name), report, after


def member_probabilities(ensemble, data, split, batch_size=256):
    """(M, N, C) probabilities of every member on a split."""
    return np.stack([data_module.predict(member, data, split, batch_size)
                     for member in ensemble.members]).astype(np.float32)


def summarize_ensemble(ensemble, config, data, single):
    """Per-member and ensemble test figures (accuracy, NLL, Brier, ECE), the
    members' disagreement and the inference cost against one member (timed on
    `TIMED_IMAGES` test images). `single` holds the single model's test figures
    (a snapshot run's last snapshot, or member 0)."""
    if config.ensemble_method == "weighted" and data["x_val"] is not None:
        val = member_probabilities(ensemble, data, "val")
        ensemble.fit_weights(None, data["y_val"], member_probs=val)
    report = ensemble.report(None, data["y_test"],
                             member_probs=member_probabilities(ensemble, data, "test"))
    x, _ = data_module.head(data, "test", TIMED_IMAGES)
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


def reliability_curves(data, probs, member_probs=None, calibrated_probs=None):
    """The reliability tables a run's reliability.png shows: the model (or the
    ensemble), one member of an ensemble, and the temperature-scaled model."""
    curves = {"model": metrics.reliability(probs, data["y_test"])}
    if member_probs is not None:
        curves = {"ensemble": curves["model"],
                  "one member": metrics.reliability(member_probs, data["y_test"])}
    if calibrated_probs is not None:
        curves["temperature-scaled"] = metrics.reliability(calibrated_probs, data["y_test"])
    return curves


def shift_scores(model, x_raw, labels, names=None, severities=None, seed=0, batch_size=512):
    """Scores of `model` on the clean test images and on each corruption
    (`augment.corruptions`) at each severity.

    Args:
        model: a model on raw images (it carries its input contract).
        x_raw: uint8 test images (N, H, W, C) as the dataset stores them.
        labels: one-hot or integer labels.
        names, severities: the corruptions and severities (default: all).

    Returns:
        {"clean": scores, "corruptions": {name: {severity: scores}}, "by_severity":
        {severity: scores averaged over the corruptions}}.
    """
    names = names or corruptions.CORRUPTIONS
    severities = severities or corruptions.SEVERITIES

    def score(images):
        probs = model.predict(images, batch_size=batch_size, verbose=0)
        return metrics.scores(probs, labels)

    result = {"clean": score(x_raw), "corruptions": {}}
    for name in names:
        result["corruptions"][name] = {
            severity: score(corruptions.corrupt(x_raw, name, severity, seed))
            for severity in severities}
    result["by_severity"] = {
        severity: {key: float(np.mean([result["corruptions"][n][severity][key] for n in names]))
                   for key in result["clean"]}
        for severity in severities}
    return result
