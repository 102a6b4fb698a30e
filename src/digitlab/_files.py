"""Atomic files and folders, and the one-line error text: one helper each.

Everything digitlab writes goes first to a hidden temporary sibling
(``.NAME.<random>.tmp.SUFFIX``) that is renamed over the target only once it is
complete, so an interrupted write never leaves a partial file under a final
name.  Temporaries get the permissions a plain ``open()`` or ``mkdir()`` would
(the umask applies), not ``tempfile``'s private 0600 / 0700.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"
#: A temporary folder or file left by a process that is gone (killed while
#: saving) is removed at the next save beside it once this old, or at once
#: when the folder records an owner process that no longer exists.
STALE_SECONDS = 15 * 60
#: In each temporary folder while it is written: the writer's process id.
OWNER_FILE = ".digitlab-owner"
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{12}" + re.escape(TEMP_SUFFIX) + r"(\.[^.]*)?$")


def one_line(error: object, *, limit: int = 300) -> str:
    """The text of an exception (or anything) on one line: whitespace folded,
    at most ``limit`` characters, the exception's type name when it says nothing."""
    text = " ".join(str(error).split())
    if not text:
        return type(error).__name__ if isinstance(error, BaseException) else "no details"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _temp_name(target: Path) -> Path:
    # The target's own suffix last, so that writers which go by it (matplotlib's
    # savefig) see ".png".
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}{target.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; on success it replaces ``path``.

    The caller writes the temporary file (by name: ``fig.savefig(tmp)``); on
    any exception it is removed and ``path`` is untouched.  The parent folder
    is created if needed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = _temp_name(target)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 48 random bits
        raise FileExistsError(f"{target}: could not create a temporary file beside it")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; return the path."""
    return write_bytes(path, text.encode("utf-8"))


def write_with(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary_path)``, then rename the result onto ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary folder beside ``path``; on success it becomes ``path``.

    ``path`` must not exist, or be an empty folder (it is replaced).  On any
    exception the temporary folder and everything in it are removed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target.parent)
    for _ in range(100):
        tmp = _temp_name(target)
        try:
            tmp.mkdir()
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover
        raise FileExistsError(f"{target}: could not create a temporary folder beside it")
    owner = tmp / OWNER_FILE
    try:
        owner.write_text(f"{os.getpid()}\n", encoding="ascii")
        yield tmp
        owner.unlink(missing_ok=True)
        if target.is_symlink():
            raise NotADirectoryError(
                f"{target}: expected a new or empty folder. It is a symbolic link"
            )
        if target.is_dir():
            target.rmdir()  # only an empty folder can be replaced
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_new_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, only if ``path`` does not exist.

    Raises :class:`FileExistsError` (and leaves the existing file untouched)
    when it does: the file appears complete or not at all, never over another.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target)
    try:
        with open(tmp, "xb") as file:
            file.write(data)
        try:
            os.link(tmp, target)  # fails if target exists: never replaces a file
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: exclusive create
            with open(target, "xb") as file:
                file.write(data)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _owner_gone(folder: Path) -> bool:
    try:
        pid = int((folder / OWNER_FILE).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def clean_stale(parent: str | os.PathLike, *, max_age: float = STALE_SECONDS) -> list[Path]:
    """Remove the temporaries (``.NAME.<hex>.tmp[.SUFFIX]``) that interrupted
    writers left in ``parent``: folders whose owner process is gone, and any
    older than ``max_age`` seconds.  Returns what was removed; never follows
    a symbolic link, never touches a name digitlab would not have made."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not _TEMP_NAME.match(entry.name) or entry.is_symlink():
            continue
        path = Path(entry.path)
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
            if entry.is_dir(follow_symlinks=False):
                if _owner_gone(path) or age > max_age:
                    shutil.rmtree(path)
                    removed.append(path)
            elif age > max_age:
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    return removed
