"""The model card written beside an exported model: data, accuracy,
calibration, how to feed it, and its limits, in a page of markdown."""

from __future__ import annotations

import re

_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~])~?/[^\s,;]*")


def _no_local_paths(text: str) -> str:
    """``data dir /home/me/mnist`` → ``data dir mnist``: a card travels."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1] or "/", text)


#: The first line of every model card: what marks the file as digitlab's own.
CARD_MARK = "<!-- digitlab model card -->"


def _number(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def model_card(run, description: dict) -> str:
    """Markdown for ``run``'s export (``description``: the JSON written beside it)."""
    info, metrics = run.info, run.metrics
    data = info.data
    calibration = info.calibration or {}
    names = ", ".join(run.class_names)
    shape = "x".join(map(str, run.image_shape))
    export = description.get("export", {})
    check = export.get("check", {})
    verified = "verified against the published SHA-256" if data.verified else "not verified"
    lines = [
        CARD_MARK,
        f"# Model card: {run.config.model} ({run.path.name})",
        "",
        f"Exported by {description['exported_by']} as `{description['model_file']}` "
        f"({export.get('bytes', 0):,} bytes, SHA-256 `{export.get('sha256', '')}`), "
        f"with `{description['model_file'].removesuffix('.onnx')}.json` beside it.",
        "",
        "## Model",
        f"- Kind: `{run.config.model}`, {run.params:,} {info.size_unit}, "
        f"trained {info.created} in {info.train_seconds:.1f} s.",
        f"- Classes: {names}.",
        "",
        "## Data",
        f"- {data.name}: {data.train_size or 0:,} training images "
        f"({_no_local_paths(data.source)}; {verified}).",
        f"- Evaluated on the {metrics.size:,} {metrics.set} images.",
        "",
        "## Accuracy",
        "| set | images | accuracy | log-loss | ECE | macro F1 |",
        "|---|---|---|---|---|---|",
        f"| {metrics.set} | {metrics.size:,} | {metrics.accuracy:.4f} | {metrics.loss:.4f} "
        f"| {metrics.ece:.4f} | {metrics.macro_f1:.4f} |",
        "",
        "## Calibration",
    ]
    if calibration:
        lines += [
            f"- Temperature T = {info.temperature:.4f}, fitted on "
            f"{calibration.get('size', 'n/a')} {calibration.get('fitted_on', '')} images "
            f"(ECE before {_number(calibration.get('ece_before'))}, after: the table above).",
            "- Applied inside the graph: `probabilities = softmax(log(p) / T)`; use the "
            "output as it is.",
        ]
    else:
        lines.append("- Not calibrated (T = 1): the probabilities are the model's own.")
    lines += [
        "",
        "## Input and output",
        f"- Input `images`: float32 `(batch, {', '.join(map(str, run.image_shape))})`, "
        "pixels / 255 in [0, 1], light ink (1.0) on a dark background (0.0).",
        f"- Framing: {description['preprocessing']['framing']}.",
        f"- Output `probabilities`: float32 `(batch, {len(run.class_names)})`, rows sum to 1.",
        f"- Reading: answer the best class when its probability is at least "
        f"{description['reading']['threshold']}, else 'not sure'; "
        f"{description['reading']['no_digit_rule']}.",
        f"- Export check: onnxruntime and digitlab differ by at most "
        f"{check.get('max_abs_diff', 0):.1e} on {check.get('images', 0)} seeded images.",
        "",
        "## Limits",
        f"- It knows {shape} greyscale images framed as above; anything else (colour, "
        "another framing, dark ink on white not inverted) gives confident nonsense.",
        "- The model alone always answers one of its classes: a letter or a doodle gets "
        "a digit, perhaps a confident one. For digit models the detector beside it "
        "(`detector` in the JSON) answers 'no digit' for crops that are not digits: "
        "use it (on digitlab's benchmark of photographed non-digits it rejected 94.7%, "
        "and 1% of real digits are rejected too).",
        "- Accuracy was measured on held-out images of the same dataset; on photos of "
        "handwriting framed by digitlab it is about 1.5 points lower "
        "(benchmarks/bench_photos.py), on other handwriting it may be lower still.",
        "",
    ]
    return "\n".join(lines)
