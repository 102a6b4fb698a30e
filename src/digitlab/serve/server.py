"""Binding the port and running uvicorn: ``digitlab serve``."""

from __future__ import annotations

import contextlib
import os
import socket
import sys

from digitlab.errors import ConfigError
from digitlab.inference import Predictor
from digitlab.runs import load_run
from digitlab.serve.app import DEFAULT_MAX_QUEUE, create_app
from digitlab.serve.middleware import check_positive


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
    log=None,
) -> None:
    """Load the run in ``run_dir`` once and serve it with uvicorn until interrupted.

    ``max_concurrency`` defaults to the number of CPU cores.  Prints
    ``serving RUN on http://HOST:PORT`` to ``log`` (default stdout) once the port
    is bound and the model is warm.
    """
    import uvicorn

    log = log or sys.stdout
    max_concurrency = max_concurrency or os.cpu_count() or 1
    check_positive("max_concurrency", max_concurrency)
    check_positive("max_queue", max_queue, minimum=0)
    sock = bind_socket(host, port)
    try:
        predictor = Predictor(load_run(run_dir))
        app = create_app(predictor, max_concurrency=max_concurrency, max_queue=max_queue)
        bound_host, bound_port = sock.getsockname()[:2]
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
            timeout_keep_alive=5,
            # The thread pool does the work; this caps open connections as a backstop.
            limit_concurrency=max(64, 8 * (max_concurrency + max_queue)),
        )
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
    finally:
        with contextlib.suppress(OSError):
            sock.close()


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
