""" "Not a digit" figures: how well digits are told from things that are not.

:func:`ood_report` is what every training of a digit model writes into
``metrics.json`` (key ``"ood"``) and the report page: the run's evaluation
digits against each family of :mod:`digitlab.data.negatives` drawn with a seed
the detector never trained on, all framed like digits and scored by
:mod:`digitlab.inference.detector`.  Per family it gives

* ``auroc``: the chance that a digit scores above a non-digit (1 is perfect);
* ``far_at_95_tar``: the share of non-digits accepted at the score that accepts
  95% of the digits (lower is better);
* ``rejected``: the share answered "no digit" at the shipped threshold.

``benchmarks/bench_ood.py`` measures the same on photos of non-digits made
another way (other fonts, Fashion-MNIST, its own scribbles and textures).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: The seed of the families :func:`ood_report` draws (the detector trained on 0 and
#: validated on 1000).
REPORT_SEED = 20_261_201
PER_FAMILY = 100
DIGITS = 2000


def auroc(positive, negative) -> float:
    """P(a positive scores above a negative), ties counting half (Mann-Whitney U)."""
    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    if not len(positive) or not len(negative):
        return float("nan")
    values = np.concatenate([positive, negative])
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]  # ties share their mean rank
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def far_at_tar(positive, negative, tar: float = 0.95) -> float:
    """The share of ``negative`` scoring at least the score that accepts ``tar`` of ``positive``."""
    cut = float(np.quantile(np.asarray(positive, float), 1 - tar))
    return float((np.asarray(negative, float) >= cut).mean())


def family_figures(digit_scores, scores, threshold: float) -> dict:
    return {
        "images": int(len(scores)),
        "auroc": round(auroc(digit_scores, scores), 4),
        "far_at_95_tar": round(far_at_tar(digit_scores, scores), 4),
        "rejected": round(float((np.asarray(scores) < threshold).mean()), 4),
    }


def ood_report(x_digits, *, seed: int = REPORT_SEED, per_family: int = PER_FAMILY) -> dict:
    """The ``"ood"`` figures of a run whose evaluation digits are ``x_digits``
    ``(n, 28, 28)`` float in [0, 1] (at most :data:`DIGITS` of them are used)."""
    from digitlab.inference.detector import load_detector

    detector = load_detector()
    rng = np.random.default_rng(seed)
    x_digits = np.asarray(x_digits, dtype=np.float32)
    population = len(x_digits)
    if population > DIGITS:
        x_digits = x_digits[np.sort(rng.choice(population, DIGITS, replace=False))]
    digit_scores = detector.scores(x_digits)
    families, rejected, total = {}, 0, 0
    for name, scores in _negative_scores(seed, per_family, population).items():
        families[name] = family_figures(digit_scores, scores, detector.threshold)
        rejected += int((scores < detector.threshold).sum())
        total += len(scores)
    return {
        "method": "detector",
        "threshold": round(detector.threshold, 6),
        "digits": {
            "images": int(len(digit_scores)),
            "accepted": round(float((digit_scores >= detector.threshold).mean()), 4),
        },
        "rejected": round(rejected / max(total, 1), 4),
        "families": families,
        "negatives": f"digitlab.data.negatives, seed {seed}, framed like digits",
    }


@lru_cache(maxsize=8)
def _negative_scores(seed: int, per_family: int, population: int) -> dict[str, np.ndarray]:
    """The shipped detector's scores of each family's negatives, as
    :func:`ood_report` draws them after choosing its digits out of
    ``population``: the same for every run with as many evaluation images, so
    a process that trains many (``tune``, ``sweep``, ``compare``) draws and
    frames them once (~1.5 s each time)."""
    from digitlab.data import negatives
    from digitlab.inference.detector import load_detector
    from digitlab.inference.images import frame_ink

    detector = load_detector()
    rng = np.random.default_rng(seed)
    if population > DIGITS:
        rng.choice(population, DIGITS, replace=False)  # the draw ood_report made
    scores = {}
    for name, images in negatives.generate(per_family, rng).items():
        scores[name] = detector.scores(np.stack([frame_ink(image) for image in images]))
        scores[name].flags.writeable = False
    return scores
