"""The report's variance analysis, and the normalised ratio it should have used.

Images are flattened to vectors x_i. For class k with n_k images and mean mu_k:

- intra-class variance (report): ``V_k = (1/n_k) sum_i ||x_i - mu_k||^2``
- inter-class variance (report): ``B = sum_k n_k ||mu_k - mu||^2``
- report's ratio: ``R = B / sum_k V_k``

R divides a *sum over images* (B grows with N) by a *sum of per-image averages* (the
V_k do not), so its size mostly reflects N / K, not separability. The total sum of
squares splits exactly as ``T = B + W`` with ``W = sum_k n_k V_k``; the normalised
between/within ratio ``B / W`` (and the share of variance explained, ``B / T``) are
scale-free and comparable across datasets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainmri import CLASS_NAMES
from brainmri.evaluation.published import VARIANCE_000


def class_variances(images: np.ndarray, labels: np.ndarray,
                    class_names: tuple[str, ...] = CLASS_NAMES,
                    chunk: int = 256) -> dict:
    """Variance decomposition of ``images`` (N, ...) grouped by integer ``labels``."""
    flat = images.reshape(len(images), -1)
    n_total = len(flat)
    means, counts, intra = {}, {}, {}
    for k, name in enumerate(class_names):
        members = np.flatnonzero(labels == k)
        if len(members) == 0:
            continue
        mu = flat[members].mean(axis=0, dtype=np.float64)
        ss = 0.0
        for start in range(0, len(members), chunk):  # float64 in chunks bounds memory
            block = flat[members[start:start + chunk]].astype(np.float64) - mu
            ss += float(np.einsum("ij,ij->", block, block))
        means[name], counts[name], intra[name] = mu, len(members), ss / len(members)
    grand = sum(counts[c] * means[c] for c in means) / n_total
    between = float(sum(counts[c] * np.sum((means[c] - grand) ** 2) for c in means))
    within = float(sum(counts[c] * intra[c] for c in means))
    n_classes = len(means)
    return {
        "n_images": int(n_total),
        "n_features": int(flat.shape[1]),
        "counts": counts,
        "intra": intra,
        "inter": between,
        "R_report": between / sum(intra.values()),
        "within_total": within,
        "between_over_within": between / within,
        "explained_share": between / (between + within),
        # Per-degree-of-freedom version, as in one-way ANOVA's F statistic (summed over pixels).
        "f_ratio": (between / (n_classes - 1)) / (within / (n_total - n_classes)),
    }


def compare_with_report(result: dict) -> pd.DataFrame:
    """Our figures next to the report's, with the relative difference."""
    rows = [(f"intra {k}", result["intra"][k], v) for k, v in VARIANCE_000["intra"].items()]
    rows += [("inter", result["inter"], VARIANCE_000["inter"]),
             ("R", result["R_report"], VARIANCE_000["R_report"])]
    table = pd.DataFrame(rows, columns=["quantity", "this run", "report"])
    table["relative difference"] = table["this run"] / table["report"] - 1
    return table
