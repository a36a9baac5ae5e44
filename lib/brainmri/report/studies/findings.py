"""Small rules behind the words of a chapter's "What we found".

The sentences are written in each chapter's markdown cell; a chapter glues its numbers
(``show.glued``) and, where a sentence depends on the result, a short word or phrase
chosen here by a rule that a test pins down (within or beyond a margin, a claim
supported or not, a lever effect larger than the seed spread or not).
"""

from __future__ import annotations

import math

import pandas as pd

from brainmri import CLASS_NAMES
from brainmri.data.sources import DISPLAY
from brainmri.evaluation import metrics, predictions, published
from brainmri.report.show import frames, glued
from brainmri.report.studies.summary import duration, listing

LEAD = "**What we found.**"
#: Two-sided significance level of the paired tests read in the prose.
ALPHA = 0.05


def sampling_margin(accuracy: float, n: int) -> float:
    """Half-width of the normal 95 % interval of an accuracy measured on ``n`` images."""
    return 1.96 * math.sqrt(accuracy * (1 - accuracy) / n) if n else float("nan")


def within(gap: float, margin: float) -> str:
    """"within" or "beyond": whether a gap to a published figure is sampling noise."""
    return "within" if abs(gap) <= margin else "beyond"


def points(x: float) -> str:
    """A signed difference of two shares, in percentage points: ``+1.3 points``."""
    return f"{100 * x:+.1f} points"


# --- model chapters (05, 06, 07, 08b) ----------------------------------------------


def epochs_run(history: pd.DataFrame, restore_best: bool) -> tuple[int, int]:
    """(epochs trained, epoch whose weights the model keeps): the best validation loss
    of the last phase, or the last epoch when the recipe keeps it."""
    run = len(history)
    if not restore_best or "val_loss" not in history or history["val_loss"].isna().all():
        return run, run
    last = history[history["phase"] == history["phase"].iloc[-1]] \
        if "phase" in history else history
    return run, int(last["val_loss"].idxmin()) + 1


def classes_used(test: pd.DataFrame) -> list[str]:
    """The classes a model's test predictions use (one: a collapsed model)."""
    return [c for c in CLASS_NAMES if c in set(test["prediction"])]


#: How a chapter names the arithmetic its model trained in (the ``precision`` parameter).
PRECISION_WORDS = {
    "float32": "in float32",
    "mixed_bfloat16": "in mixed bfloat16 (bfloat16 arithmetic on float32 weights, twice as "
                      "fast on a CPU that has it; the model evaluated and kept is their "
                      "float32 copy)",
}


