"""Classification metrics on top of scikit-learn, plus the report's own aggregates.

Everything takes integer labels (indices into CLASS_NAMES) and an (N, 4) array of class
probabilities. Functions return plain dicts or DataFrames so notebooks can show them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from . import CLASS_NAMES

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
