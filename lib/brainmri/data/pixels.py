"""Pixels ready for a model: resized once and cached, normalised on the fly.

Decoding and resizing thousands of JPEGs is the slow part of preprocessing, so its
result (uint8 arrays) is cached under ``data/cache`` keyed by the file list and the
resize settings. Normalisation is cheap and model-specific, so it runs inside the
tf.data pipeline (see ``normalize``) instead of multiplying cached copies by four.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from brainmri.core import cache
from brainmri.core.files import atomic_save_npy
from brainmri.core.progress import progress
from brainmri.data.images import COLOR_MODES, read_image

#: cv2 interpolation per resample name. "area" averages source pixels (anti-aliased,
#: the right choice for shrinking 512 px scans); "linear" samples without anti-aliasing,
#: as ``tf.image.resize`` and Keras' ``image_dataset_from_directory`` do by default.
RESAMPLE = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}

CROPS = (None, "head")
NORMALIZATIONS = ("standardize", "unit", "imagenet", "inception", "raw")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PixelSpec:
    """How files become arrays: square side, colour mode, resampling filter, and an
    optional crop to the head (``crop="head"``) before resizing."""

    image_size: int
    color_mode: str
    resample: str
    crop: str | None = None  # None: the whole frame, as the reports do

    def __post_init__(self):
        if self.color_mode not in COLOR_MODES:
            raise ValueError(f"color_mode must be one of {COLOR_MODES}")
        if self.resample not in RESAMPLE:
            raise ValueError(f"resample must be one of {tuple(RESAMPLE)}")
        if self.image_size < 8:
            raise ValueError("image_size must be at least 8 pixels")
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {self.crop!r}")

    @property
    def channels(self) -> int:
        return 1 if self.color_mode == "grayscale" else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, self.channels)


def resize(pixels: np.ndarray, spec: PixelSpec) -> np.ndarray:
    """Square-resize a (H, W, C) uint8 array (aspect ratio is not kept, as in the report)."""
    out = cv2.resize(pixels, (spec.image_size, spec.image_size),
                     interpolation=RESAMPLE[spec.resample])
    return out[..., None] if out.ndim == 2 else out


#: Longest side an image keeps before the head crop: a larger one is first reduced (area
#: interpolation, aspect ratio kept). Scans in the datasets are at most ~1,500 px and are
#: untouched; without the bound a 49,000 x 1,000 strip (a 60 KB PNG) would be padded by
#: ``crop_to_head`` to a 51,940 px square, gigabytes of memory. The decoder's own bound
#: (``images.MAX_PIXELS``, 50 MP) refuses larger files before decoding.
MAX_SIDE = 2048


def grey_levels(pixels: np.ndarray) -> np.ndarray:
    """The channel mean of (H, W, C) uint8 pixels as float32: equal, bit for bit, to
    ``pixels.astype(np.float32).mean(-1)`` (a sum of a few uint8 values is exact in
    float32, and the one division rounds the same), in a tenth of the time."""
    f = pixels.astype(np.float32)
    total = f[..., 0].copy()
    for c in range(1, f.shape[-1]):
        total += f[..., c]
    return total / np.float32(f.shape[-1])


def bounded(pixels: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """``pixels`` (H, W, C) as they are when the longer side is at most ``max_side``, else
    reduced to that side with the aspect ratio kept."""
    height, width = pixels.shape[:2]
    if max(height, width) <= max_side:
        return pixels
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    out = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    return out[..., None] if out.ndim == 2 else out


def crop_to_head(pixels: np.ndarray, margin: float = 0.03,
                 grey: np.ndarray | None = None) -> np.ndarray:
    """The square around the head: the bounding box of the largest bright region, grown
    by ``margin`` and padded with black to a square, so that neither the framing, the
    background's extent nor the file's aspect ratio survive (chapter 01c shows they
    identify the source collection). An image without a bright region is kept whole.

    ``grey``: the channel mean as float32, when the caller has it already. Regions are
    4-connected and numbered in raster order by OpenCV, as ``scipy.ndimage.label`` does
    (same crops on all 12,618 images of the three datasets, in less time); a tie goes to
    the region found first."""
    gray = grey_levels(pixels) if grey is None else grey
    mask = (gray > max(10.0, 0.1 * float(gray.max()))).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    if n < 2:
        return pixels
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    left, top, width, height = (int(v) for v in stats[biggest, :4])
    bottom, right = top + height, left + width
    side = int(max(bottom - top, right - left) * (1 + 2 * margin))
    cy, cx = (top + bottom) // 2, (left + right) // 2
    out = np.zeros((side, side, pixels.shape[-1]), pixels.dtype)
    y0, x0 = cy - side // 2, cx - side // 2
    sy0, sx0 = max(0, y0), max(0, x0)
    sy1, sx1 = min(pixels.shape[0], y0 + side), min(pixels.shape[1], x0 + side)
    out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = pixels[sy0:sy1, sx0:sx1]
    return out


def load_file(path: str | os.PathLike, spec: PixelSpec) -> np.ndarray:
    pixels = bounded(read_image(path, spec.color_mode))
    if spec.crop == "head":
        pixels = crop_to_head(pixels)
    return resize(pixels, spec)


def _cache_file(root: Path, rel_paths: Sequence[str], spec: PixelSpec) -> Path:
    key = cache.stamp(root, rel_paths, "pixels-v2", sorted(asdict(spec).items()))
    tag = (f"{spec.image_size}px-{spec.color_mode}-{spec.resample}"
           f"{'-' + spec.crop if spec.crop else ''}-{len(rel_paths)}")
    return cache.cache_file("pixels", tag, key, ".npy")


def load_pixels(root: str | os.PathLike, rel_paths: Sequence[str], spec: PixelSpec,
                cache: bool = True, desc: str = "resizing") -> np.ndarray:
    """Array of shape (N, S, S, C), uint8, for the files ``rel_paths`` under ``root``."""
    root = Path(root)
    rel_paths = list(rel_paths)
    target = _cache_file(root, rel_paths, spec) if cache else None
    if target is not None and target.exists():
        return np.load(target)
    out = np.empty((len(rel_paths), *spec.shape), dtype=np.uint8)

    def work(i: int) -> None:
        out[i] = load_file(root / rel_paths[i], spec)

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        list(progress(pool.map(work, range(len(rel_paths))), total=len(rel_paths),
                  desc=f"{desc} to {spec.image_size}px {spec.color_mode}", unit="img"))
    if target is not None:
        atomic_save_npy(out, target)
    return out


def normalize(images, method: str):
    """Model-ready float32 tensor from uint8-range pixels (numpy or tf, shape (..., H, W, C)).

    ``standardize``: the report's recipe, min-max to [0, 1] then zero mean and unit
      variance per image. Standardisation is invariant to the affine min-max step, so the
      result equals ``tf.image.per_image_standardization`` of the raw pixels; notebook 03
      checks this numerically.
    ``unit``: min-max to [0, 1] per image.
    ``imagenet``: [0, 1] then ImageNet channel mean/std (ConvNeXt, report 001).
    ``inception``: [-1, 1], what InceptionV3's ImageNet weights expect.
    ``raw``: float32 copy of 0..255 values.
    """
    import tensorflow as tf

    if method not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {method!r}")
    x = tf.cast(images, tf.float32)
    if method == "raw":
        return x
    if method == "standardize":
        return tf.image.per_image_standardization(x)
    if method == "unit":
        lo = tf.reduce_min(x, axis=[-3, -2, -1], keepdims=True)
        hi = tf.reduce_max(x, axis=[-3, -2, -1], keepdims=True)
        return tf.math.divide_no_nan(x - lo, hi - lo)
    if method == "inception":
        return x / 127.5 - 1.0
    channels = x.shape[-1]
    mean = tf.constant(IMAGENET_MEAN[:channels] if channels == 3 else (np.mean(IMAGENET_MEAN),))
    std = tf.constant(IMAGENET_STD[:channels] if channels == 3 else (np.mean(IMAGENET_STD),))
    return (x / 255.0 - mean) / std
