"""``digitlab export RUN --format web DIR``: a drawing page that reads digits
in the browser, served by any static file server, nothing loaded from elsewhere.

The folder holds ``index.html``, ``app.js`` (the page), ``frame.js`` (the
canvas → 28x28 framing of :func:`digitlab.inference.images.prepare_digit`,
ported), ``style.css``, ``favicon.svg``, the model (``model.onnx``,
``model.json``, ``model.md``, as ``--format onnx`` writes them) and ``ort/``:
onnxruntime-web's wasm build (``ort.wasm.bundle.min.mjs`` and
``ort-wasm-simd-threaded.wasm``, vendored unchanged from the npm package
onnxruntime-web 1.30.0 into digitlab's package data, checked against
``ort/VENDORED.json``).  ``python -m http.server -d DIR`` serves it; a
``file://`` URL does not (browsers refuse to load modules and WebAssembly from
files).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from digitlab import _files
from digitlab.errors import RunError

STATIC = Path(__file__).parent / "web_static"
SERVE_STATIC = Path(__file__).parent.parent / "serve" / "static"
PAGE_FILES = ("index.html", "app.js", "frame.js")
SHARED_FILES = ("style.css", "favicon.svg")  # the drawing page's own
RUNTIME_DIR = "ort"


def runtime_files() -> dict[str, Path]:
    """The vendored onnxruntime-web files, checked against their pinned SHA-256."""
    folder = STATIC / RUNTIME_DIR
    manifest = json.loads((folder / "VENDORED.json").read_text(encoding="utf-8"))
    files = {}
    for name, digest in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise RunError(
                f"{path}: expected onnxruntime-web's {name} in digitlab's package. "
                "It is missing (reinstall digitlab)"
            )
        found = hashlib.sha256(path.read_bytes()).hexdigest()
        if found != digest:
            raise RunError(f"{path}: expected SHA-256 {digest}. Found {found} (reinstall digitlab)")
        files[name] = path
    files["LICENSE"] = folder / "LICENSE"
    files["VENDORED.json"] = folder / "VENDORED.json"
    return files


def check_folder(path: Path) -> Path:
    path = Path(path)
    if path.is_symlink() or (path.exists() and (not path.is_dir() or any(path.iterdir()))):
        raise RunError(
            f"{path}: expected a new or empty folder for the web export. It already exists"
        )
    return path


def export_web(run, folder) -> dict:
    """Write the web export of a loaded run into ``folder`` (new or empty),
    atomically; return the files written and their sizes."""
    from digitlab.export.bundle import MODEL_FILE, export_onnx

    if len(run.image_shape) != 2:
        raise RunError(
            f"{run.path}: expected a model of greyscale images for the web page. "
            f"Found one of {run.image_shape} images"
        )
    folder = check_folder(folder)
    ort_files = runtime_files()
    with _files.atomic_folder(folder) as tmp:
        summary = export_onnx(run, tmp / MODEL_FILE)
        for name in PAGE_FILES:
            shutil.copyfile(STATIC / name, tmp / name)
        for name in SHARED_FILES:
            shutil.copyfile(SERVE_STATIC / name, tmp / name)
        (tmp / RUNTIME_DIR).mkdir()
        for name, path in ort_files.items():
            shutil.copyfile(path, tmp / RUNTIME_DIR / name)
    files = {
        str(path): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != _files.OWNER_FILE
    }
    return {
        "format": "web",
        "folder": str(folder),
        "files": files,
        "bytes": sum(files.values()),
        "export_seconds": summary["export_seconds"],
        "max_abs_diff": summary["max_abs_diff"],
        "serve_with": f"python3 -m http.server --bind 127.0.0.1 --directory {folder}",
    }
