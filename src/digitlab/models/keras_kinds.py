"""The Keras model kinds: mlp (the tutorial), cnn, cnn-deep and cnn-fast.

Each trains the same way (:func:`fit_keras`): build and compile the network
(:mod:`digitlab.models.networks`), then Keras' ``fit`` with the training steps
run on the device (:mod:`digitlab.models._jax_fit`), validation on the
evaluation images, per-epoch timings and the compilation time measured.
Keras is imported only when a kind trains.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time

from digitlab import _interrupts
from digitlab.errors import ConfigError
from digitlab.models.registry import ModelKind, TrainResult, check_converging, register

#: Training batches run per compiled call on JAX (see :mod:`digitlab.models._jax_fit`);
#: callbacks and the progress bar update at this granularity.
STEPS_PER_CALL = 32
#: Validation needs no small batches: fewer, larger calls are faster.
VALIDATION_BATCH_SIZE = 1024


def validation_batch_size(images: int) -> int:
    """Batches of at most :data:`VALIDATION_BATCH_SIZE`, as equal as possible:
    15,000 images go in 15 batches of 1,000, so no smaller last batch needs a
    compilation of its own."""
    batches = max(1, math.ceil(images / VALIDATION_BATCH_SIZE))
    return max(1, math.ceil(images / batches))


def stopping_callbacks(config) -> list:
    """Keras callbacks for ``config.early_stopping`` (stop once the validation
    loss has not improved for that many epochs) and ``config.restore_best``
    (end with the weights of the epoch of lowest validation loss)."""
    if not (config.early_stopping or config.restore_best):
        return []
    from digitlab._backend import keras

    return [
        keras().callbacks.EarlyStopping(
            monitor="val_loss",
            # Without early stopping, patience beyond the last epoch never stops.
            patience=config.early_stopping or config.epochs,
            restore_best_weights=config.restore_best,
        )
    ]


def _timer_class():
    from digitlab._backend import keras

    class Timer(keras().callbacks.Callback):
        """Seconds per epoch, and per compiled call of training and validation.

        The first call of each compiled function includes tracing and XLA's
        compilation; the calls after it run the same program, so
        ``compile_seconds`` is the first call's excess over the typical call.
        """

        def on_train_begin(self, logs=None):
            self.seconds, self.calls = [], {"train": [], "test": []}

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._epoch)

        def on_train_batch_begin(self, batch, logs=None):
            self._call = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.calls["train"].append(time.perf_counter() - self._call)
            self.on_train_batch_end_checks(logs)

        def on_test_batch_begin(self, batch, logs=None):
            self._call = time.perf_counter()

        def on_test_batch_end(self, batch, logs=None):
            self.calls["test"].append(time.perf_counter() - self._call)
            _interrupts.check()

        def on_train_batch_end_checks(self, logs) -> None:
            _interrupts.check()
            loss = (logs or {}).get("loss")
            if loss is not None:
                check_converging(float(loss), len(self.seconds) + 1)

        def compile_seconds(self) -> float:
            total = 0.0
            for durations in self.calls.values():
                if len(durations) >= 2:
                    total += max(0.0, durations[0] - statistics.median(durations[1:]))
                elif durations:
                    total += durations[0]
            return total

    return Timer()


#: Bytes per parameter while training: float32 weights, gradients, optimizer
#: slots (Adam keeps two) and a copy or so for the compiled step.
TRAINING_BYTES_PER_PARAM = 4 * 5


def dense_params(hidden, inputs: int, outputs: int) -> int:
    """Parameters of the dense layers ``inputs -> hidden... -> outputs``."""
    sizes = [int(inputs), *map(int, hidden), int(outputs)]
    return sum((a + 1) * b for a, b in zip(sizes, sizes[1:], strict=False))


def available_memory() -> int | None:
    """Bytes of memory this machine has free now (None where unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def check_memory(config, image_shape, num_classes: int) -> None:
    """Refuse, before anything is built, layers whose parameters alone would
    not fit in the memory available: one :class:`ConfigError` naming ``hidden``."""
    inputs = math.prod(image_shape) if config.model == "mlp" else 1024
    params = dense_params(config.hidden, inputs, num_classes)
    need = params * TRAINING_BYTES_PER_PARAM
    free = available_memory() or 16 * 2**30
    if need > free:
        shown = ",".join(map(str, config.hidden))
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise ConfigError(
            f"hidden: expected layers small enough to train in memory. {shown} makes about "
            f"{params:,} parameters, about {need / 2**30:,.1f} GB to train, more than the "
            f"{free / 2**30:,.1f} GB available"
        )


def fit_keras(config, parts, *, class_names, image_shape, verbose, log, callbacks=()):
    """Build ``config.model``'s network, train it with Keras' ``fit`` and time it."""
    from digitlab import _backend
    from digitlab.models import _jax_fit, networks

    check_memory(config, image_shape, len(class_names))
    if config.engine == "torch":
        from digitlab.inference.torch_runtime import import_torch

        import_torch("engine")  # before anything is built: one line if it is missing
    _backend.set_seed(config.seed)
    steps_per_epoch = math.ceil(len(parts.x_train) / config.batch_size)
    model = networks.build_model(
        config, image_shape, len(class_names), steps_per_epoch=steps_per_epoch
    )
    if verbose:
        model.summary(print_fn=lambda line, *a, **k: print(line, file=log))
    if config.engine == "torch":
        from digitlab.models import torch_engine

        return torch_engine.fit(model, config, parts, verbose=verbose, log=log, callbacks=callbacks)
    timer = _timer_class()
    with contextlib.redirect_stdout(log), _interrupts.deferred():
        start = time.perf_counter()
        history = _jax_fit.fit(
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
    return TrainResult(
        model=model,
        params=int(model.count_params()),
        train_seconds=train_seconds,
        compile_seconds=min(timer.compile_seconds(), train_seconds),
        epoch_seconds=list(timer.seconds),
        history={key: [float(v) for v in values] for key, values in history.history.items()},
    )


#: The training defaults of cnn and cnn-deep.
CNN_DEFAULTS = {
    "optimizer": "adam",
    "learning_rate": 0.002,
    "lr_schedule": "cosine",
    "epochs": 15,
    "dropout_rate": 0.3,
    "label_smoothing": 0.1,
    "augment": True,
}

for _kind in (
    ModelKind(
        "mlp",
        "the tutorial's network: Dense(128, relu) -> Dense(10, softmax), any --hidden sizes",
        fit_keras,
        format="keras",
        info_key="training",
    ),
    ModelKind(
        "cnn",
        "the strong convnet: 2x2-folded pixels, batch norm, augmentation, Adam + cosine",
        fit_keras,
        format="keras",
        info_key="training",
        defaults=CNN_DEFAULTS,
        # Twice the epochs in 0.47x (Xeon, AMX) to 0.66x (AMD EPYC) the time:
        # 99.68% median against 99.64% (benchmarks/RESULTS.md, bench_engines.py).
        engines={"torch": {"epochs": 30}, "keras": {}},
    ),
    ModelKind(
        "cnn-deep",
        "cnn with five convolutions instead of three (1.5x the arithmetic): an ensemble member",
        fit_keras,
        format="keras",
        info_key="training",
        defaults=CNN_DEFAULTS,
        slow=True,
        engines={"torch": {"epochs": 25}, "keras": {}},
    ),
    ModelKind(
        "cnn-fast",
        "the quick convnet: one epoch to ~99% on MNIST",
        fit_keras,
        format="keras",
        info_key="training",
        defaults={
            "optimizer": "adam",
            "learning_rate": 0.002,
            "lr_schedule": "cosine",
            "epochs": 1,
            "batch_size": 32,
        },
    ),
):
    register(_kind)
