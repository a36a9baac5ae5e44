"""The benchmark table: every model's saved predictions, scored on every evaluation set.

Evaluation sets:

- ``test``: the official Testing folder of the dataset the model was trained on;
- ``test_dedup``: the same without the test images that have a copy in Training
  (found by the leakage audit, ``RunFolder.test_with_copy``);
- ``external``: the *other* dataset's test set, when the model notebook predicted it,
  minus the images the two datasets share (``RunFolder.overlap``);
- ``external_br35h``: Br35H's tumour images without a copy in any training folder
  (``RunFolder.external_exclusions``), scored as tumour versus none. Br35H's no-tumour
  images all lie inside Nickparvar, so the row's specificity is the one on the model's
  home deduplicated test set (``specificity_on``): a model that calls everything a
  tumour cannot look good.

Thresholds and temperatures are always fitted on the model's validation predictions
and applied unchanged to the evaluation sets.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import combinations
from pathlib import Path

import pandas as pd

from brainmri.core.runfolder import RunFolder, is_ablation_model
from brainmri.evaluation import metrics
from brainmri.evaluation.predictions import DETECTION_SPLIT, arrays, load_predictions
from brainmri.modeling import ood

COLUMNS = ["model", "dataset", "eval_set", "seed", "n", "accuracy", "loss", "precision_w",
           "recall_w", "f1_w", "f1_macro", "f1_report", "auc_w", "fp", "fn",
           "tumour_sensitivity", "tumour_specificity", "missed_tumours", "false_alarms",
           "threshold", "tumour_sensitivity_thr", "tumour_specificity_thr",
           "missed_tumours_thr", "false_alarms_thr", "ece", "ece_tempscaled", "temperature",
           "acc_ci_low", "acc_ci_high", "f1_macro_ci_low", "f1_macro_ci_high",
           "sens_ci_low", "sens_ci_high"]


def _read_paths(path: Path, column: str) -> set[str]:
    return set(pd.read_csv(path)[column]) if path.exists() else set()


def eval_sets(run: RunFolder, predictions: dict) -> dict[tuple[str, str], pd.DataFrame]:
    """{(tag, eval_set): predictions frame} for every model of the run."""
    out = {}
    excluded = run.external_exclusions(DETECTION_SPLIT)
    for (tag, split), frame in predictions.items():
        dataset = frame["dataset"].iloc[0]
        if split == "test":
            leaked = _read_paths(run.test_with_copy(dataset), "test_path")
            out[(tag, "test")] = frame
            if leaked:
                out[(tag, "test_dedup")] = frame[~frame["path"].isin(leaked)]
        elif split == "external":
            other = frame["eval_dataset"].iloc[0]
            shared = _read_paths(run.overlap(dataset, other), f"{other}_path")
            out[(tag, "external")] = frame[~frame["path"].isin(shared)]
        elif split == DETECTION_SPLIT and excluded.exists():
            # Without the audit's exclusion list nothing is scored: copies of training
            # images would inflate the figure.
            drop = _read_paths(excluded, "path")
            out[(tag, EXTERNAL_DETECTION)] = frame[(frame["label"] == "tumour")
                                                   & ~frame["path"].isin(drop)]
    return out


EXTERNAL_DETECTION = "external_br35h"


def _ood_entry(run: RunFolder, tag: str) -> dict | None:
    """The out-of-distribution threshold in the model's sidecar, when it has one."""
    sidecar = run.model_dir(tag) / "model.json"
    return json.loads(sidecar.read_text()).get("ood") if sidecar.exists() else None


def _specificity_set(sets: dict, tag: str) -> str:
    """The home set whose no-tumour images pair with an external tumour-only figure: the
    deduplicated test set, unless it kept no no-tumour image (then the official one)."""
    dedup = sets.get((tag, "test_dedup"))
    if dedup is not None and (dedup["label"] == "no_tumor").any():
        return "test_dedup"
    return "test"


