"""The pages in a real headless Chromium (Debian's, driven by Playwright) against a
real ``digitlab serve`` process on 127.0.0.1."""

from __future__ import annotations

import shutil
import time

import httpx
import pytest

from predict_helpers import confident_digits, encode, paper_digit, running_server, tiny_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="needs Debian's Chromium: apt-get install -y chromium (Playwright's own "
        "browser download is not used)",
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs pip install playwright")

BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def run_dir(mnist, tmp_path_factory):
    return tiny_run(mnist, tmp_path_factory)


@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory):
    with running_server(run_dir, tmp_path_factory.mktemp("serve-web"), "--quiet") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    """A fresh page that records every request and every console error."""
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.requests = []
    page.errors = []
    page.on("request", lambda request: page.requests.append(request.url))
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    context.close()


def _only_local(page, server):
    outside = [url for url in page.requests if not url.startswith((server, "data:", "blob:"))]
    assert outside == []


def _draw(page, points, *, steps: int = 6) -> None:
    """Drag the mouse through ``points`` given as fractions of the canvas."""
    box = page.locator("#pad").bounding_box()

    def at(point):
        return box["x"] + point[0] * box["width"], box["y"] + point[1] * box["height"]

    page.mouse.move(*at(points[0]))
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*at(point), steps=steps)
    page.mouse.up()


def _bars(page) -> list[float]:
    return page.eval_on_selector_all(
        "#bars .bar-row", "rows => rows.map(r => Number(r.dataset.probability))"
    )


