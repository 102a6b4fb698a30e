"""Reading a prediction request: an upload, a raw image body or JSON pixels."""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading

import numpy as np
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from digitlab.errors import ImageError
from digitlab.inference import check_pixels
from digitlab.serve.middleware import ApiError

JSON_NAME = "<pixels>"
_MULTIPART, _JSON, _IMAGE = "multipart", "json", "image"  # what read_body found


async def read_body(request) -> tuple[str, bytes]:
    """Read the request's whole body: ``(kind, body)`` (415 for a content type not
    served).

    Reading is the part that waits for the client (bounded by the body
    deadline); :func:`parse_request`, the part that costs CPU, runs in the
    reader, once the request is admitted.
    """
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        found = _MULTIPART
    elif kind == "application/json" or kind.endswith("+json"):
        found = _JSON
    elif kind.startswith("image/") or kind == "application/octet-stream":
        found = _IMAGE
    else:
        raise ApiError(
            415,
            "Content-Type: expected multipart/form-data (field 'file'), application/json "
            f'({{"pixels": ...}}) or image/*. Received: {content_type[:60] or "none"}',
        )
    return found, await request.body()


def parse_request(request: dict, shape: tuple[int, int]) -> dict:
    """A request as the endpoint queued it, made :func:`~digitlab.inference.read_images`'
    request: done by the reader (a worker process), not the event loop.

    ``request`` holds the body under its kind (``multipart`` with its
    ``content_type``, ``json`` or ``image``), ``max_pixels`` and the options.
    Raises :class:`ApiError` as the API answers it (400, 422).
    """
    request = dict(request)
    max_pixels = request.pop("max_pixels", None)
    if _JSON in request:
        request["source"] = pixels_from_json(request.pop(_JSON), shape)
        request["name"] = JSON_NAME
        return request
    if _IMAGE in request:
        data, name = request.pop(_IMAGE), "<body>"
        if not data:
            raise ApiError(400, "body: expected an image file. Received: an empty body")
    else:
        data, name = _upload(request.pop(_MULTIPART), request.pop("content_type"))
    if max_pixels is not None:
        check_image_size(data, name, max_pixels)
    request.update(source=data, name=name)
    return request


def _upload(body: bytes, content_type: str) -> tuple[bytes, str]:
    """The bytes and name of the multipart body's field ``file``."""
    loop = getattr(_LOCAL, "loop", None)
    if loop is None:  # Starlette's parser is asynchronous: one loop per reader thread
        loop = _LOCAL.loop = asyncio.new_event_loop()
    return loop.run_until_complete(_parse_upload(body, content_type))


_LOCAL = threading.local()


async def _parse_upload(body: bytes, content_type: str) -> tuple[bytes, str]:
    async def stream():
        yield body
        yield b""

    parser = MultiPartParser(
        Headers({"content-type": content_type}), stream(), max_files=2, max_fields=20
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, exc.message) from None
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
        name = safe_name(upload.filename) or "upload"
    finally:
        await form.close()
    if not data:
        raise ApiError(400, f"{name}: expected an image file. Received: an empty file")
    return data, name


MAX_SERVED_ALPHA_PIXELS = 4_000_000
"""The most pixels of an uploaded image with transparency: compositing the alpha
channel costs several times the decoding (a canvas export is far smaller)."""


def check_image_size(data: bytes, name: str, max_pixels: int) -> None:
    """Refuse an image whose header declares more than ``max_pixels`` (before decoding)."""
    import io
    import warnings

    from PIL import Image

    from digitlab.inference.images import SUPPORTED_FORMATS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS) as image:
                width, height = image.size
                mode = image.mode
                alpha = "A" in mode or "a" in mode or "transparency" in image.info
    except Exception:  # not an image: read_image gives the precise message
        return
    limit, kind = max_pixels, ""
    if alpha and max_pixels > MAX_SERVED_ALPHA_PIXELS:
        limit, kind = MAX_SERVED_ALPHA_PIXELS, " for an image with transparency"
    if width * height > limit:
        raise ApiError(
            400,
            f"{name}: expected at most {limit:,} pixels{kind}. "
            f"Received: {width}x{height} = {width * height:,} pixels ({mode})",
        )


_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def no_object_reprs(message: str, name: str) -> str:
    """Pillow names an in-memory file by its repr (``<_io.BytesIO object at 0x…>``)."""
    return _OBJECT_REPR.sub(name, message)


