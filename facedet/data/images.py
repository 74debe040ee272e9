"""Opening image files: every image becomes an upright 8-bit RGB picture.

Two functions, and they agree by construction:

    image_size(path) -> (width, height)    header only, no pixels decoded
    load_image(path) -> PIL.Image (RGB)    pixels decoded, EXIF orientation applied

and `collect_images(paths)` turns the files and folders named on a command line into the
list of image files to open.

Phones store a portrait photo as landscape pixels plus an EXIF "Orientation" tag that
says how to turn it. Labels are drawn on the picture as people see it, so boxes,
widths and heights in facedet always refer to the upright (turned) image. Both
functions read the tag the same way, before any pixel is decoded.

Any file that cannot be opened (missing, not an image, truncated, corrupt) raises
`DataError("<path>: not a readable image (<reason>)")`.

Size limit: Pillow's decompression-bomb guard is left as it is. A header is believed
before any pixel is read, so a 100-byte file claiming 50000 x 50000 pixels would ask
for 7.5 GB; Pillow warns above `PIL.Image.MAX_IMAGE_PIXELS` (89.5 Mpx) and refuses
twice that (179 Mpx), which becomes the DataError above ("... exceeds limit ...").
A 64 Mpx photo (8000 x 8000) loads silently, in about a second. For larger scans,
raise `PIL.Image.MAX_IMAGE_PIXELS` in your own script.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from facedet.errors import DataError

# EXIF orientation -> the transpose that makes the stored pixels upright (the same
# table as PIL.ImageOps.exif_transpose). 1 (or no tag) means already upright.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = {5, 6, 7, 8}  # the quarter turns: stored width is the upright height

# What Pillow raises for a file it cannot decode: OSError (also UnidentifiedImageError
# and "image file is truncated"), SyntaxError (broken headers in some plugins),
# ValueError/EOFError (impossible sizes, early end of data), DecompressionBombError.
_UNREADABLE = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)

# Integer modes wider than 8 bits. 16-bit PNG/TIFF open as "I;16*", older files as "I".
_WIDE_INT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the upright image, read from the file header.

    Orientations 5-8 are quarter turns, so the stored width and height swap.
    No pixels are decoded: reading the sizes of a few thousand images takes seconds.
    A truncated file whose header is intact passes here and fails in `load_image`.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = _orientation(image)
    except _UNREADABLE as error:
        raise _unreadable(path, error) from None
    return (height, width) if orientation in _SWAPS_SIDES else (width, height)


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image file into an upright RGB PIL image of size `image_size(path)`.

    Mode conversions: grayscale and palette are expanded to RGB; transparent pixels
    (LA, PA, RGBA, palette or RGB with a transparency key) are composited on white;
    16-bit and 32-bit pixels are scaled to 8 bits (see `_wide_to_8bit`), not clipped.
    """
    try:
        with Image.open(path) as image:
            turn = _UPRIGHT.get(_orientation(image))
            image.load()
            rgb = _to_rgb(image)
    except _UNREADABLE as error:
        raise _unreadable(path, error) from None
    return rgb.transpose(turn) if turn is not None else rgb


# What counts as an image file, everywhere facedet looks in a folder (data sets, crops, infer);
# compared lower-cased, so .JPG (cameras, LabelImg on Windows) is one too.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


def is_image(path: Path) -> bool:
    """An image file by its suffix, in any case (.jpg, .JPG, .Jpeg)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def collect_images(paths: list[str], skip: Path | None = None) -> list[Path]:
    """Files as given; directories searched recursively for image files (sorted), except
    those inside `skip` (the folder annotated images are written to)."""
    skip = skip.resolve() if skip else None
    images = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if is_image(p))
            images += [p for p in found if skip is None or skip not in p.resolve().parents]
        elif path.exists():
            images.append(path)
        else:
            raise DataError(f"{path}: no such file or directory")
    return images


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8) of an opened, not yet decoded image; 1 if absent."""
    try:
        # The base-class getexif() reads only what Image.open parsed from the header;
        # PngImageFile.getexif() would decode all pixels looking for a late eXIf chunk.
        value = Image.Image.getexif(image).get(ExifTags.Base.Orientation, 1)
        return int(value) if int(value) in _UPRIGHT else 1
    except Exception:  # a damaged EXIF block costs the orientation, never the image
        return 1


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB, 8 bits per channel."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image.copy()
    if image.mode in _WIDE_INT_MODES or image.mode == "F":
        return Image.fromarray(_wide_to_8bit(np.asarray(image), image.mode)).convert("RGB")
    has_alpha = "A" in image.mode or "a" in image.mode or "transparency" in image.info
    if has_alpha:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")  # "1", "L", "P", "CMYK", "YCbCr", "LAB", "HSV"


def _wide_to_8bit(pixels: np.ndarray, mode: str) -> np.ndarray:
    """(H, W) 16-bit, 32-bit or float pixels -> (H, W) uint8, keeping relative levels.

    I;16:              0..65535 -> 0..255 (divide by 257 = 65535 / 255).
    I (int32):         the same when all values fit in 0..65535 (16-bit data, which is
                       what most "I" files hold); otherwise stretched min..max -> 0..255.
    F (float32):       0..1 -> 0..255 when all values lie in [0, 1]; else stretched.
    """
    values = pixels.astype(np.float64)
    low, high = (values.min(), values.max()) if values.size else (0.0, 0.0)
    if mode != "F" and low >= 0 and high <= 65535:
        scaled = values / 257.0
    elif mode == "F" and low >= 0 and high <= 1:
        scaled = values * 255.0
    else:
        scaled = (values - low) * (255.0 / max(high - low, 1e-12))
    return np.rint(scaled).clip(0, 255).astype(np.uint8)


def _unreadable(path: str | os.PathLike, error: Exception) -> DataError:
    """One-line DataError naming the file and what went wrong with it."""
    if isinstance(error, UnidentifiedImageError):
        reason = "unknown or damaged image format"
    elif isinstance(error, OSError) and error.strerror:
        reason = error.strerror  # "No such file or directory" without the repeated path
    else:
        reason = (str(error).splitlines() or [""])[0] or type(error).__name__
    return DataError(f"{Path(path)}: not a readable image ({reason})")
