"""Training: data → model → fit → evaluate → run folder."""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import sys
import time
from pathlib import Path

from digitlab import _backend, _jax_steps, baselines, plots, runs
from digitlab import data as data_module
from digitlab._backend import keras
from digitlab.config import TrainConfig
from digitlab.errors import ConfigError
from digitlab.evaluation import evaluate
from digitlab.models import MODELS, build_model

#: Training batches run per compiled call on JAX (see :mod:`digitlab._jax_steps`);
#: callbacks and the progress bar update at this granularity.
STEPS_PER_CALL = 32
#: Validation needs no small batches: fewer, larger calls are faster.
VALIDATION_BATCH_SIZE = 1024


class EpochTimer(keras().callbacks.Callback):
    """Records wall-clock seconds per epoch (the first includes compilation)."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


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
    (MNIST).  ``run_dir`` defaults to a new dated folder under ``runs/``.
    ``verbose`` is Keras' (0 silent, 1 progress bar, 2 one line per epoch);
    ``log`` (default stdout) receives the model summary and progress.
    Returns the loaded :class:`~digitlab.runs.Run` with ``metrics`` filled.
    """
    config = config or TrainConfig()
    log = log or sys.stdout
    check_model_name(config.model)
    if run_dir is not None:
        runs.check_run_dir(run_dir)  # fail before spending minutes training
    if dataset is None:
        dataset = data_module.load_dataset(data_dir, progress=verbose > 0)
    parts = data_module.split(
        dataset, config.split, seed=config.seed, validation_size=config.validation_size
    )
    finish = dict(run_dir=run_dir, plots_enabled=plots_enabled)

    if baselines.is_baseline(config.model):
        fitted = baselines.fit_baseline(
            config,
            parts.x_train,
            parts.labels_train,
            num_classes=dataset.num_classes,
            log=log if verbose else None,
        )
        return _evaluate_and_save(
            config,
            dataset,
            parts,
            fitted.model,
            params=fitted.params,
            size_unit=fitted.size_unit,
            train_seconds=fitted.train_seconds,
            epoch_seconds=[],
            history={},
            save_model=lambda folder: baselines.save_model(fitted.model, folder),
            extra_info={"baseline": fitted.info},
            **finish,
        )

    _backend.set_seed(config.seed)
    steps_per_epoch = math.ceil(len(parts.x_train) / config.batch_size)
    model = build_model(
        config, dataset.image_shape, dataset.num_classes, steps_per_epoch=steps_per_epoch
    )
    if verbose:
        model.summary(print_fn=lambda line, *a, **k: print(line, file=log))
    timer = EpochTimer()
    with contextlib.redirect_stdout(log):
        start = time.perf_counter()
        history = _jax_steps.fit(
            model,
            parts.x_train,
            parts.y_train,
            batch_size=config.batch_size,
            steps_per_call=STEPS_PER_CALL,
            epochs=config.epochs,
            validation_data=(parts.x_eval, parts.y_eval),
            validation_batch_size=validation_batch_size(len(parts.x_eval)),
            shuffle=True,
            verbose=verbose,
            callbacks=[timer, *stopping_callbacks(config), *callbacks],
        )
        train_seconds = time.perf_counter() - start

    history_dict = {key: [float(v) for v in values] for key, values in history.history.items()}
    history_dict["epoch_seconds"] = list(timer.seconds)
    return _evaluate_and_save(
        config,
        dataset,
        parts,
        model,
        params=int(model.count_params()),
        train_seconds=train_seconds,
        epoch_seconds=timer.seconds,
        history=history_dict,
        save_model=lambda folder: model.save(folder / runs.KERAS_MODEL_FILE),
        **finish,
    )


def validation_batch_size(images: int) -> int:
    """Batches of at most :data:`VALIDATION_BATCH_SIZE`, as equal as possible:
    15,000 images go in 15 batches of 1,000, so no smaller last batch needs a
    compilation of its own."""
    batches = max(1, math.ceil(images / VALIDATION_BATCH_SIZE))
    return max(1, math.ceil(images / batches))


def stopping_callbacks(config: TrainConfig) -> list:
    """Keras callbacks for ``config.early_stopping`` (stop once the validation
    loss has not improved for that many epochs) and ``config.restore_best``
    (end with the weights of the epoch of lowest validation loss, not the
    last)."""
    if not (config.early_stopping or config.restore_best):
        return []
    return [
        keras().callbacks.EarlyStopping(
            monitor="val_loss",
            # Without early stopping, patience beyond the last epoch never stops.
            patience=config.early_stopping or config.epochs,
            restore_best_weights=config.restore_best,
        )
    ]


def model_names() -> tuple[str, ...]:
    """Every name ``TrainConfig.model`` accepts: the Keras models, then the
    scikit-learn baselines (see :mod:`digitlab.baselines`)."""
    return (*sorted(MODELS), *baselines.BASELINES)


def check_model_name(name: str) -> None:
    """Raise :class:`ConfigError` listing the valid names unless ``name`` is one."""
    if name not in MODELS and not baselines.is_baseline(name):
        raise ConfigError(
            f"model: expected one of {', '.join(model_names())}. Received: model={name!r}"
        )


def _evaluate_and_save(
    config: TrainConfig,
    dataset: data_module.Dataset,
    parts: data_module.Split,
    model,
    *,
    params: int,
    size_unit: str = "parameters",
    train_seconds: float,
    epoch_seconds: list[float],
    history: dict,
    save_model,
    run_dir,
    plots_enabled: bool,
    extra_info: dict | None = None,
) -> runs.Run:
    """The tail every model shares: evaluate, time the prediction, save the run."""
    start = time.perf_counter()
    evaluation = evaluate(
        model,
        parts.x_eval,
        parts.labels_eval,
        set_name=parts.eval_set,
        class_names=dataset.class_names,
    )
    predict_seconds = time.perf_counter() - start

    info = {
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "params": params,
        "size_unit": size_unit,  # what params counts: tree nodes for a forest, etc.
        "train_seconds": train_seconds,
        "first_epoch_seconds": epoch_seconds[0] if epoch_seconds else None,
        "seconds_per_epoch": _median(epoch_seconds[1:] or epoch_seconds),
        "predict_seconds_per_10k": predict_seconds * 10_000 / max(evaluation.size, 1),
        "model_bytes": None,  # filled in once the model file is written
        "data": {
            "name": dataset.name,
            "source": dataset.source,
            "sha256": dataset.sha256,
            "verified": dataset.verified,
            "class_names": list(dataset.class_names),
            "image_shape": list(dataset.image_shape),
            "train_size": int(parts.x_train.shape[0]),
            "eval_set": parts.eval_set,
            "eval_size": int(evaluation.size),
        },
        "versions": runs.versions(),
        **(extra_info or {}),
    }
    metrics = evaluation.to_dict()

    def write_model(folder: Path) -> None:
        # save_run writes the model before run.json, so the size can go in it.
        save_model(folder)
        info["model_bytes"] = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())

    def write_plots(folder: Path) -> None:
        if plots_enabled:
            sample_images = parts.x_eval
            plots.save_report(folder, evaluation, history, sample_images)

    path = runs.save_run(
        run_dir if run_dir is not None else runs.default_run_dir(config.model),
        config=config,
        save_model=write_model,
        info=info,
        history=history,
        metrics=metrics,
        write_extras=write_plots,
    )
    return runs.Run(
        path=path, config=config, model=model, info=info, history=history, metrics=metrics
    )


def _median(values):
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
