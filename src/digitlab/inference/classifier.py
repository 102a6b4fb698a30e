"""The inference contract every trained model implements.

A :class:`Classifier` knows its class names and image shape and maps a batch
of images ``(n, H, W)`` float in [0, 1] to probabilities ``(n, k)`` float32.
Input is checked first, the same way for every model kind: a wrong dtype,
range or shape is one :class:`~digitlab.errors.ImageError` naming the
problem, never a silent wrong answer (raw ``uint8`` pixels would otherwise come
back as confident one-hot rows).

* :class:`KerasClassifier` - a Keras model; on JAX a ``jax.jit`` of its forward
  pass over a snapshot of the weights, thread-safe.
* :class:`SklearnClassifier` - a fitted scikit-learn classifier on flattened
  pixels.

Neither imports training code.
"""

from __future__ import annotations

import threading

import numpy as np

from digitlab._threads import blas_threads
from digitlab.errors import ImageError, RunError


def check_images(x, image_shape: tuple[int, ...], *, name: str = "x") -> np.ndarray:
    """``x`` as ``(n, *image_shape)`` float32 in [0, 1], or :class:`ImageError`."""
    try:
        array = np.asarray(x)
    except (TypeError, ValueError):
        raise ImageError(f"{name}: expected an array of images. Received: a ragged array") from None
    expected = "x".join(map(str, image_shape))
    if array.shape[1:] != tuple(image_shape) or array.ndim != len(image_shape) + 1:
        raise ImageError(
            f"{name}: expected images of shape (n, {', '.join(map(str, image_shape))}) "
            f"({expected} each). Received: shape {array.shape}"
        )
    if array.dtype == bool or not np.issubdtype(array.dtype, np.floating):
        hint = " (divide uint8 pixels by 255)" if np.issubdtype(array.dtype, np.integer) else ""
        raise ImageError(
            f"{name}: expected float pixels in [0, 1]{hint}. Received: dtype {array.dtype}"
        )
    if array.size:
        low, high = float(array.min()), float(array.max())
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ImageError(f"{name}: expected finite pixel values. Received: NaN or infinity")
        if low < 0.0 or high > 1.0:
            hint = " (divide 0..255 pixels by 255)" if high > 1.0 else ""
            raise ImageError(
                f"{name}: expected pixels in [0, 1]{hint}. "
                f"Received: values from {low:g} to {high:g}"
            )
    return array.astype(np.float32, copy=False)


def temper(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(p) / T)`` row by row: temperature scaling of probabilities.

    ``T > 1`` softens over-confident answers, ``T < 1`` sharpens under-confident
    ones; the predicted class never changes.  Zeros stay zero.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if temperature == 1.0:
        return p
    with np.errstate(divide="ignore"):
        logits = np.log(p) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


