"""Shared test set-up.

Tests read the real MNIST through ``DIGITLAB_DATA_DIR``.  Beside the project's
CI and developer checkouts, ``../shared/data/mnist`` holds verified copies; in
a user's own clone without it, MNIST is fetched once the product's own way
(cache, mirrors, PyPI) and its four files are read under their official
``.gz`` names (gzip copies in a temporary folder where the cache holds them
uncompressed).
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

#: What a run folder of the MLP holds (a convnet has no weights.png).
RUN_FILES = {
    "model.keras",
    "config.json",
    "run.json",
    "history.json",
    "metrics.json",
    "confusion_matrix.png",
    "training_curves.png",
    "predictions.png",
    "mistakes.png",
    "reliability.png",
    "weights.png",
    "saliency.png",
    "report.html",
}

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def pytest_configure(config):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    if os.environ.get("DIGITLAB_DATA_DIR"):
        return
    if SHARED_MNIST.is_dir():
        os.environ["DIGITLAB_DATA_DIR"] = str(SHARED_MNIST)
        return
    from digitlab.data import fetch

    got = fetch.fetch_mnist(progress=False)
    os.environ["DIGITLAB_DATA_DIR"] = str(_as_official_gz(got.paths))


#: The folder of gzip copies this process made (removed when the run ends).
_MADE: list[Path] = []


def _as_official_gz(paths: dict) -> Path:
    """A folder holding the four files under their official ``.gz`` names, as
    ``../shared`` and the mirrors serve them and as the IDX and folder tests
    read them: the fetched folder itself where it holds them so, else a
    temporary folder of gzip copies (the product may cache them uncompressed)."""
    from digitlab.data.registry import MNIST_FILES

    folder = paths["train_images"].parent
    if all(paths[key] == folder / f"{file.name}.gz" for key, file in MNIST_FILES.items()):
        return folder
    copies = Path(tempfile.mkdtemp(prefix="digitlab-test-mnist-"))
    _MADE.append(copies)
    for key, file in MNIST_FILES.items():
        data = paths[key].read_bytes()
        if data[:2] != b"\x1f\x8b":
            data = gzip.compress(data, compresslevel=1, mtime=0)
        (copies / f"{file.name}.gz").write_bytes(data)
    return copies


def pytest_unconfigure(config):
    for folder in _MADE:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def mnist():
    """The real, verified MNIST (``digitlab.data.Dataset``)."""
    from digitlab.data import load_dataset

    return load_dataset()


@pytest.fixture(scope="session")
def small_mnist(mnist):
    """A 3,000 / 1,000 slice of the real MNIST, for quick training tests."""
    return mnist.head(3000, 1000)


def write_idx_dataset(folder: Path, *, n_train=60, n_test=20, shape=(8, 8), classes=3, seed=0):
    """Write a tiny synthetic dataset in the MNIST file layout; return the folder."""
    from digitlab.data.idx import write_idx

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % classes).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, *shape), dtype=np.uint8)
        # Make each class learnable: a bright band whose row depends on the label.
        for c in range(classes):
            images[labels == c, (c * shape[0]) // classes, :] = 250
        write_idx(folder / f"{part}-images-idx3-ubyte", images)
        write_idx(folder / f"{part}-labels-idx1-ubyte", labels)
    return folder
