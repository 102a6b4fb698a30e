"""What the experiments write and print: tables, CSV and JSON files, the
sweep's per-grid-point statistics, and the small formatting helpers they share.

Training seconds exclude compilation; compile seconds stand beside them
(``compile_seconds``; "–" in a table where a run did not record it).
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Sequence
from pathlib import Path

from digitlab._files import write_text
from digitlab.experiments.text import cell, megabytes
from digitlab.runs import now

COMPARE_CSV = "compare.csv"
COMPARE_JSON = "compare.json"
COMPARE_PNG = "compare.png"
RESULTS_CSV = "results.csv"
SUMMARY_CSV = "summary.csv"
RESULTS_JSON = "results.json"

#: Per-trial figures a sweep summary averages over seeds, in column order.
SUMMARY_METRICS = ("accuracy", "loss", "ece", "train_seconds", "compile_seconds")
#: The trial record fields in ``results.csv``, after the key and the varied fields.
TRIAL_COLUMNS = (
    "accuracy",
    "loss",
    "ece",
    "macro_f1",
    "params",
    "size_unit",
    "train_seconds",
    "compile_seconds",
    "seconds_per_epoch",
    "predict_seconds_per_10k",
    "model_bytes",
    "eval_set",
    "eval_size",
    "host",
)


# --------------------------------------------------------------------------- compare


def format_compare_table(rows: Sequence[dict]) -> str:
    """Rows of :func:`compare` as a markdown table (model, size, timings, scores)."""
    header = (
        "| model | params / size | model file | train s | compile s | predict s/10k "
        "| accuracy | loss | ECE |"
    )
    lines = [header, "|---|" + "---:|" * 8]
    for row in rows:
        size = f"{row['params']:,}"
        if row.get("size_unit", "parameters") != "parameters":
            size += f" {row['size_unit']}"
        lines.append(
            f"| {row['model']} | {size} | {megabytes(row.get('model_bytes'))} "
            f"| {row['train_seconds']:.1f} | {_seconds(row.get('compile_seconds'))} "
            f"| {row['predict_seconds_per_10k']:.2f} "
            f"| {row['accuracy']:.4f} | {row['loss']:.4f} | {row['ece']:.4f} |"
        )
    return "\n".join(lines)


def write_comparison(out: Path, summary: dict, rows: Sequence[dict]) -> None:
    """``compare.json`` (``summary``, which holds the rows), ``compare.csv`` and
    ``compare.png`` in ``out``."""
    from digitlab.experiments.plots import plot_comparison, save_png

    write_text(out / COMPARE_JSON, json.dumps(summary, indent=2) + "\n")
    write_text(out / COMPARE_CSV, csv_text(rows))
    save_png(out / COMPARE_PNG, plot_comparison(rows))


# --------------------------------------------------------------------------- sweep


def summarize(trials: Sequence[dict], varied: Sequence[str]) -> list[dict]:
    """One row per grid point (config without its seed): the varied fields,
    ``seeds`` (trials), and mean and sample standard deviation (n-1; 0 for one
    seed) of accuracy, loss, ECE, training, compile and prediction seconds;
    ``params`` is the mean model size (the same for every seed of a Keras model).

    A trial that did not record its compile seconds (written before digitlab
    measured them) is left out of that mean; with none, mean and std are None.
    """
    groups: dict[str, list[dict]] = {}
    for record in trials:
        point = {k: v for k, v in record["config"].items() if k != "seed"}
        groups.setdefault(json.dumps(point, sort_keys=True), []).append(record)
    rows = []
    for records in groups.values():
        config = records[0]["config"]
        row = {name: config[name] for name in varied if name != "seed"}
        if "hidden" in row:
            row["layers"] = len(config["hidden"])
            widths = set(config["hidden"])
            row["neurons"] = widths.pop() if len(widths) == 1 else None
        row["seeds"] = len(records)
        for metric in (*SUMMARY_METRICS, "predict_seconds_per_10k"):
            values = [float(r[metric]) for r in records if r.get(metric) is not None]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            row[f"{metric}_mean"] = statistics.fmean(values) if values else None
            row[f"{metric}_std"] = spread if values else None
        row["params"] = statistics.fmean(float(r["params"]) for r in records)
        rows.append(row)
    return rows


def format_sweep_table(summary: Sequence[dict], varied: Sequence[str]) -> str:
    """The sweep summary as a markdown table, one row per grid point (mean ±
    standard deviation where a point has several seeds)."""
    columns = [name for name in varied if name != "seed"]
    head = [*columns, "seeds", "params", "accuracy", "loss", "train s", "compile s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(columns) + "---:|" * 6]

    def spread(row, metric: str, digits: int) -> str:
        if row[f"{metric}_mean"] is None:
            return "–"
        text = f"{row[f'{metric}_mean']:.{digits}f}"
        return text + (f" ± {row[f'{metric}_std']:.{digits}f}" if row["seeds"] > 1 else "")

    for row in summary:
        cells = [cell(row[name]) for name in columns]
        cells += [
            str(row["seeds"]),
            f"{row['params']:,.0f}",
            spread(row, "accuracy", 4),
            spread(row, "loss", 4),
            spread(row, "train_seconds", 1),
            spread(row, "compile_seconds", 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_sweep_results(out, trials: Sequence[dict], summary: Sequence[dict], varied) -> None:
    """Write ``results.csv`` (one row per trial), ``summary.csv`` (one per grid
    point), ``results.json`` (both) and the plots into ``out``."""
    from digitlab.experiments.plots import plot_sweep, save_png

    out = Path(out)
    trial_rows = [
        {
            "key": record["key"],
            **{name: record["config"][name] for name in varied},
            **{name: record.get(name) for name in TRIAL_COLUMNS},
        }
        for record in trials
    ]
    write_text(out / RESULTS_CSV, csv_text(trial_rows))
    write_text(out / SUMMARY_CSV, csv_text(summary))
    results = {"created": now(), "varied": list(varied), "trials": trials, "summary": summary}
    write_text(out / RESULTS_JSON, json.dumps(results, indent=2) + "\n")
    for name, fig in plot_sweep(summary, varied).items():
        save_png(out / name, fig)


# --------------------------------------------------------------------------- helpers


def csv_text(rows: Sequence[dict]) -> str:
    """Rows as CSV text: every key any row has, in first-seen order; tuples
    and lists as ``(a,b)``; None as an empty cell."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: cell(v) if isinstance(v, list | tuple) else v for k, v in row.items()})
    return buffer.getvalue()


def _seconds(value) -> str:
    return "–" if value is None else f"{value:.1f}"
