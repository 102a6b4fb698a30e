"""HTTP latency and throughput of ``digitlab serve`` on loopback.

Starts ``python -m digitlab serve RUN --port 0 --quiet`` as a subprocess, then for
each payload (a 280x280 canvas PNG as the drawing page sends it, and JSON 28x28
pixels) and each number of concurrent clients (1, 16, 64) sends requests for
``--seconds`` seconds (at most ``--max-requests`` requests), each client sending
its next request as soon as the last is answered (a 503 too: no back-off), and
prints p50/p99 latency of the answered requests, throughput, 503s (load shed,
with their p99 latency) and other errors, then one line per goal of issue 11
(measured, goal, met or not met).  The load generator holds one keep-alive
connection per client and writes each request's bytes (encoded once by httpx),
as wrk does: ~0.1 ms of CPU a request, where httpx's client (``--client httpx``)
costs ~4 ms and on 2 cores measures mostly itself.  Client and server share
this machine's cores, so the figures move with whatever else runs on it.

    python benchmarks/bench_http.py [--run RUN] [--seconds 5] [--max-concurrency N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bench_predict import canvas_png  # the same drawn '7'


def mnist_pixels() -> list[list[int]]:
    from digitlab.data import load_dataset

    return load_dataset(progress=False).x_test[0].tolist()


@contextlib.contextmanager
def server(run_dir: Path, extra: list[str]):
    log = tempfile.NamedTemporaryFile(prefix="bench-http-", suffix=".out", delete=False)
    command = [sys.executable, "-m", "digitlab", "serve", str(run_dir), "--port", "0", "--quiet"]
    process = subprocess.Popen([*command, *extra], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        url = None
        while url is None:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start: {Path(log.name).read_text()[-2000:]}")
            text = Path(log.name).read_text(errors="replace")
            if " on http://" in text:
                url = text.split(" on ", 1)[1].split()[0]
            time.sleep(0.1)
        with httpx.Client(trust_env=False) as client:
            while client.get(f"{url}/api/health").status_code != 200:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        os.unlink(log.name)


def encode_request(url: str, request: dict) -> bytes:
    """The bytes of one ``POST /api/predict`` as httpx would send them (keep-alive)."""
    built = httpx.Request("POST", f"{url}/api/predict", **request)
    body = built.read()
    lines = ["POST /api/predict HTTP/1.1", f"Host: {built.url.netloc.decode()}"]
    lines += [f"{k}: {v}" for k, v in built.headers.items() if k.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _exchange(reader, writer, payload: bytes) -> int:
    """Send one request on an open connection; its status once the whole answer is read."""
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    await reader.readexactly(length)
    return -status if close else status


async def load(
    url: str, request: dict, *, clients: int, seconds: float, max_requests: int, client: str = "raw"
):
    """``clients`` concurrent loops of requests for ``seconds`` (bounded by ``max_requests``).

    ``client="raw"``: each loop holds one keep-alive connection and writes the
    request's bytes (encoded once by httpx) and reads the answer: a load
    generator that costs the shared CPU ~0.1 ms a request, as wrk would.
    ``client="httpx"``: httpx.AsyncClient (~4 ms of CPU a request here, so on
    2 cores it measures mostly itself).
    """
    latencies: list[float] = []
    shed_latencies: list[float] = []
    statuses: dict[int | str, int] = {}
    sent = 0
    stop_at = time.perf_counter() + seconds

    def record(key, start: float) -> None:
        if key == 200:
            latencies.append(time.perf_counter() - start)
        elif key == 503:
            shed_latencies.append(time.perf_counter() - start)
        statuses[key] = statuses.get(key, 0) + 1

    if client == "httpx":
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(
            base_url=url, trust_env=False, timeout=30, limits=limits
        ) as session:
            await session.get("/api/health")

            async def worker() -> None:
                nonlocal sent
                while time.perf_counter() < stop_at and sent < max_requests:
                    sent += 1
                    start = time.perf_counter()
                    try:
                        response = await session.post("/api/predict", **request)
                        key: int | str = response.status_code
                    except httpx.HTTPError as error:
                        key = type(error).__name__
                    record(key, start)

            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            elapsed = time.perf_counter() - began
        return np.array(latencies), np.array(shed_latencies), statuses, elapsed

    payload = encode_request(url, request)
    host, port = httpx.URL(url).host, httpx.URL(url).port

    async def raw_worker() -> None:
        nonlocal sent
        reader = writer = None
        while time.perf_counter() < stop_at and sent < max_requests:
            sent += 1
            start = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                key: int | str = await asyncio.wait_for(_exchange(reader, writer, payload), 30)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as error:
                key = type(error).__name__
            if not isinstance(key, int) or key < 0:  # the server closed it (or failed)
                key = -key if isinstance(key, int) else key
                if writer is not None:
                    writer.close()
                reader = writer = None
            record(key, start)
        if writer is not None:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(raw_worker() for _ in range(clients)))
    elapsed = time.perf_counter() - began
    return np.array(latencies), np.array(shed_latencies), statuses, elapsed


GOALS = """\
JSON pixels p99 at 16 clients <= 100 ms
JSON pixels served p99 at 64 clients <= 250 ms
JSON pixels 503 p99 at 64 clients < 50 ms
canvas PNG served p99 at 64 clients <= 250 ms
canvas PNG 503 p99 at 64 clients < 50 ms
canvas PNG throughput at 16 clients >= 150 req/s"""


def goal_lines(results: dict) -> list[str]:
    """One line per goal: what was measured, the goal, met or not met."""
    lines = []
    for goal in GOALS.splitlines():
        words = goal.split()
        payload = " ".join(words[:2])
        clients = int(words[words.index("clients") - 1])
        limit = float(words[-2])
        got = results.get((payload, clients))
        if got is None:
            lines.append(f"goal: {goal}: not measured (level not run)")
            continue
        if "throughput" in goal:
            value, unit, met = got["rate"], "req/s", got["rate"] >= limit
        else:
            value = got["shed_p99" if "503" in goal else "p99"]
            unit = "ms"
            met = value < limit if "<" in goal and "<=" not in goal else value <= limit
            if "503" in goal and not got["shed"]:
                lines.append(f"goal: {goal}: measured no 503 (nothing shed): not met")
                continue
        lines.append(f"goal: {goal}: measured {value:.1f} {unit}: {'met' if met else 'NOT MET'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="run folder (default: train one epoch)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per concurrency level")
    parser.add_argument("--max-requests", type=int, default=20_000, help="per level, at most")
    parser.add_argument("--clients", default="1,16,64", help="concurrency levels")
    parser.add_argument("--max-concurrency", type=int, help="passed to digitlab serve")
    parser.add_argument("--max-queue", type=int, help="passed to digitlab serve")
    parser.add_argument("--workers", type=int, help="passed to digitlab serve")
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load generator: raw keep-alive sockets (default, cheap) or httpx (heavy)",
    )
    args = parser.parse_args()

    run_dir = args.run
    if run_dir is None:
        from digitlab.config import TrainConfig
        from digitlab.training import train

        run_dir = Path(tempfile.mkdtemp(prefix="bench-http-")) / "run"
        train(TrainConfig(epochs=1), run_dir=run_dir, verbose=0, plots_enabled=False)
    extra = []
    if args.max_concurrency:
        extra += ["--max-concurrency", str(args.max_concurrency)]
    if args.max_queue is not None:
        extra += ["--max-queue", str(args.max_queue)]
    if args.workers is not None:
        extra += ["--workers", str(args.workers)]
    payloads = {
        "canvas PNG": {"files": {"file": ("drawing.png", canvas_png(), "image/png")}},
        "JSON pixels": {"json": {"pixels": mnist_pixels()}},
    }
    levels = [int(n) for n in args.clients.split(",")]
    results: dict = {}
    with server(run_dir, extra) as url:
        with httpx.Client(base_url=url, trust_env=False) as client:
            limits = client.get("/api/model").json()["limits"]
            health = client.get("/api/health").json()
        print(
            f"digitlab serve {run_dir} on {url}: {health.get('workers', 'no')} worker processes, "
            f"max_concurrency {limits['max_concurrency']}, max_queue {limits['max_queue']}; "
            f"{os.cpu_count()} CPU cores shared with the "
            f"{args.client} load generator; {args.seconds:g} s per level"
        )
        for name, request in payloads.items():
            for clients in levels:
                latencies, shed_latencies, statuses, elapsed = asyncio.run(
                    load(
                        url,
                        request,
                        clients=clients,
                        seconds=args.seconds,
                        max_requests=args.max_requests,
                        client=args.client,
                    )
                )
                ok = statuses.get(200, 0)
                shed = statuses.get(503, 0)
                errors = sum(v for k, v in statuses.items() if k not in (200, 503))
                p50 = np.median(latencies) * 1e3 if ok else float("nan")
                p99 = np.percentile(latencies, 99) * 1e3 if ok else float("nan")
                shed_p99 = np.percentile(shed_latencies, 99) * 1e3 if shed else float("nan")
                results[(name, clients)] = {
                    "p99": p99,
                    "shed_p99": shed_p99,
                    "shed": shed,
                    "rate": ok / elapsed,
                }
                print(
                    f"{name:<12} {clients:>3} clients: p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
                    f"{ok / elapsed:7.1f} req/s  ({ok} ok, {shed} shed with 503"
                    f"{f' p99 {shed_p99:.1f} ms' if shed else ''}, "
                    f"{errors} errors{'' if not errors else ' ' + str(statuses)})",
                    flush=True,
                )
    for line in goal_lines(results):
        print(line)


if __name__ == "__main__":
    main()