def glue_model_chapter(result) -> dict:
    """Glue what every model chapter's "What we found" pastes; return the values.

    Keys: ``model``, ``n_test``, ``acc_test`` (count and Wilson interval), ``f1_w``,
    ``f1_macro``, ``epochs_run``, ``epochs_allowed``, ``epoch_kept``, ``train_time`` (wall
    time of training, pretraining included, on the machine of the run), ``precision`` (the
    arithmetic it trained in, ``PRECISION_WORDS``), ``published_model``,
    ``published_acc``, ``gap``, ``margin``, ``published_verdict`` (within/beyond),
    ``classes_used``, ``temperature``, ``ece_before``, ``ece_after``.
    """
    from brainmri.report.studies import experiment

    p = result.p
    versus = result.versus_published()
    ours = versus["this run"]
    test = result.test
    n = len(test)
    correct = int((test["prediction"] == test["label"]).sum())
    column = next(c for c in versus.columns if c.startswith("published: "))
    theirs = versus.loc["accuracy", column]
    run, kept = epochs_run(result.history, getattr(p, "restore_best", True))
    allowed = experiment.planned_epochs(p)
    margin = sampling_margin(ours["accuracy"], n)
    gap = ours["accuracy"] - theirs if pd.notna(theirs) else float("nan")
    used = classes_used(test)
    home = result.calibration().iloc[0]
    values = {"model": experiment.display_name(p), "n_test": n, "correct": correct,
              "accuracy": ours["accuracy"],
              "published_model": published.DISPLAY.get(*[column.removeprefix("published: ")] * 2),
              "published_acc": theirs, "gap": gap, "margin": margin,
              "verdict": within(gap, margin) if pd.notna(gap) else "n/a",
              "classes": used, "epochs": (run, allowed, kept)}
    glued.text("model", values["model"])
    glued.glue_number("n_test", n)
    glued.glue_rate("acc_test", correct, n)
    glued.glue_number("f1_w", ours["f1_w"], 3)
    glued.glue_number("f1_macro", ours["f1_macro"], 3)
    glued.glue_number("epochs_run", run)
    glued.glue_number("epochs_allowed", allowed)
    glued.glue_number("epoch_kept", kept)
    cost = experiment.training_cost(result.folder)
    values["train_seconds"] = cost["train seconds"] + cost["pretrain seconds"]
    glued.text("train_time", duration(values["train_seconds"]))
    glued.text("precision", PRECISION_WORDS[getattr(p, "precision", "float32")])
    glued.text("published_model", values["published_model"])
    glued.glue_percent("published_acc", theirs)
    glued.text("gap", points(gap) if pd.notna(gap) else "n/a")
    glued.text("margin", f"±{100 * margin:.1f} points")
    glued.text("published_verdict", values["verdict"])
    glued.text("classes_used", f"{len(used)} of {len(CLASS_NAMES)}")
    glued.glue_number("temperature", home["temperature"], 2)
    glued.glue_number("ece_before", home["ECE before"], 3)
    glued.glue_number("ece_after", home["ECE after"], 3)
    return values


#: Chapter 07's verdicts on report 000's collapsed sigmoid CNN.
SIGMOID_VERDICTS = {
    "no collapse": "not reproduced: this run's sigmoid CNN does not collapse",
    "within": "reproduced: it collapses onto one class, at the report's accuracy",
    "beyond": "reproduced in kind only: it collapses onto one class, but not at the "
              "report's accuracy",
}


def sigmoid_verdict(classes: list[str], verdict: str) -> str:
    """Chapter 07: is the report's collapsed sigmoid CNN reproduced? ``classes``: the
    classes our model predicts; ``verdict``: its accuracy gap to the report's, within
    or beyond the sampling margin."""
    if len(classes) > 1:
        return SIGMOID_VERDICTS["no collapse"]
    return SIGMOID_VERDICTS["within" if verdict == "within" else "beyond"]


# --- 01c ---------------------------------------------------------------------------

#: Chapter 01c's verdicts on the hard Sartaj test gliomas' labels, from their Br35H
#: copies. Br35H only knows tumour or not, so the tumour type stays unchecked either way.
LABEL_NOISE_VERDICTS = {
    "unchecked": "cannot be checked (none of them has a copy in Br35H)",
    "contradicted": "partly label noise",
    "confirmed": "not label noise at the level Br35H can check (tumour or not)",
}


def label_noise_verdict(br35h_labels: pd.Series) -> str:
    """Chapter 01c: what the Br35H copies of the hard Sartaj test gliomas say about
    their labels (``br35h_labels``: the Br35H label of each copy)."""
    labels = list(br35h_labels)
    if not labels:
        return LABEL_NOISE_VERDICTS["unchecked"]
    if any(label != "tumour" for label in labels):
        return LABEL_NOISE_VERDICTS["contradicted"]
    return LABEL_NOISE_VERDICTS["confirmed"]


# --- 05b ----------------------------------------------------------------------------


#: The readings of a lever's effect against the seed spread.
BEYOND_SPREAD, WITHIN_SPREAD = "beyond the seed spread", "within the seed spread"
#: The reading of an effect when no seed spread was measured: one seed gives no claim.
NO_SPREAD = "no claim: one seed, no seed spread measured"


