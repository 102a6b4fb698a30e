"""``model.fit`` with the training data kept on the device (JAX backend).

Keras' JAX trainer slices each batch out of the NumPy arrays on the host,
copies it to the device and dispatches one compiled call per batch (with
``steps_per_execution=k`` it merely loops over ``k`` such calls in Python).
For a network as small as the tutorial's, that per-batch overhead is as large
as the arithmetic.  :func:`fit` keeps ``fit`` -- callbacks, history, progress
bar, validation, early stopping -- and changes only how the steps execute:

* the training arrays are copied to the device once;
* ``fit`` is handed the row *indices* instead of the rows, so Keras' own
  seeded shuffle picks exactly the batches it would have picked;
* every ``k`` batches of indices become one compiled ``jax.lax.scan`` over
  Keras' own ``train_step`` that gathers its rows on the device.

The updates are Keras' own, in Keras' order: the weights and history match a
plain ``model.fit`` (see the tests).  Callbacks and the progress bar run every
``k`` batches, as Keras documents for ``steps_per_execution``.
"""

from __future__ import annotations

import itertools

import numpy as np

from digitlab._backend import keras


def can_fit_on_device(model) -> bool:
    """True where :func:`fit` changes how steps run: Keras on JAX, and a model
    without convolutions (XLA:CPU ran convolutions 5-10x slower inside a scan,
    more than the per-call overhead the scan saves)."""
    k = keras()
    if k.backend.backend() != "jax":
        return False
    return not any(isinstance(layer, k.layers.Conv2D) for layer in model._flatten_layers())


def fit(model, x, y, *, batch_size: int, steps_per_call: int = 32, **fit_kwargs):
    """``model.fit(x, y, batch_size=..., **fit_kwargs)``, with up to
    ``steps_per_call`` training steps per compiled call over device-resident
    data where :func:`can_fit_on_device`; a plain ``model.fit`` otherwise.

    Call after ``model.compile``.  Returns Keras' ``History``.  The model is
    left as ``fit`` leaves it: a later plain ``model.fit`` works as usual.
    """
    plain = any(fit_kwargs.get(name) for name in _NEEDS_ROWS)
    if plain or steps_per_call <= 1 or not can_fit_on_device(model):
        return model.fit(x, y, batch_size=batch_size, **fit_kwargs)
    import jax

    x = np.asarray(x)
    y = np.asarray(y)
    if _unbuilt(model):
        # fit() builds the model, loss and metrics from its first batch, which
        # will be indices here: build them from real rows.  Taking that batch
        # costs plain fit() one shuffle from NumPy's global generator; draw it
        # too, so that every epoch sees the very batches plain fit() would.
        model._symbolic_build(data_batch=(x[:batch_size], y[:batch_size]))
        shuffle = fit_kwargs.get("shuffle", True)
        if shuffle == "batch":
            np.random.permutation(min(batch_size, len(x)))
        elif shuffle:
            np.random.permutation(len(x))
    rows = (jax.device_put(x), jax.device_put(y))
    if isinstance(fit_kwargs.get("validation_data"), (tuple, list)):
        # Arrays are copied once, not once per epoch (a dataset object is
        # left to Keras).
        fit_kwargs["validation_data"] = jax.device_put(tuple(fit_kwargs["validation_data"]))
    saved_steps = model.steps_per_execution
    model.steps_per_execution = steps_per_call
    model.train_function = _train_function(model, rows, steps_per_call, batch_size)
    try:
        return model.fit(
            np.arange(len(x), dtype=np.int32), None, batch_size=batch_size, **fit_kwargs
        )
    finally:
        model.train_function = None  # the next fit() makes Keras' own again
        model.steps_per_execution = saved_steps


#: fit() arguments that need the rows themselves: with any of them, a plain fit().
_NEEDS_ROWS = ("validation_split", "sample_weight", "class_weight", "steps_per_epoch")


def _unbuilt(model) -> bool:
    """Keras' own test (``Trainer._symbolic_build``) for building from a batch."""
    return (
        not all(layer.built for layer in model._flatten_layers())
        or (model._compile_metrics is not None and not model._compile_metrics.built)
        or (model._compile_loss is not None and not model._compile_loss.built)
    )


def _train_function(model, rows, steps: int, batch_size: int):
    """Keras' ``train_function`` contract: ``(state, iterator) -> (logs, state)``,
    where the iterator yields batches of row indices."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def step(state, rows, indices):
        x, y = rows
        return model.train_step(state, (x[indices], y[indices]))

    def many(state, rows, indices, count):
        # An epoch's last call may hold fewer than ``steps`` full batches: the
        # padding rows of ``indices`` are skipped, so one compilation serves all.
        # (``step`` is traced once: the scan's body reuses this trace.)
        logs_shape, _ = jax.eval_shape(step, state, rows, indices[0])
        logs = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), logs_shape)

        def body(carry, args):
            i, batch = args
            return jax.lax.cond(
                i < count,
                lambda c: tuple(reversed(step(c[0], rows, batch))),
                lambda c: c,
                carry,
            ), None

        (state, logs), _ = jax.lax.scan(body, (state, logs), (jnp.arange(steps), indices))
        return logs, state

    one = jax.jit(step, donate_argnums=0)
    many = jax.jit(many, donate_argnums=0)

    def iterator_step(state, iterator):
        batches = [
            np.asarray(batch[0] if isinstance(batch, tuple) else batch, np.int32)
            for batch in itertools.islice(iterator, steps)
        ]
        if not batches:
            raise StopIteration
        full = [batch for batch in batches if len(batch) == batch_size]
        if full:
            indices = np.zeros((steps, batch_size), np.int32)
            indices[: len(full)] = full
            logs, state = many(state, rows, indices, np.int32(len(full)))
        for batch in batches[len(full) :]:  # the epoch's smaller last batch
            logs, state = one(state, rows, batch)
        return logs, state

    return iterator_step
