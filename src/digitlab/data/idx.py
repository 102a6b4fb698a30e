"""Read and write IDX files, the format MNIST is distributed in.

An IDX file is a 4-byte magic number (two zero bytes, a type-code byte, a byte
holding the number of dimensions), one big-endian uint32 per dimension, then the
data, big-endian and row-major. Files are usually gzip-compressed; whether a
source is compressed is decided from its content (gzip magic ``1f 8b``), never
from its name.

Every problem with the input raises :class:`IdxError` with a one-line message
naming the file, what was expected and what was found. Reading never trusts the
header to size an allocation: declared sizes are checked against the bytes
actually present, the ``max_bytes`` cap and, for gzip, the largest size the
compressed stream could possibly expand to, before anything big is allocated.

Decisions this module makes:

* 1 to 16 dimensions. Zero-dimensional IDX files (a lone scalar) are refused on
  read and write: real IDX files always have at least one dimension, and a
  0-dimensional header is far more likely to be corruption. Reshape a scalar to
  ``(1,)`` to store it. More than 16 dimensions is refused as absurd.
* Dimensions of size 0 are allowed (an empty data set round-trips).
* Integer arrays of a dtype IDX lacks (int64, uint16, uint32, uint64, ...) are
  written as int32 when every value fits, and refused otherwise; they read back
  as int32. Booleans, float16, complex, strings, objects and datetimes are
  refused.
* Non-finite floats (NaN, +/-inf) are refused by default on read and on write.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import stat
import struct
import zlib
from typing import BinaryIO

import numpy as np

from digitlab._files import atomic_path
from digitlab.errors import DataError

__all__ = ["IdxError", "load_bytes", "parse_idx", "read_idx", "write_idx"]


class IdxError(DataError):
    """An IDX file (or the bytes given as one) is missing, malformed or unsupported."""


MAX_DIMENSIONS = 16
DEFAULT_MAX_BYTES = 2**33

# Type code -> dtype as stored in the file (big-endian for multi-byte types).
_FILE_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TYPE_CODES: dict[np.dtype, int] = {
    dtype.newbyteorder("="): code for code, dtype in _FILE_DTYPES.items()
}
_KNOWN_TYPES = ", ".join(
    f"0x{code:02X} ({dtype.newbyteorder('=').name})" for code, dtype in _FILE_DTYPES.items()
)

_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # tells zlib to expect (and check) a gzip wrapper
# Deflate cannot expand input by more than about 1032:1; a gzip stream of n bytes
# therefore never holds more than this many times n bytes of content.
_DEFLATE_MAX_RATIO = 1033
_COMPRESSED_CHUNK = 1 << 20  # compressed bytes fed to zlib per call
_RAW_CHUNK = 1 << 24  # raw bytes read per call when the source size is unknown
_INTP_MAX = np.iinfo(np.intp).max
_SNIFF_BYTES = 64  # extra bytes read to describe content that is not IDX

# First bytes of formats people mistake for (or save under the name of) IDX files.
_OTHER_FORMATS = (
    (b"BZh", "bzip2-compressed"),
    (b"\xfd7zXZ\x00", "xz-compressed"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
    (b"\x89PNG", "a PNG image"),
    (b"\x93NUMPY", "a NumPy .npy file"),
)


def _hex(data: bytes) -> str:
    return data.hex(" ") if data else "nothing"


def _describe_bad_magic(start: bytes, *, decompressed: bool) -> str:
    """Return a hint about what a file with non-IDX first bytes probably is."""
    if start.startswith(_GZIP_MAGIC):
        if decompressed:
            return " (looks gzip-compressed twice; decompress it once more)"
        return " (looks gzip-compressed; read it with read_idx() or load_bytes())"
    stripped = start.removeprefix(b"\xef\xbb\xbf").lstrip()
    if stripped.startswith(b"<"):
        return " (looks like an HTML page, not an IDX file; was it a failed download?)"
    for magic, description in _OTHER_FORMATS:
        if start.startswith(magic):
            return f" (looks {description}; only raw or gzip-compressed IDX is supported)"
    if len(start) >= 4 and start[2:4] == b"\0\0" and start[1] in _FILE_DTYPES:
        return " (looks like a byte-swapped, little-endian header)"
    return ""


def _header_length(start: bytes, name: str, *, decompressed: bool = False) -> int:
    """Check the 4-byte magic at the start of IDX content and return the header length."""
    if len(start) < 4:
        found = "an empty file" if not start else f"only {len(start)} byte(s): {_hex(start)}"
        raise IdxError(f"{name}: expected an IDX file of at least 4 header bytes, found {found}")
    if start[0:2] != b"\0\0":
        hint = _describe_bad_magic(start, decompressed=decompressed)
        raise IdxError(
            f"{name}: expected IDX magic bytes 00 00 at offset 0, found {_hex(start[:4])}{hint}"
        )
    type_code, ndim = start[2], start[3]
    if type_code not in _FILE_DTYPES:
        raise IdxError(
            f"{name}: unknown IDX type code 0x{type_code:02X} at offset 2; "
            f"expected one of {_KNOWN_TYPES}"
        )
    if not 1 <= ndim <= MAX_DIMENSIONS:
        raise IdxError(
            f"{name}: expected 1 to {MAX_DIMENSIONS} dimensions at offset 3, found {ndim}"
        )
    return 4 + 4 * ndim


class _Header:
    """The parsed header: file dtype, shape, and sizes in bytes (Python ints, never overflow)."""

    def __init__(self, header: bytes, name: str) -> None:
        self.length = len(header)
        self.file_dtype = _FILE_DTYPES[header[2]]
        self.shape = struct.unpack(f">{header[3]}I", header[4:])
        self.payload_bytes = math.prod(self.shape) * self.file_dtype.itemsize
        self.total_bytes = self.length + self.payload_bytes
        # NumPy refuses shapes whose nonzero dimensions multiply past intp even when one
        # dimension is 0, so check that here rather than let its ValueError escape.
        nonzero_bytes = math.prod(d for d in self.shape if d) * self.file_dtype.itemsize
        if nonzero_bytes > _INTP_MAX:
            raise IdxError(
                f"{name}: header declares shape {self.shape}, "
                f"too large for any array (expected at most {_INTP_MAX} bytes)"
            )

    def describe(self) -> str:
        dtype = self.file_dtype.newbyteorder("=").name
        return f"shape {self.shape} of {dtype} ({self.payload_bytes} bytes of data)"


def _read_header(start: bytes, name: str, *, decompressed: bool = False) -> _Header:
    length = _header_length(start, name, decompressed=decompressed)
    if len(start) < length:
        raise IdxError(
            f"{name}: expected a {length}-byte header for {start[3]} dimensions, "
            f"found only {len(start)} bytes"
        )
    return _Header(bytes(start[:length]), name)


def _check_declared_size(header: _Header, name: str, max_bytes: int) -> None:
    if header.total_bytes > max_bytes:
        raise IdxError(
            f"{name}: header declares {header.describe()}, more than "
            f"max_bytes={max_bytes}; raise max_bytes if the file is genuine"
        )


# --------------------------------------------------------------------------- reading


def _source_name(source: object, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, str | os.PathLike):
        return os.fsdecode(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return "<bytes>"
    stream_name = getattr(source, "name", None)
    return stream_name if isinstance(stream_name, str) else "<stream>"


def _stream_size(stream: BinaryIO) -> int | None:
    """Bytes left in `stream` if it is an in-memory buffer or a regular file, else None.

    Only those two kinds are trusted: asking others (pipes, sockets, a caller's
    gzip.open() stream) would be impossible, or could decompress everything.
    """
    try:
        if type(stream) is io.BytesIO:
            return stream.getbuffer().nbytes - stream.tell()
        if type(stream) in (io.BufferedReader, io.FileIO):
            status = os.fstat(stream.fileno())
            if stat.S_ISREG(status.st_mode):
                return max(status.st_size - stream.tell(), 0)
    except (OSError, ValueError):
        pass
    return None


class _Reader:
    """Reads a binary stream, turning OSError and text-mode streams into IdxError."""

    def __init__(self, stream: BinaryIO, name: str) -> None:
        self._stream = stream
        self._name = name

    def read(self, size: int) -> bytes:
        try:
            data = self._stream.read(size)
        except (OSError, EOFError, zlib.error) as error:
            # OSError covers disk errors and gzip.BadGzipFile from a caller's gzip.open()
            # stream; EOFError and zlib.error are that stream being truncated or corrupt.
            reason = getattr(error, "strerror", None) or error
            raise IdxError(f"{self._name}: cannot read ({reason})") from error
        if data is None:  # a non-blocking stream with nothing available yet
            raise IdxError(f"{self._name}: expected a blocking binary stream, got no data")
        if not isinstance(data, bytes | bytearray):
            raise IdxError(
                f"{self._name}: expected a binary stream (open it with 'rb'), "
                f"found one returning {type(data).__name__}"
            )
        return bytes(data)

    def seek_back(self, count: int) -> None:
        """Move a seekable stream `count` bytes back (to re-read what was sniffed)."""
        try:
            self._stream.seek(-count, os.SEEK_CUR)
        except OSError as error:
            raise IdxError(f"{self._name}: cannot read ({error.strerror or error})") from error

    def read_up_to(self, size: int, *, chunk: int) -> list[bytes]:
        """Return pieces totalling `size` bytes, fewer only if the stream ends first."""
        pieces: list[bytes] = []
        remaining = size
        while remaining > 0:
            piece = self.read(min(remaining, chunk))
            if not piece:
                break
            pieces.append(piece)
            remaining -= len(piece)
        return pieces


class _GzipStream:
    """Decompresses gzip content on demand, never producing more than asked for.

    Handles multi-member gzip files (members are concatenated, as gzip allows),
    checks every CRC and length trailer, and reports truncation, corruption and
    trailing non-gzip bytes as IdxError.
    """

    def __init__(self, reader: _Reader, name: str, *, already_read: bytes) -> None:
        self._reader = reader
        self._name = name
        self._decompressor = zlib.decompressobj(_GZIP_WBITS)
        self._pending = already_read  # compressed bytes read but not yet given to zlib
        self._input_ended = False

    def _next_input(self) -> bytes:
        if self._decompressor.unconsumed_tail:
            return self._decompressor.unconsumed_tail
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        if self._input_ended:
            return b""
        data = self._reader.read(_COMPRESSED_CHUNK)
        self._input_ended = not data
        return data

    def _decompress(self, data: bytes, limit: int) -> bytes:
        try:
            return self._decompressor.decompress(data, limit)
        except zlib.error as error:
            raise IdxError(f"{self._name}: corrupt gzip data ({error})") from error

    def _start_next_member(self) -> bool:
        """After a member ends: start the next one, return False at a clean end of input."""
        rest = self._decompressor.unused_data + self._pending
        while len(rest) < len(_GZIP_MAGIC) and not self._input_ended:
            more = self._reader.read(_COMPRESSED_CHUNK)
            self._input_ended = not more
            rest += more
        if not rest:
            return False
        if not rest.startswith(_GZIP_MAGIC):
            raise IdxError(
                f"{self._name}: expected the file to end after the gzip stream, "
                f"found trailing bytes {_hex(rest[:8])}"
            )
        self._decompressor = zlib.decompressobj(_GZIP_WBITS)
        self._pending = rest
        return True

    def read(self, size: int) -> list[bytes]:
        """Return decompressed pieces totalling `size` bytes, fewer only at the end of the data."""
        pieces: list[bytes] = []
        produced = 0
        while produced < size:
            if self._decompressor.eof:
                if not self._start_next_member():
                    break
                continue
            data = self._next_input()
            piece = self._decompress(data, size - produced)
            if piece:
                pieces.append(piece)
                produced += len(piece)
            elif not data and not self._decompressor.eof:
                raise IdxError(
                    f"{self._name}: gzip stream is truncated "
                    f"(expected more compressed data, found end of file)"
                )
        return pieces


def _open_source(source: object, name: str) -> tuple[BinaryIO, bool]:
    """Return (binary stream, whether we opened it and must close it)."""
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(source), True
    if isinstance(source, str | os.PathLike):
        try:
            return open(source, "rb"), True  # closed by load_bytes
        except FileNotFoundError as error:
            raise IdxError(f"{name}: expected an IDX file, found no such file") from error
        except IsADirectoryError as error:
            raise IdxError(f"{name}: expected an IDX file, found a directory") from error
        except OSError as error:
            raise IdxError(f"{name}: cannot open ({error.strerror or error})") from error
    if callable(getattr(source, "read", None)):
        return source, False  # type: ignore[return-value]
    raise TypeError(
        "expected a path, bytes-like object or binary file object, "
        f"received {type(source).__name__}"
    )


def _load_raw(reader: _Reader, start: bytes, name: str, max_bytes: int, size: int | None) -> bytes:
    """Read raw (uncompressed) IDX content whose first bytes `start` are already read.

    `size` is the byte count from the start of the content to the end of the
    stream when the stream is seekable, else None.
    """
    if start[:2] != b"\0\0":  # not IDX: read a little more so the error can say what it is
        start += b"".join(reader.read_up_to(_SNIFF_BYTES, chunk=_SNIFF_BYTES))
    length = _header_length(start, name)
    header_bytes = b"".join([start, *reader.read_up_to(length - len(start), chunk=length)])
    header = _read_header(header_bytes, name)
    if size is not None and size != header.total_bytes:
        relation = "only " if size < header.total_bytes else ""
        raise IdxError(
            f"{name}: header declares {header.describe()}, so expected "
            f"{header.total_bytes} bytes in all, found {relation}{size}"
        )
    _check_declared_size(header, name, max_bytes)
    if size is not None:
        # Size known and checked: go back and read everything in one call, no joining copy.
        reader.seek_back(len(header_bytes))
        content = reader.read(header.total_bytes)
        if len(content) == header.total_bytes and not reader.read(1):
            return content
        raise IdxError(f"{name}: the file changed size while being read")
    # Unknown size: read in bounded chunks, so a lying header never makes us
    # allocate more than the stream really holds.
    payload = reader.read_up_to(header.payload_bytes, chunk=_RAW_CHUNK)
    found = sum(map(len, payload))
    if found < header.payload_bytes:
        raise IdxError(
            f"{name}: header declares {header.describe()}, found only {found} bytes of data"
        )
    if reader.read(1):
        raise IdxError(f"{name}: header declares {header.describe()}, found more data after it")
    return b"".join([header_bytes, *payload])


def _load_gzip(reader: _Reader, start: bytes, name: str, max_bytes: int, size: int | None) -> bytes:
    """Decompress gzip IDX content whose first compressed bytes `start` are already read."""
    gzip_stream = _GzipStream(reader, name, already_read=start)
    first = b"".join(gzip_stream.read(4))
    if first[:2] != b"\0\0":  # not IDX: decompress a little more so the error can say what it is
        first += b"".join(gzip_stream.read(_SNIFF_BYTES))
    length = _header_length(first, name, decompressed=True)
    header_bytes = first + b"".join(gzip_stream.read(length - len(first)))
    header = _read_header(header_bytes, name, decompressed=True)
    _check_declared_size(header, name, max_bytes)
    if size is not None and header.total_bytes > size * _DEFLATE_MAX_RATIO:
        raise IdxError(
            f"{name}: header declares {header.describe()}, but a {size}-byte gzip stream "
            f"can hold at most {size * _DEFLATE_MAX_RATIO} bytes"
        )
    payload = gzip_stream.read(header.payload_bytes)
    found = sum(map(len, payload))
    if found < header.payload_bytes:
        raise IdxError(
            f"{name}: header declares {header.describe()}, "
            f"found only {found} bytes of data after decompressing"
        )
    # Ask for one byte more: this verifies the CRC trailer and catches extra data,
    # without ever inflating more than one byte beyond the declared size.
    if gzip_stream.read(1):
        raise IdxError(
            f"{name}: header declares {header.describe()}, found more decompressed data than that"
        )
    return b"".join([header_bytes, *payload])


def load_bytes(source, *, name: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Return the uncompressed IDX content of `source` as bytes (header included).

    Args:
        source: a path (str or os.PathLike), a bytes-like object, or a binary file
            object opened for reading (it is read from its current position and not closed).
        name: how to refer to the source in error messages; defaults to the path,
            the file object's name, or ``'<bytes>'``.
        max_bytes: the largest uncompressed size accepted, header included.

    gzip-compressed content is recognised by its first two bytes (``1f 8b``), never
    by a file name, and decompressed incrementally: the header is read first, and no
    more than the declared size plus one byte is ever inflated, so gzip bombs fail fast.
    Multi-member gzip files are accepted.

    Raises:
        IdxError: the source is missing, unreadable, not IDX, truncated, corrupt, longer
            than its header declares, compressed twice, or larger than `max_bytes`.
        TypeError: `source` is none of the accepted kinds.
    """
    if max_bytes < 4:
        raise ValueError(f"expected max_bytes of at least 4. Received: max_bytes={max_bytes}")
    label = _source_name(source, name)
    stream, owned = _open_source(source, label)
    try:
        size = _stream_size(stream)
        reader = _Reader(stream, label)
        start = b"".join(reader.read_up_to(4, chunk=4))
        if start.startswith(_GZIP_MAGIC):
            return _load_gzip(reader, start, label, max_bytes, size)
        return _load_raw(reader, start, label, max_bytes, size)
    finally:
        if owned:
            stream.close()


