"""Reading the images of concurrent requests together, in one model call.

The event loop hands each admitted prediction to a :class:`Batcher` and awaits
it.  A reader takes every request waiting at that moment (nothing waits for a
batch to fill: alone, a request is read at once) and reads them with
:func:`digitlab.inference.read_images`, so the model and the "not a digit"
detector run once per batch instead of once per request.

Readers are worker processes (``digitlab serve --workers N``, each with the
run loaded in it) or threads of the server's own process.  Processes keep the
interpreter lock of the event loop free: health checks and load shedding are
answered at once however busy the model is, and preparing images (NumPy,
Pillow and Python in equal parts) uses every core.  Requests that ask
``explain=True`` are read by a thread, with the model the server loaded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import multiprocessing
import os
import signal
import sys
import threading

from digitlab.errors import DigitlabError
from digitlab.inference import read_images
from digitlab.serve.middleware import ApiError
from digitlab.serve.requests import no_object_reprs, parse_request

MAX_BATCH = 64
"""The most requests read in one model call."""

WORKER_START_TIMEOUT = 300.0
"""Seconds a worker process gets to load the run."""

BATCH_TIMEOUT = 30.0
"""Seconds a worker process gets to read a batch, plus one per request in it
(an image takes milliseconds; decoding is bounded to well under a second): a
worker that takes longer is stuck, and is stopped."""


class Batcher:
    """Readers that take the requests queued and read them in batches.

    Args:
        predictor: the loaded :class:`~digitlab.inference.Predictor`: read by
            ``threads`` threads, and by them alone when there are no processes.
        threads: threads reading batches in this process.
        processes: a :class:`WorkerPool` whose processes read the requests
            that do not ask ``explain`` (None: the threads read everything).
        explain: ``explain(predictor, result) -> dict`` of extra fields for a
            request made with ``explain=True``.
    """

    def __init__(
        self,
        predictor,
        *,
        threads: int = 1,
        processes=None,
        explain=None,
        max_batch: int = MAX_BATCH,
    ):
        self.predictor = predictor
        self.max_batch = max_batch
        self._explain = explain
        self._ready = threading.Condition()
        self._idle: collections.Counter = collections.Counter()  # readers waiting, per queue
        self.batches = 0
        self.largest = 0
        self._local: collections.deque = collections.deque()
        self._pooled: collections.deque = collections.deque() if processes else self._local
        self._workers = list(processes.workers) if processes else []
        self._readers = [
            threading.Thread(
                target=self._work,
                args=(self._local, self._read_here),
                name=f"digitlab-batch-{i}",
                daemon=True,
            )
            for i in range(threads)
        ]
        for index, worker in enumerate(processes.workers if processes else ()):
            self._readers.append(
                threading.Thread(
                    target=self._work,
                    args=(self._pooled, worker.read),
                    name=f"digitlab-worker-{index}",
                    daemon=True,
                )
            )
        for reader in self._readers:
            reader.start()

    async def read(self, request: dict, *, explain: bool = False) -> dict | bytes:
        """The answer to ``request`` (see :func:`read_requests`): the
        :func:`~digitlab.inference.read_image` dict, or from a worker process
        the bytes of its JSON; raises the :class:`ApiError` that reading it gave."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._ready:
            queue = self._local if explain else self._pooled
            queue.append((request, explain, loop, future))
            self._ready.notify_all()
        return await future

    @property
    def workers(self) -> int:
        """Worker processes reading now (a process that died no longer counts)."""
        return sum(worker.alive for worker in self._workers)

    def _read_here(self, requests: list[dict]) -> list:
        return read_requests(self.predictor, requests)

    def _work(self, queue: collections.deque, read) -> None:
        while True:
            with self._ready:
                self._idle[id(queue)] += 1
                while not queue:
                    self._ready.wait()
                self._idle[id(queue)] -= 1
                # A fair share when other readers of this queue are idle too:
                # images are prepared one by one, so two half batches are read
                # in half the time of one whole.
                share = -(-len(queue) // (self._idle[id(queue)] + 1))
                batch = [queue.popleft() for _ in range(min(share, self.max_batch))]
            self.batches += 1
            self.largest = max(self.largest, len(batch))
            requests = [request for request, *_ in batch]
            try:
                try:
                    results = read(requests)
                except WorkerDied as exc:
                    print(
                        f"digitlab serve: {exc}; reading in the server's process from now on",
                        file=sys.stderr,
                        flush=True,
                    )
                    read = self._read_here
                    results = read(requests)
            except Exception as exc:  # a failure of the whole batch: every request gets it
                results = [exc] * len(batch)
            for index, (_, explain, _, _) in enumerate(batch):
                if explain and self._explain is not None and isinstance(results[index], dict):
                    try:
                        results[index].update(self._explain(self.predictor, results[index]))
                    except Exception as exc:
                        results[index] = exc
            for (_, _, loop, future), result in zip(batch, results, strict=True):
                try:
                    loop.call_soon_threadsafe(_settle, future, result)
                except RuntimeError:  # the event loop has closed: nobody waits any more
                    pass


def read_requests(predictor, requests: list[dict], *, encode: bool = False) -> list:
    """:func:`~digitlab.inference.read_images` for the requests of the API.

    Each request holds its body as received (see
    :func:`~digitlab.serve.requests.parse_request`): the reader parses the
    multipart upload or the JSON pixels, and checks the image's size, so the
    event loop only moves bytes.  Reading errors become the API's 400s.  With
    ``encode``, each answer comes back as the bytes of its JSON (what the
    worker processes send: the event loop neither unpickles nor encodes it).
    """
    results: list = [None] * len(requests)
    readable, places = [], []
    for index, request in enumerate(requests):
        try:
            readable.append(parse_request(request, predictor.image_shape))
        except ApiError as exc:
            results[index] = exc
            continue
        places.append(index)
    answers = read_images(predictor, readable)
    for index, request, result in zip(places, readable, answers, strict=True):
        if isinstance(result, DigitlabError):
            result = ApiError(400, no_object_reprs(str(result), request["name"]))
        results[index] = result
    if encode:
        results = [encode_json(r) if isinstance(r, dict) else r for r in results]
    return results


def encode_json(result: dict) -> bytes:
    """The bytes Starlette's JSONResponse would send for ``result``."""
    text = json.dumps(result, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8")


def _settle(future: asyncio.Future, result) -> None:
    if future.done():  # the request was cancelled (the client went away)
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


# --------------------------------------------------------------------------- worker processes


class WorkerDied(RuntimeError):
    """A worker process ended while reading a batch."""


class WorkerPool:
    """``count`` processes, each with the run in ``run_dir`` loaded, reading batches.

    Started with :meth:`start` (they load while the server loads its own copy)
    and awaited with :meth:`wait_ready`.  Digitlab's own networks are computed
    in NumPy there (``load_run(quick=True)``: the same answers without Keras or
    JAX, tens of megabytes per process); BLAS runs on one thread per process.
    A process that dies is replaced by the threads of the server's process.
    """

    def __init__(
        self, run_dir, count: int, *, runtime: str = "native", batch_timeout: float = BATCH_TIMEOUT
    ):
        self.run_dir = os.fspath(run_dir)
        self.runtime = runtime
        self.batch_timeout = batch_timeout
        self.workers = [_Worker(self, index) for index in range(count)]

    def start(self) -> WorkerPool:
        context = multiprocessing.get_context("spawn")  # JAX's threads do not survive fork
        for worker in self.workers:
            worker.start(context)
        return self

    def wait_ready(self, timeout: float = WORKER_START_TIMEOUT) -> None:
        """Block until every process has loaded the run; ``RuntimeError`` naming
        the first that could not."""
        for worker in self.workers:
            worker.wait_ready(timeout)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


class _Worker:
    def __init__(self, pool: WorkerPool, index: int):
        self.pool = pool
        self.index = index
        self.process = None
        self.connection = None
        self.alive = False
        self._lock = threading.Lock()

    def start(self, context) -> None:
        parent, child = context.Pipe()
        self.process = context.Process(
            target=_worker_main,
            args=(child, self.pool.run_dir, self.pool.runtime),
            name=f"digitlab-worker-{self.index}",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.connection = parent

    def wait_ready(self, timeout: float) -> None:
        if not self.connection.poll(timeout):
            raise RuntimeError(f"worker {self.index}: did not load the run in {timeout:g} s")
        try:
            message = self.connection.recv()
        except EOFError:
            message = f"ended with exit code {self.process.exitcode}"
        if message != "ready":
            raise RuntimeError(f"worker {self.index}: {message}")
        self.alive = True

    def read(self, requests: list[dict]) -> list:
        with self._lock:
            try:
                self.connection.send(requests)
                seconds = self.pool.batch_timeout + len(requests)
                if not self.connection.poll(seconds):
                    self.alive = False
                    self.process.kill()
                    raise WorkerDied(
                        f"worker process {self.index} did not answer within {seconds:g} s "
                        "and was stopped"
                    )
                return self.connection.recv()
            except (EOFError, OSError):
                self.alive = False
                raise WorkerDied(f"worker process {self.index} ended") from None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
        if self.process is not None:
            self.process.join(timeout=5)
            if self.process.is_alive():
                self.process.terminate()


def _worker_main(connection, run_dir: str, runtime: str) -> None:
    """A worker process: load the run, then read batches until the pipe closes."""
    # Ctrl-C reaches the whole process group; the server stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from digitlab._threads import blas_threads
        from digitlab.inference import Predictor
        from digitlab.inference.detector import load_detector
        from digitlab.runs import load_run

        blas_threads(1).__enter__()  # for the life of the process
        predictor = Predictor(load_run(run_dir, quick=True, runtime=runtime))
        load_detector()
    except Exception as exc:  # the server reports it and reads in its own process
        with contextlib.suppress(OSError):  # the server may have stopped already
            connection.send(f"{type(exc).__name__}: {exc}")
        return
    try:
        connection.send("ready")
    except OSError:
        return
    while True:
        try:
            requests = connection.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        try:
            results = read_requests(predictor, requests, encode=True)
        except Exception as exc:
            results = [exc] * len(requests)
        try:
            connection.send(results)
        except (OSError, ValueError):
            return
        except Exception as exc:  # a result that does not pickle: a bug, reported as such
            print(f"digitlab worker: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            connection.send([RuntimeError("worker could not send its answer")] * len(requests))
