"""The benchmark table: every model's saved predictions, scored on every evaluation set.

Evaluation sets:

- ``test``: the official Testing folder of the dataset the model was trained on;
- ``test_dedup``: the same without the test images that have a copy in Training
  (found by the leakage audit, ``RunFolder.test_with_copy``);
- ``external``: the *other* dataset's test set, when the model notebook predicted it,
  minus every image with a copy in a collection the model learned from
  (``data.duplicates.training_copies``): the images the two datasets share (``RunFolder.overlap``),
  and, when the recipe added the other dataset's training images (``extra_training``),
  its test images with a copy in its own Training folder (``RunFolder.test_with_copy``);
- ``external_br35h``: Br35H's tumour images without a copy in any training folder
  (``RunFolder.external_exclusions``, which covers every four-class collection, hence
  whatever a recipe added), scored as tumour versus none. Br35H's no-tumour
  images all lie inside Nickparvar, so the row's specificity is the one on the model's
  home deduplicated test set (``specificity_on``): a model that calls everything a
  tumour cannot look good.

A non-home row is scored only when the duplicate audit it needs exists: without it,
copies of training images would inflate the figure. The collections a model learned
from are read from what the run recorded (:func:`recipe_of`).

Thresholds and temperatures are always fitted on the model's validation predictions
and applied unchanged to the evaluation sets.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import combinations

import pandas as pd
import yaml

from brainmri.core.runfolder import RunFolder, is_ablation_model
from brainmri.data.duplicates import read_paths, training_copies
from brainmri.data.sources import HOME_DATASETS
from brainmri.evaluation import metrics
from brainmri.evaluation.predictions import (
    DETECTION_SPLIT,
    HELD_OUT_SPLIT,
    arrays,
    load_predictions,
)
from brainmri.modeling import ood

COLUMNS = ["model", "dataset", "eval_set", "seed", "n", "accuracy", "loss", "precision_w",
           "recall_w", "f1_w", "f1_macro", "f1_report", "auc_w", "fp", "fn",
           "tumour_sensitivity", "tumour_specificity", "missed_tumours", "false_alarms",
           "threshold", "tumour_sensitivity_thr", "tumour_specificity_thr",
           "missed_tumours_thr", "false_alarms_thr", "ece", "ece_tempscaled", "temperature",
           "acc_ci_low", "acc_ci_high", "f1_macro_ci_low", "f1_macro_ci_high",
           "sens_ci_low", "sens_ci_high",
           # what a row leaves out (issue 20): copies of images the model may have seen
           "excluded_copies", "excluded_recipe_copies", "trained_on", "recipe_record",
           # the counts behind every rate, and Wilson intervals of the two clinical rates
           "correct", "tumours", "tumours_found", "no_tumours", "no_tumours_cleared",
           "tumours_found_thr", "no_tumours_cleared_thr",
           "sens_wilson_low", "sens_wilson_high", "spec_wilson_low", "spec_wilson_high",
           "sens_wilson_low_thr", "sens_wilson_high_thr", "spec_wilson_low_thr",
           "spec_wilson_high_thr",
           # a model that names one class for everything (is_degenerate)
           "degenerate",
           # the collection check's batches of 20 fired on (external rows; issue 21)
           "collection_home_warned", "collection_home_batches",
           "collection_external_warned", "collection_external_batches"]


#: The counts behind the rates: integers, empty where a row has none (``correct`` on
#: Br35H, which has no four-class answer).
COUNTS = ["excluded_copies", "excluded_recipe_copies", "correct", "tumours",
          "tumours_found", "no_tumours", "no_tumours_cleared", "tumours_found_thr",
          "no_tumours_cleared_thr", "collection_home_warned", "collection_home_batches",
          "collection_external_warned", "collection_external_batches"]


#: The recipe parameter that adds another collection's training images
#: (``data.recipes._add_training``); the other recipe options only remove or restyle.
ADDED_TRAINING = "extra_training"


def recipe_of(run: RunFolder, tag: str, model: str, dataset: str) -> tuple[dict, str]:
    """(the parameters the model was trained with, where they were read).

    First the model's sidecar (``models/<tag>/model.json``, ``training``), written with
    the model itself; else the step of the run's ``params.yaml`` that trains ``model``
    on ``dataset`` (the committed reference run keeps no models). ``({}, "unknown")``
    when neither names it."""
    sidecar = run.model_dir(tag) / "model.json"
    if sidecar.exists():
        training = json.loads(sidecar.read_text()).get("training")
        if training is not None:
            return training, "sidecar"
    steps = (yaml.safe_load(run.params.read_text()) or {}).get("steps", {}) \
        if run.params.exists() else {}
    for values in steps.values():
        name = values.get("model_name")
        if name is None or values.get("dataset") != dataset:
            continue
        variant = values.get("variant")
        if model == (f"{name}+{variant}" if variant else name):
            return values, "params"
    return {}, "unknown"


def training_collections(recipe: dict, dataset: str, known: bool = True) -> list[str]:
    """The collections a model learned from: its own dataset and what its recipe added.
    An unknown recipe (``known`` False) may have added any: every four-class dataset."""
    if not known:
        return sorted({dataset, *HOME_DATASETS})
    added = recipe.get(ADDED_TRAINING)
    return sorted({dataset, *([added] if added else [])})


def eval_sets(run: RunFolder, predictions: dict, notes: dict | None = None
              ) -> dict[tuple[str, str], pd.DataFrame]:
    """{(tag, eval_set): predictions frame} for every model of the run. ``notes``, when
    given, receives {(tag, eval_set): what was left out and why} (benchmark columns)."""
    out = {}
    notes = {} if notes is None else notes
    excluded = run.external_exclusions(DETECTION_SPLIT)
    recipes = {}
    for (tag, split), frame in predictions.items():
        dataset = frame["dataset"].iloc[0]
        if tag not in recipes:
            recipe, record = recipe_of(run, tag, frame["model"].iloc[0], dataset)
            recipes[tag] = (training_collections(recipe, dataset, record != "unknown"),
                            record)
        trained_on, record = recipes[tag]
        # only the external row depends on the recipe: the home rows' images never enter
        # training (``_add_training`` drops their copies), Br35H's list covers every
        # training folder
        about = {"trained_on": "+".join(trained_on), "recipe_record": record,
                 "excluded_recipe_copies": 0}
        if split == "test":
            leaked = read_paths(run.test_with_copy(dataset), "test_path")
            out[(tag, "test")] = frame
            notes[(tag, "test")] = {**about, "excluded_copies": 0}
            if leaked:
                kept = frame[~frame["path"].isin(leaked)]
                out[(tag, "test_dedup")] = kept
                notes[(tag, "test_dedup")] = {**about,
                                              "excluded_copies": len(frame) - len(kept)}
        elif split == "external":
            other = frame["eval_dataset"].iloc[0]
            copies = {c: training_copies(run, c, other) for c in trained_on}
            if any(found is None for found in copies.values()):
                continue  # an audit is missing: copies of training images would count
            home_only = frame["path"].isin(copies[dataset])
            seen = frame["path"].isin(set().union(*copies.values()))
            out[(tag, "external")] = frame[~seen]
            notes[(tag, "external")] = {
                **about, "excluded_copies": int(seen.sum()),
                "excluded_recipe_copies": int((seen & ~home_only).sum())}
        elif split == HELD_OUT_SPLIT:
            # The recipe kept this collection's copies out of training and validation
            # (``data.recipes.hold_out``): every image of it is new to the model.
            out[(tag, HELD_OUT_SOURCE)] = frame
            notes[(tag, HELD_OUT_SOURCE)] = {**about, "excluded_copies": 0}
        elif split == DETECTION_SPLIT and excluded.exists():
            # Without the audit's exclusion list nothing is scored: copies of training
            # images would inflate the figure.
            drop = frame["path"].isin(read_paths(excluded, "path"))
            tumours = frame["label"] == "tumour"
            out[(tag, EXTERNAL_DETECTION)] = frame[tumours & ~drop]
            notes[(tag, EXTERNAL_DETECTION)] = {**about,
                                                "excluded_copies": int((tumours & drop).sum())}
    return out


EXTERNAL_DETECTION = "external_br35h"
#: Eval set of a collection the recipe never showed the model (all its images).
HELD_OUT_SOURCE = "held_out_source"


def _ood_entry(run: RunFolder, tag: str) -> dict | None:
    """The out-of-distribution threshold in the model's sidecar, when it has one."""
    sidecar = run.model_dir(tag) / "model.json"
    return json.loads(sidecar.read_text()).get("ood") if sidecar.exists() else None


