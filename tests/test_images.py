"""Tests for digitlab.images: decoding user images and normalising digits like MNIST."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from digitlab.errors import ConfigError, ImageError
from digitlab.inference.images import (
    MAX_IMAGE_PIXELS,
    Prepared,
    load_image,
    prepare_digit,
    render_photo,
    split_digits,
)

# --------------------------------------------------------------------------- helpers


def _stroke_mask(size=(48, 64)) -> np.ndarray:
    """A small asymmetric '7'-like binary drawing, (H, W) bool, no anti-aliasing."""
    height, width = size
    image = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(image)
    draw.line([(width * 0.2, height * 0.2), (width * 0.8, height * 0.2)], fill=1, width=5)
    draw.line([(width * 0.8, height * 0.2), (width * 0.45, height * 0.85)], fill=1, width=5)
    return np.asarray(image, dtype=bool)


def _draw_digit(size=(400, 300), *, origin=(70, 60), scale=1.0, width=16) -> np.ndarray:
    """A hand-drawn-looking '4' in black ink on white paper: (H, W) float32, 1.0 = paper."""
    height, paper_width = size
    image = Image.new("L", (paper_width, height), 255)
    draw = ImageDraw.Draw(image)
    x, y = origin

    def point(px, py):
        return (x + px * scale, y + py * scale)

    stroke = max(1, round(width * scale))
    draw.line([point(110, 0), point(0, 170), point(160, 170)], fill=0, width=stroke, joint="curve")
    draw.line([point(120, 60), point(125, 260)], fill=0, width=stroke)
    return np.asarray(image, dtype=np.float32) / 255


def _shape_image(kind: str, size=(200, 160)) -> np.ndarray:
    """One synthetic digit-like shape in black on white, (H, W) float32."""
    height, width = size
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    box = (width * 0.25, height * 0.15, width * 0.75, height * 0.85)
    if kind == "bar":
        draw.line([(width * 0.5, box[1]), (width * 0.45, box[3])], fill=0, width=14)
    elif kind == "ring":
        draw.ellipse(box, outline=0, width=14)
    elif kind == "seven":
        draw.line([(box[0], box[1]), (box[2], box[1]), (box[0] + 20, box[3])], fill=0, width=14)
    elif kind == "cross":
        draw.line([(box[0], box[1]), (box[2], box[3])], fill=0, width=14)
        draw.line([(box[2], box[1]), (box[0], box[3])], fill=0, width=14)
    return np.asarray(image, dtype=np.float32) / 255


def _ink_extent(pixels: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero((pixels > 0).any(axis=1))
    cols = np.flatnonzero((pixels > 0).any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_declaring(width: int, height: int) -> bytes:
    """A small but well-formed PNG whose header declares ``width`` x ``height`` 1-bit pixels."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 1000)  # far too little data: must never be decoded
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def mnist_test():
    """The first 1,000 real MNIST test images (uint8) and labels, or skip."""
    folder = os.environ.get("DIGITLAB_DATA_DIR")
    if not folder or not (Path(folder) / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("DIGITLAB_DATA_DIR does not hold the MNIST files")
    from digitlab.data.idx import read_idx

    images = np.asarray(read_idx(Path(folder) / "t10k-images-idx3-ubyte.gz"))[:1000]
    labels = np.asarray(read_idx(Path(folder) / "t10k-labels-idx1-ubyte.gz"))[:1000]
    return images, labels


# --------------------------------------------------------------------------- load_image

INK = _stroke_mask()
DARK_ON_WHITE = np.where(INK, 0.0, 1.0).astype(np.float32)
LIGHT_ON_BLACK = 1.0 - DARK_ON_WHITE


def _grey_l() -> Image.Image:
    return Image.fromarray((DARK_ON_WHITE * 255).astype(np.uint8))


def _rgba(rgb_ink, rgb_transparent) -> Image.Image:
    """Strokes of colour ``rgb_ink``, fully opaque, on transparent pixels of another colour."""
    array = np.zeros((*INK.shape, 4), dtype=np.uint8)
    array[...] = (*rgb_transparent, 0)
    array[INK] = (*rgb_ink, 255)
    return Image.fromarray(array)


def _palette_with_transparency() -> Image.Image:
    paletted = Image.new("P", INK.shape[::-1], 0)
    paletted.putdata(INK.ravel().astype(int).tolist())  # index 1 = ink, 0 = background
    paletted.putpalette([12, 34, 56, 0, 0, 0] + [0] * 762)
    paletted.info["transparency"] = 0
    return paletted


def _sixteen_bit() -> Image.Image:
    values = np.where(INK, 0, 65535).astype(np.uint16)
    values[:4, :4] = 32768  # a mid-grey patch: 16-bit samples must be scaled by 65535
    return Image.fromarray(values)


def _sixteen_bit_expected() -> np.ndarray:
    expected = DARK_ON_WHITE.copy()
    expected[:4, :4] = 32768 / 65535
    return expected


def _animated_gif() -> bytes:
    first = _grey_l().convert("P")
    second = Image.fromarray((LIGHT_ON_BLACK * 255).astype(np.uint8)).convert("P")
    buffer = io.BytesIO()
    first.save(buffer, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    return buffer.getvalue()


def _cmyk() -> Image.Image:
    array = np.zeros((*INK.shape, 4), dtype=np.uint8)
    array[INK, 3] = 255  # black ink: K only; white paper: no ink at all
    return Image.fromarray(array, mode="CMYK")


# (id, encoded bytes, expected greyscale, tolerance)
LOSSLESS_CASES = [
    ("png-L", lambda: _encode(_grey_l(), "PNG"), DARK_ON_WHITE),
    ("png-RGB", lambda: _encode(_grey_l().convert("RGB"), "PNG"), DARK_ON_WHITE),
    ("png-LA", lambda: _encode(_grey_l().convert("LA"), "PNG"), DARK_ON_WHITE),
    (
        "png-RGBA-black-strokes-on-transparent",
        lambda: _encode(_rgba((0, 0, 0), (0, 0, 0)), "PNG"),
        DARK_ON_WHITE,
    ),
    (
        "png-RGBA-white-strokes-on-transparent",
        lambda: _encode(_rgba((255, 255, 255), (0, 0, 0)), "PNG"),
        LIGHT_ON_BLACK,
    ),
    (
        "png-RGBA-transparent-pixels-with-stray-colour",
        lambda: _encode(_rgba((0, 0, 0), (255, 0, 200)), "PNG"),
        DARK_ON_WHITE,
    ),
    ("png-P-transparency", lambda: _encode(_palette_with_transparency(), "PNG"), DARK_ON_WHITE),
    ("png-1bit", lambda: _encode(_grey_l().convert("1"), "PNG"), DARK_ON_WHITE),
    ("png-I;16", lambda: _encode(_sixteen_bit(), "PNG"), _sixteen_bit_expected()),
    ("tiff-I;16", lambda: _encode(_sixteen_bit(), "TIFF"), _sixteen_bit_expected()),
    ("tiff-CMYK", lambda: _encode(_cmyk(), "TIFF"), DARK_ON_WHITE),
    ("gif-animated-first-frame", _animated_gif, DARK_ON_WHITE),
    ("bmp-RGB", lambda: _encode(_grey_l().convert("RGB"), "BMP"), DARK_ON_WHITE),
    ("bmp-1bit", lambda: _encode(_grey_l().convert("1"), "BMP"), DARK_ON_WHITE),
    (
        "webp-lossless",
        lambda: _encode(_grey_l().convert("RGB"), "WEBP", lossless=True),
        DARK_ON_WHITE,
    ),
]


@pytest.mark.parametrize(
    ("make", "expected"),
    [case[1:] for case in LOSSLESS_CASES],
    ids=[case[0] for case in LOSSLESS_CASES],
)
def test_load_image_lossless_formats_decode_to_exact_greyscale(tmp_path, make, expected):
    path = tmp_path / "digit.img"
    path.write_bytes(make())
    grey = load_image(path)
    assert grey.dtype == np.float32
    assert grey.shape == INK.shape
    np.testing.assert_allclose(grey, expected, atol=1.5 / 255)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_load_image_lossy_formats_keep_polarity_and_strokes(tmp_path, fmt):
    path = tmp_path / f"digit.{fmt.lower()}"
    path.write_bytes(_encode(_grey_l().convert("RGB"), fmt, quality=90))
    grey = load_image(path)
    assert grey.shape == INK.shape
    assert grey[~INK].mean() > 0.9
    assert grey[INK].mean() < 0.25
    assert _correlation(grey, DARK_ON_WHITE) > 0.95


def test_load_image_uses_luminance_for_colour_ink():
    array = np.full((*INK.shape, 3), 255, dtype=np.uint8)
    array[INK] = (0, 0, 255)  # blue ballpoint
    grey = load_image(_encode(Image.fromarray(array), "PNG"))
    np.testing.assert_allclose(grey[INK], 0.114 * 255 // 1 / 255, atol=1.5 / 255)
    np.testing.assert_allclose(grey[~INK], 1.0)


def test_load_image_applies_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": how phones store portraits
    path = tmp_path / "portrait.jpg"
    path.write_bytes(_encode(_grey_l(), "JPEG", quality=95, exif=exif))
    grey = load_image(path)
    assert grey.shape == INK.shape[::-1]
    assert _correlation(grey, np.rot90(DARK_ON_WHITE, k=-1)) > 0.95


def test_load_image_accepts_paths_bytes_and_file_objects(tmp_path):
    data = _encode(_grey_l(), "PNG")
    path = tmp_path / "digit.png"
    path.write_bytes(data)
    with open(path, "rb") as file:
        from_file = load_image(file)
    for result in (
        load_image(str(path)),
        load_image(data),
        load_image(bytearray(data)),
        load_image(io.BytesIO(data)),
        from_file,
    ):
        np.testing.assert_array_equal(result, load_image(path))


def test_load_image_transparent_canvas_exports_prepare_alike():
    black_strokes = load_image(_encode(_rgba((0, 0, 0), (0, 0, 0)), "PNG"))
    white_strokes = load_image(_encode(_rgba((255, 255, 255), (0, 0, 0)), "PNG"))
    a, b = prepare_digit(black_strokes), prepare_digit(white_strokes)
    assert a.has_ink and b.has_ink
    np.testing.assert_allclose(a.pixels, b.pixels, atol=1e-5)


def test_load_image_fully_transparent_is_a_blank_page():
    grey = load_image(_encode(Image.new("RGBA", (30, 20), (0, 0, 0, 0)), "PNG"))
    np.testing.assert_array_equal(grey, np.ones((20, 30), dtype=np.float32))
    assert not prepare_digit(grey).has_ink


# --------------------------------------------------------------------------- bad files


def _truncated(fmt: str) -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (120, 120), dtype=np.uint8)
    data = _encode(Image.fromarray(noise), fmt)
    return data[: len(data) // 2]


BAD_FILES = [
    ("empty", b"", "empty file"),
    ("random-bytes", np.random.default_rng(1).bytes(2000), "not a readable image"),
    ("text", b"hello, I am not a picture\n", "not a readable image"),
    ("png-header-then-garbage", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not a readable"),
    ("truncated-png", _truncated("PNG"), "truncated"),
    ("truncated-jpeg", _truncated("JPEG"), "truncated"),
    ("bomb-beyond-pillow-limit", _png_declaring(100_000, 100_000), "pixels"),
    ("bomb-over-digitlab-cap", _png_declaring(8_000, 8_000), "40,000,000 pixels"),
    ("zero-width", _png_declaring(0, 10), "digit.png"),
    ("unsupported-format-ppm", _encode(Image.new("L", (8, 8)), "PPM"), "PNG, JPEG"),
]


@pytest.mark.parametrize(
    ("content", "match"), [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES]
)
def test_load_image_rejects_bad_files_with_one_line_error(tmp_path, content, match):
    path = tmp_path / "digit.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=match) as caught:
        load_image(path)
    message = str(caught.value)
    assert "\n" not in message
    assert "digit.png" in message


def test_load_image_bomb_is_rejected_from_the_header_alone():
    # 40M+ pixels declared, ~1 KB of data: decoding would fail differently (truncated).
    side = int(np.sqrt(MAX_IMAGE_PIXELS)) + 1
    with pytest.raises(ImageError, match="expected at most 40,000,000 pixels"):
        load_image(_png_declaring(side, side), name="bomb.png")


def test_load_image_names_bytes_sources():
    with pytest.raises(ImageError, match="upload.png: .*empty file"):
        load_image(b"", name="upload.png")
    with pytest.raises(ImageError, match="<bytes>"):
        load_image(b"not an image")


def test_load_image_rejects_missing_paths_directories_and_other_types(tmp_path):
    with pytest.raises(ImageError, match="missing.png: expected an image file. Received: no such"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="a directory"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="Received: int"):
        load_image(42)
    with pytest.raises(ImageError, match="binary file object"):
        load_image(io.StringIO("text"))


# --------------------------------------------------------------------------- prepare_digit


def test_prepare_digit_frames_the_digit_like_mnist():
    prepared = prepare_digit(_draw_digit())
    assert isinstance(prepared, Prepared)
    assert prepared.has_ink
    assert prepared.pixels.shape == (28, 28)
    assert prepared.pixels.dtype == np.float32
    assert 0.0 <= prepared.pixels.min() and prepared.pixels.max() <= 1.0
    assert max(_ink_extent(prepared.pixels)) in (20, 21)
    centre = np.array(ndimage.center_of_mass(prepared.pixels))
    assert np.abs(centre - 14).max() <= 0.5 + 1e-3
    # Light ink on a black background, with saturated stroke cores like MNIST.
    assert prepared.pixels[0].max() == 0.0
    assert prepared.pixels.max() == pytest.approx(1.0)


def test_prepare_digit_same_output_on_white_or_black_paper():
    grey = _draw_digit()
    on_white = prepare_digit(grey)
    on_black = prepare_digit(1.0 - grey)
    np.testing.assert_allclose(on_white.pixels, on_black.pixels, atol=0.02)
    assert on_white.box == on_black.box


def test_prepare_digit_box_is_in_source_pixels_of_a_large_photo():
    # A 12-megapixel page with the digit off-centre: the box must map back to it.
    page = np.full((3000, 4000), 0.9, dtype=np.float32)
    digit = _draw_digit(size=(900, 700), origin=(60, 60), scale=2.5, width=16)
    page[1800:2700, 400:1100] = digit * 0.9
    prepared = prepare_digit(page)
    drawn_rows = np.flatnonzero((page < 0.5).any(axis=1))
    drawn_cols = np.flatnonzero((page < 0.5).any(axis=0))
    x0, y0, x1, y1 = prepared.box
    assert abs(x0 - drawn_cols[0]) <= 12 and abs(x1 - (drawn_cols[-1] + 1)) <= 12
    assert abs(y0 - drawn_rows[0]) <= 12 and abs(y1 - (drawn_rows[-1] + 1)) <= 12
    small = prepare_digit(_draw_digit())
    assert _correlation(prepared.pixels, small.pixels) > 0.95


def test_prepare_digit_keeps_the_aspect_ratio_of_a_one():
    grey = _shape_image("bar")
    height, width = _ink_extent(prepare_digit(grey).pixels)
    assert height in (20, 21)  # 20 px, over 21 pixels when its edges fall mid-pixel
    assert 3 <= width <= 7  # a 14 px wide stroke leaning over 8 px, in a 140 px tall digit


def test_prepare_digit_enlarges_small_digits():
    grey = _draw_digit(size=(40, 30), origin=(5, 5), scale=0.1, width=25)
    prepared = prepare_digit(grey)
    assert prepared.has_ink
    assert max(_ink_extent(prepared.pixels)) in (20, 21)


def test_prepare_digit_survives_uneven_lighting_and_noise():
    clean = _draw_digit()
    height, width = clean.shape
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width]).reshape(2, 1, 1)
    lighting = (0.35 + 0.65 * x) * (1 - 0.3 * ((x - 0.5) ** 2 + (y - 0.5) ** 2))
    rng = np.random.default_rng(7)
    photo = np.clip(clean * 0.9 * lighting + rng.normal(0, 0.04, clean.shape), 0, 1)
    reference = prepare_digit(clean)
    prepared = prepare_digit(photo.astype(np.float32))
    assert prepared.has_ink
    assert _correlation(prepared.pixels, reference.pixels) > 0.9


def test_prepare_digit_blank_pages_have_no_ink():
    height, width = 300, 400
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width]).reshape(2, 1, 1)
    rng = np.random.default_rng(3)
    pages = {
        "white": np.full((height, width), 0.92),
        "black": np.zeros((height, width)),
        "lit-unevenly-with-noise": np.clip(
            (0.5 + 0.4 * x) * (1 - 0.2 * y) + rng.normal(0, 0.03, (height, width)), 0, 1
        ),
        "one-pixel": np.ones((1, 1)),
    }
    for name, page in pages.items():
        prepared = prepare_digit(page)
        assert not prepared.has_ink, name
        assert prepared.box is None
        np.testing.assert_array_equal(prepared.pixels, np.zeros((28, 28), dtype=np.float32))
        assert split_digits(page) == [], name


