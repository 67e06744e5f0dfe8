"""Proper scoring rules and calibration of class probabilities (numpy).

For N examples, C classes, predicted probabilities p (N, C) and true classes y:

- accuracy: mean of [argmax_c p_nc = y_n].
- NLL: -(1/N) sum_n log p_{n, y_n}, the mean negative log-likelihood of the true
  class (probabilities clipped at `EPS`, so a confident mistake costs ~16, not inf).
- Brier score: (1/N) sum_n sum_c (p_nc - [c = y_n])^2, summed over classes as in
  Lakshminarayanan et al. 2017 ("Deep Ensembles"); 0 is perfect, 2 the worst.
- ECE, expected calibration error (Naeini et al. 2015; Guo et al. 2017): the
  confidence conf_n = max_c p_nc is binned into `BINS` = 15 equal-width bins on
  [0, 1]; ECE = sum_b (|B_b| / N) |acc(B_b) - conf(B_b)|, the gap between
  accuracy and mean confidence weighted by the bin's share of examples.
- MCE, maximum calibration error: max_b |acc(B_b) - conf(B_b)| over non-empty bins.

Guo et al. 2017, "On Calibration of Modern Neural Networks"; Ovadia et al. 2019,
"Can You Trust Your Model's Uncertainty?"; Ashukha et al. 2020 compare NLL only
after temperature scaling (`ensembles.calibration`).
"""

import numpy as np

from zoo import resolve

BINS = 15
EPS = 1e-7


def _as_arrays(probs, labels):
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or not len(probs):
        raise resolve.bad_option("probs", f"an array shaped {probs.shape}",
                                 "class probabilities shaped (N, C) with N >= 1")
    if labels.ndim == 2:
        labels = labels.argmax(-1)
    labels = labels.astype(np.int64).reshape(-1)
    if labels.shape != (len(probs),) or labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise resolve.bad_option("labels", f"an array shaped {np.asarray(labels).shape}",
                                 f"{len(probs)} class indices in [0, {probs.shape[1]}) "
                                 "or one-hot rows")
    return probs, labels


def accuracy(probs, labels):
    probs, labels = _as_arrays(probs, labels)
    return float(np.mean(probs.argmax(-1) == labels))


def nll(probs, labels):
    probs, labels = _as_arrays(probs, labels)
    true = np.clip(probs[np.arange(len(labels)), labels], EPS, 1.0)
    return float(-np.mean(np.log(true)))


def brier(probs, labels):
    probs, labels = _as_arrays(probs, labels)
    onehot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum(np.square(probs - onehot), axis=-1)))


def reliability(probs, labels, bins=BINS):
    """Per bin of confidence (equal width on [0, 1]): the bin edges, the count,
    the mean confidence and the accuracy (NaN for empty bins)."""
    probs, labels = _as_arrays(probs, labels)
    resolve.check_positive_int("bins", bins)
    confidence = probs.max(-1)
    correct = probs.argmax(-1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin b holds (edges[b], edges[b + 1]]; a confidence of exactly 0 goes to bin 0.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(index, weights=confidence, minlength=bins) / count
        acc = np.bincount(index, weights=correct, minlength=bins) / count
    return {"edges": edges, "count": count, "confidence": conf, "accuracy": acc}


def ece(probs, labels, bins=BINS):
    table = reliability(probs, labels, bins)
    full = table["count"] > 0
    gaps = np.abs(table["accuracy"][full] - table["confidence"][full])
    return float(np.sum(table["count"][full] / table["count"].sum() * gaps))


def mce(probs, labels, bins=BINS):
    table = reliability(probs, labels, bins)
    full = table["count"] > 0
    return float(np.max(np.abs(table["accuracy"][full] - table["confidence"][full])))


def scores(probs, labels, bins=BINS):
    """{"accuracy", "error", "nll", "brier", "ece", "mce"} of `probs` against `labels`."""
    acc = accuracy(probs, labels)
    return {"accuracy": acc, "error": 1.0 - acc, "nll": nll(probs, labels),
            "brier": brier(probs, labels), "ece": ece(probs, labels, bins),
            "mce": mce(probs, labels, bins)}
