"""Event-loop CPU per ``POST /api/predict``: digitlab's plain-query lane against
FastAPI's route, side by side in one process.

Calls the ASGI app directly (no sockets, no uvicorn), with every place in the
queue taken, so each request reads its body and is refused with the 503 that
follows admission: the work the event loop does for a request, without the
model.  ``?threshold=0.5`` takes the lane (:class:`digitlab.serve.app.PredictLane`);
``?threshold=5e-1`` (the same value, spelled otherwise) goes through FastAPI's
routing, middleware and parameter validation.  A request refused at the door
(ShedWhenFull, before its body) is timed too.  Prints microseconds per request
(median of ``--repeats`` rounds) and the ratio.

    python benchmarks/bench_asgi.py [--run RUN] [--requests 3000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench_predict import canvas_png  # the same drawn '7'


def build_app(run_dir: Path):
    from digitlab.inference import Predictor
    from digitlab.runs import load_run
    from digitlab.serve.app import create_app

    return create_app(Predictor(load_run(run_dir, quick=True)), allowed_hosts=["127.0.0.1"])


def scope_and_body(query: str) -> tuple[dict, bytes]:
    request = httpx.Request(
        "POST",
        f"http://127.0.0.1/api/predict?{query}",
        files={"file": ("drawing.png", canvas_png(), "image/png")},
    )
    body = request.read()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/predict",
        "raw_path": b"/api/predict",
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in request.headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    return scope, body


async def time_calls(app, scope: dict, body: bytes, count: int) -> tuple[float, int]:
    """Seconds per call of ``app`` on a copy of ``scope``, and the last status."""
    status = 0

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    started = time.perf_counter()
    for _ in range(count):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - started) / count, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="run folder (default: train one epoch)")
    parser.add_argument("--requests", type=int, default=3000, help="per round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; the median is printed")
    args = parser.parse_args()
    run_dir = args.run
    if run_dir is None:
        from digitlab.config import TrainConfig
        from digitlab.training import train

        run_dir = Path(tempfile.mkdtemp(prefix="bench-asgi-")) / "run"
        train(TrainConfig(epochs=1), run_dir=run_dir, verbose=0, plots_enabled=False)
    app = build_app(run_dir)
    admission = app.state.admission
    shed_at_door = app.front.app  # ShedWhenFull
    cases = {
        "lane (?threshold=0.5)": (scope_and_body("threshold=0.5"), "/api/predict"),
        "FastAPI (?threshold=5e-1)": (scope_and_body("threshold=5e-1"), "/api/predict"),
        "at the door, before the body": (scope_and_body("threshold=0.5"), None),
    }

    async def run_all() -> dict:
        medians = {}
        admission.admitted = admission.limit  # every place taken: each request gets 503
        for name, ((scope, body), door_path) in cases.items():
            # The door sheds POSTs to its path while full; point it elsewhere to time
            # the requests that get past it (their 503 comes after the body is read).
            shed_at_door.path = "/api/predict" if door_path is None else "/not-here"
            await time_calls(app, scope, body, 200)  # warm-up
            rounds = []
            for _ in range(args.repeats):
                seconds, status = await time_calls(app, scope, body, args.requests)
                rounds.append(seconds)
            if status != 503:
                raise SystemExit(f"{name}: expected 503, got {status}")
            medians[name] = statistics.median(rounds)
        return medians

    medians = asyncio.run(run_all())
    print(
        f"event-loop CPU per POST /api/predict refused after admission (503), "
        f"{args.requests} calls x {args.repeats} rounds, median:"
    )
    for name, seconds in medians.items():
        print(f"  {name:<30} {seconds * 1e6:7.1f} us")
    lane, fastapi = medians["lane (?threshold=0.5)"], medians["FastAPI (?threshold=5e-1)"]
    print(f"ratio FastAPI / lane: {fastapi / lane:.1f}x")


if __name__ == "__main__":
    main()