def _speckle(page: np.ndarray, rng: np.random.Generator, count: int = 6) -> np.ndarray:
    page = page.copy()
    for _ in range(count):
        y = int(rng.integers(5, page.shape[0] - 5))
        x = int(rng.integers(5, page.shape[1] - 5))
        page[y : y + 3, x : x + 3] = 0.05  # dust, a pen touch: dark but tiny
    return page


def test_prepare_digit_ignores_specks():
    rng = np.random.default_rng(11)
    assert not prepare_digit(_speckle(np.full((300, 400), 0.9), rng)).has_ink
    clean = _draw_digit()
    specked, reference = prepare_digit(_speckle(clean, rng)), prepare_digit(clean)
    assert specked.box == reference.box
    assert _correlation(specked.pixels, reference.pixels) > 0.99


def test_prepare_digit_leaves_mnist_digits_unchanged(mnist_test):
    images, _ = mnist_test
    digits = images[:500].astype(np.float32) / 255
    prepared = np.stack([prepare_digit(digit).pixels for digit in digits])
    # Neither moved nor resampled: the same pixels hold ink (give or take a faint
    # 1/255 one).  Only the contrast stretch touches values (0.95 peaks reach 1.0).
    changed_pixels = ((prepared > 0) != (digits > 0)).sum(axis=(1, 2))
    assert (changed_pixels <= 2).mean() >= 0.99
    assert np.abs(prepared - digits).max(axis=(1, 2)).mean() < 0.02


