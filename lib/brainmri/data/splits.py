"""Train / validation / test assignment.

The official Testing folder is the test set, untouched. Validation is carved out of the
official Training folder: ``val_fraction`` of each class (rounded down), drawn with a
seeded generator from the files sorted by path, so that the split depends on the seed
and the file list only, never on directory listing order. For Sartaj with the default
0.2 this gives exactly the report's counts (train 661/658/662/316, validation
165/164/165/79, test 100/115/74/105 for glioma/meningioma/pituitary/no_tumor).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainmri.data.sources import get_spec

SPLITS = ("train", "val", "test")


def assign_splits(inventory: pd.DataFrame, val_fraction: float, seed: int) -> pd.DataFrame:
    """Usable files of ``inventory`` with a ``split`` column in {train, val, test}."""
    usable = inventory[inventory["ok"].astype(bool)].sort_values("path").copy()
    usable["split"] = usable["official_split"]
    rng = np.random.default_rng(seed)
    for label in sorted(set(usable["label"])):
        members = usable.index[(usable["official_split"] == "train")
                               & (usable["label"] == label)]
        n_val = int(len(members) * val_fraction)
        chosen = rng.permutation(len(members))[:n_val]
        usable.loc[members[chosen], "split"] = "val"
    return usable.reset_index(drop=True)


def subsample(frame: pd.DataFrame, per_class: int | None, seed: int) -> pd.DataFrame:
    """At most ``per_class`` files per (split, label): the quick profile's tiny subset."""
    if not per_class:
        return frame
    parts = [group.sample(n=min(per_class, len(group)), random_state=seed)
             for _, group in frame.groupby(["split", "label"], sort=True)]
    return pd.concat(parts).sort_values(["split", "label", "path"]).reset_index(drop=True)


def split_counts(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Long table (dataset, split, class, n) in canonical order (only the splits the
    dataset has: an evaluation-only dataset has a test split alone)."""
    labels = get_spec(dataset).labels
    splits = [s for s in SPLITS if s in set(frame["split"])] or list(SPLITS)
    counts = (frame.groupby(["split", "label"]).size()
              .reindex(pd.MultiIndex.from_product([splits, labels]), fill_value=0))
    out = counts.rename("n").rename_axis(["split", "class"]).reset_index()
    out.insert(0, "dataset", dataset)
    return out
