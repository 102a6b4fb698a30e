"""Training: data → model → fit → evaluate → run folder."""

from __future__ import annotations

import contextlib
import datetime as _dt
import sys
import time
from pathlib import Path

from digitlab import _backend, plots, runs
from digitlab import data as data_module
from digitlab._backend import keras
from digitlab.config import TrainConfig
from digitlab.evaluation import evaluate
from digitlab.models import build_model


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
    if run_dir is not None:
        runs.check_run_dir(run_dir)  # fail before spending minutes training
    if dataset is None:
        dataset = data_module.load_dataset(data_dir, progress=verbose > 0)
    parts = data_module.split(
        dataset, config.split, seed=config.seed, validation_size=config.validation_size
    )

    _backend.set_seed(config.seed)
    model = build_model(config, dataset.image_shape, dataset.num_classes)
    if verbose:
        model.summary(print_fn=lambda line, *a, **k: print(line, file=log))
    timer = EpochTimer()
    with contextlib.redirect_stdout(log):
        start = time.perf_counter()
        history = model.fit(
            parts.x_train,
            parts.y_train,
            batch_size=config.batch_size,
            epochs=config.epochs,
            validation_data=(parts.x_eval, parts.y_eval),
            shuffle=True,
            verbose=verbose,
            callbacks=[timer, *callbacks],
        )
        train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    evaluation = evaluate(
        model,
        parts.x_eval,
        parts.labels_eval,
        set_name=parts.eval_set,
        class_names=dataset.class_names,
    )
    predict_seconds = time.perf_counter() - start

    params = int(model.count_params())
    history_dict = {key: [float(v) for v in values] for key, values in history.history.items()}
    history_dict["epoch_seconds"] = list(timer.seconds)
    info = {
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "params": params,
        "train_seconds": train_seconds,
        "first_epoch_seconds": timer.seconds[0] if timer.seconds else None,
        "seconds_per_epoch": _median(timer.seconds[1:] or timer.seconds),
        "predict_seconds_per_10k": predict_seconds * 10_000 / max(evaluation.size, 1),
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
    }
    metrics = evaluation.to_dict()

    def write_plots(folder: Path) -> None:
        if plots_enabled:
            sample_images = parts.x_eval
            plots.save_report(folder, evaluation, history_dict, sample_images)

    path = runs.save_run(
        run_dir if run_dir is not None else runs.default_run_dir(config.model),
        config=config,
        save_model=lambda folder: model.save(folder / runs.KERAS_MODEL_FILE),
        info=info,
        history=history_dict,
        metrics=metrics,
        write_extras=write_plots,
    )
    return runs.Run(
        path=path, config=config, model=model, info=info, history=history_dict, metrics=metrics
    )


def _median(values):
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