def _collection_columns(run: RunFolder, tag: str) -> dict:
    """The collection check's batches fired on, home and external (``experiment``'s
    ``collection_check.json``), for the external row; none when it was not measured."""
    path = run.collection_check(tag)
    if not path.exists():
        return {}
    rates = json.loads(path.read_text())
    return {"collection_home_warned": rates["home"]["warned"],
            "collection_home_batches": rates["home"]["n"],
            "collection_external_warned": rates["external"]["warned"],
            "collection_external_batches": rates["external"]["n"]}


def _specificity_set(sets: dict, tag: str) -> str:
    """The home set whose no-tumour images pair with an external tumour-only figure: the
    deduplicated test set, unless it kept no no-tumour image (then the official one)."""
    dedup = sets.get((tag, "test_dedup"))
    if dedup is not None and (dedup["label"] == "no_tumor").any():
        return "test_dedup"
    return "test"


def sensitivity_counts(reading: dict, suffix: str = "") -> dict:
    """Tumours found out of ``tumours`` in a ``metrics.tumour_vs_none`` reading, and the
    Wilson interval of that rate (``suffix``: ``_thr`` for the thresholded reading)."""
    found = reading["tumours"] - reading["missed_tumours"]
    low, high = metrics.wilson(found, reading["tumours"])
    return {f"tumours_found{suffix}": found, f"sens_wilson_low{suffix}": low,
            f"sens_wilson_high{suffix}": high}


