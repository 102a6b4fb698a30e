"""Downloading a dataset's ``.gz`` files from its mirrors, each attempt bounded.

Every file's size is pinned, so a mirror can never make digitlab write or wait
for more than that file needs:

* a ``Content-Length`` other than the pinned ``.gz`` size is refused at once,
  and reading stops one byte past the pinned size (an endless body fails fast);
* each file has an overall deadline (``deadline`` seconds, by default
  :data:`DEFAULT_DEADLINE` or more for a large file, see :func:`deadline_for`),
  on top of ``timeout`` for any single wait, so a mirror that trickles a byte
  at a time is dropped too;
* the bytes go to a hidden temporary beside the final name
  (``.NAME.gz.<random>.tmp.gz``, :func:`digitlab._files.atomic_path`) and are
  renamed into place only once the SHA-256 of the ``.gz`` *and* of its
  uncompressed content (:func:`digitlab.data.folders.verify_file`) match.

A mirror that fails in any way is reported in one line and the next is tried.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3

from digitlab._files import atomic_path, one_line
from digitlab.data.folders import Verified, verify_file
from digitlab.data.registry import MnistFile
from digitlab.errors import ConfigError, DataError

_log = logging.getLogger(__name__)

#: The least time a file's download is given, in seconds.
DEFAULT_DEADLINE = 120.0
#: Bytes per second a mirror must sustain: a large file's default deadline is its size at this rate.
MIN_RATE = 64 * 1024
_CHUNK = 256 * 1024
_MAX_REDIRECTS = 5


class MirrorFailure(Exception):
    """Why one download from one mirror failed, in a few words."""


@contextlib.contextmanager
def pooch_logging(enabled: bool):
    """Kept for callers of earlier versions: downloads no longer go through pooch."""
    yield


def why(error: Exception) -> str:
    """An exception on one line: our own errors as they are, others with their type."""
    if isinstance(error, DataError):  # already one line that names the file
        return one_line(error, limit=600)
    return f"{type(error).__name__}: {one_line(error, limit=200)}"


def deadline_for(file: MnistFile, deadline: float | None) -> float:
    """Seconds one attempt at ``file`` may take: ``deadline`` if given, else
    :data:`DEFAULT_DEADLINE` or the ``.gz`` size at :data:`MIN_RATE`, whichever is longer."""
    if deadline is not None:
        return float(deadline)
    return max(DEFAULT_DEADLINE, file.gz_size / MIN_RATE)


def check_seconds(value, what: str) -> float:
    """``value`` as a positive, finite number of seconds; :class:`ConfigError` otherwise."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{what}: expected a positive number of seconds. Received: {value!r}")
    return seconds


def parse_mirrors(text: str, what: str, dataset: str) -> tuple[str, ...]:
    """Base URLs from ``text`` (separated by spaces or commas), ``{dataset}`` replaced
    by the dataset's name; :class:`ConfigError` naming ``what`` for anything not http(s)."""
    mirrors = []
    for item in text.replace(",", " ").split():
        url = item.replace("{dataset}", dataset)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"{what}: expected base URLs (http:// or https://) separated by spaces or "
                f"commas. Received: {item!r}"
            )
        mirrors.append(url if url.endswith("/") else url + "/")
    return tuple(mirrors)


def _limit_wait(response: requests.Response, seconds: float) -> None:
    """Make the next socket read wait at most ``seconds`` (best effort)."""
    raw = response.raw
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is None:  # the connection let go of it (HTTP/1.0): the body's reader has it
        reader = getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None)
        sock = getattr(reader, "_sock", None)
    if hasattr(sock, "settimeout"):
        with contextlib.suppress(OSError):
            sock.settimeout(max(seconds, 0.01))


def _read_some(response: requests.Response, amount: int) -> bytes:
    raw = response.raw
    read1 = getattr(raw, "read1", None)  # one socket read at most (urllib3 2)
    if read1 is not None:
        return read1(amount, decode_content=False)
    return raw.read(min(amount, 8192), decode_content=False)


def _progress_bar(enabled: bool, total: int, name: str):
    if not enabled:
        return contextlib.nullcontext(None)
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return contextlib.nullcontext(None)
    return tqdm(total=total, unit="B", unit_scale=True, desc=name, leave=False)


