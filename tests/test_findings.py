"""The small rules behind the chapters' "What we found" (each chooses a word or phrase
the chapter's markdown pastes by glue), the values a model chapter glues, and where each
chapter shows its paragraph."""

from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from brainmri import CLASS_NAMES
from brainmri.core import paths
from brainmri.evaluation import metrics, predictions
from brainmri.report.series.notebook import Params
from brainmri.report.show import findings
from brainmri.report.studies.experiment import Result

LEAD = "**What we found.**"


def _frame(labels, predicted, split, eval_dataset=None, scale=3.0):
    """A predictions frame: ``labels`` and the class predicted for each image."""
    logits = np.zeros((len(labels), len(CLASS_NAMES)))
    logits[np.arange(len(labels)), [CLASS_NAMES.index(c) for c in predicted]] = scale
    files = pd.DataFrame({"path": [f"{split}{i}.jpg" for i in range(len(labels))],
                          "label": labels})
    probs = metrics.softmax(logits)
    return predictions.predictions_frame(files, logits, probs, "m", "sartaj", split, seed=0,
                                         eval_dataset=eval_dataset)


def _result(model_name, dataset, labels, predicted, history, extra=None, folder=None,
            **params):
    p = Params(chapter="test", run=None, model_name=model_name, dataset=dataset,
               learning_rate=1e-3, patience=3, ece_bins=15, **params)
    frames = {"val": _frame(labels, predicted, "val"), "test": _frame(labels, predicted, "test"),
              **(extra or {})}
    return Result(p, None, None, folder, history, frames, temperature=1.5)


def test_model_chapter_glues_its_numbers(tmp_path):
    import json

    labels = list(CLASS_NAMES) * 2
    predicted = ["glioma", "meningioma", "no_tumor", "glioma"] * 2  # pituitary missed
    history = pd.DataFrame({"val_loss": [1.0, 0.8, 0.9, 0.95], "phase": "train"})
    phase = {"seconds": 2400.0, "epochs_run": 4,
             "inputs": {"images": {"train": 8}, "input_shape": [64, 64, 3]}}
    (tmp_path / "fit.json").write_text(json.dumps({"phases": [phase]}))
    (tmp_path / "pretrain.json").write_text(json.dumps({"seconds": 600.0, "images": 8,
                                                       "epochs": 2}))
    result = _result("relu_cnn", "sartaj", labels, predicted, history, epochs=6,
                     folder=tmp_path)
    values = findings.glue_model_chapter(result)
    assert values["train_seconds"] == 3000.0  # training and pretraining: 50 min
    assert values["correct"] == 6 and values["n_test"] == 8
    assert values["epochs"] == (4, 6, 2)  # 4 run of 6 allowed, epoch 2 kept
    assert values["published_acc"] == 0.67 and values["verdict"] == "within"
    assert values["classes"] == ["glioma", "meningioma", "no_tumor"]


def test_epochs_run_keeps_the_best_of_the_last_phase_or_the_last_epoch():
    history = pd.DataFrame({"val_loss": [0.5, 0.9, 0.8, 0.7],
                            "phase": ["head", "head", "finetune", "finetune"]})
    assert findings.epochs_run(history, restore_best=True) == (4, 4)
    assert findings.epochs_run(history.assign(phase="train"), True) == (4, 1)
    assert findings.epochs_run(history, restore_best=False) == (4, 4)


def test_within_or_beyond_the_sampling_margin():
    margin = findings.sampling_margin(0.188, 394)
    assert margin == pytest.approx(0.0386, abs=1e-3)
    assert findings.within(0.188 - 0.25, margin) == "beyond"
    assert findings.within(0.02, margin) == "within"


def test_sigmoid_verdict_is_one_phrase_consistent_with_the_numbers():
    assert findings.sigmoid_verdict(["pituitary"], "beyond").startswith("reproduced in kind only")
    assert findings.sigmoid_verdict(["glioma"], "within").startswith("reproduced:")
    assert findings.sigmoid_verdict(["glioma", "pituitary"], "within").startswith("not reproduced")


def test_label_noise_verdict_checks_only_tumour_or_not():
    assert "not label noise at the level Br35H can check" in findings.label_noise_verdict(
        pd.Series(["tumour", "tumour"]))
    assert "tumour type cannot be checked" in findings.label_noise_verdict(pd.Series(["tumour"]))
    assert findings.label_noise_verdict(pd.Series(["tumour", "no_tumor"])).startswith(
        "partly label noise: 1 of their 2")
    assert findings.label_noise_verdict(pd.Series([], dtype=str)).startswith("cannot be checked")


def test_claim_verdict_needs_the_paired_test_and_the_seed_spread():
    assert findings.claim_verdict(0.05, 0.01, 0.03) == "supported"
    assert findings.claim_verdict(0.013, 0.6, 0.03) == "not shown"  # report 000's RGB claim
    assert findings.claim_verdict(0.05, 0.01, 0.08) == "not shown"  # within the seed range
    assert findings.claim_verdict(-0.05, 0.01, 0.03) == "contradicted"
    # no setting repeated over seeds: even a clear paired test supports nothing
    assert findings.claim_verdict(0.2, 0.0001, float("nan")) == findings.NO_SPREAD


def test_paired_test_counts_the_discordant_images():
    a = _frame(["glioma", "meningioma", "pituitary"], ["glioma", "glioma", "pituitary"], "test")
    b = _frame(["glioma", "meningioma", "pituitary"], ["glioma", "meningioma", "glioma"], "test")
    result = findings.paired_test(a, b)
    assert (result["n"], result["b"], result["c"]) == (3, 1, 1)


