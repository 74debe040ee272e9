"""load_image / image_size: every mode to upright 8-bit RGB, bad files to one-line DataErrors."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from facedet.data.images import _to_rgb, image_size, load_image
from facedet.errors import DataError

ORIENTATION = 0x0112  # the EXIF tag id


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def pixels(path: Path) -> np.ndarray:
    image = load_image(path)
    assert image.mode == "RGB"
    return np.asarray(image).astype(int)  # (H, W, 3)


def quadrants_image() -> Image.Image:
    """30 x 20 RGB picture with a distinct colour in each corner, to see turns and flips."""
    array = np.zeros((20, 30, 3), dtype=np.uint8)
    array[:10, :15] = (255, 0, 0)  # top-left red
    array[:10, 15:] = (0, 255, 0)  # top-right green
    array[10:, :15] = (0, 0, 255)  # bottom-left blue
    array[10:, 15:] = (255, 255, 255)  # bottom-right white
    return Image.fromarray(array)


def with_orientation(image: Image.Image, path: Path, orientation: int) -> Path:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return save(image, path, exif=exif, quality=95)


# --------------------------------------------------------------------------- modes


def test_rgb_jpeg_keeps_size_and_colours(tmp_path):
    path = save(quadrants_image(), tmp_path / "q.jpg", quality=95)
    array = pixels(path)
    assert array.shape == (20, 30, 3)
    assert np.abs(array[2, 2] - [255, 0, 0]).max() < 10
    assert np.abs(array[17, 27] - [255, 255, 255]).max() < 10
    assert image_size(path) == (30, 20)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    array = pixels(save(Image.fromarray(gray, "L"), tmp_path / "g.png"))
    assert array.shape == (3, 4, 3)
    for channel in range(3):
        np.testing.assert_array_equal(array[..., channel], gray)


def test_bilevel_and_cmyk(tmp_path):
    one = Image.new("1", (4, 2), 1)
    assert (pixels(save(one, tmp_path / "one.png")) == 255).all()
    cmyk = Image.new("CMYK", (4, 2), (0, 255, 255, 0))  # full magenta + yellow = red
    np.testing.assert_array_equal(pixels(save(cmyk, tmp_path / "c.tif"))[0, 0], [255, 0, 0])


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque: unchanged
    rgba[0, 1] = (10, 20, 30, 0)  # transparent: white
    rgba[0, 2] = (0, 0, 0, 128)  # half black over white: 255 * (1 - 128/255) = 127
    array = pixels(save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png"))
    np.testing.assert_array_equal(array[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(array[0, 1], [255, 255, 255])
    assert np.abs(array[0, 2] - 127).max() <= 1


def test_gray_alpha_is_composited_on_white(tmp_path):
    la = Image.new("LA", (2, 1), (0, 0))  # black, fully transparent
    np.testing.assert_array_equal(pixels(save(la, tmp_path / "la.png")), np.full((1, 2, 3), 255))


def test_palette_and_palette_transparency(tmp_path):
    palette_image = Image.new("P", (3, 1))
    palette_image.putpalette([0, 0, 0, 200, 100, 50, 1, 2, 3])
    palette_image.putdata([1, 1, 2])
    np.testing.assert_array_equal(pixels(save(palette_image, tmp_path / "p.png"))[0, 0], [200, 100, 50])
    # index 2 declared transparent -> white
    array = pixels(save(palette_image, tmp_path / "pt.png", transparency=2))
    np.testing.assert_array_equal(array[0, 2], [255, 255, 255])
    np.testing.assert_array_equal(array[0, 0], [200, 100, 50])


def test_palette_alpha_mode_converts():
    pa = Image.new("PA", (2, 2), (0, 0))  # PA cannot be saved to a file, test the converter
    rgb = _to_rgb(pa)
    assert rgb.mode == "RGB"
    assert (np.asarray(rgb) == 255).all()  # alpha 0 -> white


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 100, 1000, 65535]], dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")
    gray = pixels(path)[0, :, 0]
    # 1000 / 257 = 3.9 -> 4, where clipping would have given 255
    np.testing.assert_array_equal(gray, [0, 100, 4, 255])


def test_32_bit_integer_and_float_modes(tmp_path):
    sixteen_in_int = np.array([[0, 65535]], dtype=np.int32)  # 16-bit data stored as "I"
    np.testing.assert_array_equal(pixels(save(Image.fromarray(sixteen_in_int, "I"), tmp_path / "i.tif"))[0, :, 0], [0, 255])
    wide = np.array([[-100, 0, 100_000]], dtype=np.int32)  # not 16-bit: stretched min..max
    gray = pixels(save(Image.fromarray(wide, "I"), tmp_path / "w.tif"))[0, :, 0]
    np.testing.assert_array_equal(gray, [0, round(100 * 255 / 100_100), 255])
    unit = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)  # floats in [0, 1] -> times 255
    np.testing.assert_array_equal(pixels(save(Image.fromarray(unit, "F"), tmp_path / "f.tif"))[0, :, 0], [0, 128, 255])


# --------------------------------------------------------------------------- EXIF orientation


def test_orientation_6_swaps_size_and_turns_pixels(tmp_path):
    # Orientation 6: the stored picture must be turned 90 degrees clockwise to be upright.
    path = with_orientation(quadrants_image(), tmp_path / "rot.jpg", 6)
    assert Image.open(path).size == (30, 20)  # stored landscape
    assert image_size(path) == (20, 30)  # upright portrait
    array = pixels(path)
    assert array.shape == (30, 20, 3)
    # Clockwise: stored top-left (red) -> top-right, stored bottom-left (blue) -> top-left.
    assert np.abs(array[2, 17] - [255, 0, 0]).max() < 10
    assert np.abs(array[2, 2] - [0, 0, 255]).max() < 10
    assert np.abs(array[27, 2] - [255, 255, 255]).max() < 10


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow_exif_transpose(tmp_path, orientation):
    path = with_orientation(quadrants_image(), tmp_path / f"o{orientation}.jpg", orientation)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(load_image(path)), expected)
    assert image_size(path) == (expected.shape[1], expected.shape[0])


def test_out_of_range_orientation_is_ignored(tmp_path):
    path = with_orientation(quadrants_image(), tmp_path / "o9.jpg", 9)
    assert image_size(path) == (30, 20)
    assert load_image(path).size == (30, 20)


# --------------------------------------------------------------------------- unreadable files


def truncated_jpeg(tmp_path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = (save(Image.fromarray(noise), tmp_path / "full.jpg")).read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])  # header intact, half the scan data gone
    return path


def test_truncated_jpeg_has_a_size_but_no_pixels(tmp_path):
    path = truncated_jpeg(tmp_path)
    assert image_size(path) == (64, 64)
    with pytest.raises(DataError, match="truncated.jpg: not a readable image") as info:
        load_image(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name,content", [("notes.jpg", b"just some text\n"), ("empty.png", b"")])
def test_non_image_files(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    for function in (image_size, load_image):
        with pytest.raises(DataError, match=f"{name}: not a readable image") as info:
            function(path)
        assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope.jpg: not a readable image \(No such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(DataError, match="nope.jpg"):
        image_size(tmp_path / "nope.jpg")
