"""The server's guards: JSON errors, body size, security headers, admission.

Every refusal is an :class:`ApiError`, answered as ``{"error": "one line"}``
with its status.
"""

from __future__ import annotations

import asyncio
import json

from fastapi.responses import JSONResponse, Response

from digitlab.errors import ConfigError

# Pages never load anything from elsewhere; the drawing canvas needs data: and
# blob: images for the previews.
_PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class ApiError(Exception):
    """A request the server refuses: becomes ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, *, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = " ".join(message.split())
        self.headers = headers

    def __reduce__(self):  # it travels back from worker processes
        return (_api_error, (type(self), self.status, self.message, self.headers))


def _api_error(kind, status: int, message: str, headers: dict | None) -> ApiError:
    error = kind.__new__(kind)
    ApiError.__init__(error, status, message, headers=headers)
    return error


class BodyTooLarge(ApiError):
    def __init__(self, limit: int):
        # Close the connection: uvicorn would otherwise read the rest of the body.
        super().__init__(
            413,
            f"body: expected at most {limit:,} bytes. Received: more than that",
            headers={"Connection": "close"},
        )


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status, headers=headers)


class BodySizeLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` without buffering them.

    A declared Content-Length over the limit is refused before a byte of the body
    is read; a body without one (chunked) is counted as it streams in and refused
    (:class:`BodyTooLarge`, handled as 413) as soon as the count passes the limit.
    """

    def __init__(self, app, *, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                response = error_response(
                    400, f"Content-Length: expected a byte count. Received: {declared[:40]!r}"
                )
                await response(scope, receive, send)
                return
            if length > self.max_bytes:
                response = error_response(
                    413,
                    f"body: expected at most {self.max_bytes:,} bytes. "
                    f"Received: Content-Length {length:,}",
                    headers={"Connection": "close"},
                )
                await response(scope, receive, send)
                return
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted_receive, send)


class SecurityHeaders:
    """ASGI middleware: ``nosniff`` everywhere; on the pages, a policy that lets them
    load nothing from anywhere but this server."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        is_page = path in ("/", "/report") or path.startswith("/static/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                if is_page:
                    headers.append((b"content-security-policy", _PAGE_POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Admission:
    """Bounded admission for predictions: at most ``max_concurrency + max_queue``
    are admitted (read, or waiting to be read, by the
    :class:`~digitlab.serve.batching.Batcher`); anything beyond is refused at
    once (503).  A request is admitted once its body is read, so a stalled
    upload holds no place.

    Used from the event loop only, so plain counters need no lock.
    """

    def __init__(self, max_concurrency: int, max_queue: int):
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.limit = max_concurrency + max_queue
        self.admitted = 0
        self.shed = 0

    def full(self) -> bool:
        """True when a new request would be shed (counted as shed)."""
        if self.admitted >= self.limit:
            self.shed += 1
            return True
        return False

    def try_enter(self) -> bool:
        """Admit a request whose body is read, unless the places are all taken."""
        if self.full():
            return False
        self.admitted += 1
        return True

    def leave(self) -> None:
        self.admitted -= 1

    def busy(self) -> ApiError:
        """The 503 answered to a request shed."""
        return ApiError(
            503,
            f"server busy: {self.admitted} requests being read or waiting "
            f"(at most {self.limit} at once). Retry after 1 second",
            headers={"Retry-After": "1"},
        )


class ShedWhenFull:
    """ASGI middleware: a POST to ``path`` while :class:`Admission` is full is
    answered 503 at once, before its body is read or the app routes it.

    Under overload most requests are shed: answering them here costs a tenth
    of what routing them through the app would, which keeps both the 503s and
    the requests being served fast.
    """

    def __init__(self, app, *, admission: Admission, path: str):
        self.app = app
        self.admission = admission
        self.path = path
        self._busy_cache: dict[str, tuple] = {}

    async def __call__(self, scope, receive, send):
        predicting = scope.get("method") == "POST" and scope.get("path") == self.path
        if scope["type"] == "http" and predicting and self.admission.full():
            await self._send_busy(send)
            return
        await self.app(scope, receive, send)

    async def _send_busy(self, send) -> None:
        """The 503 of :meth:`Admission.busy`, as ASGI messages made once per text."""
        busy = self.admission.busy()
        cached = self._busy_cache.get(busy.message)
        if cached is None:
            body = json.dumps({"error": busy.message}).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
                (b"x-content-type-options", b"nosniff"),
            ]
            cached = ({"type": "http.response.start", "status": 503, "headers": headers}, body)
            if len(self._busy_cache) < 256:
                self._busy_cache[busy.message] = cached
        start, body = cached
        await send(start)
        await send({"type": "http.response.body", "body": body})


def check_positive(name: str, value: int, *, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name}: expected an integer >= {minimum}. Received: {value!r}")
    return value


class ReadDeadline:
    """ASGI middleware: the whole request body must arrive within ``seconds`` of the
    request's start, or the request is answered 408 and the connection closed.

    Without it a client that sends 4 bytes of a 100,000-byte upload and waits holds
    its request (and its memory) for ever.  Once the body is complete, ``receive``
    is passed through untouched (responses listen on it for the disconnect).
    """

    def __init__(self, app, *, seconds: float):
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        complete = False
        received = 0

        async def timed_receive():
            nonlocal complete, received
            if complete:
                return await receive()
            try:
                # A timer on this task, not wait_for's extra task per message.
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise ApiError(
                    408,
                    f"body: expected the whole body within {self.seconds:g} s. "
                    f"Received: {received:,} bytes by then",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            received += len(message.get("body", b""))
            return message

        await self.app(scope, timed_receive, send)


_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def split_host(value: str) -> tuple[str, str]:
    """``("name", "port")`` of a Host header or an origin's authority (IPv6 in brackets)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        return name, rest.removeprefix(":")
    name, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    return name, port


