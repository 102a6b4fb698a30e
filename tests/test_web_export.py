"""``digitlab export --format web``: the exported folder, served by a plain
static file server (``python -m http.server`` on 127.0.0.1, started here),
reads digits in a real headless Chromium with onnxruntime-web and no digitlab
server: a digit drawn with the mouse gets the class and probabilities Python
gives for the same 28x28 image, and the page frames the canvas as Python does."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitlab.inference import Predictor, images, read_image
from digitlab.runs import load_run
from predict_helpers import encode, tiny_run
from test_web import BROWSER_ARGS, CHROMIUM, _bars, _draw, _wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's Chromium"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs pip install playwright")
pytest.importorskip("onnxruntime", reason="needs digitlab[export]")

FIXTURES = Path(__file__).parent / "fixtures"


@contextlib.contextmanager
def static_server(folder: Path):
    """``python -m http.server`` serving ``folder`` on a free loopback port."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "0",
            "--directory",
            str(folder),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = process.stdout.readline()
        port = re.search(r"port (\d+)", line).group(1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module", params=["mlp", "cnn-fast"])
def exported(request, mnist, tmp_path_factory):
    """(run folder, web folder, static server URL) for a run exported by the CLI."""
    if request.param == "mlp":
        run_dir = tiny_run(mnist, tmp_path_factory)
    else:
        run_dir = tmp_path_factory.mktemp("web-run") / "cnn-fast"
        shutil.copytree(FIXTURES / "cnn-fast-0.1.0", run_dir)
    web = tmp_path_factory.mktemp("web") / "site"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "digitlab",
            "export",
            str(run_dir),
            "--format",
            "web",
            str(web),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    names = {Path(p).relative_to(web).as_posix() for p in json.loads(done.stdout)["files"]}
    assert {
        "index.html",
        "app.js",
        "frame.js",
        "model.onnx",
        "model.json",
        "model.md",
        "ort/ort.wasm.bundle.min.mjs",
        "ort/ort-wasm-simd-threaded.wasm",
    } <= names
    with static_server(web) as url:
        yield run_dir, web, url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, exported):
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.requests, page.errors = [], []
    page.on("request", lambda request: page.requests.append(request.url))
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(exported[2] + "/")
    _wait_until(
        page,
        "() => document.body.dataset.ready === 'true' || !document.getElementById('error').hidden",
    )
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
    yield page
    context.close()


def _canvas_png(page) -> bytes:
    url = page.evaluate("() => document.getElementById('pad').toDataURL('image/png')")
    return base64.b64decode(url.split(",", 1)[1])


@pytest.mark.parametrize(
    "stroke",
    [
        [(0.52, 0.15), (0.5, 0.5), (0.48, 0.85)],  # a one
        [(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)],  # a seven
        [(0.5, 0.2), (0.3, 0.5), (0.5, 0.8), (0.7, 0.5), (0.5, 0.2)],  # a zero
    ],
)
def test_a_drawn_digit_is_read_in_the_browser_as_python_reads_it(page, exported, stroke):
    run_dir, _, url = exported
    _draw(page, stroke)
    _wait_until(
        page,
        "() => ['ok', 'not sure', 'no digit']"
        ".includes(document.getElementById('digit').dataset.status)",
    )
    shown = page.locator("#digit").inner_text()
    browser_probs = np.array(_bars(page))
    seen = page.evaluate("() => document.getElementById('seen').dataset.pixels")
    pixels = np.array(json.loads(seen), dtype=np.float32).reshape(28, 28)

    # The model, in Python, on the 28x28 image the page gave it.
    predictor = Predictor(load_run(run_dir))
    python_probs = predictor.predict_one(pixels)
    assert np.abs(python_probs - browser_probs).max() <= 1e-4
    assert int(python_probs.argmax()) == int(browser_probs.argmax())
    # The page framed the canvas as Python frames the same canvas.
    png = _canvas_png(page)
    framed = images.prepare_digit(images.load_image(png)).pixels
    assert np.abs(framed - pixels).max() <= 1e-5
    # End to end: what digitlab predict / the server answer for that canvas.
    answer = read_image(predictor, png, single=True)
    assert np.abs(np.array(answer["probabilities"]) - browser_probs).max() <= 1e-4
    marks = {"ok": str(answer["digit"]), "not sure": "?", "no digit": "✗"}
    assert shown == marks[answer["status"]]
    # The "not a digit" detector runs in the page too, with the same score.
    page_score = float(page.locator("#digit").get_attribute("data-digit-score"))
    assert abs(page_score - answer["digit_scores"][0]) <= 1e-4
    assert page.errors == []
    assert [u for u in page.requests if not u.startswith((url, "data:", "blob:"))] == []


