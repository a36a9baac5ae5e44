"""Can a model tell where an image comes from, without looking at the anatomy?

If a dataset's classes come from different source collections, anything that separates
the sources (framing, background, contrast, the scanner's grey-level style) also
separates the classes: a shortcut that scores well at home and fails elsewhere. We
describe each image by a few simple statistics that carry no diagnosis, and measure with
a cross-validated classifier (scikit-learn) how well they predict the source.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

#: Pixels darker than this (0..255) count as background.
DARK = 10


def _head_box(gray: np.ndarray) -> tuple[float, float]:
    """Share of the frame the head's bounding box covers, and its aspect ratio."""
    mask = ndimage.binary_fill_holes(gray > max(DARK, 0.1 * gray.max()))
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows) or not len(cols):
        return 0.0, 1.0
    h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    return h * w / gray.size, w / h


def image_statistics(images: np.ndarray) -> pd.DataFrame:
    """One row of framing and grey-level statistics per (N, S, S, C) uint8 image."""
    rows = []
    for img in images:
        gray = img.astype(np.float32).mean(-1)
        border = np.concatenate([gray[:2].ravel(), gray[-2:].ravel(), gray[:, :2].ravel(),
                                 gray[:, -2:].ravel()])
        fill, aspect = _head_box(gray)
        inside = gray[gray > DARK]
        p5, p50, p95 = np.percentile(inside, [5, 50, 95]) if inside.size else (0, 0, 0)
        rows.append({"mean": gray.mean(), "std": gray.std(), "dark_share": (gray <= DARK).mean(),
                     "border_mean": border.mean(), "head_box_fill": fill,
                     "head_box_aspect": aspect, "tissue_p5": p5, "tissue_median": p50,
                     "tissue_p95": p95, "colour_spread": float(img.astype(np.float32)
                                                               .std(-1).mean())})
    return pd.DataFrame(rows)


def source_predictability(features: pd.DataFrame, source: pd.Series, seed: int,
                          folds: int = 5) -> dict:
    """Cross-validated prediction of ``source`` from ``features``: accuracy, balanced
    accuracy, the majority-class baseline, and the confusion table of true vs predicted
    source."""
    y = np.asarray(source)
    model = HistGradientBoostingClassifier(max_iter=200, random_state=seed)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(model, features.to_numpy(), y, cv=cv)
    return {"n": int(len(y)), "accuracy": float((predicted == y).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(y, predicted)),
            "majority_baseline": float(pd.Series(y).value_counts(normalize=True).iloc[0]),
            "confusion": pd.crosstab(pd.Series(y, name="true source"),
                                     pd.Series(predicted, name="predicted source"))}


def transfer(features: pd.DataFrame, labels: pd.Series, other: pd.DataFrame,
             seed: int) -> np.ndarray:
    """Fit the same classifier on all of ``features`` -> ``labels`` and predict ``other``:
    what a pure shortcut learner would answer on another collection (nothing when it
    holds no image: every one of its images may have a copy in training)."""
    if len(other) == 0:
        return np.array([], dtype=object)
    model = HistGradientBoostingClassifier(max_iter=200, random_state=seed)
    model.fit(features.to_numpy(), np.asarray(labels))
    return model.predict(other.to_numpy())


def tumour_or_not(labels: pd.Series) -> pd.Series:
    """Four-class labels collapsed to ``tumour`` / ``no_tumor`` (Br35H's level)."""
    return (labels != "no_tumor").map({True: "tumour", False: "no_tumor"})


def shortcut_check(features: pd.DataFrame, labels: pd.Series, other: pd.DataFrame,
                   other_name: str, seed: int) -> tuple[dict, dict]:
    """The statistics-only classifier asked the clinical question: tumour or not,
    cross-validated on ``features`` (home images, four-class ``labels``), then fitted on
    all of them and applied to ``other`` (another collection's new tumour images).

    Returns (the cross-validated check as :func:`source_predictability` gives it, the
    summary chapter 01c shows and records, keyed by what each number is)."""
    is_tumour = tumour_or_not(labels)
    home = source_predictability(features, is_tumour, seed)
    answers = pd.Series(transfer(features, is_tumour, other, seed))
    return home, {
        "home: tumour vs none, cross-validated accuracy": home["accuracy"],
        "home: majority baseline": home["majority_baseline"],
        f"{other_name} new tumour images": len(other),
        f"{other_name} new tumour images called no_tumor":
            float((answers == "no_tumor").mean()) if len(answers) else float("nan")}
