"""Finding a dataset's four IDX files in a folder, and checking one against its pin.

Shared by :mod:`digitlab.data.fetch`, :mod:`digitlab.data.mirrors` and
:mod:`digitlab.data.datasets`.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import NamedTuple

from digitlab.data.idx import DEFAULT_MAX_BYTES, IdxError, load_bytes
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


def existing_files(folder: Path, name: str, *, regular_only: bool = True) -> list[Path]:
    """``name``'s spellings present in ``folder``: regular files (or links to one) only,
    or, without ``regular_only``, anything there (FIFOs, devices, broken links too)."""
    paths = [folder / spelling for spelling in spellings(name)]
    if regular_only:
        return [path for path in paths if path.is_file()]
    return [path for path in paths if os.path.lexists(path)]


def kind_of(path: Path) -> str | None:
    """What ``path`` is when it is not a regular file (or a link to one), else ``None``."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "missing"
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    if stat.S_ISREG(mode):
        return None
    return _mode_kind(mode)


def _mode_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def largest_stored(file: MnistFile) -> int:
    """The most bytes a stored copy of ``file`` may have: its size uncompressed, or
    gzipped by any compressor (stored blocks add 5 bytes per 64 KiB, plus a header)."""
    return max(file.size + file.size // 1024 + 65536, file.gz_size)


def open_regular(path: Path, expected: str, max_stored: int):
    """``path`` opened for reading, once checked to be a regular file (or a link to
    one) of at most ``max_stored`` bytes; :class:`DataError` naming it otherwise.
    ``expected`` says what it should be (``"the regular file train-images-idx3-ubyte"``)."""
    kind = kind_of(path)
    if kind is not None:
        raise DataError(f"{path} is {kind}: expected {expected}")
    try:
        # O_NONBLOCK: should it have become a FIFO since, opening it does not wait for a writer.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags)
    except OSError as error:
        raise DataError(f"{path}: cannot open ({error.strerror or error})") from error
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        os.close(fd)
        raise DataError(f"{path} is {_mode_kind(status.st_mode)}: expected {expected}")
    if status.st_size > max_stored:
        os.close(fd)
        raise DataError(
            f"{path} holds {status.st_size} bytes: expected {expected} "
            f"(at most {max_stored} bytes gzipped or not)"
        )
    return os.fdopen(fd, "rb")


def read_idx_file(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The uncompressed IDX content of the regular file ``path`` (gzipped or not), at
    most ``max_bytes`` of it; :class:`~digitlab.data.idx.IdxError` for anything else."""
    limit = max_bytes + max_bytes // 1024 + 65536
    try:
        stream = open_regular(Path(path), "a regular IDX file", limit)
    except DataError as error:
        raise IdxError(str(error)) from None
    with stream:
        return load_bytes(stream, name=str(path), max_bytes=max_bytes)


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
    found = {
        key: existing_files(folder, file.name, regular_only=False) for key, file in files.items()
    }
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

    Only a regular file (or a link to one) of at most :func:`largest_stored` bytes is
    read, and never more than ``file.size`` bytes uncompressed.  With ``key``, a
    mismatch that is another known dataset's file says so."""
    stream = open_regular(Path(path), f"the regular file {file.name}", largest_stored(file))
    try:
        with stream:
            data = load_bytes(stream, name=str(path), max_bytes=file.size)
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