@pytest.mark.parametrize(
    ("grey", "match"),
    [
        (np.zeros((4, 4, 3)), "shape"),
        (np.zeros((0, 5)), "shape"),
        (np.full((4, 4), np.nan), "finite"),
        (np.array([["a", "b"]]), "dtype"),
    ],
    ids=["3-d", "empty", "nan", "strings"],
)
def test_prepare_digit_rejects_arrays_that_are_not_images(grey, match):
    with pytest.raises(ImageError, match=match):
        prepare_digit(grey)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"ink_threshold": 1.5}, "ink_threshold: expected a number in \\[0, 1\\). Received: 1.5"),
        ({"min_size": -0.1}, "min_size"),
        ({"ink_threshold": "0.2"}, "ink_threshold"),
    ],
)
def test_prepare_digit_rejects_bad_options(options, match):
    with pytest.raises(ConfigError, match=match):
        prepare_digit(_draw_digit(), **options)


def test_split_digits_rejects_bad_options():
    with pytest.raises(ConfigError, match="overlap"):
        split_digits(_draw_digit(), overlap=2)


# --------------------------------------------------------------------------- split_digits


def test_split_digits_finds_shapes_left_to_right_and_drops_a_dot():
    kinds = ["seven", "ring", "bar", "cross"]
    shapes = [_shape_image(kind, size=(150, 120)) for kind in kinds]
    number = np.concatenate(shapes, axis=1)
    number[70:76, 237:243] = 0.0  # a stray dot between two digits
    digits = split_digits(number)
    assert len(digits) == 4
    lefts = [digit.box[0] for digit in digits]
    assert lefts == sorted(lefts)
    for digit, shape, kind in zip(digits, shapes, kinds, strict=True):
        assert digit.has_ink
        assert _correlation(digit.pixels, prepare_digit(shape).pixels) > 0.95, kind


