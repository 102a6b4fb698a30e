"""Shared by the prediction, server and browser tests: a tiny trained run, a real
``digitlab serve`` process, and handwriting images made from real MNIST digits."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

#: The fields of one ``predict --json`` / ``POST /api/predict`` result.
RESULT_FIELDS = {
    "file",
    "status",
    "reason",
    "digit_scores",
    "detector",
    "digit",
    "class_name",
    "probability",
    "top3",
    "probabilities",
    "digits",
    "boxes",
    "images",
}

_RUNS: dict[str, Path] = {}


def tiny_run(mnist, tmp_path_factory) -> Path:
    """A run trained once per test session: the tutorial MLP, Adam, 3 epochs on
    5,000 real MNIST images (~90% accurate), with its report plots."""
    key = str(tmp_path_factory.getbasetemp())
    if key not in _RUNS:
        from digitlab.config import TrainConfig
        from digitlab.training import train

        subset = mnist.head(6000, 1000)
        folder = tmp_path_factory.mktemp("tiny") / "run"
        config = TrainConfig(optimizer="adam", epochs=3, validation_size=1000)
        train(config, dataset=subset, run_dir=folder, verbose=0, plots_enabled=True)
        _RUNS[key] = folder
    return _RUNS[key]


# --------------------------------------------------------------------------- images


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def paper_digit(digit: np.ndarray, *, scale: int = 4, margin: int = 8) -> Image.Image:
    """An MNIST digit (uint8, light on black) as dark ink on white paper, enlarged."""
    ink = Image.fromarray(255 - digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    page = Image.new("L", (28 * scale + 2 * margin, 28 * scale + 2 * margin), 255)
    page.paste(ink, (margin, margin))
    return page


def canvas_export(digit: np.ndarray, *, scale: int = 10) -> Image.Image:
    """What a browser canvas gives for black strokes on a transparent background:
    RGBA, colour black everywhere, the ink in the alpha channel."""
    alpha = Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    black = Image.new("RGB", alpha.size, (0, 0, 0))
    black.putalpha(alpha)
    return black


def number_image(digits: list[np.ndarray], *, scale: int = 3, gap: int = 20) -> Image.Image:
    """Several MNIST digits side by side, dark on white: a written number."""
    tiles = [paper_digit(d, scale=scale, margin=0) for d in digits]
    width = sum(t.width for t in tiles) + gap * (len(tiles) + 1)
    page = Image.new("L", (width, tiles[0].height + 2 * gap), 255)
    x = gap
    for tile in tiles:
        page.paste(tile, (x, gap))
        x += tile.width + gap
    return page


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels."""
    import struct
    import zlib

    real = encode(Image.new("L", (8, 8), 255))
    ihdr_at = real.index(b"IHDR")
    body = bytearray(real[ihdr_at : ihdr_at + 17])
    body[4:12] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(bytes(body)) & 0xFFFFFFFF)
    return real[:ihdr_at] + bytes(body) + crc + real[ihdr_at + 21 :]


def confident_digits(run_dir: Path, mnist, count: int, *, skip: int = 0) -> list[int]:
    """Indices of test digits the run reads right with probability > 0.9, in order."""
    from digitlab.runs import load_run

    images = mnist.x_test[:500].astype(np.float32) / 255.0
    probs = load_run(run_dir).predict_proba(images)
    good = np.flatnonzero((probs.argmax(1) == mnist.y_test[:500]) & (probs.max(1) > 0.9))
    return [int(i) for i in good[skip : skip + count]]


# --------------------------------------------------------------------------- server


def client(url: str, **options) -> httpx.Client:
    """An HTTP client for the test server that ignores any proxy settings."""
    return httpx.Client(
        base_url=url, trust_env=False, timeout=options.pop("timeout", 60), **options
    )


@contextlib.contextmanager
def running_server(run_dir: Path, log_dir: Path, *args: str, timeout: float = 120.0):
    """``python -m digitlab serve RUN --port 0`` as a real process on 127.0.0.1.

    Yields its base URL once ``/api/health`` answers; stops it afterwards.  One
    worker process unless ``args`` says ``--workers``: the path every default
    server takes, at half the start-up CPU of one per core on this 2-core CI.
    """
    if "--workers" not in args:
        args = (*args, "--workers", "1")
    command = [sys.executable, "-m", "digitlab", "serve", str(run_dir), "--port", "0", *args]
    with serving(command, log_dir, timeout=timeout) as url:
        yield url


def served_answers(run_dir: Path, log_dir: Path, runtime: str, photo: bytes, pixels: dict):
    """What ``digitlab serve RUN --runtime RUNTIME`` answers, on a real server:
    ``/api/model``, a photo (single), pixels, pixels with ``explain=true`` and a
    file that is not an image, each response checked for its status."""
    with (
        running_server(run_dir, log_dir / runtime, "--quiet", "--runtime", runtime) as url,
        client(url) as http,
    ):
        model = http.get("/api/model").json()
        by_file = http.post("/api/predict?single=true", files={"file": ("d.png", photo)})
        by_pixels = http.post("/api/predict", json=pixels)
        why = http.post("/api/predict?explain=true", json=pixels)
        bad = http.post("/api/predict", files={"file": ("x.png", b"not an image")})
    if not by_file.status_code == by_pixels.status_code == why.status_code == 200:
        raise AssertionError(f"{runtime}: {by_file.text[:200]} {by_pixels.text[:200]}")
    if bad.status_code != 400 or "error" not in bad.json():
        raise AssertionError(f"{runtime}: a file that is not an image got {bad.status_code}")
    return {"model": model, "answers": (by_file.json(), by_pixels.json()), "why": why.json()}


@contextlib.contextmanager
def serving(command: list[str], log_dir: Path, *, timeout: float = 120.0, name: str = "serve"):
    """Any command that prints ``... on http://HOST:PORT`` and serves digitlab's
    API, as a real process: yields the URL once ``/api/health`` answers."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
    try:
        url = _wait_for_url(process, out_path, err_path, timeout)
        _PROCESSES[url] = process
        yield url
    finally:
        _PROCESSES.pop(locals().get("url"), None)
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_PROCESSES: dict[str, subprocess.Popen] = {}


def server_process(url: str) -> subprocess.Popen:
    """The process :func:`serving` started for ``url``."""
    return _PROCESSES[url]


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


def _wait_for_url(process, out_path: Path, err_path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    url = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"digitlab serve exited with {process.returncode}: "
                f"{err_path.read_text(errors='replace')[-2000:]}"
            )
        text = out_path.read_text(errors="replace")
        if url is None and " on http://" in text:
            url = text.split(" on ", 1)[1].split()[0]
        if url is not None:
            with contextlib.suppress(httpx.HTTPError), client(url, timeout=5) as http:
                if http.get("/api/health").status_code == 200:
                    return url
        time.sleep(0.1)
    raise RuntimeError(f"digitlab serve did not answer within {timeout:.0f} s")
