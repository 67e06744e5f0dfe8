"""Plots of a run, written as PNG files atomically (matplotlib, Agg backend)."""

import math
from pathlib import Path

from zoo import atomic


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi=100):
    """Writes `fig` to `path` through a temporary file, then closes it."""
    plt = pyplot()
    path = Path(path)
    try:
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path


def plot_curves(history, path, title=None):
    """Training and validation loss and accuracy against the epoch."""
    plt = pyplot()
    epochs = [int(e) + 1 for e in history.get("epoch", [])]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if history.get(key):
                ax.plot(epochs, history[key], marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or Path(path).parent.name)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_lr_finder(result, path):
    """The LR range test: loss (raw and smoothed) against a log learning-rate axis."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses, alpha=0.3, label="loss")
    ax.plot(result.lrs, result.smoothed, label="smoothed loss")
    ax.axvline(result.suggested_lr, color="C3", linestyle="--",
               label=f"suggested lr {result.suggested_lr:.2g}")
    ax.set_xscale("log")
    finite = [v for v in result.smoothed if math.isfinite(v)]
    if finite:
        ax.set_ylim(min(finite) * 0.9, min(max(finite), 4 * finite[0]) * 1.1)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("LR range test")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)


def plot_reliability(curves, path, title=None):
    """Reliability diagrams (Guo et al. 2017): per confidence bin, accuracy against
    mean confidence, one line per model (`ensembles.metrics.reliability` tables),
    the diagonal being perfect calibration; below, the share of images per bin."""
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="perfect calibration")
    for i, (label, table) in enumerate(curves.items()):
        full = table["count"] > 0
        centres = (table["edges"][:-1] + table["edges"][1:]) / 2
        top.plot(table["confidence"][full], table["accuracy"][full], marker="o", markersize=3,
                 color=f"C{i}", label=label)
        bottom.bar(centres + (i - (len(curves) - 1) / 2) * 0.02, table["count"] /
                   table["count"].sum(), width=0.02, color=f"C{i}")
    top.set_ylabel("accuracy")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.grid(alpha=0.3)
    top.legend(fontsize=8, loc="upper left")
    bottom.set_xlabel("confidence (max probability)")
    bottom.set_ylabel("share")
    bottom.set_yscale("log")
    bottom.grid(alpha=0.3)
    fig.suptitle(title or Path(path).parent.name)
    fig.tight_layout()
    return save_figure(fig, path)
