"""Keras backend choice, seeding and XLA's compilation cache, in one place.

digitlab runs Keras 3 on JAX unless the user already chose a backend with
``KERAS_BACKEND``: on a CPU it trains the tutorial network 2-4x faster than the
TensorFlow or PyTorch backends.  This module must be imported before Keras.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
# Keras prints one line per model build about the backend on some versions, and
# TensorFlow (when it is the chosen backend) is chatty on import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: Environment variable: ``0`` turns the compilation cache off; a path moves it.
CACHE_VARIABLE = "DIGITLAB_COMPILATION_CACHE"
#: The cache keeps the most recently used programs within this many bytes.
CACHE_MAX_BYTES = 256 * 2**20

_configured = False

#: Set by the command line: import Keras without the optional packages it
#: loads only for features digitlab does not use (its scikit-learn wrappers,
#: its image-gallery plot), about 1.3 s of every command that loads a model.
#: The packages stay importable: digitlab's own plots and baselines import
#: them as usual afterwards.
lean_import = False
_NOT_FOR_KERAS = ("sklearn", "matplotlib")


def keras():
    """Return the ``keras`` module, imported with digitlab's backend choice."""
    import sys

    if lean_import and "keras" not in sys.modules:
        blocked = [name for name in _NOT_FOR_KERAS if name not in sys.modules]
        for name in blocked:
            sys.modules[name] = None  # makes `import name` raise ImportError
        try:
            import keras as _keras
        finally:
            for name in blocked:
                if sys.modules.get(name, False) is None:
                    del sys.modules[name]
    import keras as _keras

    if not _configured:
        _use_compilation_cache(_keras.backend.backend())
    return _keras


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend so CPU runs repeat exactly."""
    keras().utils.set_random_seed(seed)


def compilation_cache_dir():
    """Where XLA's compiled programs are kept between runs, or None when off.

    ``$DIGITLAB_COMPILATION_CACHE`` (``0`` for off), else ``jax/`` in
    digitlab's cache folder.
    """
    from pathlib import Path

    chosen = os.environ.get(CACHE_VARIABLE, "")
    if chosen.strip().lower() in {"0", "off", "false", "no"}:
        return None
    if chosen:
        return Path(chosen).expanduser()
    from digitlab.data.fetch import default_cache_dir

    return default_cache_dir() / "jax"


def _use_compilation_cache(backend: str) -> None:
    """Let JAX keep compiled programs on disk, so that a second ``digitlab
    train`` (or ``predict``, ``serve``) of the same model skips XLA's
    compilation: about a second of the tutorial's 20-epoch fit."""
    global _configured
    _configured = True
    if backend != "jax":
        return
    import jax

    if jax.config.jax_compilation_cache_dir and not os.environ.get(CACHE_VARIABLE):
        return  # the user set JAX's own ($JAX_COMPILATION_CACHE_DIR or in code)
    folder = compilation_cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # a read-only home: compile every time, as JAX does by default
    if not os.access(folder, os.W_OK):
        return
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # JAX's default (1 s) would skip every program of these small networks; any
    # threshold makes what is kept depend on how busy the machine was while
    # compiling (a 0.09 s program kept on one run and not the next), so keep all.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)