def score_detection(frame: pd.DataFrame, home: pd.DataFrame, val: pd.DataFrame, *,
                    target_sensitivity: float, n_bootstrap: int, seed: int) -> dict:
    """Tumour images of another collection: sensitivity (argmax and the validation
    threshold), missed tumours and a bootstrap interval; specificity from ``home``."""
    y, probs, _ = arrays(frame)
    y_val, probs_val, _ = arrays(val)
    row = {"n": int(len(y)), **metrics.tumour_vs_none(y, probs)}
    threshold = metrics.threshold_for_sensitivity(y_val, probs_val, target_sensitivity)
    thresholded = metrics.tumour_vs_none(y, probs, threshold)
    row.update({"threshold": threshold, "tumour_sensitivity_thr":
                thresholded["tumour_sensitivity"], "missed_tumours_thr":
                thresholded["missed_tumours"]})
    y_home, probs_home, _ = arrays(home)
    row["no_tumours"] = int((home["label"] == "no_tumor").sum())  # behind the specificity
    row["tumour_specificity"] = metrics.tumour_vs_none(y_home, probs_home)["tumour_specificity"]
    row["tumour_specificity_thr"] = metrics.tumour_vs_none(
        y_home, probs_home, threshold)["tumour_specificity"]
    _, low, high = metrics.bootstrap_ci(y, probs, metrics.tumour_sensitivity,
                                        n_resamples=n_bootstrap, seed=seed)
    row["sens_ci_low"], row["sens_ci_high"] = low, high
    return row


def score(val: pd.DataFrame, frame: pd.DataFrame, *, target_sensitivity: float,
          n_bootstrap: int, seed: int, ece_bins: int) -> dict:
    """One benchmark row: reading 1, reading 2 (argmax and validation threshold),
    calibration before/after temperature scaling, bootstrap intervals."""
    y, probs, logits = arrays(frame)
    y_val, probs_val, logits_val = arrays(val)
    row = metrics.global_metrics(y, probs)
    row.update(metrics.tumour_vs_none(y, probs))
    threshold = metrics.threshold_for_sensitivity(y_val, probs_val, target_sensitivity)
    thresholded = metrics.tumour_vs_none(y, probs, threshold)
    row.update({"threshold": threshold, **{f"{k}_thr": thresholded[k] for k in (
        "tumour_sensitivity", "tumour_specificity", "missed_tumours", "false_alarms")}})
    temperature = metrics.fit_temperature(logits_val, y_val)
    row.update({"ece": metrics.ece(y, probs, ece_bins), "temperature": temperature,
                "ece_tempscaled": metrics.ece(y, metrics.softmax(logits, temperature), ece_bins)})
    for name, fn in (("acc", metrics.accuracy), ("f1_macro", metrics.macro_f1),
                     ("sens", metrics.tumour_sensitivity)):
        _, low, high = metrics.bootstrap_ci(y, probs, fn, n_resamples=n_bootstrap, seed=seed)
        row[f"{name}_ci_low"], row[f"{name}_ci_high"] = low, high
    return row


