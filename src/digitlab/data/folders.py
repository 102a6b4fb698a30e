"""Finding a dataset's four IDX files in a folder, and checking one against its pin.

Shared by :mod:`digitlab.data.fetch`, :mod:`digitlab.data.mirrors` and
:mod:`digitlab.data.datasets`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

from digitlab.data.idx import IdxError, load_bytes
from digitlab.data.registry import MNIST_FILES, MnistFile, owner_of
from digitlab.errors import DataError


class Verified(NamedTuple):
    """One file's verified, uncompressed bytes, where they were read and their SHA-256."""

    data: bytes
    path: Path
    digest: str
    source: str


def spellings(name: str) -> list[str]:
    # Some unpackers write "train-images.idx3-ubyte" instead of "train-images-idx3-ubyte".
    dotted = name.replace("-idx", ".idx")
    return [name, name + ".gz", dotted, dotted + ".gz"]


def existing_files(folder: Path, name: str) -> list[Path]:
    return [folder / spelling for spelling in spellings(name) if (folder / spelling).is_file()]


def find_idx_files(
    folder, keys=("train_images", "train_labels", "test_images", "test_labels")
) -> dict[str, Path]:
    """Locate MNIST-layout IDX files in ``folder`` under their usual names.

    Each key of :data:`MNIST_FILES` maps to e.g. ``train-images-idx3-ubyte``,
    also accepted gzipped (``.gz``) and spelled ``train-images.idx3-ubyte``.
    Returns ``{key: path}``; raises :class:`DataError` naming the folder and
    everything missing.
    """
    unknown = [key for key in keys if key not in MNIST_FILES]
    if unknown:
        raise DataError(f"unknown MNIST file keys {unknown}: expected some of {list(MNIST_FILES)}")
    return locate(Path(folder).expanduser(), {key: MNIST_FILES[key] for key in keys})


def locate(folder: Path, files: dict[str, MnistFile]) -> dict[str, Path]:
    if not folder.exists():
        raise DataError(f"data folder {folder} does not exist: expected a folder of IDX files")
    if not folder.is_dir():
        raise DataError(f"data folder {folder} is not a directory: expected a folder of IDX files")
    found = {key: existing_files(folder, file.name) for key, file in files.items()}
    missing = [files[key].name for key, paths in found.items() if not paths]
    if missing:
        present = sorted(entry.name for entry in folder.iterdir())
        shown = ", ".join(present[:12]) + (", ..." if len(present) > 12 else "") or "nothing"
        raise DataError(
            f"data folder {folder} lacks {', '.join(missing)} (also looked for .gz and the "
            f"'.idx' spelling). Found: {shown}"
        )
    return {key: paths[0] for key, paths in found.items()}


def verify_file(path: Path, file: MnistFile, source: str, *, key: str | None = None) -> Verified:
    """Read ``path`` (gzipped or not) and check its uncompressed bytes against ``file``.

    With ``key``, a mismatch that is another known dataset's file says so."""
    try:
        data = load_bytes(path, name=str(path), max_bytes=file.size)
    except IdxError as error:
        raise DataError(
            f"{error}; expected the official {file.name}, SHA-256 {file.sha256}"
        ) from error
    digest = hashlib.sha256(data).hexdigest()
    if digest != file.sha256:
        other = owner_of(key, digest) if key is not None else None
        whose = f" (that is {other.title}'s {file.name})" if other is not None else ""
        raise DataError(
            f"{path} fails its checksum: expected {file.size} uncompressed bytes with SHA-256 "
            f"{file.sha256}, found {len(data)} bytes with SHA-256 {digest}{whose}"
        )
    return Verified(data, path, digest, source)