def test_a_scribble_is_no_digit_in_the_browser_as_in_python(page, exported):
    run_dir, web, _ = exported
    assert json.loads((web / "model.json").read_text())["detector"]["file"] == "detector.onnx"
    _draw(page, [(0.15, 0.3), (0.85, 0.35), (0.2, 0.7), (0.8, 0.75), (0.5, 0.1), (0.5, 0.9)])
    _wait_until(page, "() => document.getElementById('digit').dataset.status === 'no digit'")
    assert page.locator("#digit").get_attribute("data-reason") == "not a digit"
    answer = read_image(Predictor(load_run(run_dir)), _canvas_png(page), single=True)
    assert (answer["status"], answer["reason"]) == ("no digit", "not a digit")
    assert page.errors == []


def _page_canvas(size: int, digit: np.ndarray, scale: float, at: tuple[int, int]) -> Image.Image:
    """A white canvas with an MNIST digit drawn dark, enlarged ``scale`` times at ``at``."""
    side = max(1, round(28 * scale))
    ink = Image.fromarray(255 - digit).resize((side, side), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (size, size), 255)
    canvas.paste(ink, at)
    return canvas.convert("RGBA")


@pytest.mark.parametrize(
    ("scale", "at"),
    [(1.0, (120, 130)), (2.0, (10, 40)), (4.5, (60, 70)), (9.5, (0, 0)), (0.71, (200, 200))],
)
def test_the_framing_port_matches_python(page, mnist, scale, at):
    """Small (enlarged with Pillow's bilinear filter first), large, off-centre and
    MNIST-scale digits: frame.js gives Python's 28x28 image."""
    for index in (0, 3, 11):
        canvas = _page_canvas(280, mnist.x_test[index], scale, at)
        want = images.prepare_digit(images.load_image(encode(canvas)))
        got = page.evaluate(
            """([width, height, packed]) => {
                const rgba = Uint8ClampedArray.from(atob(packed), (c) => c.charCodeAt(0));
                const out = window.digitlab.prepareCanvas(new ImageData(rgba, width, height));
                return {hasInk: out.hasInk, pixels: Array.from(out.pixels)};
            }""",
            [280, 280, base64.b64encode(canvas.tobytes()).decode("ascii")],
        )
        assert got["hasInk"] == want.has_ink
        difference = np.abs(np.array(got["pixels"]).reshape(28, 28) - want.pixels).max()
        assert difference <= 1e-5, (index, scale, at, difference)


def test_a_blank_or_speck_canvas_is_no_digit_like_python(page):
    blank = Image.new("RGBA", (280, 280), "white")
    speck = blank.copy()
    speck.paste((0, 0, 0, 255), (140, 140, 144, 144))  # 4 px: under 4% of the side
    for canvas in (blank, speck):
        want = images.prepare_digit(images.load_image(encode(canvas)))
        got = page.evaluate(
            """([rgba]) => window.digitlab.prepareCanvas(
                new ImageData(new Uint8ClampedArray(rgba), 280, 280)).hasInk""",
            [list(canvas.tobytes())],
        )
        assert got is False and want.has_ink is False
    _draw(page, [(0.5, 0.15), (0.5, 0.85)])
    _wait_until(page, "() => document.getElementById('digit').dataset.status !== 'empty'")
    page.click("#clear")
    assert page.locator("#digit").get_attribute("data-status") == "empty"
    assert _bars(page) == [0.0] * 10
