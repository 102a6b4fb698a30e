"""Inference only: turn images into class probabilities.

This module imports no training code, so a server or a script that only
predicts loads quickly and stays small.

* :func:`predict_proba` - probabilities for a batch of ready 28x28 images.
* :class:`Predictor` - a loaded model made fast for one image at a time (a
  compiled predict function, warmed up once), safe to share between threads.
* :func:`read_image` - an image file, upload or pixel array in; the digit (or
  the number), its probability, the top 3 and the images the model saw out:
  exactly what ``digitlab predict --json`` prints and ``POST /api/predict``
  returns.
"""

from __future__ import annotations

import base64
import io
import math
import os
import threading

import numpy as np

from digitlab.errors import ConfigError, ImageError, RunError

MNIST_SHAPE = (28, 28)
STATUS_OK = "ok"
STATUS_NO_DIGIT = "no digit"
STATUS_NOT_SURE = "not sure"

# A pixel array is "blank" when no pixel reaches this brightness (0..1): the
# model would still answer, but nothing was written.
_BLANK_LEVEL = 0.1


def predict_proba(model, x, *, batch_size: int = 1024) -> np.ndarray:
    """Softmax probabilities ``(n, k)`` float32 for images ``x`` ``(n, H, W)``
    float32 in [0, 1].

    ``model`` is a Keras model or any object with a ``predict_proba(x)``
    method (a loaded run, a scikit-learn baseline, a :class:`Predictor`).
    Keras models run batch by batch through ``predict_on_batch``, which skips
    ``predict``'s per-call set-up of callbacks and progress bars.
    """
    x = np.asarray(x, dtype=np.float32)
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(x), dtype=np.float32)
    if x.shape[0] == 0:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    parts = [
        np.asarray(model.predict_on_batch(x[i : i + batch_size]))
        for i in range(0, x.shape[0], batch_size)
    ]
    return np.concatenate(parts).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- Predictor


def _is_keras_model(model) -> bool:
    try:
        from digitlab._backend import keras

        return isinstance(model, keras().Model)
    except ImportError:  # pragma: no cover - keras is a dependency
        return False


def _jax_predict_function(model):
    """A ``jax.jit`` of the model's forward pass, or None off the JAX backend.

    ``stateless_call`` takes the weights as arguments, so the compiled function
    holds no Python state and XLA runs it without ``predict``'s per-call
    set-up (callbacks, a data adapter, a progress bar): ~0.05 ms for the
    tutorial MLP against ~0.5 ms for ``model.predict``.
    """
    from digitlab._backend import keras

    if keras().backend.backend() != "jax":
        return None
    import jax

    # Copies, not the variables' own buffers: Keras' predict_on_batch and fit may
    # donate (delete) those, and the predictor should be a fixed snapshot anyway.
    trainable = [jax.numpy.array(v.value, copy=True) for v in model.trainable_variables]
    non_trainable = [jax.numpy.array(v.value, copy=True) for v in model.non_trainable_variables]

    @jax.jit
    def forward(trainable, non_trainable, x):
        outputs, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return outputs

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(forward(trainable, non_trainable, x))

    return run


def _padded_size(n: int) -> int:
    """The next power of two: the compiled function sees few distinct batch sizes."""
    return 1 << max(0, (n - 1).bit_length())


