"""Decoding one image file into pixels, or into a reason why it cannot be used.

Pillow does the decoding; this module only decides what to do with the odd cases the
datasets (and users of ``brainmri predict``) throw at it: uncommon modes, 16-bit scans,
transparency, truncated or corrupt files, and decompression bombs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: File name endings treated as images, compared case-insensitively.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})

#: Refuse images with more pixels than this before decoding them. MRI slices in both
#: datasets are at most ~1,500 x 1,500; 50 MP leaves room for any honest scan while a
#: crafted "decompression bomb" (a tiny file that inflates to gigabytes) is stopped.
MAX_PIXELS = 50_000_000

COLOR_MODES = ("grayscale", "rgb")


class ImageReadError(Exception):
    """The file exists but cannot be used as an image; the message says why."""


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    mode: str
    format: str


def is_image_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _open(path: Path) -> Image.Image:
    if path.stat().st_size == 0:
        raise ImageReadError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (UnidentifiedImageError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as exc:
        raise ImageReadError(f"not a readable image ({type(exc).__name__})") from None
    if img.format not in {"JPEG", "PNG", "MPO"}:
        raise ImageReadError(f"unsupported image format {img.format}")
    if img.width * img.height > MAX_PIXELS:
        raise ImageReadError(
            f"decompression-bomb guard: {img.width}x{img.height} exceeds {MAX_PIXELS:,} pixels")
    try:
        img.load()  # forces a full decode: truncated and corrupt data fail here
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"corrupt or truncated image data ({exc})") from None
    return img


def probe(path: str | Path) -> ImageInfo:
    """Fully decode ``path`` and describe it; raises ImageReadError if it is unusable."""
    path = Path(path)
    with _open(path) as img:
        return ImageInfo(img.width, img.height, img.mode, img.format or "")


def _to_8bit(img: Image.Image) -> Image.Image:
    """High bit-depth modes (16-bit PNG scans, 32-bit int, float) are min-max rescaled
    to 0..255 per image: their absolute range depends on the scanner, not the anatomy."""
    arr = np.asarray(img, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
    return Image.fromarray(np.round(scaled).astype(np.uint8))


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Transparent pixels become black, the background colour of an MRI slice."""
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def read_image(path: str | Path, color_mode: str) -> np.ndarray:
    """Decode ``path`` to a uint8 array of shape (H, W, 1) or (H, W, 3)."""
    if color_mode not in COLOR_MODES:
        raise ValueError(f"color_mode must be one of {COLOR_MODES}, got {color_mode!r}")
    path = Path(path)
    with _open(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
            img = _to_8bit(img)
        elif img.mode in {"RGBA", "LA", "PA"} or (
                img.mode == "P" and "transparency" in img.info):
            img = _flatten_alpha(img)
        target = "L" if color_mode == "grayscale" else "RGB"
        arr = np.asarray(img.convert(target), dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr
