"""The inference core: what predicting needs, and nothing of training.

* :mod:`~digitlab.inference.classifier` - the :class:`Classifier` contract
  (class names, image shape, checked ``predict_proba``) and its Keras and
  scikit-learn implementations.
* :mod:`~digitlab.inference.formats` - model files (Keras archive, skops)
  behind one interface.
* :mod:`~digitlab.inference.predictor` - :class:`Predictor`, a model warmed up
  for fast, thread-safe prediction.
* :mod:`~digitlab.inference.images` - photos and canvas exports made to look
  like MNIST.
* :mod:`~digitlab.inference.reading` - :func:`read_image`, the answer for one
  image (what ``digitlab predict`` prints and the HTTP API returns).
"""

from digitlab.inference.classifier import (
    Classifier,
    KerasClassifier,
    SklearnClassifier,
    check_images,
)
from digitlab.inference.predictor import Predictor, as_classifier, as_predictor, predict_proba

#: Names from :mod:`~digitlab.inference.reading`, imported on first use: it
#: loads Pillow and SciPy, which ``digitlab predict --index`` never needs.
_READING = (
    "MNIST_SHAPE",
    "STATUS_NO_DIGIT",
    "STATUS_NOT_SURE",
    "STATUS_OK",
    "check_pixels",
    "decode_data_url",
    "png_bytes",
    "png_data_url",
    "read_image",
    "read_images",
)


def __getattr__(name: str):
    if name in _READING:
        from digitlab.inference import reading

        return getattr(reading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MNIST_SHAPE",
    "STATUS_NOT_SURE",
    "STATUS_NO_DIGIT",
    "STATUS_OK",
    "Classifier",
    "KerasClassifier",
    "Predictor",
    "SklearnClassifier",
    "as_classifier",
    "as_predictor",
    "check_images",
    "check_pixels",
    "decode_data_url",
    "png_bytes",
    "png_data_url",
    "predict_proba",
    "read_image",
    "read_images",
]
