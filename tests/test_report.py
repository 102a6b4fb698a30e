"""report.html: one file, every figure inside, opened offline in a real
Chromium (Debian's, driven by Playwright) from a file:// URL."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from digitlab.cli import main
from digitlab.report import REPORT_FILE, build_report
from digitlab.runs import load_run

FIXTURES = Path(__file__).parent / "fixtures"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def old_run(tmp_path):
    target = tmp_path / "run"
    shutil.copytree(FIXTURES / "mlp-0.1.0", target)
    return target


def test_report_command_writes_one_self_contained_file(old_run, capsys):
    assert main(["report", str(old_run)]) == 0
    assert f"wrote {old_run / REPORT_FILE}" in capsys.readouterr().out
    text = (old_run / REPORT_FILE).read_text(encoding="utf-8")
    # Nothing to fetch: every src is a data: URL, no script, no link to elsewhere.
    sources = re.findall(r"src='([^']*)'", text)
    assert len(sources) == 2 * 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert "expected calibration error" in text  # what ECE means, in words


def test_a_figure_that_is_a_link_out_of_the_folder_is_not_embedded(old_run, tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes((old_run / "mistakes.png").read_bytes())
    (old_run / "mistakes.png").unlink()
    (old_run / "mistakes.png").symlink_to(outside)
    text = build_report(load_run(old_run))
    assert "most confident mistakes" not in text.split("<h2>Per class")[0]


def test_report_of_a_missing_run_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected a run folder" in err[0]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's Chromium: apt-get install chromium")
def test_report_opens_offline_in_chromium_with_every_figure(old_run, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    assert main(["report", str(old_run)]) == 0
    requests = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS
        )
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        page.goto((old_run / REPORT_FILE).as_uri())
        widths = page.eval_on_selector_all(
            ".figures img", "images => images.map(i => i.complete ? i.naturalWidth : 0)"
        )
        assert len(widths) == 4 and min(widths) > 100
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        page.click("a[href='#confusion_matrix']")
        assert page.is_visible("#confusion_matrix img")  # enlarged on click
        pdf = page.pdf() if hasattr(page, "pdf") else b""
        browser.close()
    assert (tmp_path / "report.png").stat().st_size > 20_000
    assert all(url.startswith(("file:", "data:")) for url in requests)
    assert pdf[:4] == b"%PDF"  # prints
