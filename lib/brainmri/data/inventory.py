"""The inventory of a dataset: one row per file under its class folders.

Every file is decoded once, so that unusable files (corrupt, truncated, empty, not an
image, too large) are found before training and listed in the run's report instead of
crashing a notebook halfway. The result is cached (``core.cache``), so the decoding
happens once per dataset copy.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from brainmri.core import cache
from brainmri.core.files import atomic_write_csv
from brainmri.core.progress import progress
from brainmri.data.images import ImageReadError, is_image_name, probe
from brainmri.data.sources import DatasetSpec, get_spec

COLUMNS = ["path", "official_split", "label", "folder", "bytes", "width", "height",
           "mode", "format", "ok", "error"]


def list_files(root: Path, spec: DatasetSpec) -> list[tuple[str, str, str, Path]]:
    """(official split, on-disk class folder, canonical label, file) for every file found."""
    out = []
    for split_folder, split in spec.split_folders.items():
        for class_folder, label in spec.class_folders.items():
            folder = root / split_folder / class_folder
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    out.append((split, class_folder, label, path))
    return out


def _describe(item: tuple[str, str, str, Path], root: Path) -> dict:
    split, folder, label, path = item
    row = {"path": path.relative_to(root).as_posix(), "official_split": split, "label": label,
           "folder": folder, "bytes": path.stat().st_size, "width": None, "height": None,
           "mode": None, "format": None, "ok": False, "error": ""}
    if not is_image_name(path):
        row["error"] = f"not an image file name ({path.suffix or 'no extension'})"
        return row
    try:
        info = probe(path)
    except ImageReadError as exc:
        row["error"] = str(exc)
        return row
    except OSError as exc:  # unreadable (permissions, I/O): still a per-file problem
        row["error"] = f"cannot read file ({exc.strerror or exc})"
        return row
    row.update(width=info.width, height=info.height, mode=info.mode, format=info.format,
               ok=True)
    return row


def build_inventory(root: str | os.PathLike, dataset: str,
                    use_cache: bool = True) -> pd.DataFrame:
    """Inventory of the dataset folder ``root`` (as returned by ``datasets.locate``)."""
    root = Path(root)
    spec = get_spec(dataset)
    files = list_files(root, spec)
    key = cache.stamp(root, [path.relative_to(root).as_posix() for *_, path in files],
                      "inventory-v2")
    cache_file = cache.cache_file("inventory", spec.name, key, ".csv")
    if use_cache and cache_file.exists():
        return _typed(pd.read_csv(cache_file, keep_default_na=False, na_values={
            "width": [""], "height": [""]}))
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while decoding
        rows = list(progress(pool.map(lambda item: _describe(item, root), files),
                         total=len(files), desc=f"checking {spec.name} images", unit="img"))
    inventory = _typed(pd.DataFrame(rows, columns=COLUMNS))
    if use_cache:
        atomic_write_csv(inventory, cache_file)
    return inventory


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Same dtypes whether the inventory was just built or read back from the cache."""
    text = ["path", "official_split", "label", "folder", "mode", "format", "error"]
    frame[text] = frame[text].fillna("").astype(str)
    frame[["width", "height"]] = frame[["width", "height"]].astype("Int64")
    frame["bytes"] = frame["bytes"].astype("int64")
    frame["ok"] = frame["ok"].astype(bool)
    return frame


def skipped(inventory: pd.DataFrame) -> pd.DataFrame:
    """The files that will not be used, with the reason."""
    return inventory.loc[~inventory["ok"].astype(bool),
                         ["path", "official_split", "label", "bytes", "error"]]
