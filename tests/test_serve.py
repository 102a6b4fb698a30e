"""The HTTP API against a real ``digitlab serve`` process on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from digitlab.runs import REPORT_FILES
from predict_helpers import (
    RESULT_FIELDS,
    bomb_png,
    child_pids,
    client,
    confident_digits,
    encode,
    paper_digit,
    running_server,
    server_process,
    tiny_run,
)

pytestmark = pytest.mark.slow  # starts server processes

LIMIT = 10 * 1024 * 1024


@pytest.fixture(scope="session")
def run_dir(mnist, tmp_path_factory):
    return tiny_run(mnist, tmp_path_factory)


@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory):
    with running_server(run_dir, tmp_path_factory.mktemp("serve"), "--quiet") as url:
        yield url


@pytest.fixture(scope="module")
def http(server):
    with client(server) as session:
        yield session


@pytest.fixture(scope="module")
def good(run_dir, mnist):
    return confident_digits(run_dir, mnist, 2)


def _error(response, status: int, fragment: str = "") -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    assert "\n" not in body["error"]
    assert fragment.lower() in body["error"].lower(), body["error"]
    return body["error"]


# --------------------------------------------------------------------------- good requests


def test_health_and_model_metadata(http, run_dir):
    health = http.get("/api/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    model = http.get("/api/model").json()
    assert model["run"] == run_dir.name
    assert model["params"] == 101_770
    assert model["config"]["optimizer"] == "adam"
    assert 0.5 < model["metrics"]["accuracy"] <= 1.0
    assert model["metrics"]["set"] == "validation"
    assert model["versions"]["keras"]
    assert model["limits"]["max_body_bytes"] == LIMIT
    present = {name.removesuffix(".png") for name in REPORT_FILES if (run_dir / name).is_file()}
    assert set(model["report"]) == present
    assert present >= {"confusion_matrix", "training_curves", "predictions", "mistakes"}


def test_predict_png_upload(http, mnist, good):
    png = encode(paper_digit(mnist.x_test[good[0]]))
    response = http.post("/api/predict", files={"file": ("seven.png", png, "image/png")})
    assert response.status_code == 200, response.text
    result = response.json()
    assert set(result) == RESULT_FIELDS
    assert result["file"] == "seven.png"
    assert result["status"] == "ok"
    assert result["digit"] == int(mnist.y_test[good[0]])
    assert sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert result["images"][0].startswith("data:image/png;base64,")


def test_predict_single_and_threshold_query(http, mnist, good):
    png = encode(paper_digit(mnist.x_test[good[0]]))
    response = http.post(
        "/api/predict?single=true&threshold=1", files={"file": ("a.png", png, "image/png")}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "not sure"
    assert response.json()["digit"] is None


def test_predict_raw_image_body(http, mnist, good):
    jpeg = encode(paper_digit(mnist.x_test[good[1]]).convert("RGB"), "JPEG")
    response = http.post("/api/predict", content=jpeg, headers={"content-type": "image/jpeg"})
    assert response.status_code == 200
    assert response.json()["digit"] == int(mnist.y_test[good[1]])


@pytest.mark.parametrize("scale", ["ints", "floats"])
def test_predict_pixels_json(http, run_dir, mnist, good, scale):
    from digitlab.runs import load_run

    digit = mnist.x_test[good[0]]
    pixels = digit.tolist() if scale == "ints" else (digit / 255.0).tolist()
    response = http.post("/api/predict", json={"pixels": pixels})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["file"] == "<pixels>"
    assert result["digit"] == int(mnist.y_test[good[0]])
    expected = load_run(run_dir).predict_proba(digit[None] / 255.0)[0]
    np.testing.assert_allclose(result["probabilities"], expected, atol=1e-5)


def test_predict_blank_pixels_is_no_digit(http):
    response = http.post("/api/predict", json={"pixels": [[0] * 28] * 28})
    assert response.status_code == 200
    assert response.json()["status"] == "no digit"
    assert response.json()["digit"] is None


# --------------------------------------------------------------------------- bad requests


def _upload(data: bytes, name: str = "x.png", field: str = "file"):
    return {"files": {field: (name, data, "image/png")}}


def _png_bytes() -> bytes:
    return encode(Image.new("L", (40, 40), 255))


def _json(text: str):
    return {"content": text.encode(), "headers": {"content-type": "application/json"}}


def _pixels(value) -> dict:
    return _json(json.dumps({"pixels": [[value] * 28 for _ in range(28)]}))


BAD_REQUESTS = [
    ("not an image", _upload(b"hello, I am text", "notes.png"), 400, "not a readable image"),
    ("truncated PNG", _upload(encode(Image.new("L", (300, 300), 128))[:80]), 400, "x.png"),
    ("spoofed PNG magic", _upload(b"\x89PNG\r\n\x1a\n" + b"\0" * 200), 400, "x.png"),
    ("HTML named .png", _upload(b"<html><script>alert(1)</script></html>"), 400, "image"),
    ("decompression bomb", _upload(bomb_png()), 400, "pixels"),
    ("empty file", _upload(b""), 400, "empty"),
    ("wrong field name", _upload(_png_bytes(), field="image"), 422, "field 'file'"),
    ("text in the file field", {"files": {"file": (None, "hello")}}, 422, "text field"),
    ("other multipart field", {"files": {"other": (None, "x")}}, 422, "field 'file'"),
    ("form-urlencoded", {"data": {"file": "hello"}}, 415, "multipart/form-data"),
    ("malformed JSON", _json('{"pixels": [[1, 2'), 400, "valid JSON"),
    ("empty JSON body", _json(""), 400, "JSON"),
    ("deeply nested JSON", _json("[" * 100_000 + "]" * 100_000), 400, "JSON"),
    ("JSON list", _json("[1, 2, 3]"), 422, "pixels"),
    ("JSON without pixels", _json('{"image": 1}'), 422, "pixels"),
    ("pixels not a list", _json('{"pixels": "abc"}'), 422, "28 rows"),
    ("flat pixels", _json(json.dumps({"pixels": [0] * 784})), 422, "28 rows"),
    ("27 rows", _json(json.dumps({"pixels": [[0] * 28] * 27})), 422, "28 rows"),
    ("ragged rows", _json(json.dumps({"pixels": [[0] * 28] * 27 + [[0] * 3]})), 422, "28"),
    ("NaN", _pixels(float("nan")), 422, "finite"),
    (
        "Infinity",
        _json('{"pixels": [' + ",".join(["[Infinity" + ",0" * 27 + "]"] * 28) + "]}"),
        422,
        "finite",
    ),
    ("-Infinity", _pixels(float("-inf")), 422, "finite"),
    (
        "overflowing float",
        _json('{"pixels": [' + ",".join(["[1e999" + ",0" * 27 + "]"] * 28) + "]}"),
        422,
        "finite",
    ),
    ("huge integer", _pixels(10**40), 422, "0..255"),
    ("int above 255", _pixels(256), 422, "0..255"),
    ("negative int", _pixels(-1), 422, "0..255"),
    ("float above 255", _pixels(255.5), 422, "0..255"),
    ("strings", _pixels("7"), 422, "numbers"),
    ("booleans", _pixels(True), 422, "numbers"),
    (
        "one boolean among integers",  # NumPy alone would read it as 1
        _json(json.dumps({"pixels": [[0] * 28] * 27 + [[0] * 27 + [True]]})),
        422,
        "numbers",
    ),
    ("nulls", _pixels(None), 422, "numbers"),
    (
        "plain text",
        {"content": b"7", "headers": {"content-type": "text/plain"}},
        415,
        "Content-Type",
    ),
    ("no content type", {"content": b"7"}, 415, "Content-Type"),
    ("empty image body", {"content": b"", "headers": {"content-type": "image/png"}}, 400, "empty"),
]


@pytest.mark.parametrize(
    ("request_args", "status", "fragment"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_predict_bad_request_is_a_clear_4xx(http, request_args, status, fragment):
    _error(http.post("/api/predict", **request_args), status, fragment)


@pytest.mark.parametrize("query", ["threshold=2", "threshold=abc", "threshold=nan", "single=maybe"])
def test_predict_bad_query_is_422(http, query):
    _error(http.post(f"/api/predict?{query}", json={"pixels": [[0] * 28] * 28}), 422)


@pytest.mark.parametrize(
    ("plain", "spelled_otherwise"),
    [
        ("threshold=0.5&single=true", "threshold=5e-1&single=yes"),  # FastAPI reads the second
        ("reject=0&explain=false", "reject=off&explain=False"),
        ("threshold=1", "threshold=1.0e0"),
    ],
)
def test_plain_and_other_spellings_of_a_query_get_the_same_answer(
    http, mnist, good, plain, spelled_otherwise
):
    """Plain queries take the short way past FastAPI's parameter machinery
    (PredictLane); any other spelling goes through FastAPI.  Both answer alike."""
    from digitlab.serve.requests import plain_predict_query

    assert plain_predict_query(plain.encode()) is not None
    assert plain_predict_query(spelled_otherwise.encode()) is None
    png = encode(paper_digit(mnist.x_test[good[0]]))
    answers = [
        http.post(f"/api/predict?{query}", files={"file": ("a.png", png, "image/png")})
        for query in (plain, spelled_otherwise)
    ]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()
    for name in ("content-type", "x-content-type-options", "content-length"):
        assert answers[0].headers.get(name) == answers[1].headers.get(name), name


@pytest.mark.parametrize(
    ("query", "options"),
    [
        (b"", {"single": False, "threshold": 0.5, "explain": False, "reject": True}),
        (b"single=1&threshold=0.25", {"single": True, "threshold": 0.25}),
        (b"threshold=0", {"threshold": 0.0}),
        (b"threshold=1.5", None),  # out of range: FastAPI's 422
        (b"threshold=nan", None),
        (b"threshold=0.5&threshold=0.6", None),  # twice: FastAPI decides
        (b"single=TRUE", None),
        (b"single=tr%75e", None),
        (b"other=1", None),
        (b"single", None),
        (b"&", None),
    ],
)
def test_plain_predict_query_takes_only_what_fastapi_reads_the_same(query, options):
    from digitlab.serve.requests import plain_predict_query

    found = plain_predict_query(query)
    if options is None:
        assert found is None
    else:
        assert found is not None and options.items() <= found.items()


def test_unknown_routes_and_methods_are_json_errors(http):
    _error(http.get("/nope"), 404, "/nope")
    _error(http.get("/api/predict"), 405, "POST")


@pytest.mark.parametrize(
    "path",
    [
        "/api/report/run.json",
        "/api/report/model.keras",
        "/api/report/..%2Fconfig.json",
        "/api/report/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/api/report/..",
        "/static/../serve.py",
        "/static/%2E%2E/serve.py",
    ],
)
def test_report_files_are_safe_against_traversal(http, path):
    response = http.get(path)
    assert response.status_code == 404
    assert b"import" not in response.content
    assert b"params" not in response.content


def test_report_png_is_served(http):
    response = http.get("/api/report/confusion_matrix.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_error_responses_never_500_on_garbage_bodies(http):
    rng = np.random.default_rng(0)
    for kind in ("image/png", "application/json", "multipart/form-data; boundary=x"):
        for size in (1, 17, 1000):
            body = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            response = http.post("/api/predict", content=body, headers={"content-type": kind})
            assert 400 <= response.status_code < 500, (kind, size, response.text)
            assert set(response.json()) == {"error"}


# --------------------------------------------------------------------------- body size


def _raw_request(url: str, head: bytes, body_parts=()) -> tuple[int, dict, bytes]:
    """Send bytes on a plain socket and read the whole response (server closes)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head)
        for part in body_parts:
            sock.sendall(part)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    header_block, _, body = raw.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    return status, headers, body


