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
        shown = []
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if history.get(key):
                values = list(history[key])
                shown += values
                ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
                if len(values) == 1:  # one epoch: a point, so say its value
                    ax.annotate(
                        f"{values[0]:.4f}",
                        (1, values[0]),
                        textcoords="offset points",
                        xytext=(8, 0),
                        va="center",
                    )
        epochs = max((len(history.get(k) or ()) for k in (metric, f"val_{metric}")), default=0)
        if epochs:
            # Whole epochs only, and room around one or two points: a one-epoch run
            # is not a trend.
            ax.set_xlim(0.5, epochs + 0.5)
            ax.set_xticks(range(1, epochs + 1, max(1, epochs // 10)))
        if shown:
            low, high = min(shown), max(shown)
            pad = max(0.05 * (high - low), 0.02 * max(abs(high), 1e-3))
            low, high = low - pad, high + pad
            if metric == "accuracy":
                low, high = max(0.0, low), min(1.0, high)
            ax.set_ylim(max(0.0, low), high)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_reliability(evaluation, *, ax=None, bins: int = 15):
    """The reliability diagram: in each band of confidence, how often the
    answer was right (bars) against the confidence itself (the diagonal a
    calibrated model follows); the share of answers per band underneath."""
    fig, ax = _figure(ax, (5.5, 5))
    probs = evaluation.probabilities
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == evaluation.labels
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    counts = np.bincount(which, minlength=bins)
    right = np.bincount(which, weights=correct, minlength=bins)
    centres = (np.arange(bins) + 0.5) / bins
    accuracy = np.divide(right, counts, out=np.zeros(bins), where=counts > 0)
    shown = counts > 0
    ax.bar(
        centres[shown],
        accuracy[shown],
        width=1 / bins,
        edgecolor="black",
        alpha=0.8,
        label="accuracy in the band",
    )
    ax.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (the top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability: ECE {evaluation.ece:.4f} on {evaluation.size:,} {evaluation.set}")
    share = ax.twinx()
    share.bar(
        centres,
        counts / max(counts.sum(), 1),
        width=1 / bins,
        color="tab:orange",
        alpha=0.25,
        label="share of answers",
    )
    share.set_ylim(0, 4)
    share.set_yticks([])
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def plot_predictions(images, evaluation, *, count: int = 12, columns: int = 4):
    """A grid of images, each with its softmax as a bar chart (true class in
    green, a wrong prediction in red).  All on one axes, in cells of unit
    height: an image, then its bars (an axes per chart took seconds)."""
    count = min(count, evaluation.size)
    rows = max(1, -(-count // columns))
    k = evaluation.probabilities.shape[1]
    names = evaluation.class_names
    cell_w, cell_h, chart_w, chart_h = 2.3, 1.3, 1.1, 0.8
    inches = 1.35  # per unit, on both axes: the images stay square
    fig = plt.figure(figsize=(columns * cell_w * inches, rows * cell_h * inches))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98))
    for n in range(count):
        row, col = divmod(n, columns)
        left, base = col * cell_w, (rows - 1 - row) * cell_h + 0.2
        probs, true = evaluation.probabilities[n], int(evaluation.labels[n])
        pred = int(probs.argmax())
        image = _gray(images[n])
        ax.imshow(image, extent=(left, left + 0.9, base, base + 0.9), interpolation="nearest")
        colors = ["tab:gray"] * k
        colors[pred] = "tab:green" if pred == true else "tab:red"
        x = left + 1.05 + (np.arange(k) + 0.5) * chart_w / k
        ax.bar(x, probs * chart_h, width=0.8 * chart_w / k, bottom=base, color=colors)
        ax.plot([left + 1.05, left + 1.05 + chart_w], [base, base], color="black", lw=0.6)
        ax.plot([left + 1.05] * 2, [base, base + chart_h], color="black", lw=0.6)
        ax.text(left + 1.0, base + chart_h, "1", ha="right", va="center", fontsize=5)
        for i, name in enumerate(names):
            ax.text(x[i], base - 0.03, str(name), ha="center", va="top", fontsize=6)
        ax.text(
            left + 1.05 + chart_w / 2,
            base + chart_h + 0.05,
            f"true {names[true]}, pred {names[pred]} {probs[pred]:.2f}",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xlim(-0.05, columns * cell_w - 0.1)
    ax.set_ylim(0, rows * cell_h)
    ax.axis("off")
    return fig


def plot_mistakes(images, evaluation, *, count: int = 24, columns: int = 8):
    """The most confident wrong predictions, most confident first."""
    chosen = evaluation.mistakes[:count]
    names = evaluation.class_names
    titles = []
    for i in chosen:
        probs = evaluation.probabilities[i]
        pred = int(probs.argmax())
        titles.append(f"{names[int(evaluation.labels[i])]}→{names[pred]} {probs[pred]:.2f}")
    fig = _tile_figure(
        [_gray(images[i]) for i in chosen],
        titles,
        columns=columns,
        inches=1.5,
        title_color="tab:red",
        fontsize=8,
        suptitle="Worst mistakes (true→predicted, confidence)",
    )
    if not len(chosen):
        fig.text(0.5, 0.4, "no mistakes", ha="center", va="center")
    return fig


def plot_samples(images, labels, class_names, *, count: int = 32, columns: int = 8):
    """A grid of dataset images with their labels."""
    count = min(count, len(images))
    return _tile_figure(
        [_gray(images[n]) for n in range(count)],
        [str(class_names[int(labels[n])]) for n in range(count)],
        columns=columns,
        inches=1.3,
        fontsize=9,
    )


def plot_weights(weights, *, count: int = 64, columns: int = 16):
    """The first layer's weights, one small picture per hidden unit: red where a
    bright pixel raises the unit's input, blue where it lowers it."""
    weights = np.asarray(weights)[:count]
    return _tile_figure(
        [_diverging(w) for w in weights],
        None,
        columns=columns,
        inches=0.75,
        suptitle=f"What the first layer learned: the weights of {len(weights)} hidden units",
    )


def plot_saliency(images, maps, titles, *, columns: int = 4):
    """Each image beside its saliency map (red: pixels that pushed the answer
    up, blue: pixels that pushed it down)."""
    tiles, names = [], []
    for image, saliency, title in zip(images, maps, titles, strict=True):
        tiles += [_gray(image), _diverging(saliency)]
        names += [title, "why"]
    return _tile_figure(
        tiles,
        names,
        columns=2 * columns,
        inches=1.3,
        fontsize=8,
        suptitle="Why: which pixels made it say so (gradient x input)",
    )


def _look_inside(classifier, evaluation, images) -> dict:
    """The weights (MLP) and saliency (the worst mistakes) figures, where the
    model is a Keras network."""
    from digitlab import inside
    from digitlab.errors import ConfigError

    if classifier is None or not hasattr(classifier.model, "layers"):
        return {}
    figures = {}
    try:
        figures["weights"] = plot_weights(inside.first_layer_weights(classifier))
    except ConfigError:
        pass  # a convnet: its first layer does not see whole images
    chosen = np.asarray(evaluation.mistakes[:8], dtype=np.int64)
    if len(chosen):
        maps = inside.saliency(classifier, images[chosen])
        names = evaluation.class_names
        predicted = evaluation.predictions[chosen]
        titles = [
            f"{names[evaluation.labels[i]]} read as {names[p]}"
            for i, p in zip(chosen, predicted, strict=True)
        ]
        figures["saliency"] = plot_saliency(images[chosen], maps, titles)
    return figures


def save_report(folder, evaluation, history: dict, images, classifier=None) -> dict[str, str]:
    """Write the report PNGs of a run into ``folder``; return name → file.
    With the run's ``classifier`` (a Keras network), also what it learned
    (``weights.png``, the MLP) and why it made its worst mistakes (``saliency.png``)."""
    folder = Path(folder)
    figures = {
        "confusion_matrix": plot_confusion_matrix(evaluation),
        "training_curves": plot_training_curves(history) if history else None,
        "predictions": plot_predictions(images, evaluation),
        "mistakes": plot_mistakes(images, evaluation),
        "reliability": plot_reliability(evaluation),
        **_look_inside(classifier, evaluation, images),
    }
    written = {}
    for name, fig in figures.items():
        if fig is None:
            continue
        save_figure(fig, folder / REPORT_FILES[name])
        written[name] = REPORT_FILES[name]
    return written


#: The PNG "Software" text every figure digitlab saves carries, so that it can
#: tell its own files from a user's before writing over one.
SOFTWARE_TAG = "digitlab"


def save_figure(fig, path, *, format: str = "png") -> None:
    """Save ``fig`` as a PNG (to a path or a binary file object), tagged as
    digitlab's, and close it (figures are not garbage-collected otherwise)."""
    try:
        fig.savefig(path, dpi=110, format=format, metadata={"Software": SOFTWARE_TAG})
    finally:
        plt.close(fig)


def is_own_png(path) -> bool:
    """Whether ``path`` is a PNG that digitlab saved (see :data:`SOFTWARE_TAG`)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.info.get("Software") == SOFTWARE_TAG
    except (OSError, ValueError):
        return False


def _gray(image) -> np.ndarray:
    """An image (h, w) or (h, w, 1), uint8 or in [0, 1], as RGB in [0, 1]."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    scale = 255.0 if image.dtype == np.uint8 else 1.0
    value = np.clip(image.astype(np.float32) / scale, 0.0, 1.0)
    return np.repeat(value[..., None], 3, axis=-1) if value.ndim == 2 else value


def _diverging(values) -> np.ndarray:
    """Signed values as RGB: blue below 0, white at 0, red above, scaled by the
    largest magnitude (matplotlib's ``bwr``)."""
    values = np.asarray(values, dtype=np.float32)
    limit = float(np.abs(values).max()) or 1.0
    return plt.get_cmap("bwr")(0.5 + 0.5 * values / limit)[..., :3]


def _tile_figure(tiles, titles, *, columns, inches, title_color="black", fontsize=8, suptitle=None):
    """RGB ``tiles`` of one size in a grid of ``columns``, each under its title:
    one image on one axes, so that a grid of 64 costs what one picture does (an
    axes per tile made the report's grids most of its drawing time)."""
    count = len(tiles)
    columns = max(1, min(columns, count)) if count else columns
    rows = max(1, -(-count // columns))
    height, width = (tiles[0].shape[:2]) if count else (28, 28)
    gap = max(2, width // 8)
    title_room = int(round(height * 0.45)) if titles else gap
    cell_h, cell_w = height + title_room, width + gap
    mosaic = np.ones((rows * cell_h, columns * cell_w - gap, 3), dtype=np.float32)
    for n, tile in enumerate(tiles):
        row, col = divmod(n, columns)
        top, left = row * cell_h + title_room, col * cell_w
        mosaic[top : top + height, left : left + width] = tile
    top_inches = 0.35 if suptitle else 0.05
    figure_h = rows * inches * cell_h / cell_w + top_inches
    fig = plt.figure(figsize=(columns * inches, figure_h))
    ax = fig.add_axes((0.01, 0.01, 0.98, 1 - top_inches / figure_h - 0.01))
    ax.imshow(mosaic, interpolation="nearest", aspect="auto")
    ax.axis("off")
    for n, title in enumerate(titles or []):
        row, col = divmod(n, columns)
        ax.text(
            col * cell_w + width / 2,
            row * cell_h + title_room - 1.5,
            title,
            ha="center",
            va="bottom",
            fontsize=fontsize,
            color=title_color,
        )
    if suptitle:
        fig.suptitle(suptitle, fontsize=10, y=1 - 0.05 / figure_h)
    return fig


def _figure(ax, size):
    if ax is None:
        fig, ax = plt.subplots(figsize=size)
        return fig, ax
    return ax.figure, ax
