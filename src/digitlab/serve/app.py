"""The web app: a drawing page, the run's report and an HTTP API.

``digitlab serve RUN`` loads the run once and serves, on 127.0.0.1 by default:

* ``GET /``: draw a digit (mouse, touch or pen) or upload a photo and watch the
  prediction, the ten probabilities and the 28x28 image the model saw.
* ``GET /report``: the run's metrics, confusion matrix, curves and mistakes.
* ``POST /api/predict``: an image (multipart field ``file``, or a raw ``image/*``
  body) or JSON ``{"pixels": [[28 values] x 28 rows]}`` in; the fields of
  ``digitlab predict --json`` out (see :func:`digitlab.inference.read_image`).
* ``GET /api/health``, ``GET /api/model``, ``GET /api/report/{file}``.
* ``GET /docs`` (Swagger UI from the ``swagger-ui-bundle`` package, offline) and
  ``GET /openapi.json``.

Every error is JSON ``{"error": "one line"}``: 400 for a body that is not a
readable image (not an image, truncated, spoofed, empty, a decompression bomb,
more than :data:`MAX_SERVED_PIXELS`) or malformed JSON, or for a ``Host`` that
is not this server's (DNS rebinding), 403 for a POST from another site's page
(``Origin`` / ``Sec-Fetch-Site``; see :class:`~digitlab.serve.middleware.HostGuard`),
408 for a body not complete within ``body_timeout`` seconds, 413 for a body over
the size limit (checked from Content-Length before reading, then counted while
streaming), 415 for another content type, 422 for wrong fields, shapes or
values, 503 with ``Retry-After`` when more requests are waiting than
``max_concurrency + max_queue`` (load shedding: the server answers at once rather
than queueing without bound; a request takes its place only once its body is
read, so slow uploads hold no slot), and 500 only for a bug in the server.
Images are read in batches, one model call for all the requests waiting (see
:mod:`digitlab.serve.batching`), by worker processes or threads, so the event
loop stays free to answer health checks and shed load.  ``/api/model`` shows
folder names, never absolute local paths.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from digitlab.errors import ConfigError
from digitlab.inference import Predictor
from digitlab.serve.batching import Batcher
from digitlab.serve.middleware import (
    Admission,
    ApiError,
    BodySizeLimit,
    HostGuard,
    ReadDeadline,
    SecurityHeaders,
    ShedWhenFull,
    check_positive,
    error_response,
)
from digitlab.serve.model_info import model_info, report_file
from digitlab.serve.requests import LANE_OPTIONS, PredictLane, read_body

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY_BYTES = 10 * 1024 * 1024
"""The largest request body accepted (10 MiB): a phone photo fits with room to spare."""

DEFAULT_MAX_QUEUE = 16
"""Requests allowed to wait for a model slot before new ones get 503."""

DEFAULT_BODY_TIMEOUT = 10.0
"""Seconds a request gets to send its whole body before it is answered 408."""

MAX_SERVED_PIXELS = 12_500_000
"""The most pixels an uploaded image may have (a 4032x3024 phone photo fits):
checked from the header before decoding, so every accepted upload is answered
within a second (digitlab predict, on local files, takes up to
:data:`digitlab.inference.images.MAX_IMAGE_PIXELS`)."""

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

_PREDICT_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": (
            "An image as multipart field `file` (PNG, JPEG, GIF, BMP, TIFF or WebP), "
            'a raw `image/*` body, or JSON `{"pixels": [[...28 values...] x 28]}` of a '
            "ready MNIST-like image: light ink on black, numbers 0..255 (integers or floats), "
            "or floats all in [0, 1] (then 1.0 is full ink)."
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


def create_app(
    predictor: Predictor,
    *,
    max_concurrency: int = 1,
    max_queue: int = DEFAULT_MAX_QUEUE,
    max_body_bytes: int = MAX_BODY_BYTES,
    allowed_hosts=LOOPBACK_HOSTS,
    allow_origins=(),
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    max_pixels: int = MAX_SERVED_PIXELS,
    workers=None,
) -> FastAPI:
    """The FastAPI application serving ``predictor`` (build the Predictor once).

    Args:
        predictor: the loaded model; its ``run`` (if any) provides the report and
            the metadata of ``/api/model``.
        max_concurrency: threads of this process reading images, each taking
            the predictions waiting as one batch: the ``explain=true`` ones, or
            all of them without ``workers``.
        max_queue: further predictions that may wait beyond ``max_concurrency``
            (all of them are read in the next batches); more get 503 + Retry-After.
        max_body_bytes: the largest request body accepted (413 beyond).
        allowed_hosts: the names a request's ``Host`` may carry (loopback names are
            always allowed; ``"*"``: any); others get 400 (DNS rebinding).
        allow_origins: web origins besides this server's whose pages may POST
            (``"*"``: any); other cross-site POSTs get 403.
        body_timeout: seconds a request gets to send its whole body (408 beyond).
        max_pixels: the most pixels an uploaded image may have (400 beyond).
        workers: a started :class:`~digitlab.serve.batching.WorkerPool` whose
            processes read the images (None: threads of this process do).
    """
    check_positive("max_concurrency", max_concurrency)
    check_positive("max_queue", max_queue, minimum=0)
    check_positive("max_body_bytes", max_body_bytes)
    check_positive("max_pixels", max_pixels)
    if (
        isinstance(body_timeout, bool)
        or not isinstance(body_timeout, int | float)
        or not (0 < body_timeout < float("inf"))
    ):
        raise ConfigError(f"body_timeout: expected seconds > 0. Received: {body_timeout!r}")
    app = _App(
        title="digitlab",
        summary="Read handwritten digits with a trained digitlab run.",
        version=_package_version(),
        docs_url=None,  # served below from local assets, never a CDN
        redoc_url=None,
    )
    # Swagger UI 4 (the swagger-ui-bundle package) renders OpenAPI 3.0 only; the
    # document uses nothing that 3.0 lacks.
    app.openapi_version = "3.0.3"
    started = time.time()
    admission = Admission(max_concurrency, max_queue)
    app.state.admission = admission
    batcher = Batcher(
        predictor,
        threads=max_concurrency,
        processes=workers,
        explain=_explain,
    )
    app.state.batcher = batcher
    app.state.predictor = predictor
    run = predictor.run

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError):
        return api_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail
        if exc.status_code == 404:
            message = f"{request.url.path}: no such page or API route"
        elif exc.status_code == 405:
            message = f"{request.url.path}: expected one of {exc.headers.get('Allow', '')}. "
            message += f"Received: {request.method}"
        return error_response(exc.status_code, message, exc.headers)

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
        return error_response(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(ClientDisconnect)
    async def on_disconnect(request: Request, exc: ClientDisconnect):
        return disconnect_response()

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception):  # genuine server bugs only
        return bug_response(exc)

    # The guards every request passes, innermost first (the body's size is
    # counted inside the body deadline): around FastAPI's routes, and around
    # the plain lane in front of them.
    guards = [
        (BodySizeLimit, {"max_bytes": max_body_bytes}),
        (ReadDeadline, {"seconds": body_timeout}),
        (SecurityHeaders, {}),
    ]
    for guard, options in guards:
        app.add_middleware(guard, **options)

    def guarded(inner):
        for guard, options in guards:
            inner = guard(inner, **options)
        return inner

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

    @app.api_route(
        "/api/health", methods=["GET", "HEAD"], summary="Is the server up and the model loaded?"
    )
    async def api_health():
        return {
            "status": "ok",
            "model": run.config.model if run is not None else type(predictor.model).__name__,
            "uptime_seconds": round(time.time() - started, 3),
            "in_flight": admission.admitted,
            "shed": admission.shed,
            "workers": batcher.workers,
            "batches": batcher.batches,
            "largest_batch": batcher.largest,
        }

    @app.get("/api/model", summary="The run: config, parameters, metrics, versions")
    async def api_model():
        return model_info(predictor, admission, max_body_bytes)

    @app.get(
        "/api/report/{file_name}",
        summary="One of the run's report images (PNG)",
        responses={200: {"content": {"image/png": {}}}, 404: {"description": "no such file"}},
    )
    async def api_report(file_name: str):
        path = report_file(run, file_name)
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
        explain: Annotated[
            bool,
            Query(description="also answer why: a saliency map per image the model saw"),
        ] = False,
        reject: Annotated[
            bool,
            Query(description="answer 'no digit' for marks that are not digits"),
        ] = True,
    ):
        return await answer_prediction(
            request, single=single, threshold=threshold, explain=explain, reject=reject
        )

    async def answer_prediction(request: Request, *, single, threshold, explain, reject):
        # Requests beyond a full queue were shed by ShedWhenFull, before their
        # body was read.  Here the body is read first (within the body deadline):
        # a slow or stalled upload must not hold a place in the queue.
        kind, body = await read_body(request)
        if not admission.try_enter():
            raise admission.busy()
        fields = {kind: body, "max_pixels": max_pixels}
        if kind == "multipart":
            fields["content_type"] = request.headers.get("content-type", "")
        fields.update(single=single, threshold=threshold, reject=reject)
        try:
            result = await batcher.read(fields, explain=explain)
        finally:
            admission.leave()
        if isinstance(result, bytes):  # encoded by a worker process
            return Response(result, media_type="application/json")
        return JSONResponse(result)

    async def predict_lane(scope, receive, send):
        """``POST /api/predict`` with a plain query, without FastAPI's routing and
        parameter machinery: the same guards, the same handler, the same
        answers, in a third of the event loop's time (benchmarks/bench_asgi.py)."""
        try:
            response = await answer_prediction(Request(scope, receive), **scope[LANE_OPTIONS])
        except ApiError as exc:
            response = api_error_response(exc)
        except ClientDisconnect:
            response = disconnect_response()
        except Exception as exc:
            await bug_response(exc)(scope, receive, send)
            raise  # uvicorn logs the traceback, as it does for FastAPI's 500s
        await response(scope, receive, send)

    # In front of FastAPI's own stack: a request refused here, or a plain
    # prediction, costs a fraction of what FastAPI's stack would.
    app.front = HostGuard(
        ShedWhenFull(
            PredictLane(guarded(predict_lane), super(_App, app).__call__, "/api/predict"),
            admission=admission,
            path="/api/predict",
        ),
        allowed_hosts=allowed_hosts,
        allow_origins=allow_origins,
    )
    return app


def api_error_response(exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.headers)


def disconnect_response() -> JSONResponse:
    return error_response(400, "body: the client disconnected before sending it all")


def bug_response(exc: Exception) -> JSONResponse:
    return error_response(500, f"internal server error ({type(exc).__name__})")


class _App(FastAPI):
    """FastAPI with digitlab's guards in front of its middleware stack
    (:class:`HostGuard` and :class:`ShedWhenFull`)."""

    front = None

    async def __call__(self, scope, receive, send):
        if self.front is None:
            await super().__call__(scope, receive, send)
        else:
            await self.front(scope, receive, send)


def _explain(predictor, result: dict) -> dict:
    from digitlab import inside

    return {"why": inside.why(predictor, result), "hidden": inside.hidden(predictor, result)}


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
