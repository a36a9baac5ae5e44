"""Duplicate images within and across splits: exact copies and near-duplicates.

- **Exact** duplicates share the MD5 of their file bytes.
- **Near** duplicates are found with a 64-bit perceptual hash (imagehash's pHash of the
  grayscale image) and confirmed on pixels: a pair counts when the Hamming distance of
  the hashes is at most ``max_distance`` *and* the Pearson correlation of 32 x 32
  thumbnails is at least ``min_correlation``. MRI slices share a large black background,
  so hashes alone match different slices at moderate distances; the rule chapter 01b
  uses (``params/base.yaml``: 4 bits, 0.95) is deliberately strict. The chapter shows
  the matched pairs, measures how often they agree on the label and checks that planted
  resized copies are caught.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from brainmri.core import cache
from brainmri.core.files import atomic_path, atomic_write_csv
from brainmri.core.progress import progress
from brainmri.core.runfolder import RunFolder
from brainmri.data.images import read_image

THUMB = 32
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


@dataclass
class Fingerprints:
    md5: np.ndarray  # (N,) str
    phash: np.ndarray  # (N,) uint64
    thumbs: np.ndarray  # (N, THUMB*THUMB) float32, zero mean and unit norm per image

    def subset(self, idx) -> Fingerprints:
        return Fingerprints(self.md5[idx], self.phash[idx], self.thumbs[idx])


def fingerprint_image(pixels_gray: np.ndarray) -> tuple[int, np.ndarray]:
    """(pHash as an integer, normalised thumbnail) of a (H, W, 1) uint8 image."""
    import imagehash

    img = Image.fromarray(pixels_gray[..., 0])
    phash = int(str(imagehash.phash(img)), 16)
    thumb = np.asarray(img.resize((THUMB, THUMB), Image.BILINEAR), np.float32).ravel()
    thumb -= thumb.mean()
    thumb /= np.linalg.norm(thumb) + 1e-6
    return phash, thumb


def _one(path: Path) -> tuple[str, int, np.ndarray]:
    phash, thumb = fingerprint_image(read_image(path, "grayscale"))
    return hashlib.md5(path.read_bytes()).hexdigest(), phash, thumb


def fingerprints(root: str | os.PathLike, rel_paths: list[str], name: str = "") -> Fingerprints:
    """Fingerprints of ``rel_paths`` under ``root``, cached (``core.cache``)."""
    root = Path(root)
    target = cache.cache_file("duplicates", name or "files",
                              cache.stamp(root, rel_paths, "duplicates-v2", THUMB), ".npz")
    if target.exists():
        data = np.load(target)
        return Fingerprints(data["md5"], data["phash"], data["thumbs"])
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        rows = list(progress(pool.map(lambda r: _one(root / r), rel_paths), total=len(rel_paths),
                             desc=f"hashing {name}", unit="img"))
    out = Fingerprints(np.array([r[0] for r in rows]), np.array([r[1] for r in rows], np.uint64),
                       np.stack([r[2] for r in rows]) if rows else np.zeros((0, THUMB * THUMB),
                                                                            np.float32))
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, md5=out.md5, phash=out.phash, thumbs=out.thumbs)
    return out


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between two arrays of 64-bit hashes, shape (len(a), len(b))."""
    x = (a[:, None] ^ b[None, :]).view(np.uint8).reshape(len(a), len(b), 8)
    return _POPCOUNT[x].sum(-1, dtype=np.uint8)


def near_pairs(fa: Fingerprints, fb: Fingerprints, *, max_distance: int,
               min_correlation: float, same_set: bool = False, chunk: int = 512
               ) -> pd.DataFrame:
    """All pairs (i in a, j in b) that are exact or near duplicates.

    Columns: i, j, distance (pHash bits), correlation (thumbnails), exact (same bytes).
    With ``same_set`` (a is b), each unordered pair appears once and i != j.
    """
    rows = []
    for start in range(0, len(fa.phash), chunk):
        dist = hamming(fa.phash[start:start + chunk], fb.phash)
        i, j = np.nonzero(dist <= max_distance)
        i += start
        if same_set:
            keep = i < j
            i, j = i[keep], j[keep]
        corr = np.einsum("ij,ij->i", fa.thumbs[i], fb.thumbs[j]) if len(i) else np.zeros(0)
        rows.append(pd.DataFrame({"i": i, "j": j, "distance": dist[i - start, j],
                                  "correlation": corr}))
    pairs = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["i", "j", "distance", "correlation"])
    pairs["exact"] = fa.md5[pairs["i"].to_numpy(int)] == fb.md5[pairs["j"].to_numpy(int)]
    # Byte-identical files always count; other hash matches must also look alike.
    return pairs[pairs["exact"] | (pairs["correlation"] >= min_correlation)].reset_index(drop=True)


