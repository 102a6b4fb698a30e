"""Is it a digit at all?  The "not a digit" rule every digit model answers with.

A classifier of the ten digits gives ten probabilities for anything, a texture
or a letter A included.  Before its answer is given, each framed 28x28 crop is
scored by a small network shipped with digitlab (``assets/detector.keras``,
trained by :mod:`digitlab.models.detector` on MNIST training digits against
generated non-digits).  A crop scoring below the threshold chosen on validation
data (``assets/detector.json``: 99.5% of validation digits accepted) is "not a
digit", and :func:`digitlab.inference.read_image` answers ``"no digit"``.

The detector is computed in NumPy (:mod:`digitlab.inference.numpy_keras`), so
it costs no Keras import, and it does not depend on the classifier: the
tutorial MLP, the CNNs, scikit-learn baselines and old run folders all get it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from digitlab.errors import RunError

ASSETS = Path(__file__).resolve().parent / "assets"
MODEL_FILE = ASSETS / "detector.keras"
INFO_FILE = ASSETS / "detector.json"


@dataclass(frozen=True)
class DigitDetector:
    """Scores of "this crop is a digit" and the threshold below which it is not one.

    Attributes:
        network: maps ``(n, 28, 28)`` float32 in [0, 1] to ``(n, 2)`` probabilities
            (not a digit, digit).
        threshold: the least digit score that is answered as a digit.
        info: ``detector.json``: how it was trained and its validation figures.
    """

    network: object
    threshold: float
    info: dict

    def scores(self, pixels) -> np.ndarray:
        """The probability that each crop ``(n, 28, 28)`` (or one ``(28, 28)``) is a digit."""
        x = np.asarray(pixels, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.shape[1:] != (28, 28):
            raise RunError(
                f"detector: expected 28x28 images. Received: images of shape {x.shape[1:]}"
            )
        if not len(x):
            return np.zeros(0, dtype=np.float32)
        return np.asarray(self.network(x), dtype=np.float32)[:, 1]

    def is_digit(self, pixels) -> np.ndarray:
        """True for each crop scoring at least :attr:`threshold`."""
        return self.scores(pixels) >= self.threshold


@cache
def load_detector() -> DigitDetector:
    """The detector shipped with digitlab (loaded once per process)."""
    from digitlab.inference import numpy_keras

    try:
        info = json.loads(INFO_FILE.read_text(encoding="utf-8"))
        threshold = float(info["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{INFO_FILE}: expected the detector's threshold. {exc}") from None
    network = numpy_keras.load(MODEL_FILE)
    if network is None:
        raise RunError(f"{MODEL_FILE}: expected a network of digitlab's own layers")
    return DigitDetector(network=network, threshold=threshold, info=info)
