"""Plots drawn from numbers already computed (:class:`~digitlab.evaluation.Evaluation`,
a Keras history): each function takes an optional matplotlib ``ax`` or returns
a new figure, and :func:`save_report` writes a run's PNGs.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files, never windows: digitlab runs on servers and in CI

import matplotlib.pyplot as plt
import numpy as np

from digitlab.runs.schema import REPORT_FILES as _FILES

#: The report's figures by name: the files of :data:`digitlab.runs.REPORT_FILES`.
REPORT_FILES = {name.removesuffix(".png"): name for name in _FILES}


def plot_confusion_matrix(evaluation, *, ax=None, normalize: bool = False):
    """The tutorial's annotated confusion matrix: true classes down, predicted across."""
    fig, ax = _figure(ax, (7, 6))
    matrix = evaluation.confusion.astype(np.float64)
    if normalize:
        matrix = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    k = matrix.shape[0]
    names = evaluation.class_names
    ax.set_xticks(range(k), names, rotation=0 if k <= 12 else 90)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix ({evaluation.set}, accuracy {evaluation.accuracy:.4f})")
    if k <= 20:
        threshold = matrix.max() / 2
        for i in range(k):
            for j in range(k):
                text = f"{matrix[i, j]:.2f}" if normalize else f"{int(matrix[i, j])}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if matrix[i, j] > threshold else "black",
                )
    fig.tight_layout()
    return fig


def plot_training_curves(history: dict, *, axes=None):
    """Loss and accuracy per epoch, training and validation."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    else:
        fig = axes[0].figure
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if history.get(key):
                values = history[key]
                ax.plot(range(1, len(values) + 1), values, marker=".", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_predictions(images, evaluation, *, count: int = 12, columns: int = 4):
    """A grid of images, each with its softmax as a bar chart (true class in
    green, a wrong prediction in red)."""
    count = min(count, evaluation.size)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, 2 * columns, figsize=(3.2 * columns, 1.7 * rows), squeeze=False)
    k = evaluation.probabilities.shape[1]
    for n in range(rows * columns):
        row, col = divmod(n, columns)
        ax_img, ax_bar = axes[row, 2 * col], axes[row, 2 * col + 1]
        ax_img.axis("off")
        if n >= count:
            ax_bar.axis("off")
            continue
        probs, true = evaluation.probabilities[n], int(evaluation.labels[n])
        pred = int(probs.argmax())
        _show_image(ax_img, images[n])
        colors = ["tab:gray"] * k
        colors[pred] = "tab:green" if pred == true else "tab:red"
        ax_bar.bar(range(k), probs, color=colors)
        ax_bar.set_ylim(0, 1)
        ax_bar.set_xticks(range(k), evaluation.class_names, fontsize=6)
        ax_bar.tick_params(axis="y", labelsize=6)
        ax_bar.set_title(
            f"true {evaluation.class_names[true]}, "
            f"pred {evaluation.class_names[pred]} {probs[pred]:.2f}",
            fontsize=7,
        )
    fig.tight_layout()
    return fig


def plot_mistakes(images, evaluation, *, count: int = 24, columns: int = 8):
    """The most confident wrong predictions, most confident first."""
    chosen = evaluation.mistakes[:count]
    rows = max(1, -(-len(chosen) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.5 * columns, 1.8 * rows), squeeze=False)
    names = evaluation.class_names
    for n, ax in enumerate(axes.flat):
        ax.axis("off")
        if n >= len(chosen):
            continue
        i = chosen[n]
        probs = evaluation.probabilities[i]
        pred = int(probs.argmax())
        _show_image(ax, images[i])
        ax.set_title(
            f"{names[int(evaluation.labels[i])]}→{names[pred]} {probs[pred]:.2f}",
            fontsize=8,
            color="tab:red",
        )
    if not len(chosen):
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle("Worst mistakes (true→predicted, confidence)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_samples(images, labels, class_names, *, count: int = 32, columns: int = 8):
    """A grid of dataset images with their labels."""
    count = min(count, len(images))
    rows = max(1, -(-count // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.5 * rows), squeeze=False)
    for n, ax in enumerate(axes.flat):
        ax.axis("off")
        if n < count:
            _show_image(ax, images[n])
            ax.set_title(str(class_names[int(labels[n])]), fontsize=9)
    fig.tight_layout()
    return fig


def save_report(folder, evaluation, history: dict, images) -> dict[str, str]:
    """Write the four report PNGs of a run into ``folder``; return name → file."""
    folder = Path(folder)
    figures = {
        "confusion_matrix": plot_confusion_matrix(evaluation),
        "training_curves": plot_training_curves(history) if history else None,
        "predictions": plot_predictions(images, evaluation),
        "mistakes": plot_mistakes(images, evaluation),
    }
    written = {}
    for name, fig in figures.items():
        if fig is None:
            continue
        save_figure(fig, folder / REPORT_FILES[name])
        written[name] = REPORT_FILES[name]
    return written


def save_figure(fig, path) -> None:
    """Save ``fig`` as a PNG and close it (figures are not garbage-collected otherwise)."""
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def _figure(ax, size):
    if ax is None:
        fig, ax = plt.subplots(figsize=size)
        return fig, ax
    return ax.figure, ax


def _show_image(ax, image) -> None:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    ax.imshow(image, cmap="gray", vmin=0, vmax=255 if image.dtype == np.uint8 else 1)
