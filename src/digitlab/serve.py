"""The web app: a drawing page, the run's report and an HTTP API.

``digitlab serve RUN`` loads the run once and serves, on 127.0.0.1 by default:

* ``GET /``: draw a digit (mouse, touch or pen) or upload a photo and watch the
  prediction, the ten probabilities and the 28x28 image the model saw.
* ``GET /report``: the run's metrics, confusion matrix, curves and mistakes.
* ``POST /api/predict``: an image (multipart field ``file``, or a raw ``image/*``
  body) or JSON ``{"pixels": [[28 values] x 28 rows]}`` in; the fields of
  ``digitlab predict --json`` out (see :func:`digitlab.predict.read_image`).
* ``GET /api/health``, ``GET /api/model``, ``GET /api/report/{file}``.
* ``GET /docs`` (Swagger UI from the ``swagger-ui-bundle`` package, offline) and
  ``GET /openapi.json``.

Every error is JSON ``{"error": "one line"}``: 400 for a body that is not a
readable image (not an image, truncated, spoofed, empty, a decompression bomb)
or malformed JSON, 413 for a body over the size limit (checked from
Content-Length before reading, then counted while streaming), 415 for another
content type, 422 for wrong fields, shapes or values, 503 with ``Retry-After``
when more requests are waiting than ``max_concurrency + max_queue`` (load
shedding: the server answers at once rather than queueing without bound), and
500 only for a bug in the server.  Inference runs in a thread pool, so the
event loop stays free to answer health checks and shed load.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Annotated

from digitlab.errors import ConfigError, DigitlabError, ImageError
from digitlab.predict import MNIST_SHAPE, Predictor, check_pixels, read_image

try:
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.requests import ClientDisconnect
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "digitlab serve needs the web extras: pip install 'digitlab[serve]' "
        f"(fastapi, uvicorn, python-multipart). Missing: {error.name}"
    ) from None

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY_BYTES = 10 * 1024 * 1024
"""The largest request body accepted (10 MiB): a phone photo fits with room to spare."""

DEFAULT_MAX_QUEUE = 16
"""Requests allowed to wait for a model slot before new ones get 503."""

REPORT_FILES = (
    "confusion_matrix.png",
    "training_curves.png",
    "predictions.png",
    "mistakes.png",
)
"""The only files of a run folder the server hands out (see ``plots.REPORT_FILES``)."""

# Pages never load anything from elsewhere; the drawing canvas needs data: and
# blob: images for the previews.
_PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

_PREDICT_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": (
            "An image as multipart field `file` (PNG, JPEG, GIF, BMP, TIFF or WebP), "
            'a raw `image/*` body, or JSON `{"pixels": [[...28 values...] x 28]}` of a '
            "ready MNIST-like image: light ink on black, integers 0..255 or floats in [0, 1]."
        ),
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["pixels"],
                    "properties": {
                        "pixels": {
                            "type": "array",
                            "minItems": 28,
                            "maxItems": 28,
                            "items": {
                                "type": "array",
                                "minItems": 28,
                                "maxItems": 28,
                                "items": {"type": "number", "minimum": 0, "maximum": 255},
                            },
                        }
                    },
                }
            },
            "image/png": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


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


def _error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
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
                response = _error_response(
                    400, f"Content-Length: expected a byte count. Received: {declared[:40]!r}"
                )
                await response(scope, receive, send)
                return
            if length > self.max_bytes:
                response = _error_response(
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


def _check_positive(name: str, value: int, *, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name}: expected an integer >= {minimum}. Received: {value!r}")
    return value


def create_app(
    predictor: Predictor,
    *,
    max_concurrency: int = 2,
    max_queue: int = DEFAULT_MAX_QUEUE,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The FastAPI application serving ``predictor`` (build the Predictor once).

    Args:
        predictor: the loaded model; its ``run`` (if any) provides the report and
            the metadata of ``/api/model``.
        max_concurrency: predictions that run at the same time (thread pool).
        max_queue: further predictions that may wait; more get 503 + Retry-After.
        max_body_bytes: the largest request body accepted (413 beyond).
    """
    _check_positive("max_concurrency", max_concurrency)
    _check_positive("max_queue", max_queue, minimum=0)
    _check_positive("max_body_bytes", max_body_bytes)
    app = FastAPI(
        title="digitlab",
        summary="Read handwritten digits with a trained digitlab run.",
        version=_package_version(),
        docs_url=None,  # served below from local assets, never a CDN
        redoc_url=None,
    )
    started = time.time()
    admission = Admission(max_concurrency, max_queue)
    app.state.admission = admission
    app.state.predictor = predictor
    run = predictor.run

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError):
        return _error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail
        if exc.status_code == 404:
            message = f"{request.url.path}: no such page or API route"
        elif exc.status_code == 405:
            message = f"{request.url.path}: expected one of {exc.headers.get('Allow', '')}. "
            message += f"Received: {request.method}"
        return _error_response(exc.status_code, message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for problem in exc.errors()[:3]:
            where = ".".join(str(p) for p in problem.get("loc", ()) if p not in ("query", "path"))
            received = problem.get("input")
            text = f"{where}: {problem.get('msg', 'invalid')}"
            if received is not None and len(repr(received)) < 60:
                text += f". Received: {received!r}"
            parts.append(text)
        return _error_response(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(ClientDisconnect)
    async def on_disconnect(request: Request, exc: ClientDisconnect):
        return _error_response(400, "body: the client disconnected before sending it all")

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception):  # genuine server bugs only
        return _error_response(500, f"internal server error ({type(exc).__name__})")

    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    swagger = _swagger_assets()
    if swagger is not None:
        app.mount("/docs-assets", StaticFiles(directory=swagger), name="docs-assets")

    @app.get("/", include_in_schema=False)
    async def page_draw():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/report", include_in_schema=False)
    async def page_report():
        return FileResponse(STATIC_DIR / "report.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    async def page_docs():
        if swagger is None:
            # Without the swagger-ui-bundle package the page needs a CDN.
            return get_swagger_ui_html(openapi_url="/openapi.json", title="digitlab API")
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="digitlab API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    @app.get("/api/health", summary="Is the server up and the model loaded?")
    async def api_health():
        return {
            "status": "ok",
            "model": run.config.model if run is not None else type(predictor.model).__name__,
            "uptime_seconds": round(time.time() - started, 3),
            "in_flight": admission.admitted,
            "shed": admission.shed,
        }

    @app.get("/api/model", summary="The run: config, parameters, metrics, versions")
    async def api_model():
        return _model_info(predictor, admission, max_body_bytes)

    @app.get(
        "/api/report/{file_name}",
        summary="One of the run's report images (PNG)",
        responses={200: {"content": {"image/png": {}}}, 404: {"description": "no such file"}},
    )
    async def api_report(file_name: str):
        path = _report_file(run, file_name)
        return FileResponse(path, media_type="image/png")

    @app.post(
        "/api/predict",
        summary="Read the digit (or the number) in an image",
        openapi_extra=_PREDICT_BODY_DOC,
        responses={
            400: {"description": "not a readable image, or malformed JSON"},
            413: {"description": "body too large"},
            415: {"description": "unsupported content type"},
            422: {"description": "wrong field, shape or values"},
            503: {"description": "busy: retry after the Retry-After seconds"},
        },
    )
    async def api_predict(
        request: Request,
        single: Annotated[bool, Query(description="read all the ink as one digit")] = False,
        threshold: Annotated[
            float, Query(ge=0.0, le=1.0, description="least probability to name a digit")
        ] = 0.5,
    ):
        if not admission.try_enter():
            raise ApiError(
                503,
                f"server busy: {admission.admitted} requests in progress "
                f"(max {admission.max_concurrency} running + {admission.max_queue} waiting). "
                "Retry after 1 second",
                headers={"Retry-After": "1"},
            )
        try:
            source, name = await _read_source(request)
            async with admission.running:
                try:
                    return await run_in_threadpool(
                        read_image,
                        predictor,
                        source,
                        name=name,
                        single=single,
                        threshold=threshold,
                    )
                except DigitlabError as exc:
                    raise ApiError(400, str(exc)) from None
        finally:
            admission.leave()

    return app


async def _read_source(request: Request):
    """The request's image: bytes of an upload or raw body, or checked 28x28 pixels."""
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form(max_files=2, max_fields=20)
        try:
            upload = form.get("file")
            if upload is None:
                fields = sorted(set(form.keys()))
                raise ApiError(
                    422,
                    "file: expected the image in the multipart field 'file'. "
                    f"Received fields: {fields or 'none'}",
                )
            if not isinstance(upload, UploadFile):
                raise ApiError(422, "file: expected an uploaded file. Received: a text field")
            data = await upload.read()
            name = _safe_name(upload.filename) or "upload"
        finally:
            await form.close()
        if not data:
            raise ApiError(400, f"{name}: expected an image file. Received: an empty file")
        return data, name
    if kind == "application/json" or kind.endswith("+json"):
        body = await request.body()
        return _pixels_from_json(body), "<pixels>"
    if kind.startswith("image/") or kind == "application/octet-stream":
        body = await request.body()
        if not body:
            raise ApiError(400, "body: expected an image file. Received: an empty body")
        return body, "<body>"
    raise ApiError(
        415,
        "Content-Type: expected multipart/form-data (field 'file'), application/json "
        f'({{"pixels": ...}}) or image/*. Received: {content_type[:60] or "none"}',
    )


def _safe_name(filename: str | None) -> str:
    """An upload's base name for messages: no folders, no control characters."""
    if not filename:
        return ""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in base if ch.isprintable())[:100]


def _reject_constant(token: str):
    raise ApiError(422, f"pixels: expected finite numbers. Received: {token}")


def _pixels_from_json(body: bytes):
    """Parse ``{"pixels": [[...]]}``; reject NaN/Infinity, bools, strings, shapes."""
    if not body:
        raise ApiError(
            400, 'body: expected JSON {"pixels": [[28 numbers] x 28]}. Received: nothing'
        )
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except ApiError:
        raise
    except (ValueError, RecursionError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ApiError(400, f"body: expected valid JSON. Received: {detail[:120]}") from None
    if not isinstance(payload, dict) or "pixels" not in payload:
        found = sorted(payload)[:5] if isinstance(payload, dict) else type(payload).__name__
        raise ApiError(
            422,
            'pixels: expected a JSON object {"pixels": [[28 numbers] x 28]}. '
            f"Received: {found if found else 'an empty object'}",
        )
    rows = payload["pixels"]
    shape_error = ApiError(
        422, f"pixels: expected 28 rows of 28 numbers. Received: {_describe_shape(rows)}"
    )
    if not isinstance(rows, list) or len(rows) != MNIST_SHAPE[0]:
        raise shape_error
    all_integers = True
    for row in rows:
        if not isinstance(row, list) or len(row) != MNIST_SHAPE[1]:
            raise shape_error
        for value in row:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ApiError(
                    422, f"pixels: expected numbers. Received: {type(value).__name__} {value!r:.30}"
                )
            if isinstance(value, float):
                all_integers = False
                if not math.isfinite(value):
                    raise ApiError(422, "pixels: expected finite numbers. Received: infinity")
    # Integers are 0..255; any float makes the whole image 0..1 floats.
    import numpy as np

    try:
        array = np.array(rows, dtype=np.int64 if all_integers else np.float64)
    except OverflowError:
        raise ApiError(422, "pixels: expected integers 0..255. Received: a huge integer") from None
    try:
        return check_pixels(array, name="pixels")
    except ImageError as exc:
        raise ApiError(422, str(exc)) from None


_JSON_TYPES = {dict: "an object", str: "a string", bool: "a boolean", int: "a number"}


def _describe_shape(rows) -> str:
    if not isinstance(rows, list):
        return _JSON_TYPES.get(type(rows), "null" if rows is None else "a number")
    lengths = {len(row) if isinstance(row, list) else -1 for row in rows[:64]}
    if lengths == {-1}:
        return f"a flat list of {len(rows)} values"
    if len(lengths) == 1:
        return f"{len(rows)} rows of {lengths.pop()}"
    return f"{len(rows)} rows of different lengths"


def _report_file(run, file_name: str) -> Path:
    """A report PNG of the run: only the known names, only regular files inside the run."""
    if run is None or file_name not in REPORT_FILES:
        raise ApiError(
            404,
            f"{_safe_name(file_name)[:60]}: no such report file. Expected one of "
            f"{', '.join(REPORT_FILES)}",
        )
    folder = Path(run.path).resolve()
    path = (folder / file_name).resolve()
    if path.parent != folder or not path.is_file():
        raise ApiError(404, f"{file_name}: this run has no such report file")
    return path


def _model_info(predictor: Predictor, admission: Admission, max_body_bytes: int) -> dict:
    run = predictor.run
    info = {
        "backend": predictor.backend,
        "class_names": list(predictor.class_names),
        "image_shape": list(predictor.image_shape),
        "limits": {
            "max_body_bytes": max_body_bytes,
            "max_concurrency": admission.max_concurrency,
            "max_queue": admission.max_queue,
        },
    }
    if run is None:
        return info
    metrics = run.metrics or {}
    summary_keys = ("set", "size", "accuracy", "loss", "ece", "macro_f1")
    data = dict(run.info.get("data", {}))
    data.pop("sha256", None)
    info.update(
        {
            "run": Path(run.path).name,
            "model": run.config.model,
            "config": run.config.to_dict(),
            "params": run.params,
            "created": run.info.get("created"),
            "train_seconds": run.info.get("train_seconds"),
            "seconds_per_epoch": run.info.get("seconds_per_epoch"),
            "data": data,
            "metrics": {key: metrics[key] for key in summary_keys if key in metrics},
            "per_class": metrics.get("per_class", {}),
            "confusion_matrix": metrics.get("confusion_matrix"),
            "worst_mistakes": metrics.get("worst_mistakes", [])[:10],
            "history": {
                key: values for key, values in (run.history or {}).items() if key != "epoch_seconds"
            },
            "versions": run.info.get("versions", {}),
            "report": {
                name.removesuffix(".png"): f"/api/report/{name}"
                for name in REPORT_FILES
                if (Path(run.path) / name).is_file()
            },
        }
    )
    return info


def _swagger_assets() -> Path | None:
    """Swagger UI's files from the ``swagger-ui-bundle`` package, if installed."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    path = Path(str(swagger_ui_path))
    return path if (path / "swagger-ui-bundle.js").is_file() else None


def _package_version() -> str:
    from digitlab import __version__

    return __version__


# --------------------------------------------------------------------------- serving


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port).

    Binding before uvicorn starts turns "address in use" into one clear error and
    lets a caller learn the port chosen for port 0.
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port: expected 0..65535. Received: {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(
            f"--host: expected an address of this machine. Received: {host!r} ({exc.strerror})"
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
            f"--port: expected a free port on {host}. Received: {port} ({exc.strerror})"
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
    _check_positive("--max-concurrency", max_concurrency)
    _check_positive("--max-queue", max_queue, minimum=0)
    sock = bind_socket(host, port)
    try:
        predictor = Predictor.load(run_dir)
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
