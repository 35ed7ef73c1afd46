"""Handwriting-like digit images for the hidden inputs, drawn from matplotlib's bundled fonts.

The collage and mixup feedback pictures show the hidden inputs, so they should look
like the MNIST digits students train on, without downloading or committing a dataset.
Each image is one digit glyph (DejaVu Sans, Serif or Mono, regular or bold) scaled and
shifted at random, plus a little noise so that no two quarters of two images are ever
equal (the collage checks tell the quarters apart by value). Seeded: the same
generator gives the same images.
"""

import functools

import numpy as np

FONTS = ("DejaVu Sans", "DejaVu Serif", "DejaVu Sans Mono")
WEIGHTS = ("normal", "bold")
#: Glyphs are rendered this many pixels high, then resampled to the image size.
GLYPH_PIXELS = 64
NOISE = 0.05


@functools.lru_cache(maxsize=None)
def glyph(digit, family, weight):
    """The anti-aliased bitmap of one digit, float64 ``[h, w]`` in [0, 1], cropped to the ink."""
    from matplotlib import font_manager, ft2font

    font = ft2font.FT2Font(font_manager.findfont(font_manager.FontProperties(family=family, weight=weight)))
    font.set_size(GLYPH_PIXELS, 72)
    font.set_text(str(digit), 0.0)
    font.draw_glyphs_to_bitmap(antialiased=True)
    bitmap = np.asarray(font.get_image(), dtype=np.float64) / 255
    rows, columns = np.nonzero(bitmap > 0)
    return bitmap[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]


def resample(image, height, width):
    """Bilinear resampling of ``image`` ``[h, w]`` to ``[height, width]``."""
    rows = np.linspace(0, image.shape[0] - 1, height)
    columns = np.linspace(0, image.shape[1] - 1, width)
    along_rows = np.stack([np.interp(rows, np.arange(image.shape[0]), image[:, c]) for c in range(image.shape[1])], 1)
    return np.stack([np.interp(columns, np.arange(image.shape[1]), row) for row in along_rows])


def digit_image(rng, height, width):
    """One digit ``[height, width]`` in [0, 1]: random digit, font, size (60-90 % of the height) and shift."""
    ink = glyph(int(rng.integers(10)), FONTS[rng.integers(len(FONTS))], WEIGHTS[rng.integers(len(WEIGHTS))])
    glyph_height = max(1, round(height * rng.uniform(0.6, 0.9)))
    glyph_width = max(1, min(width, round(glyph_height * ink.shape[1] / ink.shape[0])))
    canvas = np.zeros((height, width))
    top = int(rng.integers(height - glyph_height + 1))
    left = int(rng.integers(width - glyph_width + 1))
    canvas[top : top + glyph_height, left : left + glyph_width] = resample(ink, glyph_height, glyph_width)
    return canvas


def digit_batch(rng, shape, dtype):
    """A batch ``[C, H, W]`` of digits (one per channel) with a little uniform noise, as ``dtype``."""
    channels, height, width = shape
    images = np.stack([digit_image(rng, height, width) for _ in range(channels)])
    return (images * (1 - NOISE) + NOISE * rng.uniform(size=shape)).astype(dtype)