def download(
    session: requests.Session,
    url: str,
    target: Path,
    file: MnistFile,
    source: str,
    *,
    timeout: float,
    deadline: float,
    progress: bool,
) -> Verified:
    """Fetch ``url`` (``file``'s ``.gz``) into ``target``, verified, within ``deadline``
    seconds; :class:`MirrorFailure` with a few words on why not. Nothing is left
    under ``target``'s name unless it is verified."""
    end = time.monotonic() + deadline

    waits = [timeout]

    def wait() -> float:  # the longest the next read may take
        left = end - time.monotonic()
        if left <= 0:
            raise _Late()
        waits.append(min(timeout, left))
        return waits[-1]

    expected = file.gz_size
    got = 0
    try:
        first = wait()
        with session.get(
            url,
            stream=True,
            timeout=(first, first),
            headers={"Accept-Encoding": "identity"},
        ) as response:
            if response.status_code != 200:
                raise MirrorFailure(f"HTTP {response.status_code}")
            declared = response.headers.get("Content-Length")
            if declared is not None:
                try:
                    length = int(declared)
                except ValueError:
                    raise MirrorFailure(f"unreadable Content-Length {declared[:40]!r}") from None
                if length != expected:
                    raise MirrorFailure(
                        f"Content-Length {length} for {file.name}.gz, expected {expected} bytes"
                    )
            digest = hashlib.sha256()
            with atomic_path(target) as tmp:
                with open(tmp, "wb") as out, _progress_bar(progress, expected, file.name) as bar:
                    while True:
                        _limit_wait(response, wait())
                        chunk = _read_some(response, min(_CHUNK, expected + 1 - got))
                        if not chunk:
                            break
                        got += len(chunk)
                        if got > expected:
                            raise MirrorFailure(
                                f"sent more than the {expected} bytes of {file.name}.gz"
                            )
                        out.write(chunk)
                        digest.update(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                if got < expected:
                    raise MirrorFailure(f"download cut short: {got} of {expected} bytes")
                if digest.hexdigest() != file.gz_sha256:
                    raise MirrorFailure(
                        f"wrong bytes: SHA-256 of the .gz does not match: expected "
                        f"{file.gz_sha256}, found {digest.hexdigest()}"
                    )
                try:
                    verified = verify_file(tmp, file, source)
                except DataError as error:
                    raise MirrorFailure(why(error).replace(str(tmp), f"{file.name}.gz")) from None
    except _Late:
        raise MirrorFailure(
            f"{file.name}.gz not complete within its {deadline:g} s deadline "
            f"({got} of {expected} bytes)"
        ) from None
    except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError):
        if waits[-1] < timeout or time.monotonic() >= end:  # the deadline cut the wait short
            raise MirrorFailure(
                f"{file.name}.gz not complete within its {deadline:g} s deadline "
                f"({got} of {expected} bytes)"
            ) from None
        raise MirrorFailure(f"no answer within {timeout:g} s") from None
    except (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError):
        raise MirrorFailure(f"download cut short: {got} of {expected} bytes") from None
    except requests.TooManyRedirects:
        raise MirrorFailure(f"more than {_MAX_REDIRECTS} redirects") from None
    except requests.ConnectionError:
        raise MirrorFailure("could not connect") from None
    except requests.RequestException as error:
        raise MirrorFailure(why(error)) from None
    except OSError as error:  # writing the cache
        raise MirrorFailure(f"cannot write {target}: {one_line(error, limit=200)}") from None
    return Verified(verified.data, target, verified.digest, source)


class _Late(Exception):
    """The attempt's deadline has passed."""


def from_mirrors(
    missing, files, cache, mirrors, *, timeout, progress, failures, deadline=None
) -> dict:
    """Download the ``missing`` keys, trying each mirror in turn; a mirror that
    fails once is not asked again. Failures are appended to ``failures``."""
    verified = {}
    with requests.Session() as session:
        session.max_redirects = _MAX_REDIRECTS
        for mirror in mirrors:
            base = mirror if mirror.endswith("/") else mirror + "/"
            try:
                for key in [key for key in missing if key not in verified]:
                    file = files[key]
                    verified[key] = download(
                        session,
                        base + file.name + ".gz",
                        Path(cache) / (file.name + ".gz"),
                        file,
                        f"mirror {base}",
                        timeout=timeout,
                        deadline=deadline_for(file, deadline),
                        progress=progress,
                    )
            except MirrorFailure as error:  # move on to the next mirror
                failures.append(f"mirror {base} ({one_line(error, limit=400)})")
                # Shown next to the progress bars, so the user knows why another download starts.
                _log.log(
                    logging.WARNING if progress else logging.INFO,
                    "%s; trying the next source",
                    failures[-1],
                )
                continue
            if len(verified) == len(missing):
                break
    return verified