def claim_verdict(difference: float, p_value: float, seed_range: float) -> str:
    """Report 000 claims ``difference`` > 0 (our measured difference, in accuracy):
    "supported" only when the paired test rejects equality at :data:`ALPHA` and the
    difference is larger than the seed range; "contradicted" when both hold the other
    way; otherwise "not shown". Without a seed range (NaN: no setting repeated) nothing
    is supported or contradicted."""
    if seed_range != seed_range:
        return NO_SPREAD
    clear = p_value < ALPHA and abs(difference) > seed_range
    if clear:
        return "supported" if difference > 0 else "contradicted"
    return "not shown"


def paired_test(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """McNemar's test between two predictions frames on the same test images:
    b = only ``a`` right, c = only ``b`` right."""
    merged = a.merge(b, on="path", suffixes=("_a", "_b"))
    return {"n": len(merged), **metrics.mcnemar(
        (merged["prediction_a"] == merged["label_a"]).to_numpy(),
        (merged["prediction_b"] == merged["label_b"]).to_numpy())}


# --- 08c ----------------------------------------------------------------------------


def lever_effects(table: pd.DataFrame, value: str, baseline: str = "baseline"
                  ) -> pd.DataFrame:
    """Each recipe's change in ``value`` against the baseline with the same batch-norm
    treatment (``x+bn`` against ``baseline+bn``). A change is read only where both
    recipes were trained on several seeds: mean against mean, beside the wider of their
    two ranges over seeds (``seed range``); smaller is noise. A recipe or a reference
    trained once gives no claim (:data:`NO_SPREAD`): its change, at the run's seed, is
    shown unread, since retraining alone moves a recipe by its seed range."""
    first = table.drop_duplicates("recipe").set_index("recipe")  # the run's seed first
    over_seeds = table.groupby("recipe")[value].agg(["count", "mean", "min", "max"])
    rows = []
    for recipe in first.index:
        reference = baseline + "+bn" if recipe.endswith("+bn") else baseline
        if recipe == reference or reference not in first.index:
            continue
        a, b = over_seeds.loc[recipe], over_seeds.loc[reference]
        seeded = min(a["count"], b["count"]) >= 2
        if seeded:
            change = a["mean"] - b["mean"]
            spread = max(a["max"] - a["min"], b["max"] - b["min"])
            reading = BEYOND_SPREAD if abs(change) > spread else WITHIN_SPREAD
        else:
            change = first.loc[recipe, value] - first.loc[reference, value]
            spread, reading = float("nan"), NO_SPREAD
        rows.append({"recipe": recipe, "against": reference, "change": change,
                     "seeds": int(min(a["count"], b["count"])), "seed range": spread,
                     "reading": reading})
    return pd.DataFrame(rows, columns=["recipe", "against", "change", "seeds", "seed range",
                                       "reading"])


# --- 08b ----------------------------------------------------------------------------


def recipe_parts(p) -> dict:
    """Chapter 08b's recipe, as the glue keys its page pastes: ``recipe_name``, the levers
    chapter 08c chose and this recipe took (``shipping.with_chosen``), and those left out
    because training was predicted to take longer than ``training_minutes``."""
    too_slow = getattr(p, "levers_too_slow", None) or {}
    return {"recipe_name": p.variant or "plain",
            "levers_taken": listing(list(getattr(p, "levers_taken", None) or [])),
            "levers_too_slow": listing([f"{name} ({minutes} min predicted)"
                                        for name, minutes in too_slow.items()]),
            "training_minutes": glued.number(p.training_minutes)}


def glue_other_sets(result) -> None:
    """Glue the model's rates on the other home dataset's test set and on Br35H's new
    tumours (``other_test``, ``br35h_tumours`` and their ``_name``), and what the other
    test set is to this recipe (``other_reading``)."""
    table = result.calibration()
    for key, label, title in (
            ("other_test", "external", "{}'s official test set"),
            ("br35h_tumours", predictions.DETECTION_SPLIT, "{}'s tumour images")):
        rows = table[table.index.str.contains(label)]
        if len(rows):
            frame = result.predictions[label]
            glued.text(f"{key}_name", title.format(DISPLAY[frame["eval_dataset"].iloc[0]]))
            glued.glue_rate(key, rows["correct"].iloc[0], rows["n"].iloc[0])
    other = result.predictions.get("external")
    glued.text("other_reading", other_dataset_reading(
        result.p.extra_training, None if other is None else other["eval_dataset"].iloc[0]))


def clinical_reading(result):
    """The test set read as tumour versus none, by argmax and at the threshold on
    P(no tumour) chosen on validation for the target sensitivity; glues the counts the
    chapter's prose pastes and returns the table."""
    p = result.p
    y_val, probs_val, _ = predictions.arrays(result.predictions["val"])
    y, probs, _ = predictions.arrays(result.test)
    threshold = metrics.threshold_for_sensitivity(y_val, probs_val, p.target_sensitivity)
    readings = {"argmax": metrics.tumour_vs_none(y, probs),
                "thr": metrics.tumour_vs_none(y, probs, threshold)}
    glued.glue_number("threshold", threshold, 2)
    glued.glue_percent("target_sensitivity", p.target_sensitivity, 0)
    for key, r in readings.items():
        glued.glue_number(f"missed_{key}", r["missed_tumours"])
        glued.glue_number(f"false_alarms_{key}", r["false_alarms"])
        glued.glue_rate(f"sensitivity_{key}", r["tumours"] - r["missed_tumours"], r["tumours"])
    rules = {"argmax": "most probable class (argmax)", "thr": f"P(no tumour) >= {threshold:.2f}"}
    shown = pd.DataFrame([{"rule": rules[k], "missed": r["missed_tumours"],
                           "alarms": r["false_alarms"],
                           "sensitivity": frames.rate_column(
                               [r["tumours"] - r["missed_tumours"]], [r["tumours"]])[0],
                           "specificity": frames.rate_column(
                               [r["no_tumours"] - r["false_alarms"]], [r["no_tumours"]])[0]}
                          for k, r in readings.items()])
    return frames.table(shown, {"rule": "Called no tumour when", "missed": "Missed tumours",
                                "sensitivity": "Sensitivity (95 % CI, %)",
                                "alarms": "False alarms",
                                "specificity": "Specificity (95 % CI, %)"},
                        counts=["missed", "alarms"])


#: What the other home dataset's test set is to a model, after "that test set is".
OTHER_SET = {
    "none": "not scored (no other home dataset)",
    "trained": "not external: the recipe trained on that dataset's training images",
    "shared": "not a clean external test: the two datasets share images",
}


def other_dataset_reading(extra_training: str | None, other: str | None) -> str:
    """Chapter 08b: whether the other home dataset's test set is external to a model."""
    if other is None:
        return OTHER_SET["none"]
    return OTHER_SET["trained" if extra_training == other else "shared"]


# --- 01b ----------------------------------------------------------------------------


#: What a deduplicated test set can measure of specificity, from its no-tumour images.
DEDUP_SPECIFICITY = {"none": "none: no no-tumour image is left, so no specificity",
                     "few": f"fewer than {glued.FEW_CASES}: read its specificity with care",
                     "enough": "enough to measure a specificity"}


def dedup_reading(no_tumour: int) -> str:
    """Chapter 01b: what a deduplicated test set keeping ``no_tumour`` no-tumour images
    can measure."""
    no_tumour = int(no_tumour)
    return DEDUP_SPECIFICITY["none" if no_tumour == 0 else
                             "few" if no_tumour < glued.FEW_CASES else "enough"]


# --- 02 -----------------------------------------------------------------------------

#: Largest relative difference from the report's variance figures that still counts as
#: reproducing them (the report's own validation draw is unknown: a few per cent remain).
REPRODUCED = 0.05


def reproduced(largest_relative_difference: float) -> str:
    """Chapter 02: whether this run reproduces the report's variance figures (every
    figure within :data:`REPRODUCED` of the report's)."""
    return ("reproduces" if abs(largest_relative_difference) <= REPRODUCED
            else "does not reproduce")
