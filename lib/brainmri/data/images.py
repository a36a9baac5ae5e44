"""Decoding one image file into pixels, or into a reason why it cannot be used.

Pillow does the decoding (OpenCV for 16-bit colour PNGs, which Pillow cuts to 8 bits);
this module only decides what to do with the odd cases the datasets (and users of
``brainmri predict``) throw at it: uncommon modes, 16-bit scans (grey or colour, scaled
alike), transparency, truncated or corrupt files, decompression bombs, and paths that are
not regular files (broken links, named pipes, unreadable folders). Every way a file can fail
becomes one ``ImageReadError`` with a reason, so one bad file never stops a whole batch.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
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

#: Longest decoder message kept in a reason; some quote whole chunks of data.
_REASON_CHARS = 160


class ImageReadError(Exception):
    """The file exists but cannot be used as an image; the message says why."""


class ImageWarning(UserWarning):
    """A file was decoded, but its decoder complained (the message names the file)."""


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    mode: str
    format: str


@dataclass(frozen=True)
class Decoded:
    """Pixels of one file plus what the decoder warned about while reading it."""

    pixels: np.ndarray
    warnings: tuple[str, ...] = ()


def is_image_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


class _WarningRouter:
    """Records Pillow's warnings per thread, so each lands with the file that caused it.

    ``warnings.catch_warnings`` is process-wide and not thread-safe, and the data layer
    decodes in thread pools. The first thread to start decoding installs one recorder
    (and the "always" action for Pillow, so repeated warnings are not deduplicated away);
    the last one to finish restores the previous state. A warning goes to the list of the
    thread that raised it; other threads' warnings are shown as usual.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: tuple = ()
        self._local = threading.local()

    def _show(self, message, category, filename, lineno, file=None, line=None):
        sink, saved = getattr(self._local, "sink", None), self._saved
        if sink is not None:
            sink.append(" ".join(str(message).split()))
        else:  # another thread's warning; the saved hook, or the restored one if gone
            (saved[1] if saved else warnings.showwarning)(message, category, filename,
                                                          lineno, file, line)

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        caught: list[str] = []
        with self._lock:
            if self._users == 0:
                state = warnings.catch_warnings()
                state.__enter__()
                self._saved = (state, warnings.showwarning)
                warnings.filterwarnings("always", module=r"PIL(\.|$)")
                warnings.showwarning = self._show
            self._users += 1
        outer = getattr(self._local, "sink", None)
        self._local.sink = caught
        try:
            yield caught
        finally:
            self._local.sink = outer
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._saved[0].__exit__(None, None, None)
                    self._saved = ()


_router = _WarningRouter()


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS - 3] + "..."


def _check_regular_file(path: Path) -> None:
    """Refuse anything but a readable regular file before Pillow opens it (opening a
    named pipe would block forever; a folder or broken link deserves its own reason)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageReadError("broken symbolic link (its target does not exist)"
                             if path.is_symlink() else "file not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageReadError("symbolic link loop (the link points back to itself)") from None
        raise ImageReadError(f"cannot read file ({exc.strerror or _reason(exc)})") from None
    if stat.S_ISDIR(info.st_mode):
        if path.is_symlink():
            raise ImageReadError("link to a folder, not followed; pass that folder itself")
        try:
            os.scandir(path).close()
        except OSError as exc:
            raise ImageReadError(f"cannot read folder ({exc.strerror or _reason(exc)})") from None
        raise ImageReadError("a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):
        kind = ("named pipe" if stat.S_ISFIFO(info.st_mode) else "socket"
                if stat.S_ISSOCK(info.st_mode) else "device or special file")
        raise ImageReadError(f"not a regular file (a {kind})")
    if info.st_size == 0:
        raise ImageReadError("empty file (0 bytes)")


@contextmanager
def _failures_as_reasons(stage: str) -> Iterator[None]:
    """Any exception while decoding becomes an ImageReadError saying why.

    Pillow's plugins raise OSError, SyntaxError, ValueError, struct.error, EOFError,
    IndexError, KeyError, ZeroDivisionError and more on crafted bytes; none of them may
    escape, or one bad file stops a batch. OSErrors with an errno are the file system
    (permissions, I/O), not the bytes. KeyboardInterrupt is not an Exception and passes.
    """
    try:
        yield
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError("not a readable image (not a JPEG or PNG file, or its header "
                             "is damaged)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"decompression-bomb guard: {_reason(exc)}") from None
    except OSError as exc:
        if exc.errno is not None:
            raise ImageReadError(f"cannot read file ({exc.strerror or _reason(exc)})") from None
        raise ImageReadError(f"{stage} ({_reason(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this file's problem
        raise ImageReadError(f"{stage} ({type(exc).__name__}: {_reason(exc)})") from None


@contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """The fully decoded image, or ImageReadError. Must run inside ``_router.capture``."""
    _check_regular_file(path)
    with _failures_as_reasons("not a readable image"):
        img = Image.open(path)
    try:
        if img.format not in {"JPEG", "PNG", "MPO"}:
            raise ImageReadError(f"unsupported image format {img.format}")
        if img.width * img.height > MAX_PIXELS:
            raise ImageReadError(f"decompression-bomb guard: {img.width}x{img.height} "
                                 f"exceeds {MAX_PIXELS:,} pixels")
        with _failures_as_reasons("corrupt or truncated image data"):
            img.load()  # forces a full decode: truncated and corrupt data fail here
        yield img
    finally:
        img.close()


def _without_bomb_notice(caught: list[str]) -> tuple[str, ...]:
    """Pillow's own decompression-bomb warning is redundant: MAX_PIXELS decides."""
    return tuple(w for w in caught if "decompression bomb" not in w)