class HostGuard:
    """ASGI middleware against DNS rebinding and cross-site requests.

    * ``Host`` must name this server: an allowed name (``allowed_hosts``; loopback
      names and the bound address by default; ``"*"`` allows any), else 400.  A
      page on ``evil.example`` that rebinds its name to 127.0.0.1 sends
      ``Host: evil.example`` and is refused.
    * A POST (PUT, PATCH, DELETE) from a browser page of another origin (``Origin``
      not this server's, or ``Sec-Fetch-Site: cross-site``/``same-site``) is refused
      with 403 unless that origin is in ``allow_origins`` (``"*"``: any).  Browsers
      send such form posts without asking first (no CORS preflight).  Clients that
      are not browsers send neither header and are not affected.
    * Allowed origins get ``Access-Control-Allow-Origin`` and their preflights answered.
    """

    def __init__(self, app, *, allowed_hosts, allow_origins=()):
        self.app = app
        self.any_host = "*" in allowed_hosts
        self.hosts = frozenset(h.strip().lower().strip("[]") for h in allowed_hosts)
        # Bound to every address: any IP address names this server (an address,
        # unlike a name, cannot be rebound to another machine).
        self.any_ip = bool(self.hosts & {"0.0.0.0", "::"})
        self.any_origin = "*" in allow_origins
        self.origins = frozenset(o.strip().lower().rstrip("/") for o in allow_origins)

    def host_allowed(self, name: str) -> bool:
        if self.any_host or name in self.hosts or _is_loopback_name(name):
            return True
        return self.any_ip and _is_ip(name)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {}
        for key, value in scope.get("headers") or []:
            headers.setdefault(key, value.decode("latin-1"))
        host = headers.get(b"host")
        if host is not None and not self.host_allowed(split_host(host)[0]):
            shown = "".join(ch for ch in host if ch.isprintable())[:80]
            response = error_response(
                400,
                f"Host: expected this server's name ({', '.join(sorted(self.hosts))}; "
                f"more with --allowed-host NAME). Received: {shown!r}",
            )
            await response(scope, receive, send)
            return
        origin = headers.get(b"origin")
        site = headers.get(b"sec-fetch-site", "").strip().lower()
        allowed = origin is not None and (
            self.any_origin or origin.strip().lower().rstrip("/") in self.origins
        )
        method = scope.get("method", "GET")
        if method == "OPTIONS" and allowed and b"access-control-request-method" in headers:
            response = Response(
                status_code=204,
                headers={
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": "GET, HEAD, POST",
                    "Access-Control-Allow-Headers": "Content-Type",
                    "Access-Control-Max-Age": "600",
                    "Vary": "Origin",
                },
            )
            await response(scope, receive, send)
            return
        if method in _UNSAFE_METHODS and not allowed:
            cross = site in ("cross-site", "same-site")
            if origin is not None and not cross:
                cross = not _same_origin(origin, host, scope)
            if cross:
                shown = "".join(ch for ch in (origin or site) if ch.isprintable())[:80]
                response = error_response(
                    403,
                    f"Origin: expected a page of this server (or one allowed with "
                    f"--allow-origin ORIGIN). Received: a {method} from {shown!r}",
                )
                await response(scope, receive, send)
                return
        if not allowed:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
                headers.append((b"vary", b"Origin"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cors)


def _same_origin(origin: str, host: str | None, scope) -> bool:
    scheme, sep, authority = origin.strip().lower().partition("://")
    if not sep or host is None or scheme != scope.get("scheme", "http"):
        return False  # includes "null" (sandboxed frames, file: pages)
    want_name, want_port = split_host(host)
    name, port = split_host(authority)
    default = "443" if scheme == "https" else "80"
    return name == want_name and (port or default) == (want_port or default)


def _is_ip(name: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_loopback_name(name: str) -> bool:
    import ipaddress

    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