def test_lever_effects_are_judged_against_the_seed_spread():
    table = pd.DataFrame({
        "recipe": ["baseline", "baseline+bn", "crop", "crop+bn", "union", "crop", "crop"],
        "seed": [42, 42, 42, 42, 42, 7, 2026],
        "external sensitivity": [0.197, 0.341, 0.276, 0.398, 0.308, 0.30, 0.25]})
    effects = findings.lever_effects(table, "external sensitivity", yardstick=0.082)
    effects = effects.set_index("recipe")
    assert effects.loc["crop+bn", "against"] == "baseline+bn"
    assert effects.loc["crop", "change"] == pytest.approx(0.079)
    assert effects.loc["crop", "reading"] == "within the seed spread"  # 7.9 < 8.2 points
    assert effects.loc["union", "reading"] == "beyond the seed spread"
    assert "baseline" not in effects.index and "baseline+bn" not in effects.index
    # no recipe trained on several seeds: no spread to judge by, so no claim at all
    alone = findings.lever_effects(table, "external sensitivity", yardstick=float("nan"))
    assert set(alone["reading"]) == {findings.NO_SPREAD}


def test_threshold_and_other_dataset_readings():
    assert findings.threshold_effect(6, 13) == "misses 7 more tumours than the argmax"
    assert findings.threshold_effect(6, 6) == "misses as many tumours as the argmax"
    assert findings.threshold_effect(6, 2) == "finds 4 more tumours than the argmax"
    assert "not an external test" in findings.other_dataset_reading("sartaj", "sartaj")
    assert "share images" in findings.other_dataset_reading(None, "sartaj")


def test_dedup_reading_says_what_a_set_without_no_tumour_images_measures():
    assert "measures no specificity" in findings.dedup_reading(0)
    assert "fewer than 50" in findings.dedup_reading(19)
    assert "fewer than" not in findings.dedup_reading(120)


def test_variance_reproduced_within_five_per_cent():
    assert findings.reproduced(0.03).startswith("reproduces")
    assert findings.reproduced(-0.26).startswith("does not reproduce")


# --- 11 -----------------------------------------------------------------------------


def test_tryout_reads_the_class_a_file_is_filed_under():
    """Chapter 11 says whether the worked example's answer is right from its folder."""
    from brainmri.report.interactive import tryout

    assert tryout.filed_under(Path("data/Testing/glioma/Te-gl_0013.jpg")) == "glioma"
    assert tryout.filed_under(Path("Testing/notumor/x.jpg")) == "no_tumor"
    assert tryout.filed_under(Path("yes/y1.jpg")) == "tumour"
    assert tryout.filed_under(Path("/tmp/upload.png")) is None


# --- where the chapters show it --------------------------------------------------------

GLUED = ["01_data_exploration", "01b_leakage_audit", "01c_source_audit",
         "02_variance_analysis", "03_preprocessing", "05_relu_cnn", "05b_relu_cnn_claims",
         "06_relu_cnn_augmented", "07_sigmoid_cnn", "08b_compact_cnn", "08c_shortcut_ablation"]


@pytest.mark.parametrize("chapter", GLUED)
def test_chapter_ends_with_a_written_paragraph_that_pastes_glued_numbers(chapter):
    """The chapter's last cell is markdown written by a person; its numbers come by glue
    from the code cells (no sentence built by Python)."""
    nb = nbformat.read(paths.notebooks_dir() / f"{chapter}.ipynb", 4)
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## What we found")
    assert "{glue:text}`" in last.source
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "Markdown(" not in code and "print(" not in code


@pytest.mark.parametrize("chapter", ["04_inceptionv3", "08_convnext_tiny"])
def test_transfer_chapter_says_what_it_measures_before_it_can_stop(chapter):
    """A skipped chapter keeps only the cells up to the one that failed (the runner), so
    the paragraph sits before the training cell, and holds no measured number."""
    nb = nbformat.read(paths.notebooks_dir() / f"{chapter}.ipynb", 4)
    run = next(i for i, c in enumerate(nb.cells) if "experiment.run(" in c.source)
    before = nb.cells[run - 1]
    assert before.cell_type == "markdown" and before.source.startswith(LEAD)
    assert "quoted, not reproduced" in before.source and "%" not in before.source


def test_the_recipe_says_which_levers_it_took():
    from types import SimpleNamespace

    from brainmri.report.show.findings import recipe_words

    assert recipe_words(SimpleNamespace(variant=None)) == "plain recipe (no lever of chapter 08c)"
    took = SimpleNamespace(variant="crop-union-bn-gin", levers_from="08c_shortcut_ablation",
                           levers_taken=["gin"])
    assert recipe_words(took) == ("crop-union-bn-gin recipe (with gin, chosen in chapter 08c "
                                  "on Sartaj held out)")
    none = SimpleNamespace(variant="crop-union-bn", levers_from="08c_shortcut_ablation")
    assert "none was added" in recipe_words(none)
    slow = SimpleNamespace(variant="crop-union-bn", levers_from="08c_shortcut_ablation",
                           levers_taken=[], levers_too_slow={"wide": 95}, training_minutes=60)
    assert recipe_words(slow) == ("crop-union-bn recipe (no lever chosen in chapter 08c on "
                                  "Sartaj held out fits the training time: wide was left out, "
                                  "since training with it was predicted to take 95 minutes, "
                                  "over the 60 allowed)")
