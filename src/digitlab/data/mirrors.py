"""Downloading a dataset's ``.gz`` files from its public mirrors, through pooch.

Each file is checked twice: pooch checks the SHA-256 of the ``.gz`` before it
gives the file its final name in the cache, then
:func:`digitlab.data.folders.verify_file` checks the uncompressed bytes.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import pooch
import requests

from digitlab._files import one_line
from digitlab.data.folders import verify_file
from digitlab.errors import DataError

_log = logging.getLogger(__name__)


@contextlib.contextmanager
def pooch_logging(enabled: bool):
    logger = pooch.get_logger()
    level = logger.level
    if not enabled:
        logger.setLevel("WARNING")
    try:
        yield
    finally:
        logger.setLevel(level)


def why(error: Exception) -> str:
    """An exception on one line: our own errors as they are, others with their type."""
    if isinstance(error, DataError):  # already one line that names the file
        return one_line(error, limit=600)
    return f"{type(error).__name__}: {one_line(error, limit=200)}"


def _describe(error: Exception, timeout: float) -> str:
    """A few words on why a download failed."""
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code}"
    if isinstance(error, requests.Timeout) or "timed out" in str(error).lower():
        return f"no answer within {timeout:g} s"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "download cut short"
    if isinstance(error, requests.ConnectionError):
        return "could not connect"
    if isinstance(error, ValueError) and "hash" in str(error).lower():
        return "wrong bytes: SHA-256 of the .gz does not match"
    return why(error)


def from_mirrors(missing, files, cache, mirrors, *, timeout, progress, failures) -> dict:
    """Download the ``missing`` keys, trying each mirror in turn; a mirror that
    fails once is not asked again. Failures are appended to ``failures``."""
    verified = {}
    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=timeout)
    for mirror in mirrors:
        base = mirror if mirror.endswith("/") else mirror + "/"
        try:
            for key in [key for key in missing if key not in verified]:
                file = files[key]
                # pooch streams into a temporary file in `cache` and moves it to
                # its final name only once the .gz hash matches.
                path = pooch.retrieve(
                    base + file.name + ".gz",
                    known_hash=f"sha256:{file.gz_sha256}",
                    fname=file.name + ".gz",
                    path=cache,
                    downloader=downloader,
                    progressbar=progress,
                )
                try:
                    verified[key] = verify_file(Path(path), file, f"mirror {base}")
                except DataError:
                    Path(path).unlink(missing_ok=True)
                    raise
        except Exception as error:  # any failure at all: move on to the next mirror
            failures.append(f"mirror {base} ({_describe(error, timeout)})")
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