def _wait_until(page, script: str, timeout: float = 30.0) -> None:
    """Poll ``script`` (a JS function) until it returns true.  Playwright's own
    ``wait_for_function`` evaluates strings, which the pages' CSP forbids."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(script):
        assert time.monotonic() < deadline, f"timed out waiting for {script}"
        time.sleep(0.05)


def _wait_for_prediction(page) -> str:
    """The answer to the whole drawing (not to a stroke still being drawn)."""
    _wait_until(
        page,
        "() => document.getElementById('pad').dataset.pending === 'false' && "
        "['ok', 'not sure', 'no digit']"
        ".includes(document.getElementById('digit').dataset.status)",
    )
    return page.locator("#digit").inner_text()


def test_drawing_a_one_shows_a_live_prediction(page, server, tmp_path):
    page.goto(server + "/")
    _wait_until(page, "() => document.getElementById('model-line').textContent.includes('Model')")
    assert _bars(page) == [0.0] * 10
    _draw(page, [(0.52, 0.15), (0.5, 0.5), (0.48, 0.85)])
    shown = _wait_for_prediction(page)
    assert shown in ("1", "?")  # "?" if the tiny model is not sure enough
    bars = _bars(page)
    assert len(bars) == 10
    assert sum(bars) == pytest.approx(1.0, abs=1e-3)
    assert max(bars) == bars[1]
    assert "Top 3: 1 (" in page.locator("#status").inner_text()
    seen = page.locator("#seen img")
    assert seen.count() == 1
    assert seen.evaluate("img => img.naturalWidth") == 28
    page.screenshot(path=str(tmp_path / "draw.png"), full_page=True)
    assert page.errors == []
    _only_local(page, server)


def test_why_shows_which_pixels_made_it_say_so(page, server, tmp_path):
    page.goto(server + "/")
    _wait_until(page, "() => document.getElementById('model-line').textContent.includes('Model')")
    page.check("#explain")
    _draw(page, [(0.52, 0.15), (0.5, 0.5), (0.48, 0.85)])
    _wait_for_prediction(page)
    _wait_until(page, "() => document.querySelectorAll('#why img').length === 1")
    why = page.locator("#why img")
    assert why.evaluate("img => img.naturalWidth") == 28 and page.is_visible("#why")
    # The MLP also shows its hidden layer: 128 units as a grid of 16 columns.
    _wait_until(page, "() => document.querySelectorAll('#hidden img').length === 1")
    layer = page.locator("#hidden img")
    assert layer.evaluate("img => img.naturalWidth") == 16 * 6
    assert "of 128 units active" in page.locator("#hidden figcaption").inner_text()
    page.screenshot(path=str(tmp_path / "why.png"), full_page=True)
    page.click("#clear")
    _wait_until(page, "() => document.getElementById('why').hidden")
    assert page.locator("#hidden").is_hidden()
    assert page.errors == []
    _only_local(page, server)


def test_drawing_a_seven_then_clear_resets_everything(page, server):
    page.goto(server + "/")
    _draw(page, [(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)])
    shown = _wait_for_prediction(page)
    assert shown in list("0123456789?")
    assert sum(_bars(page)) == pytest.approx(1.0, abs=1e-3)
    page.click("#clear")
    assert page.locator("#digit").inner_text() == "–"
    assert page.locator("#digit").get_attribute("data-status") == "empty"
    assert _bars(page) == [0.0] * 10
    assert page.locator("#seen img").count() == 0
    blank = page.evaluate(
        """() => {
            const c = document.getElementById('pad');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            return d.every(v => v === 255);
        }"""
    )
    assert blank


def test_clear_works_from_the_keyboard(page, server):
    page.goto(server + "/")
    _draw(page, [(0.5, 0.15), (0.5, 0.85)])
    _wait_for_prediction(page)
    page.focus("#clear")
    page.keyboard.press("Enter")
    assert page.locator("#digit").get_attribute("data-status") == "empty"


def test_pen_strokes_draw_too(page, server):
    """Pointer Events from a pen (synthetic: Playwright's mouse is a mouse)."""
    page.goto(server + "/")
    page.evaluate(
        """() => {
            const pad = document.getElementById('pad');
            const box = pad.getBoundingClientRect();
            const fire = (type, y) => pad.dispatchEvent(new PointerEvent(type, {
                pointerId: 7, pointerType: 'pen', isPrimary: true, button: 0, buttons: 1,
                bubbles: true, cancelable: true,
                clientX: box.left + box.width / 2, clientY: box.top + y * box.height}));
            fire('pointerdown', 0.15);
            for (let y = 0.2; y < 0.86; y += 0.05) fire('pointermove', y);
            fire('pointerup', 0.85);
        }"""
    )
    assert _wait_for_prediction(page) in ("1", "?")
    bars = _bars(page)
    assert max(bars) == bars[1]
    assert page.locator("#pad").evaluate("c => getComputedStyle(c).touchAction") == "none"


def test_uploading_a_photo_predicts_it(page, server, run_dir, mnist, tmp_path):
    index = confident_digits(run_dir, mnist, 1)[0]
    photo = tmp_path / "digit.jpg"
    photo.write_bytes(encode(paper_digit(mnist.x_test[index]).convert("RGB"), "JPEG"))
    page.goto(server + "/")
    page.set_input_files("#upload", str(photo))
    _wait_until(page, "() => document.getElementById('digit').dataset.status === 'ok'")
    assert page.locator("#digit").inner_text() == str(int(mnist.y_test[index]))
    assert page.locator("#photo-figure").is_visible()
    assert page.locator("#photo-name").inner_text() == "digit.jpg"
    assert sum(_bars(page)) == pytest.approx(1.0, abs=1e-3)


def test_uploading_a_non_image_shows_the_error(page, server, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.goto(server + "/")
    page.set_input_files("#upload", str(bad))
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "notes.png" in error.inner_text()


def test_report_page_shows_metrics_and_figures(page, server, tmp_path):
    page.goto(server + "/report")
    _wait_until(page, "() => document.querySelectorAll('#metrics dt').length > 3")
    assert "Accuracy" in page.locator("#metrics").inner_text()
    _wait_until(
        page,
        "() => [...document.querySelectorAll('#figures img')]"
        ".every(i => i.complete && i.naturalWidth)",
    )
    with httpx.Client(base_url=server, trust_env=False) as http:
        listed = http.get("/api/model").json()["report"]
    assert len(listed) >= 4
    assert page.locator("#figures img").count() == len(listed)
    assert page.locator("#classes tbody tr").count() == 10
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert page.errors == []
    _only_local(page, server)


def test_docs_page_renders_the_operations_offline(page, server):
    """Swagger UI (the bundled swagger-ui-bundle) reads the OpenAPI document and
    lists every operation; nothing is loaded from elsewhere."""
    page.goto(server + "/docs")
    page.locator(".opblock-summary-path").first.wait_for(timeout=20_000)
    operations = {
        " ".join(block.inner_text().split()) for block in page.locator(".opblock-summary").all()
    }
    text = " ".join(sorted(operations))
    assert "POST /api/predict" in text, text
    assert "GET /api/health" in text and "GET /api/model" in text, text
    assert "Unable to render" not in page.content()
    assert page.errors == []
    _only_local(page, server)


def test_cross_site_form_post_is_refused(browser, server):
    """A page of another origin (evil.example, answered by Playwright, never the
    network) auto-submits a form to the server: the browser sends it without a
    preflight and the server refuses it with 403."""
    context = browser.new_context()
    page = context.new_page()
    form = (
        f'<form id="f" method="post" enctype="multipart/form-data" action="{server}/api/predict">'
        '<input name="file" value="x"></form><script>document.getElementById("f").submit()'
        "</script>"
    )
    page.route(
        "http://evil.example/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body=form),
    )
    try:
        with page.expect_response(lambda r: r.url.endswith("/api/predict")) as answer:
            page.goto("http://evil.example/attack.html")
        response = answer.value
        assert response.status == 403
        assert "Origin" in response.json()["error"]
    finally:
        context.close()
