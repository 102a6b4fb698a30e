"""Turn real handwriting images (photos, scans, canvas exports) into MNIST-like inputs.

MNIST digits are light ink on a black background, 28x28, the digit scaled so the
longer side of its bounding box is 20 px (keeping its aspect ratio) and placed so
its centre of mass falls on pixel (14, 14).  This module reproduces that recipe
for user images:

* :func:`load_image` decodes any common image file into greyscale floats, 1.0 = white,
  compositing transparency over the background the ink does not use.
* :func:`prepare_digit` finds the ink whatever its polarity, evens out uneven
  lighting, drops specks of noise and normalises the digit like MNIST.
* :func:`split_digits` does the same for each digit of a written number.
* :func:`render_photo` simulates a phone photo of an MNIST digit, to measure how
  much accuracy the whole photo -> prediction path loses.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

from digitlab.errors import ConfigError, ImageError

MAX_IMAGE_PIXELS = 40_000_000
"""The most pixels :func:`load_image` decodes (a decompression-bomb cap), checked
from the header before any pixel data is read."""

MAX_FILE_BYTES = 256 * 2**20
"""The largest image file :func:`load_image` reads (a 40-megapixel TIFF is ~120 MB)."""

SUPPORTED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "TIFF", "WEBP")
"""Pillow format names :func:`load_image` accepts (JPEG includes MPO, the variant many
phone cameras write).  Restricting the list keeps Pillow from trying plugins that
run external programs or parse exotic formats."""

MNIST_SIZE = 28
MNIST_BOX = 20
"""MNIST frames are 28x28 with the digit's longer side scaled to 20 px."""

WORKING_PIXELS = 512 * 512
"""Images are area-averaged down to about this many pixels before any filtering:
a digit filling 15% of a 3:4 photo keeps ~65 px, a 12-megapixel photo takes a
fraction of a second, and a long strip of digits keeps its height."""

_LIGHTING_PIXELS = 48 * 48  # thumbnail size for the lighting fit

_FORMAT_LIST = "PNG, JPEG, GIF, BMP, TIFF or WebP"

# Below this paper brightness the ink contrast ratio is meaningless (a black page).
_DARKEST_PAPER = 0.05


# --------------------------------------------------------------------------- decoding


def _one_line(text: object) -> str:
    return " ".join(str(text).split()) or "no details"


def _source_label(source: object, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    file_name = getattr(source, "name", None)
    if isinstance(file_name, str):
        return file_name
    return "<bytes>"


def _source_stream(source: object, label: str) -> io.BytesIO:
    """The whole file in memory: Pillow needs a seekable stream, uploads may not be one."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif isinstance(source, str | os.PathLike):
        try:
            data = _read_regular_file(source, label)
        except FileNotFoundError:
            raise ImageError(f"{label}: expected an image file. Received: no such file.") from None
        except IsADirectoryError:
            raise ImageError(f"{label}: expected an image file. Received: a directory.") from None
        except OSError as error:
            raise ImageError(
                f"{label}: expected a readable image file. Received: {_one_line(error)}."
            ) from None
    elif hasattr(source, "read"):
        try:
            data = source.read()
        except OSError as error:
            raise ImageError(
                f"{label}: expected a readable image file. Received: {_one_line(error)}."
            ) from None
        if not isinstance(data, bytes | bytearray):
            raise ImageError(
                f"{label}: expected a binary file object. Received: one that reads "
                f"{type(data).__name__}."
            )
    else:
        raise ImageError(
            f"image: expected a path, bytes or a binary file object. "
            f"Received: {type(source).__name__}."
        )
    if not data:
        raise ImageError(
            f"{label}: expected an image file ({_FORMAT_LIST}). Received: an empty file."
        )
    return io.BytesIO(data)


def _read_regular_file(path, label: str) -> bytes:
    """A regular file's bytes, at most :data:`MAX_FILE_BYTES`: a FIFO, a device
    (``/dev/zero``) or a socket is refused before any read, so none can hang."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(
                f"{label}: expected a regular image file. Received: a FIFO, device or socket."
            )
        if info.st_size > MAX_FILE_BYTES:
            raise ImageError(
                f"{label}: expected at most {MAX_FILE_BYTES // 2**20} MB. "
                f"Received: {info.st_size:,} bytes."
            )
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:  # it grew while being read
        raise ImageError(f"{label}: expected at most {MAX_FILE_BYTES // 2**20} MB. Received more.")
    return data


