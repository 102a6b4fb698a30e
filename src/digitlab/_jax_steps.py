"""Many training steps per compiled call on the JAX backend.

Keras' JAX trainer dispatches one compiled function per batch and, with
``steps_per_execution=k``, merely loops over ``k`` such calls in Python.  For
a network as small as the tutorial's, that per-call overhead (a dispatch, a
host-to-device copy and a metrics update per batch) is as large as the
arithmetic.  :func:`scan_train_steps` makes ``fit`` instead stack ``k``
equal-sized batches and run them in one compiled ``jax.lax.scan`` over
Keras' own ``train_step``: the same updates in the same order (identical
weights and history), with the Python overhead paid once per ``k`` batches.
Callbacks and the progress bar then run every ``k`` batches, as Keras
documents for ``steps_per_execution``.
"""

from __future__ import annotations

import numpy as np

from digitlab._backend import keras


def scan_train_steps(model, steps: int) -> bool:
    """Run up to ``steps`` batches per compiled call in ``model.fit``.

    Call after ``model.compile``.  Returns False (and changes nothing) on
    other backends, where Keras' own ``steps_per_execution`` is the better
    tool, or when ``steps`` is 1.
    """
    k = keras()
    if k.backend.backend() != "jax" or steps <= 1:
        return False
    import jax
    from keras import tree

    model.steps_per_execution = steps
    make_keras_train_function = model.make_train_function

    def make_train_function(force=False):
        if model.train_function is not None and not force:
            return
        make_keras_train_function(force)  # Keras' set-up (sharding, flags)
        one = jax.jit(model.train_step, donate_argnums=0)

        def scanned(state, stacked):
            def body(state, batch):
                logs, state = model.train_step(state, batch)
                return state, logs

            state, logs = jax.lax.scan(body, state, stacked)
            # Metrics accumulate across steps, so the last step's logs are
            # the running values Keras reports.
            return tree.map_structure(lambda t: t[-1], logs), state

        many = jax.jit(scanned, donate_argnums=0)

        def iterator_step(state, iterator):
            batches = []
            for batch in iterator:
                batches.append(batch)
                if len(batches) == steps:
                    break
            if not batches:
                raise StopIteration
            if len(batches) > 1 and _same_shapes(batches):
                return many(state, tree.map_structure(lambda *xs: np.stack(xs), *batches))
            for batch in batches:  # an epoch's ragged end: one step at a time
                logs, state = one(state, batch)
            return logs, state

        model.train_function = iterator_step

    model.make_train_function = make_train_function
    return True


def _same_shapes(batches) -> bool:
    from keras import tree

    first = [np.shape(t) for t in tree.flatten(batches[0])]
    return all([np.shape(t) for t in tree.flatten(b)] == first for b in batches[1:])
