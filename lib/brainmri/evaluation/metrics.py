"""Classification metrics on top of scikit-learn, plus the report's own aggregates.

Everything takes integer labels (indices into CLASS_NAMES) and an (N, 4) array of class
probabilities, except ``report_f1_arithmetic``, which reads a report's published rows.
Functions return plain dicts or DataFrames so notebooks can show them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from brainmri import CLASS_NAMES

LABELS = list(range(len(CLASS_NAMES)))
NO_TUMOR = CLASS_NAMES.index("no_tumor")


def _safe_auc(y_binary: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC, or NaN when only one class is present (tiny quick-profile subsets)."""
    if len(np.unique(y_binary)) < 2:
        return float("nan")
    return float(skm.roc_auc_score(y_binary, score))


def _renormalised(probs: np.ndarray) -> np.ndarray:
    """Probabilities saved from float32 softmax sum to 1 only to ~1e-7; make it exact."""
    probs = np.clip(np.asarray(probs, np.float64), 1e-15, None)
    return probs / probs.sum(axis=1, keepdims=True)


def per_class(y_true: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    """Precision, recall, F1, support, false positives, false negatives and one-vs-rest AUC."""
    y_pred = probs.argmax(1)
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=LABELS,
                                                     zero_division=0)
    cm = skm.confusion_matrix(y_true, y_pred, labels=LABELS)
    fp = cm.sum(axis=0) - np.diag(cm)
    fn = cm.sum(axis=1) - np.diag(cm)
    auc = [_safe_auc(y_true == k, probs[:, k]) for k in LABELS]
    return pd.DataFrame({"precision": p, "recall": r, "f1": f, "support": s, "fp": fp,
                         "fn": fn, "auc": auc}, index=pd.Index(CLASS_NAMES, name="class"))


def global_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict:
    """The benchmark's summary row.

    ``f1_report`` is report 000's "global F1": the harmonic mean of the *weighted*
    precision and recall. It is not an average of per-class F1 scores; ``f1_w`` (support-
    weighted F1) and ``f1_macro`` (unweighted) are the standard aggregates.
    """
    y_pred = probs.argmax(1)
    table = per_class(y_true, probs)
    pw, rw, f1w, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=LABELS,
                                                         average="weighted", zero_division=0)
    weights = table["support"] / table["support"].sum()
    valid = table["auc"].notna()
    auc_w = float((table["auc"][valid] * weights[valid]).sum() / weights[valid].sum()) \
        if valid.any() else float("nan")
    return {
        "n": int(len(y_true)),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "loss": float(skm.log_loss(y_true, _renormalised(probs), labels=LABELS)),
        "precision_w": float(pw), "recall_w": float(rw), "f1_w": float(f1w),
        "f1_report": float(2 * pw * rw / (pw + rw)) if pw + rw else 0.0,
        "f1_macro": float(skm.f1_score(y_true, y_pred, labels=LABELS, average="macro",
                                       zero_division=0)),
        "auc_w": auc_w,
        "fp": int(table["fp"].sum()), "fn": int(table["fn"].sum()),
    }


def report_f1_arithmetic(figures: dict, support: dict[str, int]) -> dict:
    """Report 000's "global F1" set against the weighted F1, from a model's published rows.

    ``figures`` holds the weighted ``precision_w`` and ``recall_w`` and, per class, the
    ``precision``, ``recall`` and ``f1`` dicts; ``support`` the test images per class. Returns
    ``harmonic`` (the report's formula: the harmonic mean of the weighted precision and
    recall), ``f1_weighted`` (the support-weighted mean of the published per-class F1),
    ``f1_from_pr`` (each class's F1 recomputed from its published precision and recall) and
    ``f1_weighted_from_pr`` (their support-weighted mean). Per-class dicts follow
    ``CLASS_NAMES``.
    """
    pw, rw = figures["precision_w"], figures["recall_w"]
    total = sum(support[c] for c in CLASS_NAMES)

    def weighted(per_class: dict) -> float:
        return sum(support[c] * per_class[c] for c in CLASS_NAMES) / total

    def harmonic(p: float, r: float) -> float:
        return 2 * p * r / (p + r) if p + r else 0.0

    from_pr = {c: harmonic(figures["precision"][c], figures["recall"][c]) for c in CLASS_NAMES}
    return {"harmonic": harmonic(pw, rw),
            "f1_weighted": weighted(figures["f1"]),
            "f1_from_pr": from_pr,
            "f1_weighted_from_pr": weighted(from_pr)}


