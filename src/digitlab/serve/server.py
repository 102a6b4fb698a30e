"""Binding the port and running uvicorn: ``digitlab serve``."""

from __future__ import annotations

import contextlib
import os
import socket
import sys

from digitlab.errors import ConfigError
from digitlab.inference import Predictor
from digitlab.runs import load_run
from digitlab.serve.app import DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_QUEUE, create_app
from digitlab.serve.batching import WorkerPool
from digitlab.serve.middleware import check_positive

DEFAULT_HEADER_TIMEOUT = 5.0
"""Seconds a connection gets to send a request's headers (from its opening, or the
end of the previous response): idle and slowloris sockets are closed after that."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port).

    Binding before uvicorn starts turns "address in use" into one clear error and
    lets a caller learn the port chosen for port 0.
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"port: expected 0..65535. Received: {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(
            f"host: expected an address of this machine. Received: {host!r} ({exc.strerror})"
        ) from None
    family, kind, protocol, _, address = infos[0]
    # The protocol must be IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on
    # sockets that say so, and without it small responses wait ~40 ms for delayed ACKs.
    sock = socket.socket(family, kind, protocol or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"port: expected a free port on {host}. Received: {port} ({exc.strerror})"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(
    run_dir,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_concurrency: int | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    access_log: bool = True,
    allowed_hosts=(),
    allow_origins=(),
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    log=None,
    runtime: str = "native",
    workers: int | None = None,
) -> None:
    """Load the run in ``run_dir`` once and serve it with uvicorn until interrupted.

    ``workers``: processes reading the images, each taking every waiting
    request as one batch (default: one per CPU core, at most
    :data:`MAX_DEFAULT_WORKERS`; 0: threads of this process read them).
    ``max_concurrency``: threads of this process reading images (the
    ``explain=true`` requests, or all with no workers; default 1).  ``allowed_hosts``:
    names the ``Host`` header may carry besides loopback names and the bound
    address (``"*"``: any).  ``allow_origins``: other web origins whose pages may
    POST (``"*"``: any).  A connection gets ``header_timeout`` seconds to send its
    request headers and the request ``body_timeout`` seconds for its body.  Prints
    ``serving RUN on http://HOST:PORT`` to ``log`` (default stdout) once the port
    is bound and the model is warm.  ``runtime="onnx"`` serves the run's
    exported ``model.onnx`` on onnxruntime (no JAX, no Keras).
    """
    import uvicorn

    log = log or sys.stdout
    max_concurrency = max_concurrency or 1
    check_positive("max_concurrency", max_concurrency)
    workers = default_workers() if workers is None else workers
    check_positive("workers", workers, minimum=0)
    check_positive("max_queue", max_queue, minimum=0)
    check_seconds("header_timeout", header_timeout)
    allowed_hosts = check_names("allowed_hosts", allowed_hosts)
    allow_origins = check_names("allow_origins", allow_origins)
    sock = bind_socket(host, port)
    pool = None
    try:
        # The workers load the run while this process does.
        pool = WorkerPool(run_dir, workers, runtime=runtime).start() if workers else None
        predictor = Predictor(load_run(run_dir, runtime=runtime))
        if pool is not None:
            try:
                pool.wait_ready()
            except RuntimeError as exc:
                print(
                    f"warning: {exc}; reading images in the server's process",
                    file=sys.stderr,
                    flush=True,
                )
                pool.close()
                pool = None
        bound_host, bound_port = sock.getsockname()[:2]
        app = create_app(
            predictor,
            max_concurrency=max_concurrency,
            max_queue=max_queue,
            allowed_hosts=[*served_names(host, bound_host), *allowed_hosts],
            allow_origins=allow_origins,
            body_timeout=body_timeout,
            workers=pool,
        )
        _settle_interpreter()
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        print(f"serving {run_dir} on http://{shown}:{bound_port}", file=log, flush=True)
        if not _is_loopback(host):
            print(
                f"warning: {host} is reachable from other machines and the server has no "
                "authentication",
                file=sys.stderr,
                flush=True,
            )
        config = uvicorn.Config(
            app,
            log_level="info" if access_log else "warning",
            access_log=access_log,
            http=_guarded_protocol(header_timeout),
            timeout_keep_alive=5,
            # Admission (after the body is read) bounds the work; idle and slow
            # sockets are closed by the header timeout.  This only caps open
            # connections below the file-descriptor limit: reaching it answers 503.
            limit_concurrency=_connection_cap(),
            backlog=2048,
        )
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
    finally:
        with contextlib.suppress(OSError):
            sock.close()
        if pool is not None:
            pool.close()


MAX_DEFAULT_WORKERS = 4
"""The most worker processes started by default."""


def default_workers() -> int:
    """One worker process per CPU core this process may use, at most
    :data:`MAX_DEFAULT_WORKERS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, cores))


def _settle_interpreter() -> None:
    """Tune the long-lived server process for steady latency.

    * The objects loaded so far (Keras, JAX, the model) never become garbage:
      :func:`gc.freeze` takes them out of the collector's sight, so a full
      collection no longer walks millions of objects (a stall of tens of ms).
    * A thread waiting for the interpreter lock gets it after 0.5 ms instead of
      5 ms: the event loop answers between the steps of a batch read in this
      process.
    """
    import gc

    gc.collect()
    gc.freeze()
    sys.setswitchinterval(0.0005)


def served_names(host: str, bound_host: str) -> list[str]:
    """The Host names allowed by default: the address asked for and the one bound
    (loopback names are always allowed); for a wildcard bind, this machine's names
    and, through the wildcard itself, any IP address (see ``HostGuard``)."""
    names = {host.lower().strip("[]"), bound_host.lower()}
    if bound_host in ("0.0.0.0", "::"):
        with contextlib.suppress(OSError):
            names.add(socket.gethostname().lower())
            names.add(socket.getfqdn().lower())
            for info in socket.getaddrinfo(socket.gethostname(), None):
                names.add(str(info[4][0]).lower())
    return sorted(names - {""})


def check_seconds(name: str, value) -> float:
    import math

    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value > 0)
    ):
        raise ConfigError(f"{name}: expected a number of seconds > 0. Received: {value!r}")
    return float(value)


def check_names(name: str, values) -> list[str]:
    if isinstance(values, str):
        values = [values]
    names = []
    for value in values or ():
        if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
            raise ConfigError(f"{name}: expected names without spaces. Received: {value!r}")
        names.append(value.strip())
    return names


def _connection_cap() -> int:
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 1000
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(64, min(4096, soft - 64))


def _guarded_protocol(header_timeout: float):
    """uvicorn's HTTP protocol with a deadline for each request's headers.

    httptools' (C, from ``uvicorn[standard]``) when installed, else h11's (pure
    Python, several times slower to parse).  uvicorn keeps a connection that
    never sends a request (or sends its headers one byte a minute) open for
    ever; each such socket counts against the connection cap.  Here a timer
    starts when the connection opens and again when a response is complete, and
    closes the connection unless the next request's headers have arrived by then.
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # httptools is not installed
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class GuardedProtocol(base):
        # One timer per connection, moved rather than re-made for every request:
        # it fires at the deadline of the request it was set for and, if that
        # request's headers came in time, sleeps on to the next deadline.
        _header_timer = None
        _deadline = None  # when the next request's headers are due (None: not waiting)
        _armed_cycle = None

        def _arm(self) -> None:
            self._armed_cycle = self.cycle
            self._deadline = self.loop.time() + header_timeout
            if self._header_timer is None:
                self._header_timer = self.loop.call_at(self._deadline, self._check_deadline)

        def _disarm(self) -> None:
            self._deadline = None
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _check_headers(self) -> None:
            if self._deadline is not None and self.cycle is not self._armed_cycle:
                self._deadline = None  # a new request's headers arrived

        def _check_deadline(self) -> None:
            self._header_timer = None
            if self._deadline is None or self.transport.is_closing():
                return
            if self.loop.time() < self._deadline:  # re-armed since: wait for that one
                self._header_timer = self.loop.call_at(self._deadline, self._check_deadline)
                return
            conn = getattr(self, "conn", None)  # h11 keeps its own connection state
            if conn is not None:
                import h11

                with contextlib.suppress(h11.LocalProtocolError):
                    conn.send(h11.ConnectionClosed())
            self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._check_headers()

        def on_response_complete(self) -> None:
            if not self.transport.is_closing():
                self._arm()
            super().on_response_complete()
            self._check_headers()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedProtocol


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