# --------------------------------------------------------------------------- parsing


def _check_finite(array: np.ndarray, name: str) -> None:
    """Raise IdxError if a float array holds NaN or infinity."""
    if array.dtype.kind != "f" or array.size == 0:
        return
    # min and max propagate NaN and expose +/-inf without a full-size temporary array.
    if np.isfinite(array.min()) and np.isfinite(array.max()):
        return
    bad = ~np.isfinite(array)
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    raise IdxError(
        f"{name}: expected finite {array.dtype.name} values, found "
        f"{int(np.count_nonzero(bad))} NaN or infinite value(s), the first at index {first} "
        f"(pass allow_nonfinite=True to accept them)"
    )


def parse_idx(buffer, *, name: str = "<bytes>", allow_nonfinite: bool = False) -> np.ndarray:
    """Parse uncompressed IDX content into a NumPy array.

    Args:
        buffer: the whole IDX content (header and data), any bytes-like object.
        name: how to refer to the content in error messages.
        allow_nonfinite: accept NaN and infinity in float32/float64 data.

    Returns:
        An array of the declared shape (1 to 16 dimensions) and native-endian dtype:
        uint8, int8, int16, int32, float32 or float64; values are whatever the file
        holds. uint8 and int8 arrays are zero-copy views of `buffer`, so they are
        READ-ONLY when `buffer` is immutable (bytes) and share memory with it
        otherwise; call ``.copy()`` before modifying. Other dtypes are byte-swapped
        (on little-endian machines) into a new, writable array.

    Raises:
        IdxError: bad magic, unknown type code, unsupported number of dimensions, data
            shorter or longer than declared, or non-finite floats (unless allowed).
    """
    try:
        view = memoryview(buffer)
    except TypeError:
        raise TypeError(
            f"parse_idx expects a bytes-like object, received {type(buffer).__name__}"
        ) from None
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    header = _read_header(view[: 4 + 4 * MAX_DIMENSIONS].tobytes(), name)
    found = len(view) - header.length
    if found != header.payload_bytes:
        extra = found - header.payload_bytes
        found_text = f"only {found}" if extra < 0 else f"{found} ({extra} too many)"
        raise IdxError(
            f"{name}: header declares {header.describe()}, found {found_text} bytes of data"
        )
    count = header.payload_bytes // header.file_dtype.itemsize
    array = np.frombuffer(view, dtype=header.file_dtype, count=count, offset=header.length)
    array = array.reshape(header.shape)
    # One vectorised byte swap for multi-byte types; a no-op view on big-endian machines.
    array = array.astype(header.file_dtype.newbyteorder("="), copy=False)
    if not allow_nonfinite:
        _check_finite(array, name)
    return array


