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

import time
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from digitlab.errors import DigitlabError
from digitlab.inference import Predictor, read_image
from digitlab.runs import REPORT_FILES
from digitlab.serve.middleware import (
    Admission,
    ApiError,
    BodySizeLimit,
    SecurityHeaders,
    check_positive,
    error_response,
)
from digitlab.serve.requests import read_source, safe_name

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY_BYTES = 10 * 1024 * 1024
"""The largest request body accepted (10 MiB): a phone photo fits with room to spare."""

DEFAULT_MAX_QUEUE = 16
"""Requests allowed to wait for a model slot before new ones get 503."""

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
    check_positive("max_concurrency", max_concurrency)
    check_positive("max_queue", max_queue, minimum=0)
    check_positive("max_body_bytes", max_body_bytes)
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
        return error_response(exc.status, exc.message, exc.headers)

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
        return error_response(400, "body: the client disconnected before sending it all")

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception):  # genuine server bugs only
        return error_response(500, f"internal server error ({type(exc).__name__})")

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
            source, name = await read_source(request, predictor.image_shape)
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


def _report_file(run, file_name: str) -> Path:
    """A report PNG of the run: only the known names, only regular files inside the run."""
    if run is None or file_name not in REPORT_FILES:
        raise ApiError(
            404,
            f"{safe_name(file_name)[:60]}: no such report file. Expected one of "
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
    metrics, record = run.metrics, run.info
    data = record.data.to_dict()
    data.pop("sha256", None)
    folder = Path(run.path)
    info.update(
        {
            "run": folder.name,
            "model": run.config.model,
            "config": run.config.to_dict(),
            "params": run.params,
            "created": record.created,
            "train_seconds": record.train_seconds,
            "seconds_per_epoch": record.seconds_per_epoch,
            "data": data,
            "metrics": {
                key: getattr(metrics, key)
                for key in ("set", "size", "accuracy", "loss", "ece", "macro_f1")
            },
            "per_class": metrics.per_class,
            "confusion_matrix": metrics.confusion_matrix,
            "worst_mistakes": metrics.worst_mistakes[:10],
            "history": {key: list(values) for key, values in run.history.curves.items()},
            "versions": record.versions,
            "report": {
                name.removesuffix(".png"): f"/api/report/{name}"
                for name in REPORT_FILES
                if (folder / name).is_file()
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