def specificity_counts(reading: dict, suffix: str = "") -> dict:
    """No-tumour images cleared out of ``no_tumours``, and the Wilson interval of that
    rate: a specificity of 1.000 on 19 images is 0.83-1.00, not a certainty."""
    cleared = reading["no_tumours"] - reading["false_alarms"]
    low, high = metrics.wilson(cleared, reading["no_tumours"])
    return {f"no_tumours_cleared{suffix}": cleared, f"spec_wilson_low{suffix}": low,
            f"spec_wilson_high{suffix}": high}


def score_detection(frame: pd.DataFrame, home: pd.DataFrame, val: pd.DataFrame, *,
                    target_sensitivity: float, n_bootstrap: int, seed: int) -> dict:
    """Tumour images of another collection: sensitivity (argmax and the validation
    threshold), missed tumours and a bootstrap interval; specificity from ``home``."""
    y, probs, _ = arrays(frame)
    y_val, probs_val, _ = arrays(val)
    argmax = metrics.tumour_vs_none(y, probs)
    row = {"n": int(len(y)), **argmax, **sensitivity_counts(argmax)}
    threshold = metrics.threshold_for_sensitivity(y_val, probs_val, target_sensitivity)
    thresholded = metrics.tumour_vs_none(y, probs, threshold)
    row.update({"threshold": threshold, "tumour_sensitivity_thr":
                thresholded["tumour_sensitivity"], "missed_tumours_thr":
                thresholded["missed_tumours"], **sensitivity_counts(thresholded, "_thr")})
    y_home, probs_home, _ = arrays(home)
    home_argmax = metrics.tumour_vs_none(y_home, probs_home)
    home_thr = metrics.tumour_vs_none(y_home, probs_home, threshold)
    row["no_tumours"] = home_argmax["no_tumours"]  # behind the specificity
    row["tumour_specificity"] = home_argmax["tumour_specificity"]
    row["tumour_specificity_thr"] = home_thr["tumour_specificity"]
    row.update({**specificity_counts(home_argmax), **specificity_counts(home_thr, "_thr")})
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
    row["correct"] = int((probs.argmax(1) == y).sum())  # behind the accuracy
    argmax = metrics.tumour_vs_none(y, probs)
    row.update({**argmax, **sensitivity_counts(argmax), **specificity_counts(argmax)})
    threshold = metrics.threshold_for_sensitivity(y_val, probs_val, target_sensitivity)
    thresholded = metrics.tumour_vs_none(y, probs, threshold)
    row.update({"threshold": threshold, **{f"{k}_thr": thresholded[k] for k in (
        "tumour_sensitivity", "tumour_specificity", "missed_tumours", "false_alarms")},
        **sensitivity_counts(thresholded, "_thr"), **specificity_counts(thresholded, "_thr")})
    temperature = metrics.fit_temperature(logits_val, y_val)
    row.update({"ece": metrics.ece(y, probs, ece_bins), "temperature": temperature,
                "ece_tempscaled": metrics.ece(y, metrics.softmax(logits, temperature), ece_bins)})
    for name, fn in (("acc", metrics.accuracy), ("f1_macro", metrics.macro_f1),
                     ("sens", metrics.tumour_sensitivity)):
        _, low, high = metrics.bootstrap_ci(y, probs, fn, n_resamples=n_bootstrap, seed=seed)
        row[f"{name}_ci_low"], row[f"{name}_ci_high"] = low, high
    return row


