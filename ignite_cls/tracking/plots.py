"""PNG figures for MLflow runs: training curves and a confusion matrix with class names.

Drawn on a bare ``matplotlib.figure.Figure`` (rendered by Agg when saved), so no pyplot
state and no GUI backend is ever touched; matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

History = Sequence[tuple[int, float]]  # (step, value) pairs

ANNOTATE_LIMIT = 30  # write the counts into the cells up to this many classes
LABEL_LIMIT = 60  # name the classes on the axes up to this many


def save_training_curves(histories: dict[str, History], path: str | Path) -> None:
    """Training loss and learning rate by iteration, validation loss and accuracy by epoch."""
    from matplotlib.figure import Figure

    panels = [
        ("training loss", "iteration", ["train/loss"]),
        ("learning rate", "iteration", ["train/lr"]),
        ("validation loss", "epoch", ["val/loss", "val/ema/loss"]),
        (
            "validation accuracy (%)",
            "epoch",
            ["val/accuracy/top1", "val/accuracy/top5", "val/ema/accuracy/top1"],
        ),
    ]
    fig = Figure(figsize=(18, 4), layout="constrained")
    for ax, (title, xlabel, names) in zip(fig.subplots(1, len(panels)), panels, strict=True):
        for name in names:
            points = sorted(histories.get(name, ()))
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(steps, values, marker="o" if len(points) < 30 else None, label=name)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(loc="best")
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    fig.savefig(path, dpi=100)


def save_confusion_matrix(matrix: np.ndarray, classes: Sequence[str], path: str | Path) -> None:
    """Rows are true classes, columns predictions; colour is the row share, text the count."""
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=np.int64)
    n = len(classes)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = min(4 + 0.45 * n, 40)
    fig = Figure(figsize=(side + 1.5, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = 100 * np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"confusion matrix ({counts.sum()} images, accuracy {accuracy:.2f}%)")
    if n <= LABEL_LIMIT:
        ax.set_xticks(range(n), labels=list(classes), rotation=60, ha="right")
        ax.set_yticks(range(n), labels=list(classes))
    if n <= ANNOTATE_LIMIT:
        for (row, col), count in np.ndenumerate(counts):
            if count:
                color = "white" if shares[row, col] > 0.5 else "black"
                ax.text(col, row, str(count), ha="center", va="center", color=color, fontsize=8)
    fig.savefig(path, dpi=100)
