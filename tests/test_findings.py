"""The small rules behind the chapters' "What we found" (each chooses a word or phrase
the chapter's markdown pastes by glue), the values a model chapter glues, and where each
chapter shows its paragraph."""

import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from brainmri import CLASS_NAMES
from brainmri.core import paths
from brainmri.evaluation import metrics, predictions
from brainmri.report.series.notebook import Params
from brainmri.report.studies import findings
from brainmri.report.studies.experiment import Result

LEAD = "**What we found.**"
#: The heading a chapter's closing section starts with (the book's pages link to it).
HEADING = "## What we found"
#: The numbers a phrase carries, in order (``1,500``, ``45.7``); not the digits of a
#: name such as ``08c`` or ``Br35H``.
NUMBER = re.compile(r"\b\d+(?:[.,]\d+)*\b")


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
    """Three readings: collapsed at the report's accuracy, collapsed but not at its
    accuracy, not collapsed (whatever the accuracy); which class it collapses onto does
    not matter."""
    verdict = findings.sigmoid_verdict
    at_accuracy, in_kind = verdict(["glioma"], "within"), verdict(["pituitary"], "beyond")
    not_collapsed = verdict(["glioma", "pituitary"], "within")
    assert len({at_accuracy, in_kind, not_collapsed}) == 3
    assert verdict(["pituitary"], "within") == at_accuracy
    assert verdict(["glioma"], "beyond") == in_kind
    assert verdict(["glioma", "pituitary"], "beyond") == not_collapsed
    assert {at_accuracy, in_kind, not_collapsed} == set(findings.SIGMOID_VERDICTS.values())
    assert not_collapsed == findings.SIGMOID_VERDICTS["no collapse"]


def test_label_noise_verdict_checks_only_tumour_or_not():
    """Copies all filed as tumours: not label noise, whatever their number; any filed as
    no tumour: partly; no copy: nothing to check."""
    verdict, words = findings.label_noise_verdict, findings.LABEL_NOISE_VERDICTS
    assert verdict(pd.Series(["tumour", "tumour"])) == words["confirmed"]
    assert verdict(pd.Series(["tumour"])) == words["confirmed"]
    assert verdict(pd.Series(["tumour", "no_tumor"])) == words["contradicted"]
    assert verdict(pd.Series(["no_tumor", "tumour", "no_tumor"])) == words["contradicted"]
    assert verdict(pd.Series([], dtype=str)) == words["unchecked"]


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
        "recipe": ["baseline", "baseline+bn", "crop", "crop+bn", "union",
                   "baseline", "baseline", "crop", "crop", "union+bn"],
        "seed": [42, 42, 42, 42, 42, 7, 2026, 7, 2026, 42],
        "external sensitivity": [0.20, 0.34, 0.28, 0.40, 0.31, 0.22, 0.18, 0.30, 0.26, 0.5]})
    effects = findings.lever_effects(table, "external sensitivity").set_index("recipe")
    assert "baseline" not in effects.index and "baseline+bn" not in effects.index
    # both recipes on three seeds: mean against mean (0.28 - 0.20), beside the wider of
    # the two ranges (0.04 each)
    crop = effects.loc["crop"]
    assert (crop["seeds"], crop["change"]) == (3, pytest.approx(0.08))
    assert crop["seed range"] == pytest.approx(0.04)
    assert crop["reading"].startswith("beyond")
    # one seed on either side gives no claim, however large the change
    for once in ("union", "crop+bn", "union+bn"):
        assert effects.loc[once, "reading"] == findings.NO_SPREAD, once
        assert effects.loc[once, "seeds"] == 1
    assert effects.loc["union", "change"] == pytest.approx(0.11)  # shown, at the run's seed
    assert effects.loc["union+bn", "against"] == "baseline+bn"
    # a change within the wider range is noise
    closer = table.copy()
    closer.loc[closer["recipe"] == "crop", "external sensitivity"] = [0.21, 0.23, 0.19]
    within = findings.lever_effects(closer, "external sensitivity").set_index("recipe")
    assert within.loc["crop", "reading"].startswith("within")


def test_other_dataset_readings():
    """The other home test set is external to no recipe: three readings, by whether the
    recipe trained on that dataset and whether one was scored."""
    reading = findings.other_dataset_reading
    trained_on, shares, none = (reading("sartaj", "sartaj"), reading(None, "sartaj"),
                                reading("sartaj", None))
    assert len({trained_on, shares, none}) == 3
    assert reading("figshare", "figshare") == trained_on
    assert reading("figshare", "sartaj") == shares
    assert {trained_on, shares, none} == set(findings.OTHER_SET.values())
    assert none == findings.OTHER_SET["none"]


def test_dedup_reading_says_what_a_set_without_no_tumour_images_measures():
    """No no-tumour image: no specificity; fewer than FEW_CASES: read with care; more:
    enough."""
    from brainmri.report.show import glued

    words = findings.DEDUP_SPECIFICITY
    assert findings.dedup_reading(0) == words["none"]
    assert findings.dedup_reading(glued.FEW_CASES - 1) == words["few"]
    assert findings.dedup_reading(glued.FEW_CASES) == words["enough"]
    assert findings.dedup_reading(1200) == words["enough"]


def test_variance_reproduced_within_five_per_cent():
    assert findings.REPRODUCED == 0.05
    yes, no = findings.reproduced(0.03), findings.reproduced(-0.26)
    assert findings.reproduced(-0.05) == yes and findings.reproduced(0.051) == no
    assert (yes, no) == ("reproduces", "does not reproduce")


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
    assert last.cell_type == "markdown" and last.source.startswith(HEADING)
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
    assert "quoted" in before.source and "%" not in before.source


def test_the_recipe_says_which_levers_it_took():
    from types import SimpleNamespace

    from brainmri.report.studies.findings import recipe_parts

    plain = recipe_parts(SimpleNamespace(variant=None, training_minutes=60))
    assert plain == {"recipe_name": "plain", "levers_taken": "none",
                     "levers_too_slow": "none", "training_minutes": "60"}
    took = recipe_parts(SimpleNamespace(variant="crop-union-bn-gin", training_minutes=60,
                                        levers_from="08c_shortcut_ablation",
                                        levers_taken=["gin", "bigaug"]))
    assert took["recipe_name"] == "crop-union-bn-gin"
    assert took["levers_taken"] == "gin and bigaug" and took["levers_too_slow"] == "none"
    slow = recipe_parts(SimpleNamespace(variant="crop-union-bn",
                                        levers_from="08c_shortcut_ablation", levers_taken=[],
                                        levers_too_slow={"wide": 95}, training_minutes=60))
    # the lever left out, with its predicted minutes; the minutes allowed apart
    assert slow["levers_taken"] == "none" and NUMBER.findall(slow["levers_too_slow"]) == ["95"]
    assert slow["levers_too_slow"].startswith("wide") and slow["training_minutes"] == "60"
