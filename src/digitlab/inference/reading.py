"""Reading one image: a file, an upload or a pixel array in; the answer out.

:func:`read_image` is exactly what ``digitlab predict --json`` prints and
``POST /api/predict`` returns: the digit (or the number, or the class), its
probability, the top 3 and the images the model saw.
"""

from __future__ import annotations

import base64
import io
import math
import os

import numpy as np

from digitlab.errors import ConfigError, ImageError, RunError
from digitlab.inference import images
from digitlab.inference.predictor import as_predictor

MNIST_SHAPE = (28, 28)
STATUS_OK = "ok"
STATUS_NO_DIGIT = "no digit"
STATUS_NOT_SURE = "not sure"
REASON_BLANK = "blank"
REASON_NOT_A_DIGIT = "not a digit"
REASON_BELOW_THRESHOLD = "below threshold"

# A pixel array is "blank" when no pixel reaches this brightness (0..1): the
# model would still answer, but nothing was written.
_BLANK_LEVEL = 0.1


# --------------------------------------------------------------------------- read_image


def png_data_url(pixels: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URL of a greyscale image ``(H, W)`` in [0, 1]."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(pixels)).decode("ascii")


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG bytes of a greyscale image ``(H, W)`` float in [0, 1] (1.0 = white)."""
    from PIL import Image

    grey = np.clip(np.asarray(pixels, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey, mode="L").save(buffer, "PNG")
    return buffer.getvalue()


def check_pixels(pixels, *, name: str = "pixels", shape=MNIST_SHAPE) -> np.ndarray:
    """Validate a ready MNIST-like image of ``shape`` (28x28), light ink on black.

    Accepts integers 0..255 (divided by 255) or floats in [0, 1].  Returns
    ``shape`` float32 in [0, 1].  Raises :class:`ImageError` naming ``name``
    for another shape, a non-numeric type, NaN or infinity, or values out of range.
    """
    shape = tuple(shape)
    size = "x".join(map(str, shape))
    try:
        array = np.asarray(pixels)
    except (ValueError, TypeError):
        raise ImageError(
            f"{name}: expected a {size} array of numbers. Received: a ragged or mixed array"
        ) from None
    if array.shape != shape:
        raise ImageError(
            f"{name}: expected {shape[0]} rows of {shape[-1]} values ({size}). "
            f"Received: shape {array.shape}"
        )
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise ImageError(f"{name}: expected numbers. Received: values of type {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise ImageError(f"{name}: expected real numbers. Received: complex values")
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ImageError(
                f"{name}: expected integers 0..255. Received: values from {low} to {high}"
            )
        return array.astype(np.float32) / 255.0
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise ImageError(f"{name}: expected finite numbers. Received: NaN or infinity")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        raise ImageError(
            f"{name}: expected floats in [0, 1] (or integers 0..255). "
            f"Received: values from {low:g} to {high:g}"
        )
    return values.astype(np.float32)


def _check_threshold(threshold) -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"threshold: expected a number in [0, 1]. Received: {threshold!r}")
    return value


def _top_numbers(per_digit: np.ndarray, count: int = 3) -> list[tuple[str, float]]:
    """The ``count`` most probable numbers, digits taken as independent: a beam search."""
    beam: list[tuple[str, float]] = [("", 1.0)]
    for probs in per_digit:
        order = np.argsort(probs)[::-1][:count]
        beam = sorted(
            ((text + str(int(d)), p * float(probs[d])) for text, p in beam for d in order),
            key=lambda item: -item[1],
        )[:count]
    return beam


def _source_name(source) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    file_name = getattr(source, "name", None)  # an open file
    return file_name if isinstance(file_name, str) else "<bytes>"


def read_image(
    predictor_or_run,
    source,
    *,
    name: str | None = None,
    single: bool = False,
    threshold: float = 0.5,
    reject: bool = True,
) -> dict:
    """Read the digit (or the number, or the class) in one image.

    Args:
        predictor_or_run: a :class:`Predictor` (fast; build it once), a run or a model.
        source: an image file path, its bytes or a binary file object (PNG, JPEG,
            GIF, BMP, TIFF or WebP, any polarity: see :mod:`digitlab.inference.images`);
            or a ready array of the model's image shape (28x28 for MNIST) of
            MNIST-like pixels (light ink on black, integers 0..255 or floats in
            [0, 1]), fed to the model as it is.
        name: what the result and errors call the image (default: the path or the
            file object's name, else ``"<pixels>"`` or ``"<bytes>"``).
        single: read all the ink as one digit; otherwise split it into digits left
            to right and read a number when there are several.  Only models of
            the ten digits read numbers: for other classes (clothing, letters)
            the image is always one item.
        threshold: the least probability (in [0, 1]) to name a digit or number.
        reject: for models of the ten digits, answer ``"no digit"`` when any
            framed crop is not a digit by :mod:`digitlab.inference.detector`
            (letters, scribbles, textures, noise...).  False reads every crop as
            a digit, as digitlab 0.1.0 did.

    Returns:
        A JSON-ready dict, the fields ``digitlab predict --json`` prints:

        * ``file``: ``name``.
        * ``status``: ``"ok"``, ``"no digit"`` (nothing written, or not a digit)
          or ``"not sure"`` (``probability`` below ``threshold``).
        * ``reason``: why the status is not ``"ok"``: ``"blank"``, ``"not a digit"``
          or ``"below threshold"``; None when it is.
        * ``digit_scores``: for models of the ten digits read with ``reject``, the
          probability that each crop is a digit at all (see ``detector``); else ``[]``.
        * ``detector``: the threshold the scores were held to (None without them).
        * ``digit``: an int 0..9; for a number, a string of digits such as ``"42"``;
          None unless status is ``"ok"``, and always None for classes that are not
          the ten digits.
        * ``class_name``: the name of the class read (``"7"``, ``"Trouser"``;
          for a number, the number); None unless status is ``"ok"``.
        * ``probability``: of the best reading (None for no digit).  For a number it
          is the product of its digits' probabilities: the chance that every digit
          is right, taking them as independent.
        * ``top3``: the three best readings, ``[{"digit", "class_name",
          "probability"}]``, best first (for a number: the three most probable numbers).
        * ``probabilities``: the k softmax values; for a number, one list per digit.
        * ``digits``: how many digits (items) were read (0 when blank).
        * ``boxes``: each digit's box in the source image ``[x0, y0, x1, y1]`` (x1,
          y1 exclusive); empty for pixel input.
        * ``images``: what the model saw, one ``data:image/png;base64`` URL of the
          image per digit.

    Raises:
        ImageError: the file is missing, empty, not an image, truncated, too large,
            or the pixel array has the wrong shape, type or range.
        ConfigError: ``threshold`` outside [0, 1].
        RunError: the model does not take two-dimensional (greyscale) images.
    """
    request = {"source": source, "name": name, "single": single}
    request.update(threshold=threshold, reject=reject)
    (result,) = read_images(predictor_or_run, [request])
    if isinstance(result, Exception):
        raise result
    return result


def read_images(predictor_or_run, requests) -> list:
    """Read many images with one model call (and one detector call) for them all.

    What a server answering concurrent requests uses: each image is prepared
    on its own, then every crop of every image goes through the model at once.
    The answers are those :func:`read_image` gives one at a time.

    Args:
        predictor_or_run: as for :func:`read_image`.
        requests: one mapping per image of :func:`read_image`'s keyword
            arguments and ``source`` (``{"source": data, "name": "a.png"}``).

    Returns:
        One item per request, in order: the :func:`read_image` dict, or the
        :class:`~digitlab.errors.ImageError` or :class:`~digitlab.errors.ConfigError`
        that reading that image raised (the others are still read).

    Raises:
        RunError: the model does not take two-dimensional (greyscale) images.
    """
    predictor = as_predictor(predictor_or_run)
    shape = tuple(predictor.image_shape)
    if len(shape) != 2:
        raise RunError(
            f"run: expected a model of greyscale (height, width) images to read an image. "
            f"Received: one of {shape} images"
        )
    digits = predictor.class_names == tuple(str(d) for d in range(10))
    jobs: list = []
    for request in requests:
        try:
            jobs.append(_Job.prepare(predictor, shape, digits, **request))
        except (ImageError, ConfigError) as exc:
            jobs.append(exc)
    ready = [job for job in jobs if isinstance(job, _Job) and job.prepared]
    crops = [p.pixels for job in ready for p in job.prepared]
    if crops:
        probs = predictor.predict_proba(np.stack(crops)).astype(np.float64)
        checked = [job for job in ready if job.reject and digits and shape == MNIST_SHAPE]
        detector, scores = None, np.zeros(0)
        if checked:
            from digitlab.inference.detector import load_detector

            detector = load_detector()
            scores = detector.scores(np.stack([p.pixels for j in checked for p in j.prepared]))
        start = checked_start = 0
        for job in ready:
            count = len(job.prepared)
            if detector is not None and job in checked:
                job.scores = scores[checked_start : checked_start + count]
                job.detector = detector.threshold
                checked_start += count
            job.probs = probs[start : start + count]
            start += count
    return [job if isinstance(job, Exception) else job.answer(predictor, digits) for job in jobs]


class _Job:
    """One image of :func:`read_images`: its crops, then the model's answer for them."""

    probs = None
    scores = None
    detector = None

    def __init__(self, label, prepared, threshold, reject):
        self.label = label
        self.prepared = prepared
        self.threshold = threshold
        self.reject = reject

    @classmethod
    def prepare(
        cls,
        predictor,
        shape,
        digits,
        *,
        source,
        name=None,
        single=False,
        threshold=0.5,
        reject=True,
    ) -> _Job:
        threshold = _check_threshold(threshold)
        if isinstance(source, np.ndarray | list | tuple):
            label = name or "<pixels>"
            pixels = check_pixels(source, name=label, shape=shape)
            has_ink = bool(pixels.max() >= _BLANK_LEVEL)
            prepared = [images.Prepared(pixels, has_ink, None)] if has_ink else []
        else:
            label = name or _source_name(source)
            grey = images.load_image(source, name=label)
            if not digits:  # a garment, a letter: framed like Fashion-MNIST
                one = images.prepare_item(grey, shape)
                prepared = [one] if one.has_ink else []
            elif single:
                one = images.prepare_digit(grey)
                prepared = [one] if one.has_ink else []
            else:
                prepared = images.split_digits(grey)
            prepared = [_to_shape(p, shape) for p in prepared]
        return cls(label, prepared, threshold, bool(reject))

    def answer(self, predictor, digits: bool) -> dict:
        """The :func:`read_image` dict, from the crops' probabilities and scores."""
        names = predictor.class_names
        prepared = self.prepared
        result = {
            "file": self.label,
            "status": STATUS_NO_DIGIT,
            "reason": REASON_BLANK,
            "digit": None,
            "class_name": None,
            "probability": None,
            "top3": [],
            "probabilities": [],
            "digits": len(prepared),
            "boxes": [list(p.box) for p in prepared if p.box is not None],
            "images": [png_data_url(p.pixels) for p in prepared],
            "digit_scores": [],
            "detector": None,
        }
        if not prepared:
            return result
        rejected = False
        if self.scores is not None:
            result["digit_scores"] = [round(float(v), 6) for v in self.scores]
            result["detector"] = self.detector
            rejected = bool((self.scores < self.detector).any())
        probs = self.probs
        if len(prepared) == 1:
            row = probs[0]
            order = np.argsort(row)[::-1][:3]
            best, probability = int(order[0]), float(row[order[0]])
            top3 = [
                {
                    "digit": int(d) if digits else None,
                    "class_name": names[d],
                    "probability": float(row[d]),
                }
                for d in order
            ]
            best_name = names[best]
            result["probabilities"] = [float(p) for p in row]
        else:
            readings = _top_numbers(probs)
            best, probability = readings[0]
            best_name = best
            top3 = [{"digit": text, "class_name": text, "probability": p} for text, p in readings]
            result["probabilities"] = [[float(p) for p in row] for row in probs]
        result["top3"] = top3
        result["probability"] = probability
        if rejected:
            result["reason"] = REASON_NOT_A_DIGIT
        elif probability < self.threshold:
            result["status"] = STATUS_NOT_SURE
            result["reason"] = REASON_BELOW_THRESHOLD
        else:
            result["status"] = STATUS_OK
            result["reason"] = None
            result["digit"] = best if digits else None
            result["class_name"] = best_name
        return result


def _to_shape(prepared, shape: tuple[int, int]):
    """An MNIST-framed (28x28) image brought to the model's image size."""
    if prepared.pixels.shape == shape:
        return prepared
    from PIL import Image

    picture = Image.fromarray(prepared.pixels.astype(np.float32), mode="F")
    resized = np.asarray(
        picture.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float32
    )
    return images.Prepared(np.clip(resized, 0.0, 1.0), prepared.has_ink, prepared.box)


def decode_data_url(url: str) -> bytes:
    """The bytes of a ``data:...;base64,`` URL (the ``images`` of a result)."""
    _, _, payload = url.partition(",")
    return base64.b64decode(payload)
