"""One call from dataset name to labelled arrays: locate, inventory, split, load pixels."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from brainmri.data.images import read_image
from brainmri.data.inventory import build_inventory, skipped
from brainmri.data.pixels import PixelSpec, load_pixels
from brainmri.data.sources import get_spec, locate
from brainmri.data.splits import assign_splits, split_counts, subsample


@dataclass
class Dataset:
    """A located dataset with its inventory and its train/val/test assignment."""

    name: str
    root: Path
    inventory: pd.DataFrame
    files: pd.DataFrame  # usable files, one row each, with a ``split`` column

    def split(self, split: str) -> pd.DataFrame:
        return self.files[self.files["split"] == split].reset_index(drop=True)

    @property
    def spec(self):
        return get_spec(self.name)

    def labels(self, split: str) -> np.ndarray:
        """Integer labels, indexing ``spec.labels`` (CLASS_NAMES for the four-class sets)."""
        return self.split(split)["label"].map(self.spec.labels.index).to_numpy(np.int32)

    def pixels(self, split: str, spec: PixelSpec) -> np.ndarray:
        return load_pixels(self.root, self.split(split)["path"].tolist(), spec,
                           desc=f"{self.name}/{split}")

    def pixels_of(self, rel_paths, spec: PixelSpec) -> np.ndarray:
        """Pixels of the given files of this dataset (cached like a split's)."""
        return load_pixels(self.root, list(rel_paths), spec, desc=self.name)

    def arrays(self, split: str, spec: PixelSpec) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 pixels of shape (N, S, S, C), int labels indexing ``spec.labels``)."""
        return self.pixels(split, spec), self.labels(split)

    def examples(self, per_class: int, seed: int, split: str | None = None) -> pd.DataFrame:
        """A seeded random sample of ``per_class`` files of each class (of the training
        split, or the test split of an evaluation-only dataset)."""
        frame = self.split(split or ("test" if self.spec.evaluation_only else "train"))
        return (frame.groupby("label").sample(n=per_class, random_state=seed, replace=False)
                .assign(order=lambda f: f["label"].map(self.spec.labels.index))
                .sort_values(["order", "path"]).drop(columns="order").reset_index(drop=True))

    def read(self, rel_path: str, color_mode: str) -> np.ndarray:
        """Original pixels of one file (no resizing)."""
        return read_image(self.root / rel_path, color_mode)

    def counts(self) -> pd.DataFrame:
        return split_counts(self.files, self.name)

    def skipped(self) -> pd.DataFrame:
        out = skipped(self.inventory)
        out.insert(0, "dataset", self.name)
        return out


def load(dataset: str, data_dir: str | os.PathLike | None, val_fraction: float, seed: int,
         subset: int | None = None) -> Dataset:
    """Locate ``dataset`` (downloading it if needed), check every file, split it.

    ``subset`` keeps at most that many files per split and class (quick runs).
    """
    root = locate(dataset, data_dir)
    inventory = build_inventory(root, dataset)
    files = subsample(assign_splits(inventory, val_fraction, seed), subset, seed)
    return Dataset(dataset, root, inventory, files)
