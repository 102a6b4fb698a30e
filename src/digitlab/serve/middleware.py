"""The server's guards: JSON errors, body size, security headers, admission.

Every refusal is an :class:`ApiError`, answered as ``{"error": "one line"}``
with its status.
"""

from __future__ import annotations

import asyncio

from fastapi.responses import JSONResponse

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
    """Bounded admission for predictions: at most ``max_concurrency`` run at once
    and ``max_queue`` more wait; anything beyond is refused at once (503).

    Used from the event loop only, so plain counters need no lock.
    """

    def __init__(self, max_concurrency: int, max_queue: int):
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.admitted = 0
        self.running = asyncio.Semaphore(max_concurrency)
        self.shed = 0

    def try_enter(self) -> bool:
        if self.admitted >= self.max_concurrency + self.max_queue:
            self.shed += 1
            return False
        self.admitted += 1
        return True

    def leave(self) -> None:
        self.admitted -= 1


def check_positive(name: str, value: int, *, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name}: expected an integer >= {minimum}. Received: {value!r}")
    return value