def _reemit(path: Path, notes: tuple[str, ...]) -> None:
    for note in notes:
        warnings.warn(f"{path}: {note}", ImageWarning, stacklevel=3)


def header_pixels(path: str | Path) -> int:
    """Width x height as the file's header announces them, read without decoding (cheap);
    0 for anything that is not a readable image (``decode`` then says why)."""
    try:
        _check_regular_file(Path(path))
        with _router.capture(), Image.open(path) as img:
            return int(img.width) * int(img.height)
    except Exception:  # noqa: BLE001 - any failure is decode's to report
        return 0


def probe(path: str | Path) -> ImageInfo:
    """Fully decode ``path`` and describe it; raises ImageReadError if it is unusable.
    Decoder warnings are re-raised as ``ImageWarning`` naming the file."""
    path = Path(path)
    with _router.capture() as caught, _opened(path) as img:
        info = ImageInfo(img.width, img.height, img.mode, img.format or "")
    _reemit(path, _without_bomb_notice(caught))
    return info


def _to_8bit(img: Image.Image) -> Image.Image:
    """High bit-depth modes (16-bit PNG scans, 32-bit int, float) are min-max rescaled
    to 0..255 per image: their absolute range depends on the scanner, not the anatomy."""
    arr = np.asarray(img, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
    return Image.fromarray(np.round(scaled).astype(np.uint8))


#: PNG colour types (IHDR byte 25) whose 16-bit samples Pillow keeps only the high byte
#: of (modes RGB, RGBA and LA are 8-bit): grey + alpha, RGB, RGBA.
_PNG_WIDE_COLOUR_TYPES = {4: "LA", 2: "RGB", 6: "RGBA"}

#: EXIF orientation -> the transpose that undoes it (as ``ImageOps.exif_transpose``).
_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                8: Image.Transpose.ROTATE_90}


