"""Fuzzing the image reader and ``brainmri predict`` with mutated JPEG and PNG files.

Valid files of every kind the reader supports are damaged by seeded mutations:
truncation, byte flips in headers and chunks (with and without a repaired CRC), absurd
dimensions, oversized or corrupt metadata (zTXt/iCCP bombs, EXIF, comments), junk
appended, and wrong file name endings. Every case must give exactly one outcome, pixels
of the model's shape or a reason, and never another exception or a stray warning.
The fast suite runs a few hundred cases; ``-m slow`` a few thousand.
"""

import struct
import warnings
import zlib
from io import BytesIO

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from brainmri import cli
from brainmri.data.images import ImageInfo, ImageReadError, ImageWarning, probe
from brainmri.data.pixels import PixelSpec
from brainmri.modeling import prefetch
from synthetic import mri_like

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _encode(img: Image.Image, fmt: str, **options) -> bytes:
    out = BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


def _bases() -> dict[str, bytes]:
    """Small valid files of every mode and flavour the reader handles."""
    gray = Image.fromarray(mri_like("glioma", 48, np.random.default_rng(0))[:40])
    rgba = gray.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(np.asarray(gray) > 0, 255, 0).astype(np.uint8)))
    palette = gray.convert("P")
    palette.info["transparency"] = 0
    oriented = Image.Exif()
    oriented[0x0112] = 6  # rotate 90 degrees on display
    return {
        "png_gray": _encode(gray, "PNG"),
        "png_rgb": _encode(gray.convert("RGB"), "PNG"),
        "png_rgba": _encode(rgba, "PNG"),
        "png_palette": _encode(palette, "PNG", transparency=0),
        "png_16bit": _encode(Image.fromarray(np.asarray(gray).astype(np.uint16) * 257), "PNG"),
        "jpeg_gray": _encode(gray, "JPEG", quality=90),
        "jpeg_rgb": _encode(gray.convert("RGB"), "JPEG", quality=90),
        "jpeg_progressive": _encode(gray.convert("RGB"), "JPEG", progressive=True),
        "jpeg_cmyk": _encode(gray.convert("CMYK"), "JPEG"),
        "jpeg_exif": _encode(gray.convert("RGB"), "JPEG", exif=oriented.tobytes()),
    }


