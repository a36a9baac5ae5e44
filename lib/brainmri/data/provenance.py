"""Where each image comes from, found by duplicate matching across datasets.

Nickparvar's dataset was assembled from three collections: figshare (T1 contrast-
enhanced tumour slices), Sartaj, and Br35H (whose "no" half is Nickparvar's no-tumour
class). A Nickparvar image with a copy in Sartaj or in Br35H comes from there; one with
neither is taken to come from figshare. The same matching lists the Br35H images that
have a copy in a training folder: they never count as external test images.
"""

from __future__ import annotations

import pandas as pd

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
