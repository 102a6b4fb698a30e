"""Scores from predictions: numbers only, no plotting, no training code.

:func:`score` turns softmax probabilities and true labels into an
:class:`Evaluation`; :func:`evaluate` first runs a model.  The plots in
:mod:`digitlab.plots` draw from an ``Evaluation``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitlab.errors import DataError
from digitlab.inference.predictor import predict_proba

#: Bins for the expected calibration error (the usual 15 equal-width bins).
ECE_BINS = 15
#: How many of the most confident mistakes an evaluation keeps.
WORST_MISTAKES = 25


@dataclass(frozen=True)
class Evaluation:
    """How a model did on one set of images.

    ``confusion[i, j]`` counts images of true class ``i`` predicted as ``j``;
    ``precision``/``recall``/``f1`` are per class, ``(k,)`` float64 in [0, 1];
    ``mistakes`` holds the indices (into the evaluated arrays) of the most
    confident wrong predictions, most confident first.
    """

    set: str
    size: int
    loss: float
    accuracy: float
    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    ece: float
    class_names: tuple[str, ...]
    mistakes: np.ndarray
    probabilities: np.ndarray
    labels: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    def to_dict(self) -> dict:
        """The JSON-ready metrics (everything but the per-image arrays)."""
        per_class = {
            name: {
                "precision": float(self.precision[i]),
                "recall": float(self.recall[i]),
                "f1": float(self.f1[i]),
                "support": int(self.confusion[i].sum()),
            }
            for i, name in enumerate(self.class_names)
        }
        pred = self.predictions
        return {
            "set": self.set,
            "size": self.size,
            "loss": self.loss,
            "accuracy": self.accuracy,
            "ece": self.ece,
            "macro_f1": float(self.f1.mean()),
            "per_class": per_class,
            "confusion_matrix": self.confusion.tolist(),
            "class_names": list(self.class_names),
            "worst_mistakes": [
                {
                    "index": int(i),
                    "true": int(self.labels[i]),
                    "predicted": int(pred[i]),
                    "probability": float(self.probabilities[i, pred[i]]),
                }
                for i in self.mistakes
            ],
        }


def score(probabilities, labels, *, set_name: str = "eval", class_names=None) -> Evaluation:
    """Score ``(n, k)`` probabilities (rows sum to 1) against ``(n,)`` labels in 0..k-1."""
    probs = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise DataError(
            f"{set_name}: expected probabilities (n, k) and labels (n,). "
            f"Found {probs.shape} and {labels.shape}"
        )
    n, k = probs.shape
    if n == 0:
        raise DataError(f"{set_name}: expected at least one image to evaluate. Found 0")
    class_names = tuple(class_names) if class_names is not None else tuple(map(str, range(k)))
    pred = probs.argmax(axis=1)
    confusion = np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(np.float64)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros(k), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    true_prob = probs[np.arange(n), labels]
    loss = float(-np.log(np.clip(true_prob, 1e-7, 1.0)).mean())
    wrong = np.flatnonzero(pred != labels)
    confidence = probs[np.arange(n), pred]
    mistakes = wrong[np.argsort(-confidence[wrong], kind="stable")][:WORST_MISTAKES]
    return Evaluation(
        set=set_name,
        size=n,
        loss=loss,
        accuracy=float((pred == labels).mean()),
        confusion=confusion,
        precision=precision,
        recall=recall,
        f1=f1,
        ece=expected_calibration_error(probs, labels),
        class_names=class_names,
        mistakes=mistakes,
        probabilities=probs.astype(np.float32),
        labels=labels,
    )


def evaluate(
    model, x, labels, *, set_name: str = "eval", class_names=None, batch_size: int = 1024
) -> Evaluation:
    """Predict ``x`` (``(n, H, W)`` float32 in [0, 1]) with ``model`` (a Keras
    model, a loaded run, or anything with ``predict_proba``) and score it."""
    probs = predict_proba(model, x, batch_size=batch_size)
    return score(probs, labels, set_name=set_name, class_names=class_names)


def fit_temperature(probabilities, labels) -> float:
    """The temperature ``T`` that minimises the log-loss of ``temper(p, T)`` on
    these (validation) labels: Guo et al.'s temperature scaling, one number
    fitted by a bounded search over ``log T`` in [log 0.05, log 20]."""
    from scipy.optimize import minimize_scalar

    probs = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0)
    labels = np.asarray(labels).astype(np.int64)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],) or not len(labels):
        raise DataError(
            f"calibration: expected probabilities (n, k) and labels (n,), n >= 1. "
            f"Found {probs.shape} and {labels.shape}"
        )
    logits = np.log(probs)
    rows = np.arange(len(labels))

    def loss(log_t: float) -> float:
        scaled = logits / np.exp(log_t)
        scaled -= scaled.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(scaled).sum(axis=1))
        return float((log_norm - scaled[rows, labels]).mean())

    found = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(found.x))


def expected_calibration_error(probabilities, labels, *, bins: int = ECE_BINS) -> float:
    """Mean |confidence - accuracy| over equal-width confidence bins, weighted by
    how many predictions fall in each bin (0 = perfectly calibrated)."""
    probs = np.asarray(probabilities)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    acc_sum = np.bincount(which, weights=correct, minlength=bins)
    return float(np.abs(conf_sum - acc_sum).sum() / max(len(confidence), 1))