def is_degenerate(frame: pd.DataFrame) -> bool:
    """Whether a model has collapsed: it names the same class (argmax) for every image of
    ``frame``, its own validation predictions.

    Its figures then describe the constant, not the images: a tumour sensitivity of 100 %
    from calling everything a tumour, explainers that all tie because the output never
    moves. The rule has no threshold to tune: one image named otherwise and the model is
    not degenerate (a nearly constant model still shows in its specificity)."""
    return frame["prediction"].nunique() <= 1


def degenerate_models(run: RunFolder) -> set[str]:
    """Tags of the run's models that are degenerate on their validation predictions."""
    return {tag for (tag, split), path in run.prediction_files().items()
            if split == "val" and is_degenerate(pd.read_csv(path, usecols=["prediction"]))}


def informative(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a benchmark table (``benchmark`` or metrics.csv) whose model is not
    degenerate: what ranges, rankings and calibration summaries are taken over."""
    return table[~table["degenerate"].astype(bool)]


def benchmark(run: RunFolder, *, target_sensitivity: float, n_bootstrap: int, seed: int,
              ece_bins: int, models: list[str] | None = None,
              exclude: Iterable[str] = (), studies: bool = False) -> pd.DataFrame:
    """Score every model's predictions in ``run`` (or only ``models``, never those in
    ``exclude``, nor the reduced-size study models unless ``studies``); one row per
    (model tag, eval set)."""
    predictions = load_predictions(run)
    notes = {}
    sets = eval_sets(run, predictions, notes)
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
        if eval_set == EXTERNAL_DETECTION:
            row.update(_collection_columns(run, tag))
        entry = ood_entries[tag]
        if entry is not None:  # how often predict would say "unlike the training images"
            row["ood_flagged"] = float(ood.flagged(arrays(frame)[2], entry).mean())
        rows.append({"tag": tag, "model": model, "dataset": frame["dataset"].iloc[0],
                     "eval_set": eval_set, "seed": int(frame["seed"].iloc[0]), **row,
                     **notes[(tag, eval_set)],
                     "degenerate": is_degenerate(predictions[(tag, "val")])})
    table = pd.DataFrame(rows)
    extra = [c for c in table.columns if c not in COLUMNS and c != "tag"]
    table = table.reindex(columns=["tag", *COLUMNS, *extra])
    # counts stay integers where a row has none (no accuracy on Br35H): 45, not 45.0
    return table.astype({c: "Int64" for c in COUNTS})


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