def _check_size(width: int, height: int, label: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(
            f"{label}: expected an image at least 1x1 pixels. Received: {width}x{height}."
        )
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(
            f"{label}: expected at most {MAX_IMAGE_PIXELS:,} pixels. "
            f"Received: {width}x{height} = {width * height:,} pixels."
        )


def _unit(image: Image.Image) -> np.ndarray:
    """An 8-bit single-band image as float32 in [0, 1]."""
    values = np.asarray(image, dtype=np.float32)
    values *= 1 / 255
    return values


def _scaled_integers(image: Image.Image) -> np.ndarray:
    """Greyscale for 16/32-bit integer and float modes, which ``convert("L")`` would clip."""
    values = np.asarray(image).astype(np.float32)
    if image.mode.startswith("I;16"):
        return values / 65535.0
    low, high = float(values.min()), float(values.max())
    if image.mode == "I" and low >= 0 and high <= 65535:
        # Mode I almost always holds 16-bit samples (old Pillow, some TIFFs) or 8-bit ones.
        return values / (255.0 if high <= 255 else 65535.0)
    if not (np.isfinite(low) and np.isfinite(high)):
        return np.clip(np.nan_to_num(values, nan=1.0), 0.0, 1.0)
    if low >= 0 and high <= 1:
        return values
    # Unknown range (negative or huge samples): stretch it, keeping the polarity.
    return (values - low) / (high - low) if high > low else np.ones_like(values)


def _composite_alpha(image: Image.Image) -> np.ndarray:
    """Greyscale of an image with transparency, composited over the colour that is not ink.

    Transparent pixels carry no ink whatever their RGB, so the background must be
    the opposite of the ink: a canvas export holding only black strokes goes on
    white; one holding only white strokes goes on black (its alpha channel is the
    ink).  When the opaque part covers most of the image it holds the paper too,
    so the transparent part takes the paper's tone.
    """
    rgba = image.convert("RGBA")
    tone = _unit(rgba.convert("L"))
    alpha = _unit(rgba.getchannel("A"))
    coverage = float(alpha.mean())
    if coverage == 0.0:
        return np.ones_like(tone)
    if coverage >= 0.5:
        background = float(np.median(tone[alpha >= 0.5])) if (alpha >= 0.5).any() else 1.0
    else:
        ink_tone = float((alpha * tone).sum() / alpha.sum())
        background = 1.0 if ink_tone < 0.5 else 0.0
    return np.clip(alpha * tone + (1.0 - alpha) * background, 0.0, 1.0)


def _to_grey(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        return _scaled_integers(image)
    if "A" in mode or "a" in mode or "transparency" in image.info:
        return _composite_alpha(image)
    if mode == "LAB":
        return _unit(image.getchannel("L"))
    if mode not in ("1", "L", "RGB"):
        image = image.convert("RGB")  # CMYK, YCbCr, HSV, P without transparency
    return _unit(image.convert("L"))


def load_image(source, *, name: str | None = None) -> np.ndarray:
    """Decode an image file into greyscale.

    Args:
        source: a path, bytes-like object or binary file object holding a PNG, JPEG,
            GIF (the first frame), BMP, TIFF or WebP image of any size up to
            :data:`MAX_IMAGE_PIXELS` and any mode (1-bit, L, LA, P with or without
            transparency, RGB, RGBA, CMYK, 16-bit I;16, 32-bit I and F...).
        name: what error messages call the file (default: the path or ``<bytes>``).

    Returns:
        ``(H, W)`` float32 array in [0, 1], 1.0 = white, rotated upright by the EXIF
        orientation tag.  Colour becomes luminance (ITU-R 601).  Transparency is
        composited over the background the ink does not use: black strokes on a
        transparent canvas come out black on white, white strokes white on black.
        16-bit samples are divided by 65535.

    Raises:
        ImageError: empty, missing, truncated or corrupt file, an unsupported format,
            a zero-size image, or more than :data:`MAX_IMAGE_PIXELS` pixels (checked
            from the header, before decoding).
    """
    label = _source_label(source, name)
    stream = _source_stream(source, label)
    try:
        image = Image.open(stream, formats=SUPPORTED_FORMATS)
    except Image.DecompressionBombError:
        raise ImageError(
            f"{label}: expected at most {MAX_IMAGE_PIXELS:,} pixels. "
            f"Received: an image whose header declares far more."
        ) from None
    except Exception as error:  # Pillow raises many types for garbage; all mean "not an image"
        raise ImageError(
            f"{label}: expected an image file ({_FORMAT_LIST}). "
            f"Received: data that is not a readable image "
            f"({_one_line(str(error).replace(repr(stream), 'the data'))})."
        ) from None
    with image:
        width, height = image.size
        _check_size(width, height, label)
        if image.format in ("JPEG", "MPO") and image.mode == "RGB":
            # libjpeg hands over its luma channel directly: the same greyscale as
            # converting RGB, in half the time for a 12-megapixel photo.
            image.draft("L", image.size)
        try:
            image.load()
        except Exception as error:  # truncated or corrupt pixel data, of any exception type
            raise ImageError(
                f"{label}: expected a complete {image.format} image. "
                f"Received: a truncated or corrupt file ({_one_line(error)})."
            ) from None
        try:
            ImageOps.exif_transpose(image, in_place=True)
        except Exception:  # a malformed EXIF block only loses the orientation hint
            pass
        try:
            grey = _to_grey(image)
        except Exception as error:
            raise ImageError(
                f"{label}: expected an image in a greyscale or colour mode. "
                f"Received: unsupported mode {image.mode} ({_one_line(error)})."
            ) from None
    return grey


# --------------------------------------------------------------------------- finding ink


@dataclass(frozen=True)
class Prepared:
    """One digit normalised like MNIST.

    Attributes:
        pixels: ``(28, 28)`` float32 in [0, 1], light ink on a black background, the
            ink's longer side 20 px and its centre of mass on pixel (14, 14).
        has_ink: False when no digit was found (then ``pixels`` is all zero).
        box: the ink's bounding box in the source image, ``(x0, y0, x1, y1)`` with
            ``x1``/``y1`` exclusive (a Pillow crop box), or None without ink.
    """

    pixels: np.ndarray
    has_ink: bool
    box: tuple[int, int, int, int] | None


@dataclass(frozen=True)
class _InkMap:
    """Where the ink is, at the working resolution."""

    strength: np.ndarray  # (h, w) float32 in [0, 1]: 1 = full ink, 0 = paper
    components: list[tuple[np.ndarray, tuple[slice, slice]]]  # (mask, bounding slices)
    scale: tuple[float, float]  # source pixels per working pixel along (y, x)
    source_shape: tuple[int, int]
    level: float = 1.0  # typical strength of the ink's core
    cut: float = 1.0  # strength separating ink from paper (half the level or more)
    noise_floor: float = 0.0  # strength the paper's noise reaches


def _check_fraction(option: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConfigError(f"{option}: expected a number in [0, 1). Received: {value!r}.")


def _check_grey(grey: np.ndarray) -> np.ndarray:
    array = np.asarray(grey)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(
            f"grey: expected a 2-D (H, W) greyscale image. Received: shape {array.shape}."
        )
    real = np.issubdtype(array.dtype, np.number) and not np.iscomplexobj(array)
    if not (real or array.dtype == bool):
        raise ImageError(f"grey: expected real numbers in [0, 1]. Received: dtype {array.dtype}.")
    array = np.asarray(array, dtype=np.float32)  # no copy when it is float32 already
    low, high = float(array.min()), float(array.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ImageError("grey: expected finite values in [0, 1]. Received: NaN or infinity.")
    return np.clip(array, 0.0, 1.0) if low < 0 or high > 1 else array


def _shrink(image: np.ndarray, pixels: int) -> np.ndarray:
    """Area-average (BOX) ``image`` down to about ``pixels`` pixels, keeping its aspect.

    Area averaging keeps a thin stroke's ink (fainter, not gone) and averages noise.
    """
    height, width = image.shape
    if height * width <= pixels:
        return image
    factor = np.sqrt(pixels / (height * width))
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX), np.float32)


def _working_image(grey: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """The image at the working resolution, and source pixels per working pixel (y, x)."""
    work = _shrink(grey, WORKING_PIXELS)
    return work, (grey.shape[0] / work.shape[0], grey.shape[1] / work.shape[1])


def _design(height: int, width: int) -> np.ndarray:
    """Quadratic terms of pixel-centre coordinates scaled to [-1, 1]: (h*w, 6)."""
    y = (np.arange(height, dtype=np.float32) + 0.5) / height * 2 - 1
    x = (np.arange(width, dtype=np.float32) + 0.5) / width * 2 - 1
    yy, xx = np.meshgrid(y, x, indexing="ij")
    yy, xx = yy.ravel(), xx.ravel()
    return np.stack([np.ones_like(xx), xx, yy, xx * xx, xx * yy, yy * yy], axis=1)


def _fit_lighting(work: np.ndarray) -> np.ndarray:
    """The page's brightness without the ink: a robust quadratic surface.

    A quadratic follows a lighting gradient and a vignette but not pen strokes, and
    knows nothing of the ink's polarity.  It is fitted on a 48x48-pixel thumbnail:
    first on the outer sixth of the frame, where a bold digit that fills the centre
    cannot pull it, then re-fitted on every pixel that agrees with the fit (not the
    ink) until stable.
    """
    height, width = work.shape
    thumb = _shrink(work, _LIGHTING_PIXELS)
    design = _design(*thumb.shape)
    values = thumb.ravel().astype(np.float64)
    ring = np.ones(thumb.shape, dtype=bool)
    ring_y, ring_x = max(1, thumb.shape[0] // 6), max(1, thumb.shape[1] // 6)
    ring[ring_y:-ring_y, ring_x:-ring_x] = False
    keep = ring.ravel() if ring.sum() >= design.shape[1] * 2 else np.ones(values.shape, bool)
    coefficients = np.zeros(design.shape[1])
    coefficients[0] = np.median(values)  # a flat page, for images too small to fit
    background = float(np.median(values[ring.ravel()]))
    if np.count_nonzero(values == background) * 2 >= values.size:
        # A digital image (a canvas export, a screenshot): most of it is one exact
        # grey.  The fit below would keep only the pixels within 0.01 of that grey
        # and end on it, in a fraction of the time.
        return np.full((height, width), min(max(background, 0.0), 1.0), dtype=np.float32)
    for _ in range(5):
        if keep.sum() < design.shape[1] * 2:
            break
        coefficients = np.linalg.lstsq(design[keep], values[keep], rcond=None)[0]
        residual = values - design @ coefficients
        centre = np.median(residual[keep])
        spread = 1.4826 * np.median(np.abs(residual[keep] - centre))
        new_keep = np.abs(residual - centre) <= max(2.5 * spread, 0.01)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    surface = (_design(height, width) @ coefficients.astype(np.float32)).reshape(height, width)
    return np.clip(surface, 0.0, 1.0)


def _ink_strength(work: np.ndarray) -> tuple[np.ndarray, float]:
    """Ink strength in [0, 1] whatever the polarity, and the noise level on that scale.

    The residual against the lighting surface has a long tail on the ink's side
    (dark pen on paper: negative; chalk or a white-on-black canvas: positive), so
    the polarity is the side with more mass beyond the noise.  Strength is the
    contrast ratio to the local paper, which cancels uneven lighting.
    """
    surface = _fit_lighting(work)
    residual = work - surface
    if np.count_nonzero(residual) * 2 < residual.size:
        noise = 0.0  # most pixels are the page exactly (a digital image): both medians are 0
    else:
        noise = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    margin = max(3 * noise, 0.02)
    dark_mass = float(np.clip(-residual - margin, 0, None).sum())
    light_mass = float(np.clip(residual - margin, 0, None).sum())
    if dark_mass >= light_mass:
        paper = np.maximum(surface, _DARKEST_PAPER)
        strength = -residual / paper
    else:
        paper = np.maximum(1.0 - surface, _DARKEST_PAPER)
        strength = residual / paper
    flat = float(paper.min()) == float(paper.max())
    typical_paper = float(paper.flat[0]) if flat else float(np.median(paper))
    return np.clip(strength, 0.0, 1.0).astype(np.float32), noise / typical_paper


def _find_ink(grey: np.ndarray, *, ink_threshold: float, min_size: float) -> _InkMap:
    """Segment the ink of a checked greyscale image into its marks, specks left out."""
    work, scale = _working_image(grey)
    strength, noise = _ink_strength(work)
    candidates = strength > ink_threshold
    if not candidates.any():
        return _InkMap(strength, [], scale, grey.shape)
    # Cut at half the typical ink strength: the 50% edge, like a binarised scan.
    level = float(np.percentile(strength[candidates], 90))
    cut = max(ink_threshold, 0.5 * level)
    mask = strength > cut
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    smallest = max(2.0, min_size * min(work.shape))
    components = []
    for index, slices in enumerate(ndimage.find_objects(labels), start=1):
        extent = max(slices[0].stop - slices[0].start, slices[1].stop - slices[1].start)
        if extent >= smallest:  # anything smaller is a speck of dust or noise
            components.append((labels[slices] == index, slices))
    noise_floor = min(3 * noise, 0.5 * ink_threshold)
    return _InkMap(strength, components, scale, grey.shape, level, cut, noise_floor)


def _union_box(components) -> tuple[int, int, int, int]:
    y0 = min(s[0].start for _, s in components)
    y1 = max(s[0].stop for _, s in components)
    x0 = min(s[1].start for _, s in components)
    x1 = max(s[1].stop for _, s in components)
    return y0, y1, x0, x1


def _source_box(ink: _InkMap, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    y0, y1, x0, x1 = box
    scale_y, scale_x = ink.scale
    height, width = ink.source_shape
    return (
        max(0, int(np.floor(x0 * scale_x))),
        max(0, int(np.floor(y0 * scale_y))),
        min(width, int(np.ceil(x1 * scale_x))),
        min(height, int(np.ceil(y1 * scale_y))),
    )


# --------------------------------------------------------------------------- MNIST framing


def _centre_in_frame(digit: np.ndarray) -> np.ndarray:
    """Paste a <= 20x20 digit into 28x28 with its centre of mass on pixel (14, 14).

    MNIST's own centres of mass sit at 14.0 +- 0.3, i.e. whole-pixel shifts; the
    shift is clamped so the digit never leaves the frame.
    """
    frame = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32)
    height, width = digit.shape
    total = float(digit.sum())
    if total <= 0:
        centre_y, centre_x = (height - 1) / 2, (width - 1) / 2
    else:
        centre_y, centre_x = ndimage.center_of_mass(digit)
    top = min(max(round(MNIST_SIZE / 2 - centre_y), 0), MNIST_SIZE - height)
    left = min(max(round(MNIST_SIZE / 2 - centre_x), 0), MNIST_SIZE - width)
    frame[top : top + height, left : left + width] = digit
    return frame


def _edges(profile: np.ndarray, level: float) -> tuple[float, float]:
    """Where a profile first and last crosses ``level``, to a fraction of a pixel.

    ``profile`` holds values in [0, 1] at pixel centres ``i + 0.5`` and reaches
    ``level`` somewhere.  The crossing is interpolated linearly between the centres,
    which recovers the edge of a binary stroke from its anti-aliased pixels
    (within ~0.1 px) and the middle of a blurred edge.
    """
    above = np.flatnonzero(profile >= level)
    first, last = int(above[0]), int(above[-1])
    outside = float(profile[first - 1]) if first > 0 else 0.0
    start = first - 0.5 + (level - outside) / (float(profile[first]) - outside)
    outside = float(profile[last + 1]) if last + 1 < profile.size else 0.0
    stop = last + 0.5 + (float(profile[last]) - level) / (float(profile[last]) - outside)
    return max(0.0, start), min(float(profile.size), stop)


def _frame(crop: np.ndarray, level: float) -> tuple[np.ndarray, tuple[float, ...]]:
    """Frame ink (strength in [0, 1], some of it >= ``level``) like an MNIST digit.

    Returns the ``(28, 28)`` frame and the ink's edges ``(top, bottom, left, right)``
    in ``crop`` pixels.  The ink's longer side spans 20 px and its centre of mass
    lands on pixel (14, 14) to a fraction of a pixel (MNIST rounds it to the
    nearest pixel, but a model loses less from a sub-pixel offset than from the
    whole-pixel jumps that rounding makes when the estimate wobbles).
    """
    rows = np.flatnonzero(crop.any(axis=1))
    cols = np.flatnonzero(crop.any(axis=0))
    if max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 == MNIST_BOX:
        # Already at MNIST's scale (an MNIST digit, a 28x28 export): resampling
        # would only blur it, and whole-pixel centring reproduces MNIST exactly.
        top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        return _centre_in_frame(crop[top:bottom, left:right]), (top, bottom, left, right)
    top, bottom = _edges(crop.max(axis=1), level)
    left, right = _edges(crop.max(axis=0), level)
    step = max(bottom - top, right - left) / MNIST_BOX  # crop pixels per MNIST pixel
    # NIST's digits were binary and MNIST's greys come only from shrinking them
    # with anti-aliasing.  Do the same: binarise at the ink cut on a copy enlarged
    # so one MNIST pixel spans >= 4 of its pixels (the edge keeps its sub-pixel
    # position), then area-average (BOX) into the frame.
    factor = max(1, int(np.ceil(4 / step)))
    if factor > 1:
        size = (crop.shape[1] * factor, crop.shape[0] * factor)
        crop = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BILINEAR))
    binary = (crop >= level).astype(np.float32)
    half_height, half_width = (bottom - top) / step / 2, (right - left) / step / 2

    def render(centre_y: float, centre_x: float) -> np.ndarray:
        half = MNIST_SIZE / 2 * step
        x0, x1 = (centre_x - half) * factor, (centre_x + half) * factor
        y0, y1 = (centre_y - half) * factor, (centre_y + half) * factor
        # The frame may reach past the crop: pad it with zeros that far and two
        # pixels more (Pillow clips a cell cut by the image's edge).  Where a
        # cell's edge falls on a pixel's centre, Pillow's rounding decides the
        # pixel, and that rounding moves with the box's offset: a different pad
        # changes such pixels by up to one pixel's share of a cell.
        pad_top, pad_left = max(0, int(np.ceil(-y0))) + 2, max(0, int(np.ceil(-x0))) + 2
        pad_bottom = max(0, int(np.ceil(y1 - binary.shape[0]))) + 2
        pad_right = max(0, int(np.ceil(x1 - binary.shape[1]))) + 2
        padded = np.pad(binary, ((pad_top, pad_bottom), (pad_left, pad_right)))
        box = (x0 + pad_left, y0 + pad_top, x1 + pad_left, y1 + pad_top)
        frame = Image.fromarray(padded).resize(
            (MNIST_SIZE, MNIST_SIZE), Image.Resampling.BOX, box=box
        )
        return np.asarray(frame, dtype=np.float32)

    centre_y, centre_x = (top + bottom) / 2, (left + right) / 2
    first = render(centre_y, centre_x)
    mass_y, mass_x = ndimage.center_of_mass(first)
    # Move the content onto (14, 14), as far as the frame allows.
    middle = MNIST_SIZE / 2
    move_y = np.clip(middle - mass_y, half_height - middle, middle - half_height)
    move_x = np.clip(middle - mass_x, half_width - middle, middle - half_width)
    frame = render(centre_y - move_y * step, centre_x - move_x * step)
    return frame, (top, bottom, left, right)


def _within(mask: np.ndarray, distance: float, where: np.ndarray) -> np.ndarray:
    """The pixels within ``distance`` of ``mask`` (Euclidean), as far as ``where`` goes:
    outside ``where`` the answer may be True anyway.

    The exact distance transform costs milliseconds; it is needed only when a
    pixel of ``where`` lies beyond the square that fits in the ``distance``
    disk around the mask (a cheap, separable dilation): never for a clean
    canvas, whose soft stroke edges touch the strokes.
    """
    outside = where & ~mask
    if not outside.any():
        return np.ones(mask.shape, dtype=bool)
    half = int(distance / np.sqrt(2))
    if half >= 1:
        near = ndimage.maximum_filter(mask, size=2 * half + 1, mode="constant", cval=False)
        if not (outside & ~near).any():
            return np.ones(mask.shape, dtype=bool)
    return ndimage.distance_transform_edt(~mask) <= distance


def _normalise(ink: _InkMap, components) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The given components' ink framed like MNIST, and its box (working pixels).

    MNIST scaled each binary NIST digit's bounding box to 20 px, so the box edge
    is the strokes' binary edge: here, where the ink crosses the cut (about half
    its typical strength).  Only the components' strokes and their soft fringe
    are kept, so specks and neighbouring digits inside the box do not leak in.
    """
    y0, y1, x0, x1 = _union_box(components)
    # The soft edge kept around the thresholded strokes, which the edges cut through.
    fringe = max(2, round(0.08 * max(y1 - y0, x1 - x0)))
    height, width = ink.strength.shape
    y0, y1 = max(0, y0 - fringe), min(height, y1 + fringe)
    x0, x1 = max(0, x0 - fringe), min(width, x1 + fringe)
    keep = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for mask, (rows, cols) in components:
        keep[rows.start - y0 : rows.stop - y0, cols.start - x0 : cols.stop - x0] |= mask
    crop = ink.strength[y0:y1, x0:x1]
    # Keep the fringe of the kept strokes, but nothing else (specks, other digits).
    crop = crop * _within(keep, fringe, crop > ink.noise_floor)
    # Noise floor -> 0 and typical ink -> 1: MNIST strokes are saturated with soft edges.
    span = max(ink.level - ink.noise_floor, 1e-6)
    crop = np.clip((crop - ink.noise_floor) / span, 0.0, 1.0).astype(np.float32)
    pixels, (top, bottom, left, right) = _frame(crop, (ink.cut - ink.noise_floor) / span)
    box = (
        y0 + int(np.floor(top)),
        y0 + int(np.ceil(bottom)),
        x0 + int(np.floor(left)),
        x0 + int(np.ceil(right)),
    )
    return np.clip(pixels, 0.0, 1.0), box


def frame_ink(ink: np.ndarray, *, level: float = 0.5) -> np.ndarray:
    """Frame a clean image of light marks on black (no paper, no lighting) like
    :func:`prepare_digit` frames the ink it finds: ``(28, 28)`` float32, the marks'
    longer side 20 px, centre of mass on (14, 14).  All zero when nothing reaches
    ``level``.  Much faster than :func:`prepare_digit`, for generated images."""
    strength = _as_unit_float(ink)
    rows = np.flatnonzero((strength >= level).any(axis=1))
    cols = np.flatnonzero((strength >= level).any(axis=0))
    if not rows.size:
        return np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32)
    crop = strength[max(0, rows[0] - 2) : rows[-1] + 3, max(0, cols[0] - 2) : cols[-1] + 3]
    return np.clip(_frame(np.ascontiguousarray(crop), level)[0], 0.0, 1.0)


def _blank() -> Prepared:
    return Prepared(np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32), False, None)


def prepare_digit(
    grey: np.ndarray, *, ink_threshold: float = 0.2, min_size: float = 0.04
) -> Prepared:
    """Normalise one handwritten digit like MNIST.

    Args:
        grey: ``(H, W)`` greyscale in [0, 1] of either polarity (dark ink on paper or
            light ink on black), e.g. from :func:`load_image`.
        ink_threshold: the least contrast against the local paper, as a fraction of
            the paper's brightness (0..1), that counts as ink.
        min_size: marks whose bounding box is smaller than this fraction of the
            image's shorter side are specks and ignored.

    Returns:
        A :class:`Prepared` digit: uneven lighting removed, the ink cropped (all
        non-speck marks together), binarised and shrunk with anti-aliasing so its
        longer side is 20 px keeping its aspect ratio, and placed in 28x28 with its
        centre of mass on pixel (14, 14), light on black.  Ink already at MNIST's
        scale (an MNIST image) is only contrast-stretched and moved by whole
        pixels, so MNIST digits come back unchanged.

    Raises:
        ImageError: ``grey`` is not a finite 2-D numeric array.
        ConfigError: an option is outside [0, 1).
    """
    _check_fraction("ink_threshold", ink_threshold)
    _check_fraction("min_size", min_size)
    ink = _find_ink(_check_grey(grey), ink_threshold=ink_threshold, min_size=min_size)
    if not ink.components:
        return _blank()
    pixels, box = _normalise(ink, ink.components)
    return Prepared(pixels, True, _source_box(ink, box))


def prepare_item(
    grey: np.ndarray,
    shape: tuple[int, int] = (MNIST_SIZE, MNIST_SIZE),
    *,
    ink_threshold: float = 0.2,
    min_size: float = 0.04,
) -> Prepared:
    """Normalise a photo of one object (a garment, a letter) like Fashion-MNIST.

    Fashion-MNIST's images are product photos trimmed to the object, its longer
    side scaled to the whole frame, centred and negated, greys kept: here the
    lighting is removed as for digits, the marks cropped together, their
    strength (darkness against the paper, 0..1) stretched so the strongest is
    1, and the crop scaled so its longer side fills ``shape``, centred, light
    on black.  Nothing is binarised: textures and shades are part of a garment.
    """
    _check_fraction("ink_threshold", ink_threshold)
    _check_fraction("min_size", min_size)
    ink = _find_ink(_check_grey(grey), ink_threshold=ink_threshold, min_size=min_size)
    height, width = shape
    if not ink.components:
        return Prepared(np.zeros(shape, dtype=np.float32), False, None)
    y0, y1, x0, x1 = _union_box(ink.components)
    crop = np.clip(ink.strength[y0:y1, x0:x1] - ink.noise_floor, 0.0, None)
    crop = crop / max(float(crop.max()), 1e-6)
    scale = min(height / crop.shape[0], width / crop.shape[1])
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    resized = np.asarray(
        Image.fromarray(crop.astype(np.float32), mode="F").resize(size, Image.Resampling.BOX),
        dtype=np.float32,
    )
    frame = np.zeros(shape, dtype=np.float32)
    top, left = (height - size[1]) // 2, (width - size[0]) // 2
    frame[top : top + size[1], left : left + size[0]] = resized
    return Prepared(np.clip(frame, 0.0, 1.0), True, _source_box(ink, (y0, y1, x0, x1)))


def _group_left_to_right(components, *, overlap: float) -> list[list]:
    """Merge marks whose column ranges overlap by more than ``overlap`` of the narrower one.

    The two strokes of a '5' or the pieces of a broken '4' share columns; separate
    digits of a number barely do.
    """
    ordered = sorted(components, key=lambda c: (c[1][1].start, c[1][1].stop))
    groups: list[list] = []
    spans: list[tuple[int, int]] = []
    for component in ordered:
        start, stop = component[1][1].start, component[1][1].stop
        if spans:
            group_start, group_stop = spans[-1]
            shared = min(stop, group_stop) - max(start, group_start)
            narrower = min(stop - start, group_stop - group_start)
            if shared > overlap * narrower:
                groups[-1].append(component)
                spans[-1] = (min(start, group_start), max(stop, group_stop))
                continue
        groups.append([component])
        spans.append((start, stop))
    return groups


def split_digits(
    grey: np.ndarray,
    *,
    ink_threshold: float = 0.2,
    min_size: float = 0.04,
    overlap: float = 0.5,
    min_height: float = 0.25,
) -> list[Prepared]:
    """Find the digits of a written number, left to right, and normalise each like MNIST.

    Args:
        grey: ``(H, W)`` greyscale in [0, 1] of either polarity.
        ink_threshold, min_size: as for :func:`prepare_digit`.
        overlap: marks whose column ranges share more than this fraction of the
            narrower one's width belong to the same digit.
        min_height: digits whose longer side is below this fraction of the tallest
            digit's height are dropped (dots, dashes, smudges).

    Returns:
        One :class:`Prepared` per digit (``has_ink`` True, ``box`` in source pixels),
        ordered by their left edge; ``[]`` for a blank image.  The digits must be
        written on one line; touching digits come out as one.

    Raises:
        ImageError: ``grey`` is not a finite 2-D numeric array.
        ConfigError: an option is outside [0, 1).
    """
    for option, value in [
        ("ink_threshold", ink_threshold),
        ("min_size", min_size),
        ("overlap", overlap),
        ("min_height", min_height),
    ]:
        _check_fraction(option, value)
    ink = _find_ink(_check_grey(grey), ink_threshold=ink_threshold, min_size=min_size)
    groups = _group_left_to_right(ink.components, overlap=overlap)
    boxes = [_union_box(group) for group in groups]
    if not boxes:
        return []
    tallest = max(y1 - y0 for y0, y1, _, _ in boxes)
    digits = []
    for group, box in zip(groups, boxes, strict=True):
        y0, y1, x0, x1 = box
        if max(y1 - y0, x1 - x0) < min_height * tallest:
            continue
        pixels, ink_box = _normalise(ink, group)
        digits.append(Prepared(pixels, True, _source_box(ink, ink_box)))
    return digits


# --------------------------------------------------------------------------- simulation


def _as_unit_float(digit: np.ndarray) -> np.ndarray:
    array = np.asarray(digit)
    if array.ndim != 2 or array.size == 0:
        raise ImageError(f"digit: expected a 2-D (H, W) image. Received: shape {array.shape}.")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ImageError(f"digit: expected numbers. Received: dtype {array.dtype}.")
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / 255.0
    return np.clip(np.nan_to_num(array.astype(np.float32)), 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean noise with features about ``sigma`` pixels wide, unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return field / max(float(field.std()), 1e-6)


def render_photo(
    digit: np.ndarray,
    *,
    rng: np.random.Generator,
    size: tuple[int, int] = (480, 640),
) -> bytes:
    """Simulate a phone photo of a digit written in dark ink on paper.

    Args:
        digit: an MNIST-style image, light on dark, ``(28, 28)`` (any 2-D size works),
            uint8 0..255 or float in [0, 1].
        rng: the source of all randomness (same seed, same photo).
        size: ``(height, width)`` of the photo in pixels.

    Returns:
        The photo as JPEG bytes (so a check exercises the whole decode path): RGB,
        quality 70..90, the digit's 20 px box 15%..60% of the shorter side at a
        random place, rotated up to +-10 degrees, slightly out of focus, ink
        darkness 75..95%, on textured paper, lit by a random gradient and a
        vignette, with a colour cast and sensor noise.

    Raises:
        ImageError: ``digit`` is not a 2-D numeric image, or ``size`` is under 32x32.
    """
    ink = _as_unit_float(digit)
    height, width = size
    if height < 32 or width < 32:
        raise ImageError(f"size: expected at least 32x32 pixels. Received: {height}x{width}.")
    # Enlarge the whole frame so the digit's (~20 px) box spans the chosen share.
    pixels_per_cell = rng.uniform(0.15, 0.6) * min(height, width) / MNIST_BOX
    side = (
        max(2, round(ink.shape[0] * pixels_per_cell)),
        max(2, round(ink.shape[1] * pixels_per_cell)),
    )
    large = Image.fromarray(ink).resize((side[1], side[0]), Image.Resampling.BICUBIC)
    large = large.rotate(rng.uniform(-10, 10), Image.Resampling.BICUBIC, expand=True, fillcolor=0)
    stroke = np.clip(np.asarray(large, dtype=np.float32), 0.0, 1.0)
    rows = np.flatnonzero((stroke > 0.05).any(axis=1))
    cols = np.flatnonzero((stroke > 0.05).any(axis=0))
    if rows.size:  # keep only the inked part so it can go anywhere in the frame
        stroke = stroke[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    stroke = stroke[:height, :width]
    canvas = np.zeros((height, width), dtype=np.float32)
    top = int(rng.integers(0, height - stroke.shape[0] + 1))
    left = int(rng.integers(0, width - stroke.shape[1] + 1))
    canvas[top : top + stroke.shape[0], left : left + stroke.shape[1]] = stroke
    canvas = ndimage.gaussian_filter(canvas, rng.uniform(0.0, 0.4) * pixels_per_cell)

    paper = rng.uniform(0.8, 0.95) * (1 + 0.02 * _smooth_noise(rng, (height, width), 3.0))
    reflectance = paper * (1 - rng.uniform(0.75, 0.95) * canvas)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y, x = y / height * 2 - 1, x / width * 2 - 1
    angle = rng.uniform(0, 2 * np.pi)
    gradient = 1 - rng.uniform(0.1, 0.4) * (0.5 + 0.25 * (np.cos(angle) * x + np.sin(angle) * y))
    vignette = 1 - rng.uniform(0.05, 0.25) * (x * x + y * y) / 2
    light = rng.uniform(0.8, 1.1) * gradient * vignette
    tint = np.array([1.0, rng.uniform(0.93, 1.0), rng.uniform(0.8, 0.97)], dtype=np.float32)
    photo = (reflectance * light)[..., None] * tint
    photo += rng.normal(0, rng.uniform(0.005, 0.025), photo.shape).astype(np.float32)
    encoded = np.clip(photo * 255 + 0.5, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(encoded).save(buffer, "JPEG", quality=int(rng.integers(70, 91)))
    return buffer.getvalue()
