"""Atomic writes: every results and cache file goes through here.

A file is written to a temporary sibling and then renamed over the target, so a run
killed at any moment leaves either the old file or the new one, never a truncated mix.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix,
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; give normal permissions
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(text: str, target: str | os.PathLike) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_json(data: Any, target: str | os.PathLike) -> Path:
    return atomic_write_text(json.dumps(data, indent=2, default=_jsonable) + "\n", target)


def csv_text(frame: pd.DataFrame) -> str:
    """``frame`` as CSV text (no index, one ``\\n`` per row), every field that needs it
    quoted: pandas (Python's csv writer) quotes a field holding a comma, a quote or a line
    feed, but not one holding only a carriage return, which readers take for a line end
    (a file name ``a\\rb.jpg`` split its row in two). Written with ``\\r\\n`` line ends, any
    field holding ``\\r`` or ``\\n`` is quoted; the line ends are then turned back into
    ``\\n`` outside the quoted fields (the quote state flips at every ``"``, since quotes
    inside a field are doubled), so the text is otherwise what ``to_csv`` writes."""
    text = frame.to_csv(index=False, lineterminator="\r\n")
    parts = text.split('"')
    parts[::2] = [part.replace("\r\n", "\n") for part in parts[::2]]
    return '"'.join(parts)


def atomic_write_csv(frame: pd.DataFrame, target: str | os.PathLike,
                     errors: str = "strict") -> Path:
    """Write ``frame`` (see ``csv_text``) as UTF-8; ``errors="surrogateescape"`` writes the
    undecodable bytes of file names (as ``os.fsdecode`` keeps them) as they are."""
    text = csv_text(frame)
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8", errors=errors,
                                          newline="") as fh:
        fh.write(text)
    return Path(target)


def atomic_save_npy(array: np.ndarray, target: str | os.PathLike) -> Path:
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)
    return Path(target)


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


def update_json(target: str | os.PathLike, updates: dict) -> dict:
    """Merge ``updates`` into the JSON object at ``target`` (created if missing)."""
    data = read_json(target, default={}) or {}
    data.update(updates)
    atomic_write_json(data, target)
    return data


def replace_rows(frame: pd.DataFrame, target: str | os.PathLike,
                 match: dict[str, object]) -> pd.DataFrame:
    """Write ``frame`` into the shared table ``target`` in place of its rows that ``match``.

    Notebooks of one run each add their own rows to shared tables (split counts per
    dataset, metrics per model); rerunning a notebook replaces its rows and keeps the
    others. ``frame`` may be empty (e.g. no skipped files): the old rows still go.
    """
    target = Path(target)
    if target.exists() and target.stat().st_size > 0:
        old = pd.read_csv(target)
        same = pd.Series(True, index=old.index)
        for column, value in match.items():
            same &= (old[column].astype(str) == str(value)) if column in old.columns else False
        frame = pd.concat([old[~same], frame], ignore_index=True)
    atomic_write_csv(frame, target)
    return frame