def _sixteen_bit_colour(path: Path, img: Image.Image) -> Image.Image | None:
    """A 16-bit RGB, RGBA or grey + alpha PNG as an 8-bit RGB image scaled as a 16-bit
    grey one is (``_to_8bit``: min-max over the image, all channels together, after
    transparent pixels are made black); None for any other file.

    Pillow reads such files as 8-bit modes by keeping the high byte of each sample: a
    scan holding 12-bit values (0..4095) became 0..15, near-constant, and its prediction
    changed with the encoding (glioma 0.997 as grey, meningioma 0.9997 as RGB). OpenCV
    keeps the 16 bits; Pillow has already decoded (and so validated) the file."""
    if img.format != "PNG" or img.mode not in {"RGB", "RGBA", "LA"}:
        return None
    with open(path, "rb") as fh:
        header = fh.read(26)
    if len(header) < 26 or header[12:16] != b"IHDR" or header[24] != 16 \
            or header[25] not in _PNG_WIDE_COLOUR_TYPES:
        return None
    import cv2

    arr = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.shape[:2] != (img.height, img.width):
        return None  # Pillow's 8-bit reading, as before
    arr = arr[..., None] if arr.ndim == 2 else arr
    channels = arr.shape[2]
    colour = arr[..., [2, 1, 0]] if channels >= 3 else np.repeat(arr[..., :1], 3, axis=2)
    colour = colour.astype(np.float64)
    if channels in (2, 4):  # alpha last: composite on black, as _flatten_alpha does
        colour *= arr[..., -1:] / 65535.0
    lo, hi = float(colour.min()), float(colour.max())
    scaled = np.zeros_like(colour) if hi <= lo else (colour - lo) * (255.0 / (hi - lo))
    return Image.fromarray(np.round(scaled).astype(np.uint8), "RGB")


#: A JPEG holding fewer bytes than its pixels / this number cannot encode them: even a
#: uniform black one with optimised Huffman tables takes about 1/256 byte per pixel (two
#: codes per 8x8 block; measured with Pillow, grey or RGB, baseline or progressive).
_JPEG_MIN_PIXELS_PER_BYTE = 1024


def _little_data(path: Path, img: Image.Image) -> str:
    """A note for a JPEG whose header announces far more pixels than its bytes can hold
    (a 7000x7000 header over 224x224 data decodes without complaint, to grey filler)."""
    if img.format not in {"JPEG", "MPO"}:
        return ""
    size = os.stat(path).st_size
    if size * _JPEG_MIN_PIXELS_PER_BYTE >= img.width * img.height:
        return ""
    return (f"the file ({size:,} bytes) is far too small for the {img.width}x{img.height} "
            f"pixels its header announces: truncated or a forged header; most of the image "
            f"is decoder filler")


def _oriented(img: Image.Image, source: Image.Image) -> Image.Image:
    """``img`` turned as ``source``'s EXIF orientation says (``exif_transpose``'s turns)."""
    method = _ORIENTATION.get(source.getexif().get(0x0112))
    return img if method is None else img.transpose(method)


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Transparent pixels become black, the background colour of an MRI slice."""
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def decode(path: str | Path, color_mode: str) -> Decoded:
    """Decode ``path`` to uint8 pixels of shape (H, W, 1) or (H, W, 3), with the decoder's
    warnings about this file (corrupt EXIF, malformed MPO...) instead of printing them.
    Raises ImageReadError, and only that, for any file that cannot be used."""
    if color_mode not in COLOR_MODES:
        raise ValueError(f"color_mode must be one of {COLOR_MODES}, got {color_mode!r}")
    path = Path(path)
    with _router.capture() as caught, _opened(path) as img, \
            _failures_as_reasons("corrupt image data"):
        if (note := _little_data(path, img)):
            caught.append(note)
        wide = _sixteen_bit_colour(path, img)
        try:  # in place: a 49-megapixel image is not copied (196 MB) when it is upright
            if wide is None:
                ImageOps.exif_transpose(img, in_place=True)
            else:
                img = _oriented(wide, img)
        except Exception as exc:  # noqa: BLE001 - damaged metadata, intact pixels
            caught.append(f"EXIF orientation unreadable, image used as stored ({_reason(exc)})")
            img = img if wide is None else wide
        if img.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
            img = _to_8bit(img)
        elif img.mode in {"RGBA", "LA", "PA"} or (
                img.mode == "P" and "transparency" in img.info):
            img = _flatten_alpha(img)
        target = "L" if color_mode == "grayscale" else "RGB"
        arr = np.asarray(img if img.mode == target else img.convert(target), dtype=np.uint8)
    pixels = arr[..., None] if arr.ndim == 2 else arr
    return Decoded(pixels, _without_bomb_notice(caught))


def read_image(path: str | Path, color_mode: str) -> np.ndarray:
    """Decode ``path`` to a uint8 array of shape (H, W, 1) or (H, W, 3). Decoder warnings
    are re-raised as ``ImageWarning`` naming the file (Pillow's own do not)."""
    decoded = decode(path, color_mode)
    _reemit(Path(path), decoded.warnings)
    return decoded.pixels