def test_declared_oversized_body_is_413_before_reading_it(server):
    head = (
        b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: image/png\r\nContent-Length: 50000000\r\n\r\n"
    )
    # Only the headers are sent: the answer must not wait for 50 MB.
    status, headers, body = _raw_request(server, head)
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert "10,485,760 bytes" in json.loads(body)["error"]


def test_streamed_oversized_body_is_413(server):
    head = (
        b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"\0" * 1024 * 1024
    framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    parts = [framed] * 10 + [b"1\r\n\0\r\n", b"0\r\n\r\n"]  # 10 MiB + 1 byte
    status, _, body = _raw_request(server, head, parts)
    assert status == 413
    assert "at most" in json.loads(body)["error"]


def test_body_just_under_the_limit_is_read(http):
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (LIMIT - 1000)
    _error(http.post("/api/predict", **_upload(big)), 400, "x.png")


# --------------------------------------------------------------------------- pages and docs


def test_pages_load_nothing_from_elsewhere(http):
    for path in ("/", "/report"):
        response = http.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert "http://" not in response.text and "https://" not in response.text
    for asset in ("/static/app.js", "/static/style.css"):
        response = http.get(asset)
        assert response.status_code == 200
        assert "https://" not in response.text


def test_docs_are_served_offline(http):
    page = http.get("/docs")
    assert page.status_code == 200
    assert "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    assert http.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    schema = http.get("/openapi.json").json()
    assert "/api/predict" in schema["paths"]
    assert "multipart/form-data" in json.dumps(schema["paths"]["/api/predict"])


# --------------------------------------------------------------------------- load shedding


def test_overload_is_shed_with_503(run_dir, mnist, tmp_path):
    """One slot, no queue, a burst of 24 simultaneous photos: the surplus gets an
    immediate 503 with Retry-After while the admitted ones are still running."""
    from digitlab.inference.images import render_photo

    photo = render_photo(mnist.x_test[0], rng=np.random.default_rng(0), size=(960, 1280))
    args = ("--quiet", "--max-concurrency", "1", "--max-queue", "0")
    with running_server(run_dir, tmp_path / "shed", *args) as url:
        start = threading.Barrier(24)
        answers = []

        def fire() -> None:
            with client(url) as session:
                start.wait()
                response = session.post(
                    "/api/predict", files={"file": ("p.jpg", photo, "image/jpeg")}
                )
                answers.append((response, time.monotonic()))

        threads = [threading.Thread(target=fire) for _ in range(24)]
        for thread in threads:
            thread.start()
        with client(url) as session:
            health = session.get("/api/health")  # the event loop stays free under load
        for thread in threads:
            thread.join(timeout=120)
        assert health.status_code == 200
        statuses = [r.status_code for r, _ in answers]
        assert len(answers) == 24
        assert set(statuses) <= {200, 503}, statuses
        assert statuses.count(200) >= 1
        assert statuses.count(503) >= 1
        for response, _ in answers:
            if response.status_code == 503:
                assert response.headers["retry-after"] == "1"
                assert "busy" in response.json()["error"]
        first_shed = min(t for r, t in answers if r.status_code == 503)
        last_served = max(t for r, t in answers if r.status_code == 200)
        assert first_shed < last_served  # shed at once, not after waiting in a queue
        with client(url) as session:
            assert session.get("/api/health").json()["shed"] == statuses.count(503)


# --------------------------------------------------------------------------- batches and workers


def _fire_together(url: str, requests: list[dict]) -> list:
    """Send every request at the same moment, each on its own connection."""
    start = threading.Barrier(len(requests))
    answers: list = [None] * len(requests)

    def fire(index: int) -> None:
        with client(url) as session:
            start.wait()
            answers[index] = session.post("/api/predict", **requests[index])

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return answers


def test_requests_waiting_together_are_read_in_one_batch_with_the_same_answers(
    run_dir, mnist, tmp_path
):
    """Eight photos sent at once to one worker process: it reads them in batches
    (one model call for the requests waiting), and each answer is the one
    read_image gives for that photo alone, in this process."""
    from digitlab.inference import Predictor, read_image
    from digitlab.inference.images import render_photo
    from digitlab.runs import load_run

    rng = np.random.default_rng(5)
    photos = [render_photo(mnist.x_test[i], rng=rng, size=(960, 1280)) for i in range(8)]
    predictor = Predictor(load_run(run_dir))
    expected = [read_image(predictor, photo, name=f"p{i}.jpg") for i, photo in enumerate(photos)]
    with running_server(run_dir, tmp_path / "batch", "--quiet", "--workers", "1") as url:
        requests = [
            {"files": {"file": (f"p{i}.jpg", photo, "image/jpeg")}}
            for i, photo in enumerate(photos)
        ]
        answers = _fire_together(url, requests)
        with client(url) as session:
            health = session.get("/api/health").json()
    assert [a.status_code for a in answers] == [200] * 8
    for answer, want in zip(answers, expected, strict=True):
        got = answer.json()
        assert (got["status"], got["digit"], got["boxes"]) == (
            want["status"],
            want["digit"],
            want["boxes"],
        )
        assert got["images"] == want["images"]
        np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-5)
        np.testing.assert_allclose(got["digit_scores"], want["digit_scores"], atol=1e-5)
    assert health["workers"] == 1
    assert 2 <= health["largest_batch"] <= 8
    assert health["batches"] < 8


