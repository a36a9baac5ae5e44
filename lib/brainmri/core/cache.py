"""The one rule that decides when derived data is stale.

Everything derived from dataset files (the inventory, resized pixels, duplicate
fingerprints, dataset fingerprints) is cached under ``data/cache`` in a file whose
name carries a *stamp*: a hash of the settings that shaped it and of every source
file's relative path, size and modification time. Touch, replace, add or remove a
file, or change a setting, and the stamp changes, so the stale file is simply never
read again (``make clean-cache`` removes old ones).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from brainmri.core import paths


def stamp(root: str | os.PathLike, rel_paths: Iterable[str], *settings) -> str:
    """16 hex digits identifying ``settings`` and the current state of the files."""
    root = Path(root)
    digest = hashlib.sha1(repr(settings).encode())
    for rel in rel_paths:
        st = (root / rel).stat()
        digest.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def cache_file(kind: str, name: str, key: str, suffix: str) -> Path:
    """``data/cache/<kind>/<name>-<key><suffix>``; the folder is created."""
    folder = paths.cache_dir() / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}-{key}{suffix}"
