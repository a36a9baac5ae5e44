"""Images that are not brain MRI slices, made on the fly: the negative set on which
``modeling.ood``'s warnings are measured.

Nothing here needs the network or a download: synthetic patterns (noise, checkerboards,
stripes, gradients, drawings), the pictures bundled with scikit-image (photos, a retina
fundus image, the Shepp-Logan CT phantom; only those that load offline), and real MRI
slices turned into something else (inverted, colour-tinted or false-coloured, buried in
noise, binarised, reduced to an edge map); and, apart from that set, grey photos framed
on black like a head slice (``framed``). Every image is an (H, W, 3) uint8 array and
every random choice is seeded, so the set is the same on every machine.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

#: scikit-image's bundled pictures used as photos (``skimage.data.<name>``). ``cat`` is
#: the same picture as ``chelsea`` and is left out.
PHOTOS = ("astronaut", "camera", "chelsea", "clock", "coffee", "coins", "colorwheel",
          "rocket", "horse", "hubble_deep_field", "immunohistochemistry", "moon", "page",
          "text", "brick", "grass", "gravel", "logo", "cell", "stereo_motorcycle")

#: Medical pictures that are not brain MRI slices: a retina fundus photo, a retina
#: angiogram crop and the Shepp-Logan phantom (a CT-like head).
MEDICAL = ("retina", "microaneurysms", "shepp_logan_phantom")

#: scikit-image's photos that ``framed`` turns grey and places on a black square, as a
#: head sits in a slice (issue 36, item 10: such images passed every per-image check).
FRAMED = ("astronaut", "camera", "chelsea", "clock", "coffee", "coins", "moon", "rocket")

#: How ``framed`` places each photo: (outline, share of the frame's side its longer side
#: takes, whether it is moved off centre). ``ellipse``: only an elliptical window of the
#: photo is kept, the shape of a head.
FRAMINGS = (("rectangle", 0.8, False), ("rectangle", 0.6, True), ("ellipse", 0.9, False))

#: What ``transformed`` makes of one real MRI slice.
TRANSFORMS = ("inverted", "tint_red", "tint_green", "tint_blue", "tint_sepia",
              "false_colour", "heavy_noise", "binarised", "edge_map")


@dataclass(frozen=True)
class Example:
    """One non-MRI image: its kind (``synthetic``, ``photo``, ``medical`` or a transform
    name), a name unique within the set, and its pixels."""

    kind: str
    name: str
    pixels: np.ndarray


def as_rgb(image) -> np.ndarray:
    """(H, W, 3) uint8 from a bool, integer or float image with 1, 3 or 4 channels
    (floats and wide integers are min-max scaled; alpha is dropped)."""
    a = np.asarray(image)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = a.astype(np.float64)
        span = float(a.max() - a.min())
        a = np.zeros(a.shape, np.uint8) if span <= 0 else np.round(
            255 * (a - a.min()) / span).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, -1)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, -1)
    return np.ascontiguousarray(a[..., :3])


def _drawings(rng: np.random.Generator, size: int) -> list[Example]:
    from PIL import Image, ImageDraw

    out = []
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = (int(v) for v in rng.integers(0, size - 40, 2))
        w, h = (int(v) for v in rng.integers(20, 120, 2))
        box = [x0, y0, x0 + w, y0 + h]
        shape = int(rng.integers(0, 3))
        if shape == 2:
            draw.line(box, fill="black", width=3)
        else:
            (draw.ellipse if shape == 0 else draw.rectangle)(box, outline="black", width=3)
    out.append(Example("synthetic", "drawing_lines_on_white", np.asarray(img)))
    img = Image.new("RGB", (size, size), (240, 235, 220))
    draw = ImageDraw.Draw(img)
    for _ in range(10):
        x0, y0 = (int(v) for v in rng.integers(0, size - 40, 2))
        w, h = (int(v) for v in rng.integers(30, 140, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour, outline="black")
    out.append(Example("synthetic", "drawing_clipart", np.asarray(img)))
    img = Image.new("RGB", (size, size), "black")
    draw = ImageDraw.Draw(img)
    draw.ellipse([size * 0.16, size * 0.1, size * 0.84, size * 0.9], outline="white", width=4)
    draw.ellipse([size * 0.35, size * 0.3, size * 0.5, size * 0.47], outline="white", width=3)
    draw.line([size // 2, size * 0.12, size // 2, size * 0.88], fill="white", width=3)
    out.append(Example("synthetic", "drawing_head_outline_on_black", np.asarray(img)))
    img = Image.new("RGB", (size, size), "black")
    draw = ImageDraw.Draw(img)
    draw.ellipse([size * 0.16, size * 0.1, size * 0.84, size * 0.9], fill=(150, 150, 150))
    draw.ellipse([size * 0.35, size * 0.3, size * 0.5, size * 0.47], fill=(230, 230, 230))
    out.append(Example("synthetic", "drawing_filled_head_on_black", np.asarray(img)))
    return out


def synthetic(seed: int = 0, size: int = 256) -> list[Example]:
    """Noise, checkerboards, stripes, gradients and drawings (13 images)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    cells = np.arange(size)
    pictures = {
        "noise_uniform_rgb": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "noise_uniform_grey": rng.integers(0, 256, (size, size), dtype=np.uint8),
        "noise_gaussian_grey": np.clip(rng.normal(128, 50, (size, size)), 0, 255),
        "noise_salt_and_pepper": np.where(rng.random((size, size)) < 0.1, 255, 0),
        "checkerboard_8": (cells[:, None] // 8 + cells[None] // 8) % 2 * 255,
        "checkerboard_32": (cells[:, None] // 32 + cells[None] // 32) % 2 * 255,
        "stripes": np.sin(xx * 40) * 127 + 128,
        "gradient_linear": xx * 255,
        "gradient_radial": np.clip(255 * (1 - np.hypot(xx - 0.5, yy - 0.5) / 0.5), 0, 255),
    }
    out = [Example("synthetic", name, as_rgb(np.asarray(p).astype(np.uint8)))
           for name, p in pictures.items()]
    return out + _drawings(rng, size)


def bundled(names: Iterable[str] = PHOTOS + MEDICAL) -> list[Example]:
    """scikit-image's bundled pictures that load without a download (others are skipped:
    the set must not depend on the network)."""
    import skimage.data

    out = []
    for name in names:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                picture = getattr(skimage.data, name)()
        except Exception:  # noqa: BLE001 - absent, or needs a download: not in the set
            continue
        if isinstance(picture, tuple):  # stereo pairs: the left image
            picture = picture[0]
        out.append(Example("medical" if name in MEDICAL else "photo", name, as_rgb(picture)))
    return out


def framed(seed: int = 0, size: int = 256,
           names: Iterable[str] = FRAMED) -> list[Example]:
    """scikit-image's photos made grey, shrunk and placed on a black ``size`` square, one
    per ``FRAMINGS`` each (24 images with the default ``FRAMED``): grey pictures framed
    like a head slice, the kind the per-image checks missed most (issue 36, item 10).
    Off-centre shifts and small changes of scale are drawn with ``seed``."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for photo in bundled(names):
        grey = photo.pixels.astype(np.float32).mean(-1)
        for outline, share, shifted in FRAMINGS:
            scale = share * float(rng.uniform(0.95, 1.05)) * size / max(grey.shape)
            h, w = (max(1, round(n * scale)) for n in grey.shape)
            small = cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA)
            if outline == "ellipse":
                yy, xx = np.mgrid[0:h, 0:w]
                small = small * (((yy - (h - 1) / 2) / (h / 2)) ** 2
                                 + ((xx - (w - 1) / 2) / (w / 2)) ** 2 <= 1)
            top, left = (size - h) // 2, (size - w) // 2
            if shifted:
                top += int(rng.integers(-top // 2, top // 2 + 1))
                left += int(rng.integers(-left // 2, left // 2 + 1))
            frame = np.zeros((size, size), np.float32)
            frame[top:top + h, left:left + w] = small
            out.append(Example("framed", f"framed_{outline}_{round(100 * share)}_"
                                         f"{photo.name}",
                               as_rgb(np.clip(np.round(frame), 0, 255).astype(np.uint8))))
    return out


def transformed(mri: np.ndarray, name: str, seed: int = 0) -> list[Example]:
    """One real MRI slice (H, W, C uint8) made into something else, once per TRANSFORMS."""
    import cv2
    from matplotlib import colormaps

    rng = np.random.default_rng(seed)
    rgb = as_rgb(mri).astype(np.float32)
    grey = rgb.mean(-1)
    tints = {"tint_red": (1, 0.55, 0.45), "tint_green": (0.5, 1, 0.5),
             "tint_blue": (0.45, 0.6, 1), "tint_sepia": (1, 0.85, 0.6)}
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    made = {
        "inverted": 255 - as_rgb(mri),
        **{k: np.clip(rgb * np.array(t, np.float32), 0, 255).astype(np.uint8)
           for k, t in tints.items()},
        "false_colour": (colormaps["jet"](grey / 255.0)[..., :3] * 255).astype(np.uint8),
        "heavy_noise": np.clip(grey + rng.normal(0, 60, grey.shape), 0, 255).astype(np.uint8),
        "binarised": np.where(grey > grey.mean(), 255, 0).astype(np.uint8),
        "edge_map": np.hypot(gx, gy),
    }
    return [Example(kind, f"{kind}_{name}", as_rgb(made[kind])) for kind in TRANSFORMS]


def examples(mris: Iterable[tuple[str, np.ndarray]] = (), seed: int = 0) -> list[Example]:
    """The whole negative set: synthetic, bundled, and ``transformed`` for each
    (name, pixels) in ``mris`` (real slices, never used to choose thresholds)."""
    out = synthetic(seed) + bundled()
    for i, (name, pixels) in enumerate(mris):
        out += transformed(pixels, name, seed + i)
    return out