def test_a_worker_killed_leaves_the_server_answering(run_dir, mnist, good, tmp_path):
    """kill -9 of the worker process: the next predictions are read by the
    server's own threads (one line on stderr), with the same answers."""
    import os
    import signal

    pixels = {"json": {"pixels": mnist.x_test[good[0]].tolist()}}
    log = tmp_path / "killed"
    with running_server(run_dir, log, "--quiet", "--workers", "1") as url:
        workers = child_pids(server_process(url).pid)
        with client(url) as session:
            before = session.post("/api/predict", **pixels).json()
            assert session.get("/api/health").json()["workers"] == 1
            spawned = [
                pid for pid in workers if "spawn" in Path(f"/proc/{pid}/cmdline").read_text()
            ]
            assert len(spawned) == 1, workers
            os.kill(spawned[0], signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _running(spawned[0]) and time.monotonic() < deadline:
                time.sleep(0.05)
            after = [session.post("/api/predict", **pixels) for _ in range(3)]
            health = session.get("/api/health").json()
    assert [a.status_code for a in after] == [200] * 3
    assert after[-1].json()["digit"] == before["digit"] == int(mnist.y_test[good[0]])
    np.testing.assert_allclose(
        after[-1].json()["probabilities"], before["probabilities"], atol=1e-5
    )
    assert health["workers"] == 0
    err = (log / "serve.err").read_text()
    assert "worker process 0 ended; reading in the server's process" in err
    assert "Traceback" not in err


def test_a_stuck_worker_is_stopped_and_its_batch_read_elsewhere(run_dir, mnist, good):
    """A worker that stops answering (SIGSTOP: frozen mid-batch) is killed after
    the batch deadline; the Batcher reads that batch in the server's process."""
    import asyncio
    import os
    import signal

    from digitlab.inference import Predictor
    from digitlab.runs import load_run
    from digitlab.serve.batching import Batcher, WorkerPool

    pool = WorkerPool(run_dir, 1, batch_timeout=1.0).start()
    try:
        pool.wait_ready()
        batcher = Batcher(Predictor(load_run(run_dir)), processes=pool)
        pid = pool.workers[0].process.pid
        os.kill(pid, signal.SIGSTOP)
        body = json.dumps({"pixels": mnist.x_test[good[0]].tolist()}).encode()
        request = {"json": body, "max_pixels": None}

        async def ask():
            return await asyncio.wait_for(batcher.read(request), 30)

        started = time.monotonic()
        answer = asyncio.run(ask())
        waited = time.monotonic() - started
        pool.workers[0].process.join(timeout=10)
        assert pool.workers[0].process.exitcode == -signal.SIGKILL
    finally:
        pool.close()
    assert answer["digit"] == int(mnist.y_test[good[0]])
    assert 1.0 <= waited < 15
    assert batcher.workers == 0


def _running(pid: int) -> bool:
    """The process exists and is not a zombie waiting for its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_0_reads_in_the_servers_process(run_dir, mnist, good, tmp_path):
    with running_server(run_dir, tmp_path / "w0", "--quiet", "--workers", "0") as url:
        assert child_pids(server_process(url).pid) == []
        with client(url) as session:
            answer = session.post("/api/predict", json={"pixels": mnist.x_test[good[0]].tolist()})
            health = session.get("/api/health").json()
    assert answer.status_code == 200
    assert answer.json()["digit"] == int(mnist.y_test[good[0]])
    assert health["workers"] == 0
    assert health["batches"] >= 1


# --------------------------------------------------------------------------- command line


def test_serve_missing_run_is_one_line_exit_2(tmp_path, capsys):
    from digitlab.cli import main

    code = main(["serve", str(tmp_path / "nope"), "--port", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("digitlab: error: ")
    assert "nope" in err
    assert err.count("\n") == 1


def test_serve_port_in_use_is_one_line_exit_2(run_dir, capsys):
    from digitlab.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", str(run_dir), "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"--port: expected a free port on 127.0.0.1. Received: {port}" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("flags", [["--max-concurrency", "0"], ["--port", "-1"]])
def test_serve_bad_flags_exit_2(run_dir, flags, capsys):
    from digitlab.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve", str(run_dir), *flags])
    assert exit_info.value.code == 2
    assert flags[0] in capsys.readouterr().err


def test_default_workers_is_one_per_core_at_most_four():
    import os

    from digitlab.serve.server import MAX_DEFAULT_WORKERS, default_workers

    assert MAX_DEFAULT_WORKERS == 4
    assert default_workers() == max(1, min(4, len(os.sched_getaffinity(0))))
