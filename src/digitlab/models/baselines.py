"""Classic scikit-learn baselines, trained on exactly the tutorial's data.

Each baseline sees the same split and preprocessing as the Keras models
(:func:`digitlab.data.split`: pixels / 255 as float32 in [0, 1]), flattened to
``(n, H*W)``.  ``digitlab train --model rf`` writes the same run folder as the
Keras models, with the fitted estimator saved by skops as ``model.skops``
(never pickle), so evaluate, predict and serve work on any run.

=========  ======================================================  ===========================
name       estimator (fixed defaults, seeded by ``config.seed``)    ``params`` (``size_unit``)
=========  ======================================================  ===========================
``rf``     ``RandomForestClassifier(n_estimators=100)``, all cores  tree nodes, splits + leaves
``logreg`` ``LogisticRegression(lbfgs, max_iter=100)``              learned weights + biases
``knn``    ``KNeighborsClassifier(k=3, brute force)``, all cores    stored training images
``gnb``    ``GaussianNB()``                                         class means + variances
                                                                    + priors
``bnb``    ``BernoulliNB(binarize=0.5)``                            log-probabilities + priors
``svm``    ``SVC(rbf, C=5, probability=True)`` on 10,000 images     support vectors
           (slow: Platt scaling fits 5 extra models)
=========  ======================================================  ===========================

``params`` is the "model size" each kind of model naturally has; it is not
comparable across kinds (a tree node is not a weight), which is why every run
also records ``model_bytes``, the size of the saved model file.

Why these defaults (measured on 2 shared cores): on the 45,000-image tutorial
split ``lbfgs`` reaches 0.921 validation accuracy by ~60 iterations and 100
iterations change only the fourth digit, while full convergence (tolerance
1e-4) takes several hundred iterations for nothing more; so it stops at 100
(~10 s) and the run records ``converged: false``.  The forest's 100 trees take
about a minute on 60,000 images (0.970 test accuracy, ~1 million nodes, a
21 MB model file).  k-NN trains instantly, but predicting compares each image
with every stored one: ~40 s per 10,000 images against 60,000, and its model
file holds all of them (16 MB compressed).  k-NN and naive Bayes probabilities
are poorly calibrated (k-NN's are votes: 0, 1/3, 2/3, 1), so their log-loss is
large and is clipped like every loss in :func:`digitlab.evaluation.score`.
The SVM is the slow one: ~2 minutes to fit its 10,000 images (Platt scaling
fits five more models for the probabilities), ~30 s per 10,000 predictions,
0.969 validation accuracy, ~3,750 support vectors.
Fitting, and predicting with all but k-NN, runs BLAS on one thread, so a
trial computes the same numbers in any process (see
:class:`~digitlab.inference.classifier.SklearnClassifier`).

Settings a baseline does not use (``hidden``, ``optimizer``, ``epochs``...) are
ignored; ``split``, ``validation_size`` and ``seed`` apply as for Keras models.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from digitlab._threads import blas_threads
from digitlab.errors import ConfigError
from digitlab.models.registry import ModelKind, TrainResult, register

#: Training images the SVM fits on (a seeded subsample): an RBF SVC's fit
#: time grows roughly with the square of this.
SVM_TRAIN_SIZE = 10_000


@dataclass(frozen=True)
class Baseline:
    """One scikit-learn model kind: how to build it and how to measure its size."""

    name: str
    description: str
    estimator_class: str  # "module.Class", checked again when a run is loaded
    build: Callable[[object], object]
    size: Callable[[object], int]
    size_unit: str
    slow: bool = False


def _build_rf(config):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=config.seed)


def _build_logreg(config):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(solver="lbfgs", max_iter=100, random_state=config.seed)


def _build_knn(config):
    from sklearn.neighbors import KNeighborsClassifier

    # Brute force is what "auto" picks for 784 features anyway; fixing it keeps
    # the saved model free of tree types and its behaviour independent of size.
    return KNeighborsClassifier(n_neighbors=3, algorithm="brute", n_jobs=-1)


def _build_gnb(config):
    from sklearn.naive_bayes import GaussianNB

    return GaussianNB()


def _build_bnb(config):
    from sklearn.naive_bayes import BernoulliNB

    return BernoulliNB(binarize=0.5)


def _build_svm(config):
    from sklearn.svm import SVC

    return SVC(kernel="rbf", C=5.0, gamma="scale", probability=True, random_state=config.seed)


BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        Baseline(
            "rf",
            "random forest, 100 trees",
            "sklearn.ensemble._forest.RandomForestClassifier",
            _build_rf,
            lambda m: sum(int(tree.tree_.node_count) for tree in m.estimators_),
            "tree nodes",
        ),
        Baseline(
            "logreg",
            "multinomial logistic regression (lbfgs, 100 iterations)",
            "sklearn.linear_model._logistic.LogisticRegression",
            _build_logreg,
            lambda m: int(m.coef_.size + m.intercept_.size),
            "parameters",
        ),
        Baseline(
            "knn",
            "k-nearest neighbours, k=3",
            "sklearn.neighbors._classification.KNeighborsClassifier",
            _build_knn,
            lambda m: int(m.n_samples_fit_),
            "stored images",
        ),
        Baseline(
            "gnb",
            "Gaussian naive Bayes",
            "sklearn.naive_bayes.GaussianNB",
            _build_gnb,
            lambda m: int(m.theta_.size + m.var_.size + m.class_prior_.size),
            "parameters",
        ),
        Baseline(
            "bnb",
            "Bernoulli naive Bayes on pixels > 0.5",
            "sklearn.naive_bayes.BernoulliNB",
            _build_bnb,
            lambda m: int(m.feature_log_prob_.size + m.class_log_prior_.size),
            "parameters",
        ),
        Baseline(
            "svm",
            "RBF support vector machine (slow; fits on a subsample)",
            "sklearn.svm._classes.SVC",
            _build_svm,
            lambda m: int(m.support_vectors_.shape[0]),
            "support vectors",
            slow=True,
        ),
    )
}


def is_baseline(name: str) -> bool:
    """Whether ``name`` is a scikit-learn baseline rather than a Keras model."""
    return name in BASELINES


def fit_baseline(config, parts, *, class_names, image_shape, verbose=0, log=None, callbacks=()):
    """Fit the baseline ``config.model`` on ``parts.x_train`` ``(n, H, W)`` float32
    in [0, 1] with integer ``parts.labels_train`` in ``[0, len(class_names))``.

    ``log``, if given and ``verbose``, receives one line saying what is fitted.
    Keras ``callbacks`` do not apply and are ignored.
    """
    baseline = _lookup(config.model)
    if config.engine != "keras":
        raise ConfigError(
            f"engine: --engine {config.engine} trains Keras networks (mlp and the cnns); "
            f"{config.model} is a scikit-learn model. Received: engine={config.engine!r}"
        )
    estimator = baseline.build(config)
    x = np.asarray(parts.x_train, dtype=np.float32).reshape(len(parts.x_train), -1)
    labels = np.asarray(parts.labels_train, dtype=np.int64)
    if baseline.name == "svm" and len(x) > SVM_TRAIN_SIZE:
        chosen = np.sort(
            np.random.default_rng(config.seed).choice(len(x), SVM_TRAIN_SIZE, replace=False)
        )
        x, labels = x[chosen], labels[chosen]
    if log is not None and verbose:
        print(f"fitting {baseline.description} on {len(x):,} images", file=log, flush=True)
    from sklearn.exceptions import ConvergenceWarning

    # One BLAS thread while fitting: the result then does not depend on how many
    # threads BLAS gets (logistic regression's lbfgs path differs in the last
    # digits otherwise, so a sweep on a cluster would not repeat a local one),
    # and on a busy 2-core machine OpenBLAS' spinning threads made the fit
    # ten times slower (102 s against 9.5 s on the tutorial split).
    with warnings.catch_warnings(record=True) as caught, blas_threads(1):
        warnings.simplefilter("always")
        start = time.perf_counter()
        estimator.fit(x, labels)
        train_seconds = time.perf_counter() - start

    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return TrainResult(
        model=estimator,
        params=baseline.size(estimator),
        size_unit=baseline.size_unit,
        train_seconds=train_seconds,
        info={
            "estimator": type(estimator).__name__,
            "estimator_params": {k: _jsonable(v) for k, v in estimator.get_params().items()},
            "fit_images": int(len(x)),
            "converged": converged,
        },
    )


def _lookup(name: str) -> Baseline:
    try:
        return BASELINES[name]
    except KeyError:
        raise ConfigError(
            f"model: expected one of the baselines {', '.join(BASELINES)}. Received: model={name!r}"
        ) from None


def _jsonable(value):
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


for _baseline in BASELINES.values():
    register(
        ModelKind(
            _baseline.name,
            _baseline.description,
            fit_baseline,
            format="skops",
            family="scikit-learn",
            slow=_baseline.slow,
            info_key="baseline",
        )
    )
