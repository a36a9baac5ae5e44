"""The leakage audit's figures (chapter 01b) as the words the datasets page pastes: per
dataset, the test images with a copy in training (per class and in all), the exact copies
among them, the duplicate pairs inside the training folder and how often matched pairs
agree on the label; across the two four-class datasets, the images they share."""

from __future__ import annotations

from brainmri import CLASS_NAMES
from brainmri.data import sources
from brainmri.data.duplicates import Audit, Overlap
from brainmri.report.show.glued import number, percent


def _of(k, n) -> str:
    """``20 / 100``: a count out of a total, as the datasets page's table shows it."""
    return f"{number(k)} / {number(n)}"


def words(audits: dict[str, Audit], overlap: Overlap | None,
          pair: tuple[str, str] = sources.HOME_DATASETS) -> dict[str, str]:
    """{glue key: worded value} for every audited dataset and for the ``pair`` of datasets
    ``overlap`` compares (``n/a`` where the run did not compare them)."""
    out = {}
    for name, audit in audits.items():
        c, per_class = audit.counts, audit.per_class
        for label in CLASS_NAMES:
            row = per_class.loc[label] if label in per_class.index else None
            out[f"{name}_leak_{label}"] = (
                "n/a" if row is None
                else _of(row["with_copy_in_training"], row["test_images"]))
        out[f"{name}_leak_all"] = _of(c["test_images_with_copy_in_training"], c["n_test"])
        out[f"{name}_leak_share"] = percent(c["share_of_test_with_copy_in_training"], 0)
        out[f"{name}_leak_exact"] = number(c["test_images_with_exact_copy_in_training"])
        out[f"{name}_pairs_agree"] = percent(c["cross_split_pairs_label_agreement"])
        out[f"{name}_train_exact_pairs"] = number(c["exact_pairs_within_training"])
    rule = next(iter(audits.values())).rule if audits else {}
    out["rule_max_distance"] = number(rule.get("max_distance"))
    out["rule_min_correlation"] = number(rule.get("min_correlation"), 2)
    a, b = overlap.names if overlap is not None else pair
    s = overlap.summary() if overlap is not None else {}
    out[f"{a}_in_{b}"] = number(s.get(f"{a}_images_in_{b}"))
    out[f"{b}_in_{a}"] = number(s.get(f"{b}_images_in_{a}"))
    out["overlap_exact_pairs"] = number(s.get("exact_pairs"))
    out["overlap_label_agreement"] = percent(s.get("label_agreement"))
    return out