class Classifier:
    """Class names, image shape and probabilities: what inference needs of a model.

    Subclasses implement :meth:`_predict` on checked input; ``model`` is the
    underlying object (a Keras model, a scikit-learn estimator).  ``temperature``
    (fitted on validation data at training time, stored in ``run.json``) scales
    every answer (:func:`temper`); 1.0 leaves the model's own probabilities.
    """

    backend = "predict_proba"
    temperature = 1.0

    def __init__(self, model, *, class_names, image_shape):
        self.model = model
        self.class_names = tuple(str(name) for name in class_names)
        self.image_shape = tuple(int(size) for size in image_shape)
        if not self.class_names:
            raise RunError("class_names: expected at least one class. Received none")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def check_network(self, network) -> None:
        """:class:`RunError` unless ``network`` (anything with Keras'
        ``input_shape`` and ``output_shape``) takes this classifier's images and
        has one output per class."""
        inputs = tuple(network.input_shape[1:])
        outputs = int(network.output_shape[-1])
        if inputs != self.image_shape:
            raise RunError(
                f"model: expected a model of {self.image_shape} images like the run's data. "
                f"Found one of {inputs} images"
            )
        if outputs != self.num_classes:
            raise RunError(
                f"model: expected {self.num_classes} outputs, one per class name. Found {outputs}"
            )

    def predict_proba(self, x, *, batch_size: int = 1024) -> np.ndarray:
        """Probabilities ``(n, k)`` float32 for images ``(n, H, W)`` float in [0, 1]."""
        x = check_images(x, self.image_shape)
        if x.shape[0] == 0:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        step = max(1, int(batch_size))
        parts = [self._predict(x[i : i + step]) for i in range(0, x.shape[0], step)]
        probabilities = np.concatenate(parts)
        if self.temperature != 1.0:
            probabilities = temper(probabilities, self.temperature)
        return probabilities.astype(np.float32, copy=False)

    def _predict(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({type(self.model).__name__}, "
            f"{self.num_classes} classes, images {self.image_shape})"
        )


# --------------------------------------------------------------------------- Keras


def _padded_size(n: int) -> int:
    """The next power of two: the compiled function sees few distinct batch sizes."""
    return 1 << max(0, (n - 1).bit_length())


class KerasClassifier(Classifier):
    """A Keras model that maps images to softmax probabilities.

    On the JAX backend the forward pass is a ``jax.jit`` of
    ``model.stateless_call`` over a copy of the weights (~0.05 ms for the
    tutorial MLP against ~0.5 ms for ``model.predict``); batches are
    zero-padded to a power of two (at most :attr:`max_batch`) so only a handful
    of shapes compile, and compiled JAX functions are thread-safe.  The copy
    makes it a fixed snapshot: later training does not change its answers.
    On other backends ``predict_on_batch`` runs under a lock (Keras models are
    not re-entrant).
    """

    max_batch = 1024

    def __init__(self, model, *, class_names, image_shape):
        super().__init__(model, class_names=class_names, image_shape=image_shape)
        self.check_network(model)
        self._lock = threading.Lock()
        self._forward = _jax_forward(model)
        self.backend = "jax.jit" if self._forward is not None else "predict_on_batch"

    def _predict(self, x: np.ndarray) -> np.ndarray:
        if self._forward is None:
            with self._lock:
                return np.asarray(self.model.predict_on_batch(x))
        parts = []
        for start in range(0, x.shape[0], self.max_batch):
            chunk = x[start : start + self.max_batch]
            size = _padded_size(chunk.shape[0])
            if size != chunk.shape[0]:
                padded = np.zeros((size, *chunk.shape[1:]), dtype=np.float32)
                padded[: chunk.shape[0]] = chunk
                parts.append(self._forward(padded)[: chunk.shape[0]])
            else:
                parts.append(self._forward(chunk))
        return np.concatenate(parts)


def _jax_forward(model):
    """A ``jax.jit`` of the model's forward pass, or None off the JAX backend."""
    from digitlab._backend import keras

    if keras().backend.backend() != "jax":
        return None
    import jax

    # Copies, not the variables' own buffers: Keras' predict_on_batch and fit may
    # donate (delete) those.
    trainable = [jax.numpy.array(v.value, copy=True) for v in model.trainable_variables]
    non_trainable = [jax.numpy.array(v.value, copy=True) for v in model.non_trainable_variables]

    @jax.jit
    def forward(trainable, non_trainable, x):
        outputs, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return outputs

    return lambda x: np.asarray(forward(trainable, non_trainable, x))


# --------------------------------------------------------------------------- scikit-learn


class SklearnClassifier(Classifier):
    """A fitted scikit-learn classifier that takes images like the Keras models.

    Images are flattened to ``(n, H*W)``; classes the estimator never saw in
    training get a zero column.  With ``one_blas_thread`` BLAS runs on one
    thread while predicting: the last digits of a matrix product depend on the
    thread count, and a Ray worker (one thread) must compute what this process
    does.  k-NN's distances are its one heavy BLAS job, and its votes do not
    move with the last digits, so it keeps every thread.
    """

    def __init__(self, estimator, *, class_names, image_shape, one_blas_thread: bool = True):
        super().__init__(estimator, class_names=class_names, image_shape=image_shape)
        self.one_blas_thread = one_blas_thread
        name = type(estimator).__name__
        if not callable(getattr(estimator, "predict_proba", None)):
            raise RunError(f"model: expected a classifier with predict_proba. Found a {name}")
        classes = np.asarray(getattr(estimator, "classes_", []))
        if classes.ndim != 1 or classes.dtype.kind not in "iu" or not classes.size:
            raise RunError(
                f"model: expected a {name} fitted on integer classes 0..{self.num_classes - 1}. "
                f"Found classes {classes.tolist()[:12]!r}"
            )
        if classes.min() < 0 or classes.max() >= self.num_classes:
            raise RunError(
                f"model: expected classes in 0..{self.num_classes - 1}, one per class name. "
                f"Found classes {int(classes.min())}..{int(classes.max())}"
            )
        self._columns = classes.astype(np.int64)
        features = getattr(estimator, "n_features_in_", None)
        pixels = int(np.prod(self.image_shape))
        if features is not None and int(features) != pixels:
            raise RunError(
                f"model: expected a {name} fitted on {pixels} pixels "
                f"({'x'.join(map(str, self.image_shape))} images). Found {int(features)} features"
            )

    @property
    def estimator(self):
        return self.model

    #: Estimators that compute in the input's precision: given float32 their
    #: log-likelihoods (thousands) keep ~1e-3 and the probabilities ~1e-4, so
    #: they get float64 (the same classes; exported models compute the same).
    FLOAT64_ESTIMATORS = frozenset({"GaussianNB", "BernoulliNB"})

    def _predict(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((x.shape[0], self.num_classes), dtype=np.float64)
        flat = x.reshape(x.shape[0], -1)
        if type(self.model).__name__ in self.FLOAT64_ESTIMATORS:
            flat = flat.astype(np.float64)
        with blas_threads(1 if self.one_blas_thread else None):
            out[:, self._columns] = self.model.predict_proba(flat)
        # Estimators fitted on float32 compute in float32 where they can: rows
        # can miss 1 by ~1e-4, so renormalise like a softmax would be.
        out /= np.maximum(out.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
        return out