def confusion(y_true: np.ndarray, y_pred: np.ndarray, normalize: str | None = None
              ) -> pd.DataFrame:
    """Confusion matrix (rows: true class, columns: predicted); ``normalize='true'`` gives
    per-class recall on the diagonal."""
    cm = skm.confusion_matrix(y_true, y_pred, labels=LABELS, normalize=normalize)
    return pd.DataFrame(cm, index=pd.Index(CLASS_NAMES, name="true"),
                        columns=pd.Index(CLASS_NAMES, name="predicted"))


def roc_curves(y_true: np.ndarray, probs: np.ndarray) -> dict[str, tuple]:
    """One-vs-rest ROC curve per class: (fpr, tpr, auc)."""
    out = {}
    for k, name in enumerate(CLASS_NAMES):
        if len(np.unique(y_true == k)) < 2:
            continue
        fpr, tpr, _ = skm.roc_curve(y_true == k, probs[:, k])
        out[name] = (fpr, tpr, skm.auc(fpr, tpr))
    return out


# --- Reading 2: tumour versus no tumour --------------------------------------------

TUMOUR_CLASSES = [c for c in CLASS_NAMES if c != "no_tumor"]


def tumour_vs_none(y_true: np.ndarray, probs: np.ndarray, threshold: float | None = None
                   ) -> dict:
    """Collapse the four classes to tumour (positive) vs no tumour (negative).

    An image is called "no tumour" when P(no_tumor) >= ``threshold``, or, with no
    threshold, when no_tumor is the most probable class (the plain argmax decision).
    A *missed tumour* is a tumour image called "no tumour"; the type of tumour does not
    matter for this reading (glioma predicted as meningioma still goes to the surgeon).
    """
    is_tumour = y_true != NO_TUMOR
    called_none = (probs.argmax(1) == NO_TUMOR) if threshold is None else (
        probs[:, NO_TUMOR] >= threshold)
    tp = int((is_tumour & ~called_none).sum())
    fn = int((is_tumour & called_none).sum())
    tn = int((~is_tumour & called_none).sum())
    fp = int((~is_tumour & ~called_none).sum())
    out = {"tumour_sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
           "tumour_specificity": tn / (tn + fp) if tn + fp else float("nan"),
           "missed_tumours": fn, "false_alarms": fp, "tumours": tp + fn, "no_tumours": tn + fp}
    for name in TUMOUR_CLASSES:
        out[f"missed_{name}"] = int(((y_true == CLASS_NAMES.index(name)) & called_none).sum())
    return out


def threshold_for_sensitivity(y_true: np.ndarray, probs: np.ndarray, target: float
                              ) -> float:
    """The smallest threshold on P(no_tumor) whose tumour sensitivity is at least ``target``.

    A tumour is missed when its P(no_tumor) reaches the threshold, so allowing
    k = floor((1 - target) * n_tumours) misses puts the threshold just above the
    (k+1)-th largest P(no_tumor) among tumours. The smallest such threshold calls the
    most healthy images "no tumour" (best specificity) while meeting the target.
    Chosen on validation, applied unchanged to test.
    """
    p_none = np.sort(probs[y_true != NO_TUMOR, NO_TUMOR])[::-1]
    if len(p_none) == 0:
        return 0.5
    allowed = int(np.floor((1 - target) * len(p_none) + 1e-9))
    if allowed >= len(p_none):
        return float(np.nextafter(0.0, 1.0))
    return float(np.nextafter(p_none[allowed], np.inf))


# --- Calibration ----------------------------------------------------------------------