BASES = _bases()
SUFFIXES = [".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".txt", ""]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_chunks(data: bytes) -> list[tuple[int, int]]:
    """(start, data length) of each well-formed chunk, in file order."""
    found, pos = [], len(PNG_SIGNATURE)
    if not data.startswith(PNG_SIGNATURE):
        return found
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        if pos + 12 + length > len(data):
            break
        found.append((pos, length))
        pos += 12 + length
    return found


def _jpeg_insert(data: bytes, marker: int, payload: bytes) -> bytes:
    """A segment right after SOI (declared length capped at the 16-bit maximum)."""
    segment = bytes([0xFF, marker]) + struct.pack(">H", min(len(payload) + 2, 0xFFFF)) + payload
    return data[:2] + segment + data[2:]


def truncate(data, rng):
    return data[:int(rng.integers(0, len(data)))] if data else data


def flip_header(data, rng):
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        if out:
            out[int(rng.integers(0, min(len(out), 100)))] = int(rng.integers(0, 256))
    return bytes(out)


def flip_anywhere(data, rng):
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        if out:
            out[int(rng.integers(0, len(out)))] = int(rng.integers(0, 256))
    return bytes(out)


def png_chunk(data, rng):
    """Damage one chunk's content; usually repair its CRC so the decoder must cope."""
    chunks = _png_chunks(data)
    if not chunks:
        return flip_anywhere(data, rng)
    start, length = chunks[int(rng.integers(0, len(chunks)))]
    kind = data[start + 4:start + 8]
    body = bytearray(data[start + 8:start + 8 + length])
    for _ in range(int(rng.integers(1, 5))):
        if body:
            body[int(rng.integers(0, len(body)))] = int(rng.integers(0, 256))
    if rng.random() < 0.3:  # a length field that lies
        return data[:start] + struct.pack(">I", int(rng.integers(0, 2**31))) + data[start + 4:]
    new = _chunk(kind, bytes(body)) if rng.random() < 0.7 else (
        data[start:start + 8] + bytes(body) + data[start + 8 + length:start + 12 + length])
    return data[:start] + new + data[start + 12 + length:]


def png_dimensions(data, rng):
    """Absurd IHDR width/height with a valid CRC (bombs, zero, one pixel)."""
    chunks = _png_chunks(data)
    if not chunks or data[chunks[0][0] + 4:chunks[0][0] + 8] != b"IHDR":
        return flip_header(data, rng)
    start, length = chunks[0]
    sizes = [0, 1, 7, 40, 48, 9000, 65535, 2**24, 2**31 - 1]
    body = bytearray(data[start + 8:start + 8 + length])
    body[0:8] = struct.pack(">II", *(sizes[int(i)] for i in rng.integers(0, len(sizes), 2)))
    return data[:start] + _chunk(b"IHDR", bytes(body)) + data[start + 12 + length:]


def png_metadata(data, rng):
    """Oversized metadata after IHDR: text and ICC bombs, or a large raw text chunk."""
    bomb = zlib.compress(b"x" * int(rng.choice([900_000, 2_000_000, 20_000_000])), 9)
    chunk = [_chunk(b"zTXt", b"comment\0\0" + bomb),
             _chunk(b"iTXt", b"comment\0\1\0\0\0" + bomb),
             _chunk(b"iCCP", b"icc\0\0" + bomb),
             _chunk(b"tEXt", b"comment\0" + rng.bytes(int(rng.integers(1, 200_000)))),
             _chunk(b"eXIf", rng.bytes(int(rng.integers(0, 400))))][int(rng.integers(0, 5))]
    chunks = _png_chunks(data)
    at = chunks[0][0] + 12 + chunks[0][1] if chunks else min(33, len(data))
    return data[:at] + chunk + data[at:]


def jpeg_segment(data, rng):
    """Huge comments, EXIF blocks of random IFD entries, or a segment length that lies."""
    if not data.startswith(b"\xff\xd8"):
        return flip_header(data, rng)
    choice = int(rng.integers(0, 4))
    if choice == 0:
        return _jpeg_insert(data, 0xFE, rng.bytes(65533))
    if choice == 1:
        ifd = struct.pack("<IH", 8, int(rng.integers(0, 40))) + rng.bytes(int(rng.integers(0, 300)))
        return _jpeg_insert(data, 0xE1, b"Exif\0\0II*\0" + ifd)
    if choice == 2:
        return _jpeg_insert(data, 0xE2, b"MPF\0" + rng.bytes(int(rng.integers(0, 200))))
    out = bytearray(data)
    markers = [i for i in range(2, len(out) - 3) if out[i] == 0xFF and 0xC0 <= out[i + 1] <= 0xFE]
    if markers:
        at = markers[int(rng.integers(0, len(markers)))]
        out[at + 2:at + 4] = struct.pack(">H", int(rng.integers(0, 0x10000)))
    return bytes(out)


def append_junk(data, rng):
    return data + rng.bytes(int(rng.integers(1, 2000)))


MUTATIONS = {f.__name__: f for f in (truncate, flip_header, flip_anywhere, png_chunk,
                                     png_dimensions, png_metadata, jpeg_segment, append_junk)}


def mutate(base: str, operations: list[str], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    data = BASES[base]
    for name in operations:
        data = MUTATIONS[name](data, rng)
    return data


cases = st.tuples(st.sampled_from(sorted(BASES)),
                  st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3),
                  st.integers(0, 2**32 - 1), st.sampled_from(SUFFIXES),
                  st.sampled_from(["grayscale", "rgb"]))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _check_case(workdir, case) -> None:
    """Exactly one outcome per file, no exception but ImageReadError, no stray warning."""
    base, operations, seed, suffix, color_mode = case
    path = workdir / f"case{suffix}"
    path.write_bytes(mutate(base, operations, seed))
    spec = PixelSpec(32, color_mode, "area")
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        item = prefetch.prepare(path, spec)  # its warnings go to the row
    assert not [str(w.message) for w in leaked]
    with warnings.catch_warnings(record=True) as named:
        warnings.simplefilter("always")
        try:
            info = probe(path)
        except ImageReadError as exc:
            info = exc
    assert all(issubclass(w.category, ImageWarning) and str(path) in str(w.message)
               for w in named)
    assert (item.error == "") != (item.pixels is None)
    if item.error:
        assert item.error.strip() and "\n" not in item.error
    else:
        assert item.pixels.shape == spec.shape and item.pixels.dtype == np.uint8
    assert isinstance(info, ImageInfo) or str(info)


FUZZ = dict(derandomize=True, database=None, deadline=None, print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(max_examples=400, **FUZZ)
@given(case=cases)
def test_reader_gives_one_outcome_for_every_mutated_file(workdir, case):
    _check_case(workdir, case)


@pytest.mark.slow
@settings(max_examples=3000, **FUZZ)
@given(case=cases)
def test_reader_survives_thousands_of_mutated_files(workdir, case):
    _check_case(workdir, case)


def test_predict_gives_one_row_per_mutated_file(tmp_path, trained_run, capsys):
    """End to end: a folder of mutated files plus two intact ones through the CLI."""
    model = trained_run[1] / "model.keras"
    rng = np.random.default_rng(2024)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    names = sorted(BASES)
    for i in range(30):
        base = names[i % len(names)]
        operations = list(rng.choice(sorted(MUTATIONS), int(rng.integers(1, 3))))
        data = mutate(base, operations, int(rng.integers(0, 2**32)))
        (inbox / f"m{i:02d}{SUFFIXES[i % len(SUFFIXES)]}").write_bytes(data)
    (inbox / "intact.png").write_bytes(BASES["png_rgb"])
    (inbox / "intact.jpg").write_bytes(BASES["jpeg_exif"])
    out = tmp_path / "out.csv"
    code = cli.main(["predict", str(inbox), "--model", str(model), "--csv", str(out),
                     "--quiet"])
    err = capsys.readouterr().err
    rows = pd.read_csv(out, keep_default_na=False)
    assert "Traceback" not in err and len(rows) == 32 and rows["path"].is_unique
    assert ((rows["error"] == "") != (rows["prediction"] == "")).all()
    assert code == 0 and set(rows.loc[rows["error"] == "", "path"]) >= {
        str(inbox / "intact.png"), str(inbox / "intact.jpg")}

    broken = tmp_path / "broken"
    broken.mkdir()
    for i, base in enumerate(names[:5]):
        (broken / f"b{i}.png").write_bytes(BASES[base][:10])
    code = cli.main(["predict", str(broken), "--model", str(model), "--csv",
                     str(tmp_path / "broken.csv"), "--quiet"])
    assert code == 1 and len(pd.read_csv(tmp_path / "broken.csv")) == 5
