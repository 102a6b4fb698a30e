"""What ``digitlab tune`` writes: the results table, CSV and JSON, plots, and its folder marker."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from digitlab._files import write_text
from digitlab.errors import ConfigError
from digitlab.experiments.reports import csv_text
from digitlab.experiments.text import cell
from digitlab.experiments.tune_space import Param
from digitlab.runs import now


def check_tune_folder(out) -> Path:
    """``out`` if a search may write there: new, empty, or a tune folder
    digitlab wrote (its ``tune.json``); anything else is refused."""
    out = Path(out)
    if out.is_symlink() and not out.is_dir():
        raise ConfigError(f"out: expected a folder for the study. {out} is a broken symbolic link")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: expected a folder for the study. {out} is a file")
    if not out.exists():
        return out
    names = [p.name for p in out.iterdir()]
    if all(name.startswith(f".{MARKER}.") for name in names):  # empty, or another tune starting
        return out
    try:
        marker = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        marker = None
    if isinstance(marker, dict) and marker.get("kind") == "digitlab-tune":
        return out
    raise ConfigError(
        f"out: expected a new or empty folder, or a tune folder digitlab wrote. {out} holds "
        "other files, which the study's results would replace"
    )


MARKER = "tune.json"
RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
HISTORY_PNG = "tune_history.png"
PARAMS_PNG = "tune_params.png"
#: Fields a search may not vary: they change what the trials are judged on.


def format_tune_table(rows: Sequence[dict], names: Sequence[str]) -> str:
    """The study's trials as a markdown table, best validation accuracy first."""
    head = ["trial", "state", *names, "val accuracy", "epochs", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|---:|---|" + "---|" * len(names) + "---:|" * 3]
    ordered = sorted(rows, key=lambda r: (r["value"] is None, -(r["value"] or 0), r["trial"]))
    for row in ordered:
        cells = [str(row["trial"]), row["state"].lower()]
        cells += [_cell(row["params"].get(name)) for name in names]
        cells.append("–" if row["value"] is None else f"{row['value']:.4f}")
        cells.append("–" if row["epochs"] is None else str(row["epochs"]))
        cells.append("–" if row["train_seconds"] is None else f"{row['train_seconds']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def trial_row(trial, params: Sequence[Param]) -> dict:
    record = trial.user_attrs.get("record") or {}
    steps = trial.intermediate_values
    epochs = (max(steps) + 1) if steps else (len(record.get("history", {}).get("loss", [])) or None)
    return {
        "trial": trial.number,
        "state": trial.state.name,
        "value": None if trial.value is None else float(trial.value),
        "params": {p.name: trial.params.get(p.name) for p in params},
        "config": trial.user_attrs.get("config"),
        "epochs": epochs,
        "val_accuracy_per_epoch": [float(steps[k]) for k in sorted(steps)],
        "train_seconds": record.get("train_seconds"),
        "loss": record.get("loss"),
        "ece": record.get("ece"),
        "model_params": record.get("params"),
        "host": record.get("host"),
        "pid": record.get("pid"),
    }


def write_results(out: Path, result, rows, params, study_name: str, shown: str) -> None:
    names = [p.name for p in params]
    flat = [
        {
            "trial": r["trial"],
            "state": r["state"],
            **{name: r["params"].get(name) for name in names},
            "val_accuracy": r["value"],
            "epochs": r["epochs"],
            "loss": r["loss"],
            "train_seconds": r["train_seconds"],
            "params": r["model_params"],
            "host": r["host"],
        }
        for r in rows
    ]
    write_text(out / RESULTS_CSV, csv_text(flat))
    summary = (
        result.to_dict()
        if result is not None
        else {"out": str(out), "study": study_name, "storage": shown, "trials": rows}
    )
    write_text(out / RESULTS_JSON, json.dumps({"created": now(), **summary}, indent=2) + "\n")
    from digitlab.experiments.plots import save_png

    for name, fig in plot_tune(rows, params).items():
        save_png(out / name, fig)


def plot_tune(rows: Sequence[dict], params: Sequence[Param]) -> dict:
    """``tune_history.png`` (validation accuracy per trial, best so far) and
    ``tune_params.png`` (accuracy against each searched field)."""
    from digitlab.experiments.plots import _pyplot

    plt = _pyplot()
    figures = {}
    fig, ax = plt.subplots(figsize=(7, 4))
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    pruned = [r for r in rows if r["state"] == "PRUNED" and r["val_accuracy_per_epoch"]]
    ax.scatter([r["trial"] for r in done], [r["value"] for r in done], label="finished")
    ax.scatter(
        [r["trial"] for r in pruned],
        [r["val_accuracy_per_epoch"][-1] for r in pruned],
        marker="x",
        color="tab:gray",
        label="pruned (last epoch)",
    )
    if done:
        best, xs, ys = -math.inf, [], []
        for r in sorted(done, key=lambda r: r["trial"]):
            best = max(best, r["value"])
            xs.append(r["trial"])
            ys.append(best)
        ax.step(xs, ys, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Search history")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    figures[HISTORY_PNG] = fig

    fig, axes = plt.subplots(1, len(params), figsize=(3.5 * len(params), 3.5), squeeze=False)
    for ax, p in zip(axes[0], params, strict=True):
        shown = [r for r in done if r["params"].get(p.name) is not None]
        xs = [r["params"][p.name] for r in shown]
        ax.scatter(xs, [r["value"] for r in shown], s=18)
        if p.is_range and p.log:
            ax.set_xscale("log")
            if p.integer:  # plain numbers (64, 128), not 6x10^1
                from matplotlib.ticker import NullFormatter, ScalarFormatter

                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(p.name)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation accuracy")
    fig.tight_layout()
    figures[PARAMS_PNG] = fig
    return figures


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else cell(value)


def write_marker(out: Path, study_name: str, shown: str) -> None:
    marker = {"kind": "digitlab-tune", "study": study_name, "storage": shown, "updated": now()}
    write_text(out / MARKER, json.dumps(marker, indent=2) + "\n")