def benchmark(run: RunFolder, *, target_sensitivity: float, n_bootstrap: int, seed: int,
              ece_bins: int, models: list[str] | None = None,
              exclude: Iterable[str] = (), studies: bool = False) -> pd.DataFrame:
    """Score every model's predictions in ``run`` (or only ``models``, never those in
    ``exclude``, nor the reduced-size study models unless ``studies``); one row per
    (model tag, eval set)."""
    predictions = load_predictions(run)
    sets = eval_sets(run, predictions)
    ood_entries = {tag: _ood_entry(run, tag) for tag, _ in sets}  # one sidecar read per model
    rows = []
    for (tag, eval_set), frame in sets.items():
        model = frame["model"].iloc[0]
        if (models and model not in models or model in exclude
                or (not studies and is_ablation_model(model))
                or (tag, "val") not in predictions or frame.empty):
            continue
        if eval_set == EXTERNAL_DETECTION:
            on = _specificity_set(sets, tag)
            row = score_detection(frame, sets[(tag, on)], predictions[(tag, "val")],
                                  target_sensitivity=target_sensitivity,
                                  n_bootstrap=n_bootstrap, seed=seed)
            row["specificity_on"] = on
        else:
            row = score(predictions[(tag, "val")], frame, target_sensitivity=target_sensitivity,
                        n_bootstrap=n_bootstrap, seed=seed, ece_bins=ece_bins)
        entry = ood_entries[tag]
        if entry is not None:  # how often predict would say "unlike the training images"
            row["ood_flagged"] = float(ood.flagged(arrays(frame)[2], entry).mean())
        rows.append({"tag": tag, "model": model, "dataset": frame["dataset"].iloc[0],
                     "eval_set": eval_set, "seed": int(frame["seed"].iloc[0]), **row})
    table = pd.DataFrame(rows)
    extra = [c for c in table.columns if c not in COLUMNS and c != "tag"]
    return table.reindex(columns=["tag", *COLUMNS, *extra])


def mcnemar_table(run: RunFolder, eval_set: str = "test", exclude: Iterable[str] = ()
                  ) -> pd.DataFrame:
    """McNemar's test for every pair of models scored on the same test images (models in
    ``exclude`` and the study models left out)."""
    sets = eval_sets(run, load_predictions(run))
    frames = {tag: f for (tag, s), f in sets.items()
              if s == eval_set and f["model"].iloc[0] not in exclude
              and not is_ablation_model(f["model"].iloc[0])}
    rows = []
    for (a, fa), (b, fb) in combinations(sorted(frames.items()), 2):
        if fa["dataset"].iloc[0] != fb["dataset"].iloc[0]:
            continue
        merged = fa.merge(fb, on="path", suffixes=("_a", "_b"))
        result = metrics.mcnemar((merged["prediction_a"] == merged["label_a"]).to_numpy(),
                                 (merged["prediction_b"] == merged["label_b"]).to_numpy())
        rows.append({"model_a": a, "model_b": b, "n": len(merged),
                     "acc_a": float((merged["prediction_a"] == merged["label_a"]).mean()),
                     "acc_b": float((merged["prediction_b"] == merged["label_b"]).mean()),
                     **result})
    return pd.DataFrame(rows)


def seed_summary(table: pd.DataFrame, columns=("accuracy", "f1_macro", "tumour_sensitivity",
                                               "ece")) -> pd.DataFrame:
    """Mean and standard deviation over seeds, for models trained with several seeds."""
    grouped = table.groupby(["model", "dataset", "eval_set"])
    counts = grouped["seed"].nunique().rename("seeds")
    stats = grouped[list(columns)].agg(["mean", "std"])
    stats.columns = [f"{c}_{s}" for c, s in stats.columns]
    return stats.join(counts)[lambda f: f["seeds"] > 1]


def seed_spread(table: pd.DataFrame, by: str, value: str, ci_low: str, ci_high: str
                ) -> pd.DataFrame:
    """For each group of ``by`` trained with several seeds: the spread of ``value`` over
    seeds beside the mean width of one model's bootstrap interval.

    The bootstrap interval only covers the test images drawn; retraining with another seed
    moves the figure too. Whichever is wider sets the smallest difference between two
    single-seed models worth reading."""
    table = table.assign(**{c: pd.to_numeric(table[c], errors="coerce")  # None: not scored
                            for c in (value, ci_low, ci_high)})
    grouped = table.groupby(by, sort=False)
    out = pd.DataFrame({
        "seeds": grouped[value].size(),
        "mean": grouped[value].mean(),
        "sd over seeds": grouped[value].std(),
        "min": grouped[value].min(),
        "max": grouped[value].max(),
    })
    out["range over seeds"] = out["max"] - out["min"]
    out["bootstrap CI width"] = (table[ci_high] - table[ci_low]).groupby(table[by]).mean()
    return out[out["seeds"] > 1]
