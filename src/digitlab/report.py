"""``report.html``: a run's report as one file to keep or send.

Everything is inside the file (figures as ``data:`` URLs, the style sheet
inline, no script, nothing fetched), so it opens offline in any browser and
prints on paper; a figure enlarges when clicked (a CSS ``:target`` view).
``digitlab train`` writes it at the end of every run; ``digitlab report RUN``
writes it again (for runs of earlier versions too).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from digitlab import _files
from digitlab.runs.schema import REPORT_FILES

REPORT_FILE = "report.html"

#: What each figure shows, in one sentence.
CAPTIONS = {
    "confusion_matrix.png": "Confusion matrix: how often each true class (rows) was read "
    "as each class (columns); the diagonal holds the right answers.",
    "training_curves.png": "Training curves: loss and accuracy after each epoch, on the "
    "training images and on the validation images.",
    "predictions.png": "Sample predictions: images with the ten probabilities the model gave.",
    "mistakes.png": "The most confident mistakes: where the model was surest and wrong.",
    "reliability.png": "Reliability: for answers of each confidence, how often they were "
    "right; a calibrated model follows the diagonal.",
    "weights.png": "What the first layer learned: each hidden unit's weight on every pixel "
    "(red raises the unit, blue lowers it).",
    "saliency.png": "Why the worst mistakes happened: the pixels that pushed the model "
    "towards its wrong answer (red) or away from it (blue).",
}

#: What each metric means, in one sentence.
MEANINGS = {
    "accuracy": "the share of images whose most probable class is the true one",
    "loss": "the mean cross-entropy, -log of the probability given to the true class "
    "(lower is better; it punishes confident mistakes)",
    "ece": "expected calibration error: the average gap between how confident the "
    "answers were and how often they were right (0 is perfectly calibrated)",
    "macro_f1": "the F1 score (harmonic mean of precision and recall) averaged over the "
    "classes, each class counting the same",
    "precision": "of the images read as this class, the share that were",
    "recall": "of the images of this class, the share read as it",
}

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .7em;border-bottom:1px solid #eee;
text-align:right}th:first-child,td:first-child{text-align:left}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dt{font-weight:600}dd{margin:0}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:1em}
figure{margin:0}figure img{width:100%;border:1px solid #ddd;cursor:zoom-in}
figcaption{font-size:.9em;color:#555}.meaning{color:#555;font-size:.9em}
.zoom{display:none}.zoom:target{display:flex;position:fixed;inset:0;background:rgba(0,0,0,.85);
align-items:center;justify-content:center;z-index:9}.zoom img{max-width:96vw;max-height:96vh;
background:#fff}.zoom a.close{position:absolute;inset:0}
@media print{.zoom{display:none!important}.figures{display:block}figure{break-inside:avoid;
margin-bottom:1em}body{max-width:none}}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _png_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def build_report(run, figures_from: Path | None = None) -> str:
    """The HTML text of ``run``'s report (a :class:`~digitlab.runs.Run`), with
    the figures found in ``figures_from`` (default: the run's folder)."""
    folder = Path(run.path)
    source = Path(figures_from) if figures_from is not None else folder
    metrics, info = run.metrics, run.info
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>digitlab report: {_e(folder.name)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Run {_e(folder.name)}: {_e(run.config.model)} on {_e(info.data.name)}</h1>",
        f"<p>{info.params:,} {_e(info.size_unit)}, trained in {info.train_seconds:.1f} s "
        f"on {info.data.train_size or 0:,} images; evaluated on {metrics.size:,} "
        f"{_e(metrics.set)} images. Created {_e(info.created)}.</p>",
        "<h2>Scores</h2><dl>",
    ]
    for key in ("accuracy", "loss", "ece", "macro_f1"):
        value = getattr(metrics, key)
        shown = f"{100 * value:.2f} %" if key == "accuracy" else f"{value:.4f}"
        parts.append(
            f"<dt>{_e(key)}</dt><dd>{shown} <span class='meaning'>{_e(MEANINGS[key])}</span></dd>"
        )
    if info.calibration:
        c = info.calibration
        parts.append(
            f"<dt>calibration</dt><dd>temperature {c['temperature']:.3f}, fitted on "
            f"{c.get('size', 0):,} {_e(c.get('fitted_on', ''))} images (ECE there "
            f"{c.get('ece_before', float('nan')):.4f} before) <span class='meaning'>every "
            "probability is softmax(log p / T), which moves confidence, never the answer"
            "</span></dd>"
        )
    parts.append("</dl>")

    figures = [name for name in REPORT_FILES if _is_own_file(source, name)]
    if figures:
        parts.append("<h2>Figures</h2><p class='meaning'>Click a figure to enlarge it.</p>")
        parts.append("<div class='figures'>")
        zooms = []
        for name in figures:
            url, anchor = _png_url(source / name), name.removesuffix(".png")
            caption = _e(CAPTIONS.get(name, name))
            parts.append(
                f"<figure><a href='#{anchor}'><img src='{url}' alt='{caption}'></a>"
                f"<figcaption>{caption}</figcaption></figure>"
            )
            zooms.append(
                f"<div class='zoom' id='{anchor}'><a class='close' href='#' "
                f"aria-label='close'></a><img src='{url}' alt='{caption}'></div>"
            )
        parts.append("</div>")
        parts.extend(zooms)

    parts.extend(_ood_section(metrics.extra.get("ood")))

    if metrics.per_class:
        parts.append(
            "<h2>Per class</h2><p class='meaning'>precision: "
            f"{_e(MEANINGS['precision'])}; recall: {_e(MEANINGS['recall'])}.</p>"
            "<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>"
            "<th>images</th></tr>"
        )
        for name, row in metrics.per_class.items():
            parts.append(
                f"<tr><td>{_e(name)}</td><td>{row['precision']:.3f}</td>"
                f"<td>{row['recall']:.3f}</td><td>{row['f1']:.3f}</td>"
                f"<td>{row['support']:,}</td></tr>"
            )
        parts.append("</table>")

    parts.append("<h2>Configuration</h2><dl>")
    for key, value in run.config.to_dict().items():
        parts.append(f"<dt>{_e(key)}</dt><dd>{_e(value)}</dd>")
    parts.append("</dl><h2>Data and versions</h2><dl>")
    parts.append(f"<dt>data</dt><dd>{_e(info.data.name)} ({_e(info.data.source)})</dd>")
    parts.append(f"<dt>classes</dt><dd>{_e(', '.join(info.data.class_names))}</dd>")
    for key, value in info.versions.items():
        parts.append(f"<dt>{_e(key)}</dt><dd>{_e(value)}</dd>")
    parts.append("</dl></body></html>\n")
    return "\n".join(parts)


def _ood_section(ood) -> list[str]:
    """The "not a digit" table, from ``metrics.json``'s ``"ood"`` figures."""
    if not isinstance(ood, dict) or not isinstance(ood.get("families"), dict):
        return []
    digits = ood.get("digits") or {}
    rows = [
        "<h2>Not a digit</h2><p class='meaning'>Before a digit is named, a detector "
        "shipped with digitlab scores whether each mark is a digit at all; below "
        f'{_e(ood.get("threshold"))} the answer is "no digit". Here '
        f"{100 * float(digits.get('accepted', 0)):.2f} % of {int(digits.get('images', 0)):,} "
        f"evaluation digits were accepted, and {100 * float(ood.get('rejected', 0)):.1f} % of "
        f"generated non-digits rejected ({_e(ood.get('negatives', ''))}). AUROC: the "
        "chance a digit scores above a non-digit. FAR@95%TAR: the share of non-digits "
        "let through at the score that accepts 95% of digits.</p>",
        "<table><tr><th>family</th><th>AUROC</th><th>FAR@95%TAR</th><th>rejected</th>"
        "<th>images</th></tr>",
    ]
    for name, row in ood["families"].items():
        if not isinstance(row, dict):
            continue
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{float(row.get('auroc', 0)):.3f}</td>"
            f"<td>{float(row.get('far_at_95_tar', 0)):.3f}</td>"
            f"<td>{100 * float(row.get('rejected', 0)):.1f} %</td>"
            f"<td>{int(row.get('images', 0)):,}</td></tr>"
        )
    rows.append("</table>")
    return rows


def write_report(run, folder: Path | None = None) -> Path:
    """Write ``report.html`` into ``folder`` (default: the run's own)
    atomically, with the figures found there."""
    folder = Path(folder if folder is not None else run.path)
    return _files.write_text(folder / REPORT_FILE, build_report(run, folder))


def _is_own_file(folder: Path, name: str) -> bool:
    """A regular file inside the folder: a link out of it is not embedded."""
    path = folder / name
    return path.is_file() and not path.is_symlink() and path.stat().st_size < 32 * 2**20
