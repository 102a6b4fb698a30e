"""Tests for digitlab.data.idx: round-trips, sniffing, malformed input, gzip bombs, atomic
writes."""

import bz2
import gzip
import io
import os
import pathlib
import signal
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

from digitlab.data.idx import IdxError, load_bytes, parse_idx, read_idx, write_idx
from digitlab.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
TYPE_CODES = dict(zip(DTYPES, [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E], strict=True))
SHAPES = [(7,), (3, 4, 5), (2, 3, 4, 5)]


def idx_header(type_code: int, shape: tuple[int, ...]) -> bytes:
    """Build an IDX header by hand, independently of the module under test."""
    return struct.pack(f">BBBB{len(shape)}I", 0, 0, type_code, len(shape), *shape)


def sample_array(dtype, shape) -> np.ndarray:
    """Values covering the dtype's extremes (integers) or signs and magnitudes (floats)."""
    rng = np.random.default_rng(0)
    size = int(np.prod(shape))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=size, endpoint=True, dtype=dtype)
        values[:2] = [info.min, info.max]
    else:
        values = (rng.standard_normal(size) * 1e3).astype(dtype)
        values[:2] = [np.finfo(dtype).max, -np.finfo(dtype).tiny]
    return values.reshape(shape)


def gzip_bomb(header: bytes, zero_megabytes: int) -> bytes:
    """A valid gzip stream of `header` followed by `zero_megabytes` MiB of zeros.

    Built without ever holding the uncompressed content: one fully-flushed deflate
    block of 1 MiB of zeros is position-independent, so it is simply repeated.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    megabyte = bytes(1 << 20)
    head_block = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    zero_block = compressor.compress(megabyte) + compressor.flush(zlib.Z_FULL_FLUSH)
    final_block = compressor.flush()
    crc = zlib.crc32(header)
    for _ in range(zero_megabytes):
        crc = zlib.crc32(megabyte, crc)
    size = len(header) + zero_megabytes * (1 << 20)
    gzip_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return gzip_header + head_block + zero_block * zero_megabytes + final_block + trailer


def peak_memory_of(function) -> tuple[int, IdxError]:
    """Peak bytes allocated by Python while running `function` (which must raise IdxError)."""
    tracemalloc.start()
    try:
        with pytest.raises(IdxError) as caught:
            function()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, caught.value


# --------------------------------------------------------------------------- round-trips


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: f"{len(shape)}d")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda dtype: np.dtype(dtype).name)
def test_write_then_read_round_trips_every_dtype_and_rank(tmp_path, dtype, shape, compress):
    array = sample_array(dtype, shape)
    path = tmp_path / "data.idx"
    write_idx(path, array, compress=compress)
    result = read_idx(path)
    assert result.dtype == np.dtype(dtype)
    assert result.dtype.isnative
    assert result.shape == shape
    np.testing.assert_array_equal(result, array)
    content = path.read_bytes()
    assert content.startswith(b"\x1f\x8b") is compress
    if not compress:
        expected_header = idx_header(TYPE_CODES[dtype], shape)
        assert content == expected_header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_write_idx_produces_the_exact_bytes_of_the_format(tmp_path):
    path = tmp_path / "values.idx"
    write_idx(path, np.array([[1, 258], [-2, 3]], dtype=np.int16))
    expected = idx_header(0x0B, (2, 2)) + bytes.fromhex("0001 0102 fffe 0003")
    assert path.read_bytes() == expected


def test_read_idx_decodes_a_hand_built_big_endian_file(tmp_path):
    values = [1.5, -2.25, float(np.finfo(np.float32).max)]
    content = idx_header(0x0D, (3,)) + struct.pack(">3f", *values)
    path = tmp_path / "floats.idx"
    path.write_bytes(content)
    result = read_idx(path)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, np.array(values, dtype=np.float32))


def test_write_idx_accepts_non_native_byte_order_and_non_contiguous_arrays(tmp_path):
    base = np.arange(24, dtype=">i4").reshape(4, 6)
    strided = base.T[::2]
    path = tmp_path / "strided.idx.gz"
    write_idx(path, strided)
    result = read_idx(path)
    assert result.dtype == np.int32
    np.testing.assert_array_equal(result, strided)


def test_write_idx_round_trips_a_dimension_of_size_zero(tmp_path):
    path = tmp_path / "empty.idx"
    write_idx(path, np.zeros((0, 28, 28), dtype=np.uint8))
    result = read_idx(path)
    assert result.shape == (0, 28, 28)
    assert result.dtype == np.uint8


def test_write_idx_stores_fitting_int64_as_int32(tmp_path):
    labels = np.array([0, 9, -(2**31), 2**31 - 1], dtype=np.int64)
    path = tmp_path / "labels.idx"
    write_idx(path, labels)
    result = read_idx(path)
    assert result.dtype == np.int32
    np.testing.assert_array_equal(result, labels)


@pytest.mark.parametrize(
    ("suffix", "compress", "gzipped"),
    [(".gz", None, True), ("", None, False), ("", True, True), (".gz", False, False)],
)
def test_write_idx_compresses_by_suffix_unless_told(tmp_path, suffix, compress, gzipped):
    path = tmp_path / f"labels-idx1-ubyte{suffix}"
    write_idx(path, np.arange(10, dtype=np.uint8), compress=compress)
    assert path.read_bytes().startswith(b"\x1f\x8b") is gzipped
    np.testing.assert_array_equal(read_idx(path), np.arange(10))


def test_write_idx_gzip_output_is_reproducible(tmp_path):
    array = sample_array(np.uint8, (3, 4, 5))
    path = tmp_path / "data.gz"
    write_idx(path, array)
    first = path.read_bytes()
    write_idx(path, array)
    assert path.read_bytes() == first
    assert first[4:8] == b"\0\0\0\0"  # gzip mtime field: no timestamp


# --------------------------------------------------------------------------- sources and sniffing


def test_read_idx_sniffs_gzip_under_a_raw_name_and_raw_under_a_gz_name(tmp_path):
    array = sample_array(np.uint8, (5, 28, 28))
    gzip_named_raw = tmp_path / "train-images-idx3-ubyte"
    raw_named_gz = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(gzip_named_raw, array, compress=True)
    write_idx(raw_named_gz, array, compress=False)
    np.testing.assert_array_equal(read_idx(gzip_named_raw), array)
    np.testing.assert_array_equal(read_idx(raw_named_gz), array)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize(
    "make_source",
    [
        lambda path: str(path),
        lambda path: path,
        lambda path: path.read_bytes(),
        lambda path: bytearray(path.read_bytes()),
        lambda path: memoryview(path.read_bytes()),
        lambda path: io.BytesIO(path.read_bytes()),
    ],
    ids=["str", "pathlib", "bytes", "bytearray", "memoryview", "file-object"],
)
def test_load_bytes_accepts_every_kind_of_source(tmp_path, make_source, compress):
    array = sample_array(np.int16, (2, 3))
    path = tmp_path / "data.idx"
    write_idx(path, array, compress=compress)
    content = load_bytes(make_source(path))
    assert isinstance(content, bytes)
    assert content == idx_header(0x0B, (2, 3)) + array.astype(">i2").tobytes()


def test_load_bytes_reads_a_non_seekable_pipe(tmp_path):
    array = sample_array(np.uint8, (4, 5))
    write_idx(tmp_path / "data.gz", array)
    read_end, write_end = os.pipe()
    os.write(write_end, (tmp_path / "data.gz").read_bytes())
    os.close(write_end)
    with open(read_end, "rb") as pipe:
        np.testing.assert_array_equal(read_idx(pipe), array)


def test_read_idx_reads_a_stream_the_caller_decompresses(tmp_path):
    array = sample_array(np.float32, (3, 2))
    write_idx(tmp_path / "data.gz", array)
    with gzip.open(tmp_path / "data.gz", "rb") as stream:
        np.testing.assert_array_equal(read_idx(stream), array)


def test_load_bytes_reads_multi_member_gzip(tmp_path):
    content = idx_header(0x08, (6,)) + bytes(range(6))
    joined = gzip.compress(content[:5]) + gzip.compress(content[5:9]) + gzip.compress(content[9:])
    assert load_bytes(joined) == content


def test_load_bytes_matches_the_standard_library_gzip(tmp_path):
    content = idx_header(0x0C, (1000, 3)) + np.arange(3000, dtype=">i4").tobytes()
    compressed = gzip.compress(content)
    assert load_bytes(compressed) == gzip.decompress(compressed) == content


def test_parse_idx_returns_a_read_only_zero_copy_view_for_uint8():
    content = idx_header(0x08, (2, 2)) + bytes([1, 2, 3, 4])
    array = parse_idx(content)
    assert not array.flags.writeable
    mutable = bytearray(content)
    shared = parse_idx(mutable)
    assert np.shares_memory(shared, np.frombuffer(mutable, dtype=np.uint8))


def test_parse_idx_returns_a_writable_native_array_for_multibyte_types():
    content = idx_header(0x0E, (2,)) + struct.pack(">2d", 0.5, -1.0)
    array = parse_idx(content)
    assert array.dtype == np.float64 and array.dtype.isnative
    assert array.flags.writeable
    np.testing.assert_array_equal(array, [0.5, -1.0])


# --------------------------------------------------------------------------- malformed content

TOO_LARGE_DIMENSIONS = (0, 2**32 - 1, 2**32 - 1, 2**32 - 1)

MALFORMED = {
    "empty": (b"", "found an empty file"),
    "two-bytes": (b"\0\0", r"only 2 byte\(s\): 00 00"),
    "bad-magic": (b"\x01\x02\x08\x01" + bytes(8), "expected IDX magic bytes 00 00 at offset 0"),
    "unknown-type-code": (b"\0\0\x07\x01\0\0\0\x01\x05", "unknown IDX type code 0x07"),
    "zero-dimensions": (b"\0\0\x08\x00\x05", "expected 1 to 16 dimensions at offset 3, found 0"),
    "absurd-dimensions": (b"\0\0\x08\xc8" + bytes(800), "expected 1 to 16 dimensions.*found 200"),
    "truncated-header": (b"\0\0\x08\x03\0\0\0\x02", "expected a 16-byte header.*found only 8"),
    "short-payload": (idx_header(0x08, (3,)) + b"\x01\x02", r"shape \(3,\).*found only"),
    "long-payload": (idx_header(0x08, (3,)) + bytes(4), r"shape \(3,\) of uint8.* found"),
    "short-int32-payload": (idx_header(0x0C, (2,)) + bytes(7), r"shape \(2,\) of int32"),
    "four-billion-images": (
        idx_header(0x08, (2**32 - 1, 28, 28)) + bytes(14),
        r"shape \(4294967295, 28, 28\) of uint8",
    ),
    "shape-overflows-int64": (idx_header(0x0E, TOO_LARGE_DIMENSIONS), "too large for any array"),
    "html-page": (b"<!DOCTYPE html><html><body>404</body></html>", "looks like an HTML page"),
    "html-with-bom": (b"\xef\xbb\xbf\n  <html><head>", "looks like an HTML page"),
    "bzip2": (bz2.compress(idx_header(0x08, (1,)) + b"\x01"), "looks bzip2-compressed"),
    "little-endian-header": (b"\x03\x08\0\0" + bytes(12), "looks like a byte-swapped"),
    "nan-float32": (idx_header(0x0D, (3,)) + struct.pack(">3f", 1, float("nan"), 2), "NaN or inf"),
    "inf-float64": (
        idx_header(0x0E, (2, 2)) + struct.pack(">4d", 1, 2, 3, float("-inf")),
        r"index \(1, 1\)",
    ),
}


@pytest.mark.parametrize(("content", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_parse_idx_rejects_malformed_content(content, message):
    with pytest.raises(IdxError, match=message):
        parse_idx(content, name="bad.idx")


@pytest.mark.parametrize(("content", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_read_idx_rejects_malformed_files_naming_them(tmp_path, content, message):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(IdxError, match=message) as caught:
        read_idx(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ")
    assert "\n" not in text


@pytest.mark.parametrize(("content", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_read_idx_rejects_malformed_content_inside_gzip(content, message):
    with pytest.raises(IdxError, match=message):
        read_idx(gzip.compress(content), name="bad.gz")


def test_idx_error_is_a_data_error_and_a_value_error():
    assert issubclass(IdxError, DataError)
    assert issubclass(IdxError, ValueError)


def test_read_idx_accepts_non_finite_floats_when_allowed():
    content = idx_header(0x0D, (2,)) + struct.pack(">2f", float("nan"), float("inf"))
    array = read_idx(content, allow_nonfinite=True)
    assert np.isnan(array[0]) and np.isposinf(array[1])


def test_parse_idx_names_plain_gzip_content_as_needing_decompression():
    content = gzip.compress(idx_header(0x08, (1,)) + b"\x01")
    with pytest.raises(IdxError, match="looks gzip-compressed; read it with read_idx"):
        parse_idx(content)


def test_read_idx_reports_a_file_compressed_twice(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.compress(idx_header(0x08, (1,)) + b"\x01")))
    with pytest.raises(IdxError, match="looks gzip-compressed twice"):
        read_idx(path)


def test_read_idx_rejects_more_than_max_bytes(tmp_path):
    path = tmp_path / "labels.idx"
    write_idx(path, np.zeros(1000, dtype=np.uint8))
    with pytest.raises(IdxError, match="more than max_bytes=100"):
        read_idx(path, max_bytes=100)


def test_read_idx_rejects_a_lying_header_on_a_non_seekable_stream_without_big_allocation():
    content = idx_header(0x08, (2**30,)) + bytes(22)
    read_end, write_end = os.pipe()
    os.write(write_end, content)
    os.close(write_end)
    with open(read_end, "rb") as pipe:
        peak, error = peak_memory_of(lambda: read_idx(pipe))
    assert "found only 22 bytes of data" in str(error)
    assert peak < 64 * 2**20


# --------------------------------------------------------------------------- malformed gzip

VALID_GZIP = gzip.compress(idx_header(0x08, (100,)) + bytes(range(100)), mtime=0)


def with_byte(data: bytes, index: int, value: int) -> bytes:
    return data[:index] + bytes([value]) + data[index + 1 :]


MALFORMED_GZIP = {
    "magic-only": (b"\x1f\x8b", "truncated"),
    "cut-in-data": (VALID_GZIP[: len(VALID_GZIP) // 2], "truncated"),
    "cut-in-trailer": (VALID_GZIP[:-3], "truncated"),
    "bad-crc": (with_byte(VALID_GZIP, -8, VALID_GZIP[-8] ^ 0xFF), "corrupt gzip data.*data check"),
    "bad-length": (with_byte(VALID_GZIP, -1, 0x7F), "corrupt gzip data.*length check"),
    "bad-block-type": (with_byte(VALID_GZIP, 10, 0x07), "corrupt gzip data"),
    "bad-method": (with_byte(VALID_GZIP, 2, 0x07), "corrupt gzip data"),
    "trailing-garbage": (VALID_GZIP + b"garbage", "trailing bytes 67 61 72"),
    "trailing-zeros": (VALID_GZIP + bytes(4), "trailing bytes 00 00 00 00"),
    "empty-content": (gzip.compress(b""), "found an empty file"),
    "html-gzipped": (gzip.compress(b"<html><body>Not Found"), "looks like an HTML page"),
}


@pytest.mark.parametrize(("content", "message"), MALFORMED_GZIP.values(), ids=MALFORMED_GZIP.keys())
def test_read_idx_rejects_malformed_gzip(tmp_path, content, message):
    path = tmp_path / "bad.gz"
    path.write_bytes(content)
    with pytest.raises(IdxError, match=message):
        read_idx(path)
    with pytest.raises(IdxError, match=message):
        read_idx(io.BytesIO(content))


def test_the_valid_gzip_fixture_is_valid():
    assert read_idx(VALID_GZIP).tolist() == list(range(100))


# --------------------------------------------------------------------------- gzip bombs


def test_the_gzip_bomb_builder_makes_valid_gzip():
    header = idx_header(0x08, (2 * 2**20,))
    bomb = gzip_bomb(header, 2)
    assert gzip.decompress(bomb) == header + bytes(2 * 2**20)
    assert read_idx(bomb).shape == (2 * 2**20,)


def test_read_idx_stops_a_bomb_right_after_its_small_declared_size(tmp_path):
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip_bomb(idx_header(0x08, (10,)), 200))  # 200 MiB of zeros in ~200 KiB
    peak, error = peak_memory_of(lambda: read_idx(path))
    assert "found more decompressed data than that" in str(error)
    assert peak < 16 * 2**20


def test_read_idx_stops_a_bomb_declaring_a_moderate_size_after_that_size(tmp_path):
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip_bomb(idx_header(0x08, (2**20,)), 200))
    peak, error = peak_memory_of(lambda: read_idx(path))
    assert "shape (1048576,) of uint8" in str(error)
    assert peak < 16 * 2**20


def test_read_idx_rejects_a_bomb_declaring_a_huge_size_by_max_bytes(tmp_path):
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip_bomb(idx_header(0x08, (200 * 2**20,)), 200))
    peak, error = peak_memory_of(lambda: read_idx(path, max_bytes=2**20))
    assert "more than max_bytes=1048576" in str(error)
    assert peak < 16 * 2**20


def test_read_idx_rejects_a_tiny_gzip_claiming_four_billion_images(tmp_path):
    path = tmp_path / "liar.gz"
    path.write_bytes(gzip.compress(idx_header(0x08, (2**32 - 1, 1, 1)) + bytes(16)))
    peak, error = peak_memory_of(lambda: read_idx(path))
    assert f"a {path.stat().st_size}-byte gzip stream can hold at most" in str(error)
    assert peak < 16 * 2**20


# --------------------------------------------------------------------------- bad paths and sources


def test_read_idx_reports_a_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "train-images-idx3-ubyte.gz"
    with pytest.raises(IdxError, match=f"{path}: expected an IDX file, found no such file"):
        read_idx(path)


def test_read_idx_reports_a_directory(tmp_path):
    with pytest.raises(IdxError, match="found a directory"):
        read_idx(tmp_path)


def test_read_idx_reports_a_text_mode_stream(tmp_path):
    path = tmp_path / "data.idx"
    write_idx(path, np.arange(3, dtype=np.uint8))
    with open(path, encoding="latin-1") as text_file:
        with pytest.raises(IdxError, match=r"expected a binary stream \(open it with 'rb'\)"):
            read_idx(text_file)


def test_read_idx_reports_a_corrupt_gzip_stream_opened_by_the_caller(tmp_path):
    path = tmp_path / "data.gz"
    path.write_bytes(VALID_GZIP[:40])
    with gzip.open(path, "rb") as stream:
        with pytest.raises(IdxError, match="cannot read"):
            read_idx(stream)


def test_read_idx_rejects_a_source_of_the_wrong_type():
    with pytest.raises(TypeError, match="received int"):
        read_idx(3)


# --------------------------------------------------------------------------- write_idx refusals


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array([True, False]), "cannot write dtype bool.*astype\\(np.uint8\\)"),
        (np.array([1.0], dtype=np.float16), "cannot write dtype float16"),
        (np.array([1 + 2j]), "cannot write dtype complex128"),
        (np.array(["a"]), "cannot write dtype <U1"),
        (np.array([None], dtype=object), "cannot write dtype object"),
        (np.array([2**31], dtype=np.int64), r"as int32.*found 2147483648\.\.2147483648"),
        (np.array([2**32], dtype=np.uint64), "cannot store uint64 values"),
        (np.array(5, dtype=np.uint8), "found 0; reshape a scalar to \\(1,\\)"),
        (np.zeros((1,) * 17, dtype=np.uint8), "expected an array with 1 to 16 dimensions"),
        (np.array([1.0, np.nan], dtype=np.float32), "NaN or infinite"),
    ],
    ids=[
        "bool",
        "float16",
        "complex",
        "str",
        "object",
        "int64-too-big",
        "uint64",
        "0d",
        "17d",
        "nan",
    ],
)
def test_write_idx_refuses_unstorable_arrays_leaving_the_existing_file(tmp_path, array, message):
    path = tmp_path / "data.idx"
    path.write_bytes(b"previous content")
    with pytest.raises(IdxError, match=message):
        write_idx(path, array)
    assert path.read_bytes() == b"previous content"
    assert sorted(os.listdir(tmp_path)) == ["data.idx"]


def test_write_idx_writes_non_finite_floats_when_allowed(tmp_path):
    path = tmp_path / "data.idx"
    write_idx(path, np.array([np.inf], dtype=np.float64), allow_nonfinite=True)
    assert np.isposinf(read_idx(path, allow_nonfinite=True)[0])


def test_write_idx_gives_the_file_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "labels.idx"
    write_idx(path, np.arange(3, dtype=np.uint8))
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_idx_writes_into_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_idx("labels.idx", np.arange(3, dtype=np.uint8))
    assert os.listdir(tmp_path) == ["labels.idx"]


def test_write_idx_reports_a_missing_folder(tmp_path):
    path = tmp_path / "missing" / "data.idx"
    with pytest.raises(IdxError, match="cannot write"):
        write_idx(path, np.arange(3, dtype=np.uint8))
    assert not path.parent.exists()


@pytest.mark.skipif(
    not hasattr(signal, "SIGXFSZ") or signal.getsignal(signal.SIGXFSZ) != signal.SIG_IGN,
    reason="needs RLIMIT_FSIZE with SIGXFSZ ignored (CPython on POSIX)",
)
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_write_idx_failing_mid_write_leaves_no_partial_file(tmp_path, compress):
    resource = pytest.importorskip("resource")
    path = tmp_path / "images.idx"
    write_idx(path, np.arange(10, dtype=np.uint8))
    previous = path.read_bytes()
    big = np.random.default_rng(0).integers(0, 256, size=2**20, dtype=np.uint8)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # A real write failure (EFBIG) after the first 64 KiB, like a disk filling up.
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(IdxError, match=f"{path}: cannot write"):
            write_idx(path, big, compress=compress)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert path.read_bytes() == previous
    assert sorted(os.listdir(tmp_path)) == ["images.idx"]


# --------------------------------------------------------------------------- the real MNIST files

MNIST_DIR = os.environ.get("DIGITLAB_DATA_DIR")
needs_mnist = pytest.mark.skipif(not MNIST_DIR, reason="DIGITLAB_DATA_DIR is not set")


@needs_mnist
@pytest.mark.parametrize(
    ("file_name", "shape"),
    [
        ("train-images-idx3-ubyte.gz", (60000, 28, 28)),
        ("train-labels-idx1-ubyte.gz", (60000,)),
        ("t10k-images-idx3-ubyte.gz", (10000, 28, 28)),
        ("t10k-labels-idx1-ubyte.gz", (10000,)),
    ],
)
def test_read_idx_reads_the_real_mnist_files(file_name, shape):
    array = read_idx(pathlib.Path(MNIST_DIR) / file_name)
    assert array.shape == shape
    assert array.dtype == np.uint8
    assert int(array.max()) == (255 if len(shape) == 3 else 9)


@needs_mnist
def test_read_idx_gives_the_known_mnist_training_label_counts():
    labels = read_idx(pathlib.Path(MNIST_DIR) / "train-labels-idx1-ubyte.gz")
    counts = np.bincount(labels, minlength=10)
    assert counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@needs_mnist
def test_load_bytes_of_real_mnist_matches_the_standard_library(tmp_path):
    path = pathlib.Path(MNIST_DIR) / "t10k-images-idx3-ubyte.gz"
    content = load_bytes(path)
    assert content == gzip.decompress(path.read_bytes())
    images = parse_idx(content)
    write_idx(tmp_path / "copy.gz", images)
    np.testing.assert_array_equal(read_idx(tmp_path / "copy.gz"), images)
