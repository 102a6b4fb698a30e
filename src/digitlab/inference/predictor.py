"""A loaded model made ready for fast, thread-safe prediction.

:class:`Predictor` wraps a run (or any :class:`Classifier`, or a bare Keras
model) and warms its one-image path up, so that the first real request does
not pay for compilation.  :func:`predict_proba` gives probabilities for any of
those in one call.
"""

from __future__ import annotations

import numpy as np

from digitlab.inference.classifier import Classifier, KerasClassifier


def as_classifier(model, *, class_names=None) -> Classifier:
    """A :class:`Classifier` for a run (anything with ``.classifier``), a
    classifier, or a bare Keras model (class names ``"0".."k-1"`` unless given)."""
    classifier = getattr(model, "classifier", model)
    if isinstance(classifier, Classifier):
        return classifier
    if hasattr(classifier, "input_shape") and hasattr(classifier, "output_shape"):
        outputs = int(classifier.output_shape[-1])
        return KerasClassifier(
            classifier,
            class_names=class_names or [str(i) for i in range(outputs)],
            image_shape=tuple(classifier.input_shape[1:]),
        )
    raise TypeError(
        f"expected a run, a digitlab Classifier or a Keras model. Received: {type(model).__name__}"
    )


def predict_proba(model, x, *, batch_size: int = 1024) -> np.ndarray:
    """Probabilities ``(n, k)`` float32 for images ``x`` ``(n, H, W)`` float in
    [0, 1], for a run, a :class:`Classifier`, a :class:`Predictor` or a Keras model."""
    return as_classifier(model).predict_proba(x, batch_size=batch_size)


class Predictor:
    """A model ready for fast, thread-safe prediction, one image or many.

    Build it once (at server start-up) and share it.

    Args:
        model: a :class:`~digitlab.runs.Run`, a :class:`Classifier` or a Keras model.
        class_names: names of the classes (default: the model's own).
        warm_up: run one blank image through at once so the first real request
            does not pay for compilation.
    """

    def __init__(self, model, *, class_names=None, warm_up: bool = True):
        self.run = model if hasattr(model, "classifier") else None
        self.classifier = as_classifier(model, class_names=class_names)
        self.model = self.classifier.model
        self.class_names = tuple(class_names or self.classifier.class_names)
        self.image_shape = self.classifier.image_shape
        self.num_classes = len(self.class_names)
        self.backend = self.classifier.backend
        if warm_up:
            self.predict_proba(np.zeros((1, *self.image_shape), dtype=np.float32))

    def predict_proba(self, x, *, batch_size: int = 1024) -> np.ndarray:
        """Probabilities ``(n, k)`` float32 for images ``(n, H, W)`` (or one
        image ``(H, W)``) float in [0, 1]."""
        x = np.asarray(x)
        if x.ndim == len(self.image_shape):
            x = x[None]
        return self.classifier.predict_proba(x, batch_size=batch_size)

    def predict_one(self, image) -> np.ndarray:
        """Probabilities ``(k,)`` float32 for one image ``(H, W)`` float in [0, 1]."""
        return self.predict_proba(np.asarray(image)[None])[0]


def as_predictor(predictor_or_run) -> Predictor:
    """A :class:`Predictor` as is; a run or model wrapped in one (not warmed up)."""
    if isinstance(predictor_or_run, Predictor):
        return predictor_or_run
    return Predictor(predictor_or_run, warm_up=False)
