"""Reading a prediction request: an upload, a raw image body or JSON pixels."""

from __future__ import annotations

import json
import math

import numpy as np
from starlette.datastructures import UploadFile

from digitlab.errors import ImageError
from digitlab.inference import check_pixels
from digitlab.serve.middleware import ApiError

JSON_NAME = "<pixels>"
_MULTIPART, _JSON, _IMAGE = "multipart", "json", "image"


async def read_body(request) -> str:
    """Read the request's whole body; its kind (415 for a content type not served).

    Reading is the part that waits for the client (bounded by the body
    deadline); :func:`parse_body`, the part that costs CPU, runs only once the
    request is admitted.
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
    await request.body()
    return found


async def parse_body(request, kind: str, shape: tuple[int, int]):
    """``(source, name)`` of a body :func:`read_body` read: the bytes of an upload
    or raw image body, or for JSON the body itself (name :data:`JSON_NAME`), for
    :func:`pixels_from_json`."""
    body = await request.body()  # read already: this returns it
    if kind == _JSON:
        return body, JSON_NAME  # parsed by the reader (see batching.read_requests)
    if kind == _IMAGE:
        if not body:
            raise ApiError(400, "body: expected an image file. Received: an empty body")
        return body, "<body>"
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
        name = safe_name(upload.filename) or "upload"
    finally:
        await form.close()
    if not data:
        raise ApiError(400, f"{name}: expected an image file. Received: an empty file")
    return data, name


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
