"""Training: data → the model kind's fit → evaluation → run folder.

:func:`train` is the same for every kind of model: it looks the kind up in
the registry (:mod:`digitlab.models.registry`), lets it fit on the split,
wraps the result with the kind's file format, evaluates it once on the
evaluation set, and saves the run.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time

import numpy as np

from digitlab import data as data_module
from digitlab import models, plots, report, runs
from digitlab.config import TrainConfig
from digitlab.errors import ConfigError
from digitlab.evaluation import evaluate, fit_temperature, score
from digitlab.inference.formats import get_format


def train(
    config: TrainConfig | None = None,
    dataset: data_module.Dataset | None = None,
    *,
    run_dir=None,
    data_dir=None,
    verbose: int = 1,
    plots_enabled: bool = True,
    callbacks=(),
    log=None,
) -> runs.Run:
    """Train the model ``config`` describes and save it as a run folder.

    ``dataset`` defaults to :func:`digitlab.data.load_dataset` on ``data_dir``
    and ``config.dataset`` (MNIST).  ``run_dir`` defaults to a new dated folder
    under ``runs/``.  ``verbose`` is Keras' (0 silent, 1 progress bar, 2 one
    line per epoch); ``log`` (default stdout) receives the model summary and
    progress; ``callbacks`` are Keras callbacks (Keras kinds only).
    Returns the :class:`~digitlab.runs.Run`, with ``metrics`` filled.
    """
    config = config or TrainConfig()
    log = log or sys.stdout
    kind = models.get(config.model)
    model_format = get_format(kind.format)
    if run_dir is not None:
        runs.check_run_dir(run_dir)  # fail before spending minutes training
    if dataset is None:
        dataset = data_module.load_dataset(data_dir, dataset=config.dataset, progress=verbose > 0)
    parts = data_module.split(
        dataset, config.split, seed=config.seed, validation_size=config.validation_size
    )
    fit_parts = held_out(parts, config)
    result = kind.fit(
        config,
        fit_parts,
        class_names=dataset.class_names,
        image_shape=dataset.image_shape,
        verbose=verbose,
        log=log,
        callbacks=list(callbacks),
    )
    classifier = model_format.wrap(
        result.model,
        class_names=dataset.class_names,
        image_shape=dataset.image_shape,
        model_name=config.model,
    )
    calibration = calibrate(classifier, fit_parts) if config.calibrate else None

    history = runs.History(
        curves={k: tuple(v) for k, v in result.history.items() if k != "epoch_seconds"},
        epoch_seconds=tuple(result.epoch_seconds),
    )
    seconds = result.epoch_seconds
    return finish_run(
        config=config,
        dataset=dataset,
        parts=parts,
        classifier=classifier,
        model=result.model,
        model_format=model_format,
        history=history,
        run_dir=run_dir,
        plots_enabled=plots_enabled,
        params=int(result.params),
        size_unit=result.size_unit,
        train_seconds=float(result.train_seconds),
        train_size=int(fit_parts.x_train.shape[0]),
        compile_seconds=result.compile_seconds,
        first_epoch_seconds=seconds[0] if seconds else None,
        seconds_per_epoch=statistics.median(seconds[1:] or seconds) if seconds else None,
        calibration=calibration,
        extra={kind.info_key: result.info} if kind.info_key and result.info else {},
    )


def finish_run(
    *,
    config,
    dataset,
    parts,
    classifier,
    model,
    model_format,
    history,
    run_dir,
    plots_enabled: bool,
    train_size: int,
    **info_fields,
) -> runs.Run:
    """Evaluate a trained classifier once on ``parts``' evaluation set, add the
    "not a digit" figures for digit models, and save the run folder with its
    plots and report.  ``info_fields`` are the rest of ``run.json``'s record
    (params, seconds, calibration, extra)."""
    start = time.perf_counter()
    evaluation = evaluate(
        classifier,
        parts.x_eval,
        parts.labels_eval,
        set_name=parts.eval_set,
        class_names=dataset.class_names,
    )
    predict_seconds = time.perf_counter() - start
    measured = evaluation.to_dict()
    if dataset.is_digits and tuple(dataset.image_shape) == (28, 28):
        from digitlab.ood import ood_report

        measured["ood"] = ood_report(parts.x_eval)
    metrics = runs.Metrics.from_dict(measured)
    data_info = runs.DataInfo(
        name=dataset.name,
        source=dataset.source,
        sha256=dict(dataset.sha256),
        verified=dataset.verified,
        class_names=tuple(dataset.class_names),
        image_shape=tuple(dataset.image_shape),
        train_size=train_size,
        eval_set=parts.eval_set,
        eval_size=int(evaluation.size),
    )
    info = runs.RunInfo(
        created=runs.now(),
        predict_seconds_per_10k=predict_seconds * 10_000 / max(evaluation.size, 1),
        data=data_info,
        versions=runs.versions(),
        **info_fields,
    )
    target = run_dir if run_dir is not None else runs.default_run_dir(config.model)

    def write_plots(folder) -> None:
        if plots_enabled:
            plots.save_report(
                folder, evaluation, history.to_dict(), parts.x_eval, classifier=classifier
            )
        draft = runs.Run(
            path=target,
            config=config,
            classifier=classifier,
            info=info,
            history=history,
            metrics=metrics,
        )
        report.write_report(draft, folder)

    path, info = runs.save_run(
        target,
        config=config,
        model=model,
        model_format=model_format,
        info=info,
        history=history,
        metrics=metrics,
        write_extras=write_plots,
    )
    return runs.Run(
        path=path,
        config=config,
        classifier=classifier,
        info=info,
        history=history,
        metrics=metrics,
    )


#: Draws the images the official split holds out (the default seed's, so runs of
#: seed 42 are unchanged).
HELD_OUT_SEED = 42


def held_out(parts: data_module.Split, config: TrainConfig) -> data_module.Split:
    """What the model fits and validates on.  On the official split the
    evaluation set is the test set, evaluated once at the end: so that
    validation curves and the temperature never see it, ``calibration_size``
    (at most a tenth) training images are held out as the validation set, the
    same ones whatever ``config.seed`` (drawn with :data:`HELD_OUT_SEED`), so
    runs of several seeds share one validation set an ensemble can use (with
    ``calibrate`` off, the 0.1.0 behaviour: all 60,000 train, the test set
    validates)."""
    if config.split != "official" or not config.calibrate:
        return parts
    n = len(parts.x_train)
    if n < 20:
        raise ConfigError(
            f"calibration_size: expected at least 20 training images to hold some out. Found {n}"
        )
    # At most a tenth of the training images: a small dataset keeps most to learn from.
    held_out = min(config.calibration_size, n // 10)
    order = np.random.default_rng(HELD_OUT_SEED).permutation(n)
    keep, held = (
        np.sort(order[:-held_out]),
        np.sort(order[-held_out:]),
    )
    return dataclasses.replace(
        parts,
        x_train=parts.x_train[keep],
        y_train=parts.y_train[keep],
        labels_train=parts.labels_train[keep],
        x_eval=parts.x_train[held],
        y_eval=parts.y_train[held],
        labels_eval=parts.labels_train[held],
        eval_set="validation",
        eval_indices=held,
    )


def calibrate(classifier, parts: data_module.Split) -> dict:
    """Fit the classifier's temperature on the validation images; return what
    ``run.json`` records of it."""
    before = score(classifier.predict_proba(parts.x_eval), parts.labels_eval)
    temperature = fit_temperature(before.probabilities, parts.labels_eval)
    classifier.temperature = temperature
    return {
        "method": "temperature",
        "temperature": temperature,
        "fitted_on": parts.eval_set,
        "size": int(before.size),
        "ece_before": before.ece,
        "loss_before": before.loss,
    }