class Predictor:
    """A model ready for fast, thread-safe prediction, one image or many.

    Build it once (at server start-up) and share it: the first call of each
    batch size compiles, so the constructor warms the one-image path up.

    * Keras on the JAX backend: a ``jax.jit`` of ``model.stateless_call``; batches
      are zero-padded to a power of two (at most :attr:`max_batch`) so only a
      handful of shapes ever compile.  Compiled JAX functions are thread-safe.  The
      weights are copied when the Predictor is built: later training does not
      change its answers.
    * Keras on another backend: ``predict_on_batch`` (Keras compiles its predict
      function once), under a lock because Keras models are not re-entrant.
    * Anything else with ``predict_proba`` (a scikit-learn baseline): called as is,
      under the same lock.

    Args:
        model: a :class:`~digitlab.runs.Run`, a Keras model, or an object with a
            ``predict_proba(x)`` method taking ``(n, 28, 28)`` float32 in [0, 1].
        class_names: names of the classes (default: the run's, else "0".."k-1").
        warm_up: run one blank image through at once so the first real request
            does not pay for compilation.
    """

    max_batch = 1024

    def __init__(self, model, *, class_names=None, warm_up: bool = True):
        from digitlab.runs import Run

        self.run = model if isinstance(model, Run) else None
        if self.run is not None:
            class_names = class_names or self.run.class_names
            self.image_shape = tuple(self.run.image_shape)
            model = self.run.model
        else:
            self.image_shape = MNIST_SHAPE
        self.model = model
        self._lock = threading.Lock()
        keras_model = _is_keras_model(model)
        self._compiled = _jax_predict_function(model) if keras_model else None
        # Off the compiled path, a run knows best how to call its own model.
        self._fallback = self.run if self.run is not None else model
        if keras_model:
            self.num_classes = int(model.output_shape[-1])
        else:
            self.num_classes = len(class_names) if class_names is not None else 10
        self.class_names = tuple(class_names or (str(i) for i in range(self.num_classes)))
        if self._compiled is not None:
            self.backend = "jax.jit"
        else:
            self.backend = "predict_on_batch" if keras_model else "predict_proba"
        if warm_up:
            self.predict_proba(np.zeros((1, *self.image_shape), dtype=np.float32))

    @classmethod
    def load(cls, run_dir, *, warm_up: bool = True) -> Predictor:
        """Load a run folder (see :func:`digitlab.runs.load_run`) and wrap it."""
        from digitlab.runs import load_run

        return cls(load_run(run_dir), warm_up=warm_up)

    def predict_proba(self, x, *, batch_size: int = 1024) -> np.ndarray:
        """Probabilities ``(n, k)`` float32 for images ``(n, H, W)`` float32 in [0, 1]."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == len(self.image_shape):
            x = x[None]
        if x.shape[0] == 0:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        if self._compiled is None:
            with self._lock:
                return predict_proba(self._fallback, x, batch_size=batch_size)
        step = max(1, min(batch_size, self.max_batch))
        parts = []
        for start in range(0, x.shape[0], step):
            chunk = x[start : start + step]
            size = _padded_size(chunk.shape[0])
            if size != chunk.shape[0]:
                padded = np.zeros((size, *chunk.shape[1:]), dtype=np.float32)
                padded[: chunk.shape[0]] = chunk
                parts.append(self._compiled(padded)[: chunk.shape[0]])
            else:
                parts.append(self._compiled(chunk))
        return np.concatenate(parts).astype(np.float32, copy=False)

    def predict_one(self, image) -> np.ndarray:
        """Probabilities ``(k,)`` float32 for one image ``(H, W)`` float32 in [0, 1]."""
        return self.predict_proba(np.asarray(image, dtype=np.float32)[None])[0]


def as_predictor(predictor_or_run) -> Predictor:
    """A :class:`Predictor` as is; a run or model wrapped in one (not warmed up).

    Wrapping compiles on first use, so callers that predict many times should
    build one :class:`Predictor` and keep it.
    """
    if isinstance(predictor_or_run, Predictor):
        return predictor_or_run
    return Predictor(predictor_or_run, warm_up=False)


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


def check_pixels(pixels, *, name: str = "pixels") -> np.ndarray:
    """Validate a ready MNIST-like image: ``(28, 28)``, light ink on black.

    Accepts integers 0..255 (divided by 255) or floats in [0, 1].  Returns
    ``(28, 28)`` float32 in [0, 1].  Raises :class:`ImageError` naming ``name``
    for another shape, a non-numeric type, NaN or infinity, or values out of range.
    """
    try:
        array = np.asarray(pixels)
    except (ValueError, TypeError):
        raise ImageError(
            f"{name}: expected a 28x28 array of numbers. Received: a ragged or mixed array"
        ) from None
    if array.shape != MNIST_SHAPE:
        raise ImageError(
            f"{name}: expected 28 rows of 28 values (28x28). Received: shape {array.shape}"
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
) -> dict:
    """Read the digit (or the number) in one image.

    Args:
        predictor_or_run: a :class:`Predictor` (fast; build it once), a run or a model.
        source: an image file path, its bytes or a binary file object (PNG, JPEG,
            GIF, BMP, TIFF or WebP, any polarity: see :mod:`digitlab.images`); or a
            ready ``(28, 28)`` array of MNIST-like pixels (light ink on black,
            integers 0..255 or floats in [0, 1]), fed to the model as it is.
        name: what the result and errors call the image (default: the path or the
            file object's name, else ``"<pixels>"`` or ``"<bytes>"``).
        single: read all the ink as one digit; otherwise split it into digits left
            to right and read a number when there are several.
        threshold: the least probability (in [0, 1]) to name a digit or number.

    Returns:
        A JSON-ready dict, the fields ``digitlab predict --json`` prints:

        * ``file``: ``name``.
        * ``status``: ``"ok"``, ``"no digit"`` (nothing written) or ``"not sure"``
          (``probability`` below ``threshold``).
        * ``digit``: an int 0..9; for a number, a string of digits such as ``"42"``;
          None unless status is ``"ok"``.
        * ``probability``: of the best reading (None for no digit).  For a number it
          is the product of its digits' probabilities: the chance that every digit
          is right, taking them as independent.
        * ``top3``: the three best readings, ``[{"digit", "probability"}]``, best
          first (for a number: the three most probable numbers).
        * ``probabilities``: the ten softmax values; for a number, one list per digit.
        * ``digits``: how many digits were read (0 when blank).
        * ``boxes``: each digit's box in the source image ``[x0, y0, x1, y1]`` (x1,
          y1 exclusive); empty for pixel input.
        * ``images``: what the model saw, one ``data:image/png;base64`` URL of the
          28x28 image per digit.

    Raises:
        ImageError: the file is missing, empty, not an image, truncated, too large,
            or the pixel array has the wrong shape, type or range.
        ConfigError: ``threshold`` outside [0, 1].
        RunError: the model does not take 28x28 images.
    """
    from digitlab import images

    threshold = _check_threshold(threshold)
    predictor = as_predictor(predictor_or_run)
    if tuple(predictor.image_shape) != MNIST_SHAPE:
        raise RunError(
            f"run: expected a model of 28x28 images to read handwriting. "
            f"Received: one of {predictor.image_shape} images"
        )
    if isinstance(source, np.ndarray | list | tuple):
        label = name or "<pixels>"
        pixels = check_pixels(source, name=label)
        has_ink = bool(pixels.max() >= _BLANK_LEVEL)
        prepared = [images.Prepared(pixels, has_ink, None)] if has_ink else []
    else:
        label = name or _source_name(source)
        grey = images.load_image(source, name=label)
        if single:
            one = images.prepare_digit(grey)
            prepared = [one] if one.has_ink else []
        else:
            prepared = images.split_digits(grey)
    result = {
        "file": label,
        "status": STATUS_NO_DIGIT,
        "digit": None,
        "probability": None,
        "top3": [],
        "probabilities": [],
        "digits": len(prepared),
        "boxes": [list(p.box) for p in prepared if p.box is not None],
        "images": [png_data_url(p.pixels) for p in prepared],
    }
    if not prepared:
        return result
    probs = predictor.predict_proba(np.stack([p.pixels for p in prepared])).astype(np.float64)
    if len(prepared) == 1:
        row = probs[0]
        order = np.argsort(row)[::-1][:3]
        best, probability = int(order[0]), float(row[order[0]])
        top3 = [{"digit": int(d), "probability": float(row[d])} for d in order]
        result["probabilities"] = [float(p) for p in row]
    else:
        readings = _top_numbers(probs)
        best, probability = readings[0]
        top3 = [{"digit": text, "probability": p} for text, p in readings]
        result["probabilities"] = [[float(p) for p in row] for row in probs]
    result["top3"] = top3
    result["probability"] = probability
    if probability < threshold:
        result["status"] = STATUS_NOT_SURE
    else:
        result["status"] = STATUS_OK
        result["digit"] = best
    return result


def decode_data_url(url: str) -> bytes:
    """The bytes of a ``data:...;base64,`` URL (the ``images`` of a result)."""
    _, _, payload = url.partition(",")
    return base64.b64decode(payload)