def nearest(fa: Fingerprints, fb: Fingerprints, chunk: int = 512) -> pd.DataFrame:
    """For each image of ``a``: its nearest ``b`` by pHash, the distance and the
    thumbnail correlation (used to study where a threshold should sit)."""
    parts = []
    for start in range(0, len(fa.phash), chunk):
        dist = hamming(fa.phash[start:start + chunk], fb.phash)
        j = dist.argmin(1)
        i = np.arange(start, start + len(j))
        parts.append(pd.DataFrame({"i": i, "j": j, "distance": dist[np.arange(len(j)), j],
                                   "correlation": np.einsum("ij,ij->i", fa.thumbs[i],
                                                            fb.thumbs[j])}))
    return pd.concat(parts, ignore_index=True)


@dataclass
class Audit:
    """Duplicates within one dataset's Training and Testing folders, and across them."""

    dataset: str
    rule: dict
    counts: dict[str, int | float | None]  # the numbers chapter 01b reports
    per_class: pd.DataFrame  # test images per class, and how many have a training copy
    pairs: pd.DataFrame  # every (test, train) duplicate pair, with both labels
    leaked: pd.DataFrame  # one row per test image with a copy in training

    def summary(self) -> dict:
        """What goes into ``leakage.json``."""
        return {"dataset": self.dataset, "rule": self.rule, **self.counts,
                "per_class": self.per_class.to_dict(orient="index")}

    def write(self, run: RunFolder) -> None:
        atomic_write_csv(self.leaked, run.test_with_copy(self.dataset))


def audit(files: pd.DataFrame, prints: Fingerprints, dataset: str,
          max_distance: int, min_correlation: float) -> Audit:
    """Duplicate counts for one dataset. ``files`` has columns path, official_split, label,
    in the same order as ``prints``."""
    train = np.flatnonzero(files["official_split"].to_numpy() == "train")
    test = np.flatnonzero(files["official_split"].to_numpy() == "test")
    sub = prints.subset
    kwargs = {"max_distance": max_distance, "min_correlation": min_correlation}
    within_train = near_pairs(sub(train), sub(train), same_set=True, **kwargs)
    within_test = near_pairs(sub(test), sub(test), same_set=True, **kwargs)
    across = near_pairs(sub(test), sub(train), **kwargs)
    across["test_path"] = files["path"].to_numpy()[test[across["i"]]]
    across["train_path"] = files["path"].to_numpy()[train[across["j"]]]
    across["test_label"] = files["label"].to_numpy()[test[across["i"]]]
    across["train_label"] = files["label"].to_numpy()[train[across["j"]]]
    across["label_agrees"] = across["test_label"] == across["train_label"]
    leaked = across.groupby("test_path").agg(exact=("exact", "any"), distance=("distance", "min"),
                                             label_agrees=("label_agrees", "all")).reset_index()
    test_labels = files.iloc[test].set_index("path")["label"]
    leaked["label"] = leaked["test_path"].map(test_labels)
    per_class = (pd.DataFrame({"label": test_labels.to_numpy()}).value_counts("label")
                 .rename("test_images").to_frame()
                 .join(leaked.value_counts("label").rename("with_copy_in_training"))
                 .fillna(0).astype(int))
    counts = {
        "n_train": int(len(train)), "n_test": int(len(test)),
        "exact_pairs_within_training": int(within_train["exact"].sum()),
        "near_pairs_within_training": int((~within_train["exact"]).sum()),
        "exact_pairs_within_testing": int(within_test["exact"].sum()),
        "near_pairs_within_testing": int((~within_test["exact"]).sum()),
        "test_images_with_exact_copy_in_training": int(leaked["exact"].sum()),
        "test_images_with_near_copy_in_training": int((~leaked["exact"]).sum()),
        "test_images_with_copy_in_training": int(len(leaked)),
        "share_of_test_with_copy_in_training": float(len(leaked) / max(1, len(test))),
        "cross_split_pairs_label_agreement": float(across["label_agrees"].mean())
        if len(across) else None,
    }
    rule = {"max_distance": max_distance, "min_correlation": min_correlation,
            "hash": "pHash 64-bit (imagehash)", "thumbnail": f"{THUMB}x{THUMB}"}
    return Audit(dataset, rule, counts, per_class, across, leaked)