def test_split_digits_reads_a_number_written_with_real_mnist_digits(mnist_test):
    images, labels = mnist_test
    wanted = [2, 0, 2, 6]
    chosen = []
    for label in wanted:  # the first test digit of each label not already used
        index = next(i for i in range(len(labels)) if labels[i] == label and i not in chosen)
        chosen.append(index)
    paper = []
    for index in chosen:
        enlarged = Image.fromarray(images[index]).resize((112, 112), Image.Resampling.BICUBIC)
        paper.append(1.0 - np.asarray(enlarged, dtype=np.float32) / 255)  # dark ink on paper
    number = np.concatenate(paper, axis=1)
    # Photographed: light falling off to one side, and sensor noise.
    lighting = np.linspace(1.0, 0.55, number.shape[1], dtype=np.float32)
    noise = np.random.default_rng(4).normal(0, 0.02, number.shape)
    number = np.clip(number * 0.9 * lighting + noise, 0, 1)
    digits = split_digits(number)
    assert len(digits) == 4
    for digit, index in zip(digits, chosen, strict=True):
        assert _correlation(digit.pixels, images[index] / 255.0) > 0.85


def test_split_digits_reads_a_long_strip_at_full_height():
    # 12 digits in a 150 x 5760 strip: shrinking it by its width would leave them
    # a dozen pixels tall.
    kinds = ["seven", "ring", "bar", "cross"] * 3
    shapes = [_shape_image(kind, size=(150, 480)) for kind in kinds]
    digits = split_digits(np.concatenate(shapes, axis=1))
    assert len(digits) == 12
    for digit, shape in zip(digits, shapes, strict=True):
        assert _correlation(digit.pixels, prepare_digit(shape).pixels) > 0.9


