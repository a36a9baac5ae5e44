"""Decoding every input kind the data layer promises to handle, good and bad."""

import numpy as np
import pytest
from PIL import Image

from brainmri.data.images import MAX_PIXELS, ImageReadError, is_image_name, probe, read_image


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


@pytest.fixture
def gradient():
    return np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "CMYK", "I;16", "1", "LA"])
def test_every_mode_decodes_to_uint8(tmp_path, gradient, mode):
    base = Image.fromarray(gradient, "L")
    if mode == "I;16":
        img = Image.fromarray(gradient.astype(np.uint16) * 200)
        assert img.mode.startswith("I;16")
    else:
        img = base.convert(mode)
    fmt = "JPEG" if mode in ("CMYK",) else "PNG"
    path = _save(img, tmp_path / f"x.{fmt.lower()}", format=fmt)
    for color_mode, channels in (("grayscale", 1), ("rgb", 3)):
        arr = read_image(path, color_mode)
        assert arr.dtype == np.uint8
        assert arr.shape == (48, 64, channels)
    assert read_image(path, "grayscale").max() > 100  # content survived the conversion


def test_16bit_is_rescaled_to_full_range(tmp_path):
    raw = np.linspace(1000, 4000, 32 * 32).reshape(32, 32).astype(np.uint16)
    path = _save(Image.fromarray(raw), tmp_path / "scan.png")
    arr = read_image(path, "grayscale")[..., 0]
    assert arr.min() == 0 and arr.max() == 255
    assert np.all(np.diff(arr[0].astype(int)) >= 0)  # order preserved


def test_transparent_pixels_become_black(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[:4, :, 3] = 255  # top half opaque white, bottom half transparent
    arr = read_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png"), "grayscale")
    assert arr[:4].min() == 255 and arr[4:].max() == 0


@pytest.mark.parametrize("name", ["a.JPG", "b.Jpeg", "c.PNG", "with space (1).jpg"])
def test_extension_case_and_spaces(tmp_path, gradient, name):
    fmt = "PNG" if name.lower().endswith("png") else "JPEG"
    path = _save(Image.fromarray(gradient, "L"), tmp_path / name, format=fmt)
    assert is_image_name(path)
    assert probe(path).width == 64


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(path, "rgb")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is text, not a JPEG")
    with pytest.raises(ImageReadError, match="not a readable image"):
        probe(path)


def test_truncated_jpeg(tmp_path, gradient):
    good = _save(Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256), np.uint8)),
                 tmp_path / "good.jpg", quality=95)
    data = good.read_bytes()
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated|corrupt"):
        read_image(bad, "rgb")


def test_corrupt_png(tmp_path, gradient):
    good = _save(Image.fromarray(gradient, "L"), tmp_path / "good.png")
    data = bytearray(good.read_bytes())
    data[60:80] = b"\x00" * 20  # smash the start of the image data
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(bytes(data))
    with pytest.raises(ImageReadError):
        read_image(bad, "rgb")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    side = int(MAX_PIXELS ** 0.5) + 100
    path = _save(Image.new("1", (side, side)), tmp_path / "bomb.png")
    assert path.stat().st_size < 2_000_000  # tiny on disk ...
    with pytest.raises(ImageReadError, match="decompression-bomb"):
        probe(path)  # ... but refused instead of inflated


def test_unknown_color_mode_is_a_clear_error(tmp_path, gradient):
    path = _save(Image.fromarray(gradient, "L"), tmp_path / "x.png")
    with pytest.raises(ValueError, match="color_mode"):
        read_image(path, "cmyk")


def _png16(path, samples: np.ndarray, colour_type: int):
    """A 16-bit PNG written byte by byte (big-endian samples, no filter): any colour type,
    grey + alpha included, which Pillow and OpenCV cannot write."""
    import struct
    import zlib

    height, width = samples.shape[:2]

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    rows = samples.reshape(height, -1).astype(">u2").tobytes()
    stride = rows and len(rows) // height
    raw = b"".join(b"\0" + rows[i * stride:(i + 1) * stride] for i in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def test_16bit_colour_pngs_are_scaled_as_16bit_grey(tmp_path):
    """Issue 36, item 7: 12-bit values in a 16-bit RGB PNG became 0..15 (Pillow keeps the
    high byte), and as RGBA a near-constant image; every 16-bit encoding of the same
    pixels now gives the same 8-bit pixels."""
    grey = np.random.default_rng(0).integers(200, 4096, (24, 40)).astype(np.uint16)
    opaque = np.full_like(grey, 65535)
    files = {"grey": _png16(tmp_path / "g.png", grey, 0),
             "grey+alpha": _png16(tmp_path / "la.png", np.stack([grey, opaque], -1), 4),
             "rgb": _png16(tmp_path / "rgb.png", np.stack([grey] * 3, -1), 2),
             "rgba": _png16(tmp_path / "rgba.png", np.stack([grey] * 3 + [opaque], -1), 6)}
    for color_mode in ("grayscale", "rgb"):
        expected = read_image(files["grey"], color_mode)
        assert expected.min() == 0 and expected.max() == 255
        for name, path in files.items():
            assert np.array_equal(read_image(path, color_mode), expected), (name, color_mode)


def test_16bit_colour_keeps_colour_and_makes_transparent_pixels_black(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint16)
    rgba[..., 0] = 4000  # red, 12-bit
    rgba[..., 2] = 1000
    rgba[:4, :, 3] = 65535  # top half opaque, bottom half transparent
    arr = read_image(_png16(tmp_path / "a.png", rgba, 6), "rgb")
    assert arr[:4, :, 0].min() == 255 and arr[:4, :, 2].max() == 64 and arr[4:].max() == 0
