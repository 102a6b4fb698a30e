"""Generated images that are not digits, to teach and test "not a digit".

A digit recogniser trained only on digits reads anything as a digit.  The
"not a digit" detector (:mod:`digitlab.models.detector`) learns what is not one
from these families, each an image of light marks on black like MNIST's raw
strokes (before MNIST's framing, which the caller applies):

* ``letters``: letters of several alphabets that do not look like a digit
  (no O, I, l, S, Z, B, G, q...), in the fonts that ship with matplotlib
  (DejaVu, STIX and Computer Modern: three families of shapes, so that no one
  font's way of drawing a glyph is what the detector learns), any size, slant
  and weight, slightly rotated, sheared and stretched;
* ``symbols``: punctuation, currency, arrows, card suits, maths signs;
* ``words``: two or three letters written together;
* ``scribbles``: random pen strokes, curved and straight;
* ``shapes``: filled and outlined polygons, stars, blobs and grids;
* ``textures``: thresholded smooth noise, stripes, dots and hatching;
* ``noise``: speckle of any density.

Every generator takes a ``numpy.random.Generator`` and returns ``(96, 96)``
uint8 images, so a seed gives the same images everywhere.  Nothing here reads
a file but the fonts; without them the letter families fall back to Pillow's
built-in font.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIZE = 96
#: Letters whose shapes no digit shares (O/0, I/l/1, Z/2, S/5, B/8, G/b/6, g/q/9, T/7... left out).
LETTERS = "ACEFHKMNPRUVWXYacdefhkmnprtuvwxyΔΘΛΞΠΣΦΨΩαβδεζθλμξπσφψωЖИЛФШЩЮЯДжилфшщюя"
SYMBOLS = "#%&@*+=?$€£¥©®™♠♣♥♦☺→←↔∞≈≠≤≥<>~^§¶÷×±√∑∏∫◊★☆♪♫"
FAMILIES = ("letters", "symbols", "words", "scribbles", "shapes", "textures", "noise")


#: matplotlib's bundled text fonts: DejaVu (sans, serif, mono), STIX (a Times-like
#: serif) and Computer Modern (TeX's roman, sans, italic, bold, typewriter).  Its
#: other files are symbol, math-italic and size variants, or a last-resort font.
FONT_PREFIXES = (
    "DejaVuSans",
    "DejaVuSerif",
    "STIXGeneral",
    "cmr10",
    "cmss10",
    "cmti10",
    "cmb10",
    "cmtt10",
)


@cache
def font_files() -> tuple[Path, ...]:
    """The text fonts bundled with matplotlib (found without importing it)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return ()
    folder = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
    return tuple(
        sorted(
            p
            for p in folder.glob("*.ttf")
            if p.name.startswith(FONT_PREFIXES) and "Display" not in p.name
        )
    )


@cache
def _characters(font_file: Path) -> frozenset[int]:
    """The code points ``font_file`` draws."""
    from fontTools.ttLib import TTFont  # a dependency of matplotlib

    return frozenset(TTFont(str(font_file), lazy=True).getBestCmap() or ())


def _has_glyphs(font_file: Path, text: str) -> bool:
    return all(ord(character) in _characters(font_file) for character in text)


def _font(rng, size: int, text: str = ""):
    fonts = [f for f in font_files() if _has_glyphs(f, text)] if text else font_files()
    if not fonts:
        return ImageFont.load_default(size)
    return ImageFont.truetype(str(fonts[rng.integers(len(fonts))]), size)


def _canvas():
    image = Image.new("L", (SIZE, SIZE), 0)
    return image, ImageDraw.Draw(image)