def test_split_digits_keeps_a_five_drawn_in_two_strokes_together():
    image = Image.new("L", (200, 240), 255)
    draw = ImageDraw.Draw(image)
    draw.line([(70, 40), (70, 110)], fill=0, width=12)  # the stem
    draw.arc((50, 90, 150, 200), start=200, end=150, fill=0, width=12)  # the belly
    draw.line([(85, 40), (150, 40)], fill=0, width=12)  # the separate top bar
    grey = np.asarray(image, dtype=np.float32) / 255
    labels, count = ndimage.label(grey < 0.5)
    assert count == 2  # the drawing really is two strokes
    digits = split_digits(grey)
    assert len(digits) == 1
    assert digits[0].box == prepare_digit(grey).box


# --------------------------------------------------------------------------- render_photo


def test_render_photo_makes_a_jpeg_of_dark_ink_on_paper():
    digit = (INK.astype(np.float32))[:28, :28]
    data = render_photo(digit, rng=np.random.default_rng(0), size=(240, 320))
    assert data[:2] == b"\xff\xd8"
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        assert image.size == (320, 240)
    grey = load_image(data)
    assert np.median(grey) > 0.5
    assert grey.min() < np.median(grey) - 0.3


def test_render_photo_is_reproducible_from_its_generator():
    digit = (np.random.default_rng(5).random((28, 28)) > 0.8).astype(np.uint8) * 255
    first = render_photo(digit, rng=np.random.default_rng(1))
    again = render_photo(digit, rng=np.random.default_rng(1))
    other = render_photo(digit, rng=np.random.default_rng(2))
    assert first == again
    assert first != other
    assert render_photo(digit / 255.0, rng=np.random.default_rng(1)) == first


def test_render_photo_rejects_tiny_frames():
    with pytest.raises(ImageError, match="size"):
        render_photo(np.zeros((28, 28)), rng=np.random.default_rng(0), size=(10, 10))


def test_photos_of_mnist_digits_prepare_back_to_the_digit(mnist_test):
    images, _ = mnist_test
    rng = np.random.default_rng(2026)
    correlations = []
    for digit in images[:40]:
        prepared = prepare_digit(load_image(render_photo(digit, rng=rng)))
        assert prepared.has_ink
        # MNIST digits are already framed, so the digit is its own re-centred version.
        correlations.append(_correlation(prepared.pixels, digit / 255.0))
    assert np.mean(correlations) > 0.8