def read_idx(
    source,
    *,
    name: str | None = None,
    allow_nonfinite: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed, decided by content) into an array.

    `source` is a path, bytes-like object or binary file object; see :func:`load_bytes`
    for `name` and `max_bytes` and :func:`parse_idx` for the result (shape, dtype,
    read-only-ness) and `allow_nonfinite`. For MNIST: images are (n, 28, 28) uint8 in
    0..255, labels are (n,) uint8 in 0..9.

    Raises:
        IdxError: anything wrong with the source or its content.
    """
    label = _source_name(source, name)
    content = load_bytes(source, name=label, max_bytes=max_bytes)
    return parse_idx(content, name=label, allow_nonfinite=allow_nonfinite)


# --------------------------------------------------------------------------- writing


def _storable(array: np.ndarray, path: str) -> np.ndarray:
    """Return `array` in a dtype IDX can store, or raise IdxError explaining why it cannot."""
    dtype = array.dtype
    native = dtype.newbyteorder("=") if dtype.byteorder not in "|=" else dtype
    if dtype.kind in "iu" and native not in _TYPE_CODES:
        # IDX has no 64-bit or unsigned multi-byte integers; int32 holds the common case.
        limits = np.iinfo(np.int32)
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        if low < limits.min or high > limits.max:
            raise IdxError(
                f"{path}: cannot store {dtype.name} values in IDX as int32: expected values "
                f"in {limits.min}..{limits.max}, found {low}..{high}"
            )
        return array.astype(np.int32)
    if native not in _TYPE_CODES:
        hint = {
            "b": "; convert with array.astype(np.uint8)",
            "f": "; convert with array.astype(np.float32)",
        }.get(dtype.kind, "")
        raise IdxError(
            f"{path}: cannot write dtype {dtype} as IDX; expected uint8, int8, int16, int32, "
            f"float32 or float64 (other integer types are converted to int32 when they fit)"
            f"{hint}"
        )
    return array


def _idx_header(array: np.ndarray, path: str) -> bytes:
    if not 1 <= array.ndim <= MAX_DIMENSIONS:
        hint = "; reshape a scalar to (1,)" if array.ndim == 0 else ""
        raise IdxError(
            f"{path}: expected an array with 1 to {MAX_DIMENSIONS} dimensions, "
            f"found {array.ndim}{hint}"
        )
    if max(array.shape) > 0xFFFFFFFF:
        raise IdxError(
            f"{path}: expected every dimension to fit in an unsigned 32-bit integer, "
            f"found shape {array.shape}"
        )
    code = _TYPE_CODES[array.dtype.newbyteorder("=")]
    return struct.pack(f">BBBB{array.ndim}I", 0, 0, code, array.ndim, *array.shape)


def write_idx(
    path,
    array,
    *,
    compress: bool | None = None,
    allow_nonfinite: bool = False,
) -> None:
    """Write `array` to `path` as an IDX file, atomically.

    Args:
        path: destination file path; its folder must exist.
        array: array-like with 1 to 16 dimensions (each at most 2**32 - 1) of dtype
            uint8, int8, int16, int32, float32 or float64, any byte order or memory
            layout. Other integer dtypes (int64, uint16, uint32, uint64, ...) are stored
            as int32 when every value fits, so they read back as int32.
        compress: gzip the file (deterministically: no timestamp) if True; if None,
            compress exactly when the path ends with ``.gz``.
        allow_nonfinite: allow NaN/infinity in float data (refused by default, because
            read_idx refuses them by default too).

    The content goes to a temporary file in the same folder, which replaces `path`
    only once fully written and flushed; on any error nothing is left behind and an
    existing file at `path` is untouched.

    Raises:
        IdxError: unsupported dtype or shape, non-finite floats, or the file cannot
            be written (missing folder, permission, disk full).
    """
    target = os.fsdecode(os.fspath(path))
    label = target
    array = _storable(np.asarray(array), label)
    header = _idx_header(array, label)
    if not allow_nonfinite:
        _check_finite(array, label)
    big_endian = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder(">"))
    if compress is None:
        compress = label.endswith(".gz")

    folder = os.path.dirname(target) or os.curdir
    if not os.path.isdir(folder):
        raise IdxError(f"{label}: cannot write (no folder {folder})")
    try:
        # A temporary file beside the target, renamed over it only once complete.
        with atomic_path(target) as temp_path, open(temp_path, "wb") as file:
            if compress:
                # Level 6 is zlib's default: nearly level 9's size at a fraction of its time.
                # mtime=0 and a fixed name make the bytes reproducible (stable checksums).
                with _gzip_writer(file, label) as gzip_file:
                    gzip_file.write(header)
                    gzip_file.write(big_endian.data)
            else:
                file.write(header)
                file.write(big_endian.data)
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        raise IdxError(f"{label}: cannot write ({error.strerror or error})") from error


def _gzip_writer(file: BinaryIO, label: str) -> gzip.GzipFile:
    inner_name = os.path.basename(label).removesuffix(".gz")
    return gzip.GzipFile(filename=inner_name, mode="wb", fileobj=file, compresslevel=6, mtime=0)
