"""Where each image comes from, found by duplicate matching across datasets.

Nickparvar's dataset was assembled from three collections: figshare (T1 contrast-
enhanced tumour slices), Sartaj, and Br35H (whose "no" half is Nickparvar's no-tumour
class). A Nickparvar image with a copy in Sartaj or in Br35H comes from there; one with
neither is taken to come from figshare. The same matching lists the Br35H images that
have a copy in a training folder: they never count as external test images. The tables
chapter 01c shows (class by source, the external set, copies of the hard test images in
other collections) are built here as well.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainmri.core.runfolder import RunFolder
from brainmri.data.duplicates import Overlap

FIGSHARE = "figshare"


def nickparvar_sources(files: pd.DataFrame, overlaps: dict[str, Overlap]) -> pd.Series:
    """Source collection of each Nickparvar file (rows of ``files``, column ``path``).

    ``overlaps`` maps a collection name (``sartaj``, ``br35h``) to its Overlap with
    Nickparvar. A file matched in both is attributed to the first name given.
    """
    source = pd.Series(FIGSHARE, index=files["path"].to_numpy(), name="source")
    for name in reversed(list(overlaps)):
        matched = set(overlaps[name].pairs["nickparvar_path"])
        source[source.index.isin(matched)] = name
    return source


def copies_in_training(dataset: str, overlaps: dict[str, Overlap]) -> pd.DataFrame:
    """Files of the evaluation-only ``dataset`` with a copy in the Training folder of any
    dataset in ``overlaps`` (name -> Overlap between ``dataset`` and that dataset): one
    row per file, with where its copies are."""
    parts = []
    for other, overlap in overlaps.items():
        pairs = overlap.pairs
        trained = pairs[pairs[f"{other}_split"] == "train"]
        parts.append(pd.DataFrame({"path": trained[f"{dataset}_path"].to_numpy(),
                                   "label": trained[f"{dataset}_label"].to_numpy(),
                                   "copy_in": other,
                                   "copy_path": trained[f"{other}_path"].to_numpy(),
                                   "copy_label": trained[f"{other}_label"].to_numpy()}))
    if not parts:
        return pd.DataFrame(columns=["path", "label", "copy_in", "copy_path", "copy_label"])
    found = pd.concat(parts, ignore_index=True)
    return (found.groupby("path", as_index=False)
            .agg(label=("label", "first"), copy_in=("copy_in", lambda s: ",".join(sorted(set(s)))),
                 copies=("copy_path", "size"), copy_labels=("copy_label",
                                                            lambda s: ",".join(sorted(set(s))))))


def class_by_source(files: pd.DataFrame) -> pd.DataFrame:
    """Images per (official split, class) and source collection, with totals (``files``
    has columns official_split, label and source)."""
    return pd.crosstab([files["official_split"], files["label"]], files["source"],
                       margins=True)


def mark_in_training(files: pd.DataFrame, seen: pd.DataFrame) -> pd.DataFrame:
    """``files`` with a boolean ``in_training`` column: the file is listed in ``seen``
    (what :func:`copies_in_training` returns)."""
    return files.assign(in_training=files["path"].isin(seen["path"]))


def external_table(files: pd.DataFrame) -> pd.DataFrame:
    """Images per class with a copy in a training folder, and new ones (the external
    test set), with totals; ``files`` as :func:`mark_in_training` returns it."""
    return pd.crosstab(files["label"], files["in_training"].map(
        {True: "copy in a training folder", False: "new: external test"}), margins=True)


def new_images(files: pd.DataFrame, label: str) -> pd.DataFrame:
    """The external test images of one class: those without a copy in any training
    folder (``files`` as :func:`mark_in_training` returns it)."""
    return files[(files["label"] == label) & ~files["in_training"]]


def test_copies(run: RunFolder, dataset: str) -> pd.Series:
    """Paths of ``dataset``'s test images with a copy in its own Training folder, as the
    leakage audit (chapter 01b) listed them; empty when the audit has not run."""
    path = run.test_with_copy(dataset)
    return pd.read_csv(path)["test_path"] if path.exists() else pd.Series(dtype=str)


def test_without_copy(files: pd.DataFrame, label: str, leaked: pd.Series) -> pd.DataFrame:
    """``files``' official test images of class ``label`` whose path is not in ``leaked``
    (those with a training copy)."""
    return files[(files["official_split"] == "test") & (files["label"] == label)
                 & ~files["path"].isin(leaked)]


def copies_of(paths: pd.Series, overlap: Overlap, dataset: str) -> pd.DataFrame:
    """The pairs of ``overlap`` whose ``dataset`` image is one of ``paths``."""
    pairs = overlap.pairs
    return pairs[pairs[f"{dataset}_path"].isin(paths)]


def labels_elsewhere(paths: pd.Series, overlaps: dict[str, Overlap], dataset: str,
                     noun: str) -> pd.DataFrame:
    """How many of ``dataset``'s images ``paths`` have a copy in each other collection
    (``overlaps``: its name -> its Overlap with ``dataset``), per label the copy carries
    there: one row per label, one column per collection ("<noun> with a copy in <name>")."""
    counts = [copies_of(paths, overlap, dataset).groupby(f"{other}_label")[f"{dataset}_path"]
              .nunique().rename(f"{noun} with a copy in {other}")
              for other, overlap in overlaps.items()]
    return pd.concat(counts, axis=1).fillna(0).astype(int)


def split_class_by_copy(files: pd.DataFrame, overlap: Overlap, dataset: str,
                        other: str) -> pd.DataFrame:
    """``dataset``'s images per (official split, class), with and without a copy in the
    other collection of ``overlap``, named ``other`` in the column titles."""
    has_copy = files["path"].isin(overlap.pairs[f"{dataset}_path"])
    return pd.crosstab([files["official_split"], files["label"]],
                       has_copy.map({True: f"copy in {other}", False: f"no copy in {other}"}))


def sample_groups(files: pd.DataFrame, by: list[str], per_group: int | None,
                  seed: int) -> pd.DataFrame:
    """At most ``per_group`` rows of each group of ``by`` columns (seeded), in the original
    order; all rows when ``per_group`` is None. A smaller sample keeps every source and
    class in the statistics (a quick run describes a few hundred images, not thousands)."""
    if per_group is None:
        return files
    shuffled = files.iloc[np.random.default_rng(seed).permutation(len(files))]
    kept = shuffled.groupby(by, sort=False).head(per_group).index
    return files.loc[files.index.isin(kept)]
