"""``--engine torch``: digitlab's Keras networks trained by PyTorch.

The network is built by Keras as always (:func:`digitlab.models.keras_kinds.fit_keras`
builds it, seeded, so its initial weights are Keras'), copied into a
:class:`~digitlab.inference.torch_runtime.TorchNetwork` in training mode,
trained there, and its weights copied back: what the run saves, calibrates,
evaluates, exports and serves is the same Keras model as with the Keras
engine.  Only the arithmetic of training moves, to PyTorch's oneDNN kernels,
in bfloat16 where the CPU multiplies it natively (AMX): on this project's
2-core Xeon, 4.3x the speed of Keras on JAX for ``cnn`` at the same
validation accuracy (``benchmarks/RESULTS.md``).

The recipe is the config's, computed as Keras computes it: the optimizer
with Keras' defaults (Adam's epsilon 1e-7, AdamW's weight decay 0.004,
RMSprop's rho 0.9), the cosine schedule with its warm-up, label smoothing,
batch norm with Keras' momentum, dropout, the Augmentation layer's random
affine maps, one seeded shuffle per epoch.  The random numbers differ from
Keras', so a seed gives another (equally good) network than ``--engine
keras``; the same seed on the same machine gives the same network again.
Keras callbacks get ``on_train_begin``, ``on_epoch_end(epoch, logs)`` and
``on_train_end`` (what a pruning callback needs), not per-batch calls.
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np

from digitlab import _interrupts
from digitlab.errors import ConfigError
from digitlab.models.registry import TrainResult, check_converging

#: Keras' optimizer defaults, for the same recipe in PyTorch.
_KERAS_EPSILON = 1e-7
_KERAS_DEFAULT_RATES = {"sgd": 0.01, "adam": 0.001, "adamw": 0.001, "rmsprop": 0.001}


def fit(model, config, parts, *, verbose, log, callbacks=()):
    """Train ``model`` (the Keras network :func:`digitlab.models.keras_kinds.fit_keras`
    built and seeded for ``config``) with PyTorch; a :class:`TrainResult`
    holding ``model`` with the trained weights."""
    from digitlab.inference import torch_runtime

    torch = torch_runtime.import_torch("engine")
    torch.manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(parts.x_train) / config.batch_size)
    try:
        net = torch_runtime.TorchNetwork(
            torch_runtime.keras_layers(model), training=True, seed=config.seed
        )
    except torch_runtime.UnsupportedLayer as exc:
        raise ConfigError(
            f"engine: --engine torch does not train {exc} (model={config.model!r}). "
            "Use --engine keras"
        ) from None
    optimizer = _optimizer(torch, config, net.parameters)
    rate = _schedule(config, steps_per_epoch)
    x_train = torch.from_numpy(np.ascontiguousarray(parts.x_train, np.float32))
    labels = torch.from_numpy(np.asarray(parts.labels_train, np.int64))
    validation = (
        torch.from_numpy(np.ascontiguousarray(parts.x_eval, np.float32)),
        torch.from_numpy(np.asarray(parts.labels_eval, np.int64)),
    )
    order = torch.Generator().manual_seed(config.seed)
    history: dict[str, list[float]] = {"accuracy": [], "loss": []}
    epoch_seconds: list[float] = []
    best, waited = (math.inf, None), 0
    patience = config.early_stopping or config.epochs
    for callback in callbacks:
        callback.on_train_begin()
    with contextlib.redirect_stdout(log), _interrupts.deferred():
        start = time.perf_counter()
        step = 0
        for epoch in range(config.epochs):
            began = time.perf_counter()
            net.training = True
            total_loss = correct = seen = 0.0
            permutation = torch.randperm(len(x_train), generator=order)
            for first in range(0, len(x_train), config.batch_size):
                rows = permutation[first : first + config.batch_size]
                for group in optimizer.param_groups:
                    group["lr"] = rate(step)
                logits = net(x_train[rows]).float()
                loss = torch.nn.functional.cross_entropy(
                    logits, labels[rows], label_smoothing=config.label_smoothing
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                value = float(loss.detach())
                check_converging(value, epoch + 1)
                total_loss += value * len(rows)
                correct += float((logits.detach().argmax(1) == labels[rows]).sum())
                seen += len(rows)
                _interrupts.check()
            logs = {"accuracy": correct / seen, "loss": total_loss / seen}
            logs.update(_validate(torch, net, validation, config))
            epoch_seconds.append(time.perf_counter() - began)
            for key, value in logs.items():
                history.setdefault(key, []).append(float(value))
            if verbose:
                shown = " - ".join(f"{key}: {value:.4f}" for key, value in logs.items())
                print(
                    f"Epoch {epoch + 1}/{config.epochs} - {epoch_seconds[-1]:.0f}s - {shown}",
                    file=log,
                    flush=True,
                )
            for callback in callbacks:
                callback.on_epoch_end(epoch, dict(logs))
            if config.early_stopping or config.restore_best:
                if logs["val_loss"] < best[0]:
                    best, waited = (logs["val_loss"], net.keras_weights()), 0
                else:
                    waited += 1
                    if waited >= patience:
                        break
        train_seconds = time.perf_counter() - start
    for callback in callbacks:
        callback.on_train_end()
    weights = best[1] if config.restore_best and best[1] is not None else net.keras_weights()
    for layer, values in zip(model.layers, weights, strict=True):
        if values:
            layer.set_weights(values)
    return TrainResult(
        model=model,
        params=int(model.count_params()),
        train_seconds=train_seconds,
        compile_seconds=None,
        epoch_seconds=epoch_seconds,
        history=history,
        info={
            "engine": "torch",
            "precision": "bfloat16" if net.bfloat16 else "float32",
            "threads": int(torch.get_num_threads()),
        },
    )


def _validate(torch, net, validation, config) -> dict[str, float]:
    """Validation loss and accuracy (Keras' ``val_loss``, ``val_accuracy``) on
    ``validation``: the images and their labels, as tensors."""
    net.training = False
    x, labels = validation
    total = correct = 0.0
    with torch.inference_mode():
        for first in range(0, len(x), 1000):
            logits = net(x[first : first + 1000]).float()
            batch = labels[first : first + 1000]
            total += float(
                torch.nn.functional.cross_entropy(
                    logits, batch, label_smoothing=config.label_smoothing, reduction="sum"
                )
            )
            correct += float((logits.argmax(1) == batch).sum())
    net.training = True
    return {"val_accuracy": correct / len(x), "val_loss": total / len(x)}


def _rate(config) -> float:
    """The config's learning rate, or its optimizer's Keras default."""
    return config.learning_rate or _KERAS_DEFAULT_RATES.get(config.optimizer, 0.001)


def _optimizer(torch, config, parameters):
    rate = _rate(config)
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=rate)
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=rate, eps=_KERAS_EPSILON)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=rate, eps=_KERAS_EPSILON, weight_decay=0.004)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=rate, alpha=0.9, eps=_KERAS_EPSILON)
    raise ConfigError(
        f"optimizer: --engine torch trains with sgd, adam, adamw or rmsprop. "
        f"Received: optimizer={config.optimizer!r}"
    )


def _schedule(config, steps_per_epoch: int):
    """The learning rate at each step, as :func:`digitlab.models.networks.make_optimizer`
    sets it: constant, or Keras' ``CosineDecay`` with a linear warm-up from a
    tenth of the rate over the first tenth of training (at most one epoch)."""
    rate = _rate(config)
    if config.lr_schedule != "cosine":
        return lambda step: rate
    total = config.epochs * steps_per_epoch
    warmup = min(steps_per_epoch, total // 10)

    def cosine(step: int) -> float:
        if step < warmup:
            return rate / 10 + (rate - rate / 10) * step / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return rate * 0.5 * (1 + math.cos(math.pi * progress))

    return cosine