def safe_name(filename: str | None) -> str:
    """An upload's base name for messages: no folders, no control characters."""
    if not filename:
        return ""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in base if ch.isprintable())[:100]


def _reject_constant(token: str):
    raise ApiError(422, f"pixels: expected finite numbers. Received: {token}")


def pixels_from_json(body: bytes, shape: tuple[int, int]):
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
        422,
        f"pixels: expected {shape[0]} rows of {shape[1]} numbers. "
        f"Received: {_describe_shape(rows)}",
    )
    if not isinstance(rows, list) or len(rows) != shape[0]:
        raise shape_error
    array = _fast_array(rows, body, shape)
    if array is not None:
        return _checked_range(array, array.dtype.kind == "i", shape)
    all_integers = True
    for row in rows:
        if not isinstance(row, list) or len(row) != shape[1]:
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
    try:
        array = np.array(rows, dtype=np.int64 if all_integers else np.float64)
    except OverflowError:
        raise ApiError(422, "pixels: expected integers 0..255. Received: a huge integer") from None
    return _checked_range(array, all_integers, shape)


def _fast_array(rows: list, body: bytes, shape: tuple[int, int]):
    """The pixels as an int64 or float64 array when they are plainly numbers,
    converted by NumPy at once; None sends them through the checks one by one.

    NumPy would turn ``true`` into 1, so a body with a JSON boolean anywhere
    takes the careful path, as does anything ragged, nested or non-numeric.
    """
    if b"true" in body or b"false" in body:
        return None
    try:
        array = np.array(rows)
    except (ValueError, TypeError, OverflowError):
        return None
    if array.shape != tuple(shape) or array.dtype not in (np.int64, np.float64):
        return None
    if array.dtype == np.float64 and not np.isfinite(array).all():  # 1e999 is infinity
        return None
    return array


def _checked_range(array: np.ndarray, all_integers: bool, shape: tuple[int, int]):
    # Integers are 0..255; floats are 0..255 too when any is above 1, else 0..1.
    if not all_integers and float(array.max()) > 1.0:
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 255:
            raise ApiError(
                422,
                "pixels: expected numbers 0..255 (or floats all in [0, 1]). "
                f"Received: values from {low:g} to {high:g}",
            )
        array = array / 255.0
    try:
        return check_pixels(array, name="pixels", shape=shape)
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


# --------------------------------------------------------------------------- the plain lane

LANE_OPTIONS = "digitlab.predict_options"  # the scope key PredictLane fills
_PREDICT_DEFAULTS = {"single": False, "threshold": 0.5, "explain": False, "reject": True}
_PLAIN_BOOLEANS = {b"true": True, b"false": False, b"1": True, b"0": False}
_PLAIN_THRESHOLD = re.compile(rb"[01](\.[0-9]{1,17})?")


def plain_predict_query(query: bytes) -> dict | None:
    """The options of a ``/api/predict`` query written plainly, else None.

    Plainly: each option at most once, no other names, no escapes, booleans as
    ``true``/``false``/``1``/``0`` and the threshold a decimal in [0, 1].
    FastAPI reads these exactly so; anything else (another spelling, an
    invalid value, an unknown name) goes to FastAPI, which answers it as
    always, 422s included.
    """
    options = dict(_PREDICT_DEFAULTS)
    if not query:
        return options
    seen = set()
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        key = name.decode("ascii", "replace")
        if key not in options or key in seen:
            return None
        seen.add(key)
        if key == "threshold":
            if _PLAIN_THRESHOLD.fullmatch(value) is None or float(value) > 1.0:
                return None
            options[key] = float(value)
        elif value in _PLAIN_BOOLEANS:
            options[key] = _PLAIN_BOOLEANS[value]
        else:
            return None
    return options


class PredictLane:
    """ASGI: a ``POST`` to ``path`` whose query is plain (see
    :func:`plain_predict_query`) goes to ``lane``, everything else to ``app``."""

    def __init__(self, lane, app, path: str):
        self.lane = lane
        self.app = app
        self.path = path

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("method") == "POST" and scope["path"] == self.path:
            options = plain_predict_query(scope.get("query_string", b""))
            if options is not None:
                scope[LANE_OPTIONS] = options
                await self.lane(scope, receive, send)
                return
        await self.app(scope, receive, send)