def reliability(y_true: np.ndarray, probs: np.ndarray, n_bins: int) -> pd.DataFrame:
    """Confidence (top probability) vs accuracy in ``n_bins`` equal-width bins.

    Written here because scikit-learn's calibration_curve covers binary problems only.
    """
    confidence = probs.max(1)
    correct = probs.argmax(1) == y_true
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        members = which == b
        rows.append({"bin_low": edges[b], "bin_high": edges[b + 1], "count": int(members.sum()),
                     "confidence": float(confidence[members].mean()) if members.any() else np.nan,
                     "accuracy": float(correct[members].mean()) if members.any() else np.nan})
    return pd.DataFrame(rows)


def ece(y_true: np.ndarray, probs: np.ndarray, n_bins: int) -> float:
    """Expected calibration error: sum over bins of |B|/N * |accuracy(B) - confidence(B)|."""
    table = reliability(y_true, probs, n_bins)
    used = table["count"] > 0
    gaps = (table.loc[used, "accuracy"] - table.loc[used, "confidence"]).abs()
    return float((gaps * table.loc[used, "count"]).sum() / len(y_true))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    from scipy.special import softmax as _softmax

    return _softmax(np.asarray(logits, np.float64) / temperature, axis=1)


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """Temperature T minimising the negative log-likelihood of softmax(logits / T)
    (temperature scaling, Guo et al. 2017); fitted on validation predictions."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        p = softmax(logits, float(np.exp(log_t)))
        return -float(np.mean(np.log(np.clip(p[np.arange(len(y_true)), y_true], 1e-15, 1))))

    best = minimize_scalar(nll, bounds=(np.log(0.05), np.log(50.0)), method="bounded")
    return float(np.exp(best.x))


# --- Uncertainty -------------------------------------------------------------------

def bootstrap_ci(y_true: np.ndarray, probs: np.ndarray, statistic, *, n_resamples: int,
                 seed: int, level: float = 0.95) -> tuple[float, float, float]:
    """(point estimate, low, high): percentile bootstrap over images (scipy.stats.bootstrap)."""
    from scipy.stats import bootstrap

    point = float(statistic(y_true, probs))
    if len(y_true) < 2:
        return point, float("nan"), float("nan")
    result = bootstrap((np.arange(len(y_true)),), lambda idx: statistic(y_true[idx], probs[idx]),
                       n_resamples=n_resamples, confidence_level=level, method="percentile",
                       vectorized=False, random_state=np.random.default_rng(seed))
    return point, float(result.confidence_interval.low), float(result.confidence_interval.high)


def accuracy(y_true: np.ndarray, probs: np.ndarray) -> float:
    return float(np.mean(probs.argmax(1) == y_true))


def macro_f1(y_true: np.ndarray, probs: np.ndarray) -> float:
    return float(skm.f1_score(y_true, probs.argmax(1), labels=LABELS, average="macro",
                              zero_division=0))


def tumour_sensitivity(y_true: np.ndarray, probs: np.ndarray) -> float:
    return tumour_vs_none(y_true, probs)["tumour_sensitivity"]


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's test for two models scored on the same images.

    Only discordant images count: b = A right and B wrong, c = A wrong and B right. Exact
    binomial test when b + c < 25, else the chi-square statistic with continuity
    correction, (|b - c| - 1)^2 / (b + c), on one degree of freedom.
    """
    from scipy import stats

    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    if b + c == 0:
        return {"b": b, "c": c, "statistic": 0.0, "p_value": 1.0, "method": "no discordant"}
    if b + c < 25:
        return {"b": b, "c": c, "statistic": float(min(b, c)),
                "p_value": float(stats.binomtest(b, b + c, 0.5).pvalue), "method": "exact"}
    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    return {"b": b, "c": c, "statistic": float(statistic),
            "p_value": float(stats.chi2.sf(statistic, df=1)), "method": "chi2-cc"}


def wilson(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval for ``k`` successes in ``n`` cases (scipy's binomtest):
    unlike a bootstrap it is not degenerate at 19/19."""
    if n == 0:
        return math.nan, math.nan
    from scipy import stats

    ci = stats.binomtest(int(k), int(n)).proportion_ci(method="wilson")
    return float(ci.low), float(ci.high)