@dataclass
class Overlap:
    """Images shared by two datasets (any split of either)."""

    names: tuple[str, str]
    pairs: pd.DataFrame  # <a>_path, <b>_path, <a>_label, <b>_label, <a>_split, <b>_split,
    #                      distance, exact

    def summary(self) -> dict:
        a, b = self.names
        p = self.pairs
        return {f"{a}_images_in_{b}": int(p[f"{a}_path"].nunique()),
                f"{b}_images_in_{a}": int(p[f"{b}_path"].nunique()),
                "exact_pairs": int(p["exact"].sum()),
                "label_agreement": float(_labels_agree(p[f"{a}_label"], p[f"{b}_label"]).mean())
                if len(p) else None}

    def shared_counts(self) -> dict:
        """The summary as one table row with the same columns for every pair of datasets."""
        a, b = self.names
        s = self.summary()
        return {"datasets": f"{a} & {b}", "shared images of the first": s[f"{a}_images_in_{b}"],
                "shared images of the second": s[f"{b}_images_in_{a}"],
                "exact pairs": s["exact_pairs"], "labels agree": s["label_agreement"]}

    def write(self, run: RunFolder) -> None:
        atomic_write_csv(self.pairs, run.overlap(*self.names))


def _labels_agree(a: pd.Series, b: pd.Series) -> np.ndarray:
    """Whether two label columns agree: class for class when both use the same classes,
    else at the level both can say (tumour or no tumour), e.g. Br35H's yes/no."""
    if set(a) <= set(b) or set(b) <= set(a):
        return a.to_numpy() == b.to_numpy()
    return (a.to_numpy() == "no_tumor") == (b.to_numpy() == "no_tumor")


def overlap(names: tuple[str, str], files: tuple[pd.DataFrame, pd.DataFrame],
            prints: tuple[Fingerprints, Fingerprints], max_distance: int,
            min_correlation: float) -> Overlap:
    """Every duplicate pair between two datasets (``files`` rows align with ``prints``)."""
    pairs = near_pairs(prints[0], prints[1], max_distance=max_distance,
                       min_correlation=min_correlation)
    (a, b), (fa, fb) = names, files
    i, j = pairs["i"].to_numpy(int), pairs["j"].to_numpy(int)
    return Overlap(names, pd.DataFrame({
        f"{a}_path": fa["path"].to_numpy()[i], f"{b}_path": fb["path"].to_numpy()[j],
        f"{a}_label": fa["label"].to_numpy()[i], f"{b}_label": fb["label"].to_numpy()[j],
        f"{a}_split": fa["official_split"].to_numpy()[i],
        f"{b}_split": fb["official_split"].to_numpy()[j],
        "distance": pairs["distance"].to_numpy(), "exact": pairs["exact"].to_numpy()}))


def planted_copies(images: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """Resized (0.5x and back), re-encoded (JPEG q=70) and slightly brightened copies:
    what a duplicate looks like after passing through another dataset's pipeline."""
    import io

    rng = np.random.default_rng(seed)
    out = []
    for img in images:
        pil = Image.fromarray(img[..., 0])
        w, h = pil.size
        pil = pil.resize((max(8, w // 2), max(8, h // 2)), Image.BILINEAR).resize((w, h))
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=70)
        arr = np.asarray(Image.open(buf).convert("L"), np.float32)
        arr = np.clip(arr * (1 + rng.uniform(-0.05, 0.05)), 0, 255).astype(np.uint8)
        out.append(arr[..., None])
    return out


# --- what an audit says a model trained on ----------------------------------------------


def read_paths(path: Path, column: str) -> set[str]:
    """The paths in ``column`` of an audit's CSV list; empty when the list is missing."""
    return set(pd.read_csv(path)[column]) if path.exists() else set()


def training_copies(run: RunFolder, collection: str, evaluated: str) -> set[str] | None:
    """Paths of ``evaluated``'s test images with a copy among what a model trained on
    ``collection`` learned from; None when the duplicate audit that says is missing.

    Another collection: every image the two share (any split of ``collection``, as the
    external row always did). The evaluated collection itself (its training images added
    by a recipe): its test images with a copy in its Training folder, which holds the
    images the recipe adds (training and validation)."""
    if collection == evaluated:
        path, column = run.test_with_copy(evaluated), "test_path"
    else:
        path, column = run.overlap(collection, evaluated), f"{evaluated}_path"
    return read_paths(path, column) if path.exists() else None