def _finish(image: Image.Image, rng, *, rotate: float = 12.0) -> np.ndarray:
    if rotate:
        image = image.rotate(float(rng.uniform(-rotate, rotate)), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def _text(text: str, rng, size_range=(40, 70)) -> np.ndarray:
    image, draw = _canvas()
    font = _font(rng, int(rng.integers(*size_range)), text)
    draw.text((SIZE / 2, SIZE / 2), text, fill=255, font=font, anchor="mm")
    if rng.random() < 0.3:  # a heavier pen
        image = image.filter(ImageFilter.MaxFilter(3))
    if rng.random() < 0.5:  # another hand's slant and proportions
        image = _shear_and_stretch(image, rng)
    return _finish(image, rng)


def _shear_and_stretch(image: Image.Image, rng) -> Image.Image:
    """``image`` slanted by up to ~15 degrees and stretched by up to 25% either
    way, about its centre."""
    shear = float(rng.uniform(-0.25, 0.25))
    stretch_x, stretch_y = (float(v) for v in rng.uniform(0.8, 1.25, size=2))
    # Image.transform maps each output pixel (x, y) to the input's (a x + b y + c, d x + e y + f).
    a, b, d, e = 1 / stretch_x, -shear / stretch_x, 0.0, 1 / stretch_y
    centre = SIZE / 2
    c = centre - a * centre - b * centre
    f = centre - d * centre - e * centre
    return image.transform(
        image.size, Image.Transform.AFFINE, (a, b, c, d, e, f), Image.Resampling.BILINEAR
    )


def letter(rng) -> np.ndarray:
    return _text(str(rng.choice(list(LETTERS))), rng)


def symbol(rng) -> np.ndarray:
    return _text(str(rng.choice(list(SYMBOLS))), rng)


def word(rng) -> np.ndarray:
    count = int(rng.integers(2, 4))
    return _text("".join(rng.choice(list(LETTERS), count)), rng, size_range=(24, 40))


def _points(rng, count: int) -> list[tuple[float, float]]:
    return [tuple(rng.uniform(8, SIZE - 8, size=2)) for _ in range(count)]


def scribble(rng) -> np.ndarray:
    image, draw = _canvas()
    for _ in range(int(rng.integers(1, 4))):
        draw.line(
            _points(rng, int(rng.integers(5, 16))),
            fill=255,
            width=int(rng.integers(3, 9)),
            joint="curve",
        )
    return _finish(image, rng, rotate=0)


def shape(rng) -> np.ndarray:
    image, draw = _canvas()
    kind = int(rng.integers(5))
    width = int(rng.integers(3, 8))
    fill = 255 if rng.random() < 0.5 else None
    if kind == 0:  # a polygon
        draw.polygon(
            _points(rng, int(rng.integers(3, 7))), fill=fill or 0, outline=255, width=width
        )
    elif kind == 1:  # a star
        points, spikes = [], int(rng.integers(5, 9))
        for i in range(2 * spikes):
            radius = 40 if i % 2 == 0 else rng.uniform(12, 24)
            angle = np.pi * i / spikes
            points.append((SIZE / 2 + radius * np.cos(angle), SIZE / 2 + radius * np.sin(angle)))
        draw.polygon(points, fill=fill or 0, outline=255, width=width)
    elif kind == 2:  # a filled rectangle or several
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = rng.uniform(8, 50, size=2)
            draw.rectangle((x0, y0, x0 + rng.uniform(15, 40), y0 + rng.uniform(15, 40)), fill=255)
    elif kind == 3:  # a grid
        step = int(rng.integers(12, 30))
        for offset in range(8, SIZE - 8, step):
            draw.line((offset, 8, offset, SIZE - 8), fill=255, width=width)
            draw.line((8, offset, SIZE - 8, offset), fill=255, width=width)
    else:  # a blob
        noise = Image.fromarray((rng.random((12, 12)) * 255).astype(np.uint8)).resize(
            (SIZE, SIZE), Image.Resampling.BICUBIC
        )
        y, x = np.mgrid[0:SIZE, 0:SIZE]
        disc = ((y - SIZE / 2) ** 2 + (x - SIZE / 2) ** 2) < rng.uniform(20, 40) ** 2
        return np.where(disc & (np.asarray(noise) > 90), 255, 0).astype(np.uint8)
    return _finish(image, rng, rotate=30)


def texture(rng) -> np.ndarray:
    kind = int(rng.integers(4))
    if kind == 0:  # thresholded smooth noise
        noise = Image.fromarray((rng.random((SIZE, SIZE)) * 255).astype(np.uint8))
        smooth = np.asarray(noise.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.5, 6)))))
        cut = np.percentile(smooth, rng.uniform(45, 85))
        return np.where(smooth > cut, 255, 0).astype(np.uint8)
    image, draw = _canvas()
    step = int(rng.integers(6, 16))
    width = int(rng.integers(2, max(3, step - 2)))
    if kind == 1:  # stripes
        for offset in range(-SIZE, 2 * SIZE, step):
            draw.line((offset, 0, offset + SIZE * rng.uniform(-1, 1), SIZE), fill=255, width=width)
    elif kind == 2:  # dots
        for y in range(step // 2, SIZE, step):
            for x in range(step // 2, SIZE, step):
                r = width / 2
                draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    else:  # hatching
        for offset in range(-SIZE, 2 * SIZE, step):
            draw.line((offset, 0, offset + SIZE, SIZE), fill=255, width=max(1, width // 2))
            draw.line((offset, SIZE, offset + SIZE, 0), fill=255, width=max(1, width // 2))
    return _finish(image, rng, rotate=45)


def noise(rng) -> np.ndarray:
    cells = int(rng.choice([24, 32, 48, 96]))
    density = rng.uniform(0.05, 0.7)
    speckle = (rng.random((cells, cells)) < density) * rng.uniform(0.4, 1.0, (cells, cells))
    image = Image.fromarray((speckle * 255).astype(np.uint8)).resize((SIZE, SIZE))
    return np.asarray(image, dtype=np.uint8)


GENERATORS = {
    "letters": letter,
    "symbols": symbol,
    "words": word,
    "scribbles": scribble,
    "shapes": shape,
    "textures": texture,
    "noise": noise,
}


def generate(count: int, rng, families=FAMILIES) -> dict[str, np.ndarray]:
    """``count`` images of each family: ``{family: (count, 96, 96) uint8}``, none blank."""
    made = {}
    for name in families:
        images = []
        while len(images) < count:
            image = GENERATORS[name](rng)
            if image.max() >= 128:  # a glyph the font lacks draws nothing
                images.append(image)
        made[name] = np.stack(images)
    return made


def typed_digits(count: int, rng) -> np.ndarray:
    """``(count, 96, 96)`` uint8 digits 0-9 typed in the bundled fonts (light on black):
    what a digit looks like when it is not handwritten."""
    return np.stack([_text(str(int(rng.integers(10))), rng) for _ in range(count)])
