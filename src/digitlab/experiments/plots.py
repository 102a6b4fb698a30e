"""The experiments' figures.  matplotlib is imported only when one is drawn.

Training seconds exclude compilation (see :mod:`digitlab.experiments.records`).
An axis with a single value shows side-by-side points with error bars, never a
line: one x value has no trend to draw.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from digitlab._files import write_bytes
from digitlab.experiments.text import cell, plural

_SINGULAR = {"layers": "layer", "neurons": "neuron"}


def plot_comparison(rows: Sequence[dict]):
    """Bar charts of accuracy and training time (log scale) per model; returns the figure."""
    plt = _pyplot()
    names = [row["model"] for row in rows]
    fig, (ax_acc, ax_time) = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(rows)), 4))
    accuracy = [row["accuracy"] for row in rows]
    bars = ax_acc.bar(names, accuracy, color="tab:blue")
    ax_acc.bar_label(bars, labels=[f"{a:.3f}" for a in accuracy], fontsize=8)
    ax_acc.set_ylim(max(0.0, min(accuracy) - 0.1), 1.0)
    ax_acc.set_ylabel(f"accuracy ({rows[0]['eval_set']}, {rows[0]['eval_size']:,} images)")
    ax_acc.set_title("Accuracy")
    seconds = [max(row["train_seconds"], 1e-3) for row in rows]
    bars = ax_time.bar(names, seconds, color="tab:orange")
    ax_time.bar_label(bars, labels=[f"{s:.1f}" for s in seconds], fontsize=8)
    ax_time.set_yscale("log")
    ax_time.set_ylabel("training seconds\n(without compilation, log scale)")
    ax_time.set_title("Training time")
    for ax in (ax_acc, ax_time):
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(axis="x", rotation=30 if len(rows) > 6 else 0)
    fig.tight_layout()
    return fig


def plot_sweep(summary: Sequence[dict], varied: Sequence[str]) -> dict:
    """The sweep's figures, file name → figure.

    When the grid varies ``hidden`` with equal widths (``hidden`` × ``layers``):
    ``accuracy_vs_neurons.png`` (one series per layer count, error bars =
    standard deviation over seeds) and ``training_time.png`` (seconds against
    layers and against neurons).  Always ``summary.png``: accuracy, and
    training and compile seconds, per grid point.
    """
    plt = _pyplot()
    figures = {}
    if not summary:
        return figures
    others = [name for name in varied if name not in ("seed", "hidden")]
    seeds = _seeds_note(summary)
    if "hidden" in varied and all(row.get("neurons") for row in summary):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        _series(ax, summary, "neurons", "layers", "accuracy", others)
        ax.set_ylabel(f"accuracy ({seeds})")
        ax.set_title("Accuracy against neurons per layer")
        fig.tight_layout()
        figures["accuracy_vs_neurons.png"] = fig

        fig, (ax_layers, ax_neurons) = plt.subplots(1, 2, figsize=(12, 4.5))
        _series(ax_layers, summary, "layers", "neurons", "train_seconds", others)
        _series(ax_neurons, summary, "neurons", "layers", "train_seconds", others)
        for ax in (ax_layers, ax_neurons):
            ax.set_ylabel(f"training seconds\n(without compilation; {seeds})")
        ax_layers.set_title("Training time against layers")
        ax_neurons.set_title("Training time against neurons per layer")
        fig.tight_layout()
        figures["training_time.png"] = fig

    figures["summary.png"] = _summary_figure(plt, summary, varied, seeds)
    return figures


def save_png(path, fig) -> None:
    """Write ``fig`` to ``path`` as a PNG, atomically, and close it."""
    from digitlab.plots import save_figure

    buffer = io.BytesIO()
    save_figure(fig, buffer)  # a file object gets matplotlib's default format, PNG
    write_bytes(path, buffer.getvalue())


def _summary_figure(plt, summary, varied, seeds: str):
    columns = [name for name in varied if name != "seed"]
    labels = [", ".join(f"{n}={cell(row[n])}" for n in columns) or "base" for row in summary]
    height = max(3.0, 0.35 * len(summary) + 1.5)
    fig, (ax_acc, ax_time) = plt.subplots(1, 2, figsize=(12, height), sharey=True)
    positions = list(range(len(summary)))
    ax_acc.barh(
        positions,
        [row["accuracy_mean"] for row in summary],
        xerr=_spread(summary, "accuracy"),
        color="tab:blue",
        capsize=3,
    )
    low = min(row["accuracy_mean"] - row["accuracy_std"] for row in summary)
    ax_acc.set_xlim(max(0.0, low - 0.02), 1.0)
    ax_acc.set_yticks(positions, labels, fontsize=8)
    ax_acc.invert_yaxis()
    ax_acc.set_xlabel(f"accuracy ({seeds})")
    training = [row["train_seconds_mean"] for row in summary]
    ax_time.barh(
        positions,
        training,
        xerr=_spread(summary, "train_seconds"),
        color="tab:orange",
        capsize=3,
        label="training",
    )
    compiling = [row.get("compile_seconds_mean") for row in summary]
    if any(value is not None for value in compiling):
        ax_time.barh(
            positions,
            [value or 0.0 for value in compiling],
            left=training,
            color="tab:orange",
            alpha=0.35,
            hatch="//",
            label="compilation",
        )
        ax_time.legend(fontsize=8, loc="lower right")
    ax_time.set_xlabel(f"seconds ({seeds})")
    for ax in (ax_acc, ax_time):
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _series(ax, summary, x_name: str, by: str, metric: str, others) -> None:
    """``metric`` against ``x_name``, one series per value of ``by`` (and of the
    other varied fields), error bars = standard deviation over seeds."""
    groups: dict[str, list[dict]] = {}
    for row in summary:
        parts = [plural(row[by], _SINGULAR[by])]
        parts += [f"{name}={cell(row[name])}" for name in others]
        groups.setdefault(", ".join(parts), []).append(row)
    xs = sorted({row[x_name] for row in summary})
    single = len(xs) == 1
    step = min(0.06, 0.4 / len(groups))
    for number, (label, rows) in enumerate(groups.items()):
        rows = sorted(rows, key=lambda r: r[x_name])
        x = [r[x_name] for r in rows]
        if single:  # side by side around the one value, so no point hides another
            x = [value * (1 + step * (number - (len(groups) - 1) / 2)) for value in x]
        ax.errorbar(
            x,
            [r[f"{metric}_mean"] for r in rows],
            yerr=_spread(rows, metric),
            marker="o",
            linestyle="none" if single else "-",
            capsize=3,
            label=label,
        )
    if x_name == "neurons" and not single:
        ax.set_xscale("log", base=2)  # widths usually double: a log2 axis spaces them evenly
    if single:
        ax.set_xlim(xs[0] * 0.7, xs[0] * 1.3)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.minorticks_off()
    ax.set_xlabel("neurons per layer" if x_name == "neurons" else "hidden layers")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _spread(rows, metric: str) -> list[float] | None:
    """Error bars of ``metric``: its standard deviations, or None where every
    point has one seed (nothing to show)."""
    if all(row["seeds"] == 1 for row in rows):
        return None
    return [row[f"{metric}_std"] for row in rows]


def _seeds_note(summary) -> str:
    """``1 seed`` or ``mean ± std over 3 seeds`` (``2–3 seeds`` where points differ)."""
    counts = sorted({row["seeds"] for row in summary})
    if counts == [1]:
        return plural(1, "seed")
    span = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    return f"mean ± std over {span} seeds"


def _pyplot():
    import matplotlib.pyplot as plt

    from digitlab import plots  # noqa: F401  (selects the Agg backend)

    return plt
