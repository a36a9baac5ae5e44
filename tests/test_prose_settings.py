"""The values chapters 01b and 09 glue for the datasets page, the appendix and the models
page."""

import re

import pandas as pd
import yaml

from brainmri.core import paths
from brainmri.core.runfolder import RunFolder
from brainmri.data.duplicates import Audit, Overlap
from brainmri.report.series.profiles import load_profile
from brainmri.report.studies import leakage, summary


def test_leakage_words_give_the_datasets_page_its_table_and_figures():
    counts = {"n_test": 1311, "test_images_with_copy_in_training": 654,
              "share_of_test_with_copy_in_training": 654 / 1311,
              "test_images_with_exact_copy_in_training": 216,
              "cross_split_pairs_label_agreement": 0.991, "exact_pairs_within_training": 286}
    per_class = pd.DataFrame({"test_images": [300, 405], "with_copy_in_training": [42, 386]},
                             index=["glioma", "no_tumor"])
    rule = {"max_distance": 4, "min_correlation": 0.95}
    pairs = pd.DataFrame({"sartaj_path": ["a", "b"], "nickparvar_path": ["c", "d"],
                          "sartaj_label": ["glioma", "glioma"],
                          "nickparvar_label": ["glioma", "pituitary"], "exact": [False, False]})
    words = leakage.words({"nickparvar": Audit("nickparvar", rule, counts, per_class,
                                               None, None)},
                          Overlap(("sartaj", "nickparvar"), pairs))
    assert words["nickparvar_leak_all"] == "654 / 1,311"
    assert words["nickparvar_leak_no_tumor"] == "386 / 405"
    assert words["nickparvar_leak_meningioma"] == "n/a"  # a class the audit did not see
    assert words["nickparvar_leak_share"] == "50 %" and words["nickparvar_leak_exact"] == "216"
    assert words["nickparvar_pairs_agree"] == "99.1 %"
    assert words["rule_max_distance"] == "4" and words["rule_min_correlation"] == "0.95"
    assert words["sartaj_in_nickparvar"] == "2" and words["overlap_exact_pairs"] == "0"
    assert words["overlap_label_agreement"] == "50.0 %"
    assert leakage.words({}, None)["sartaj_in_nickparvar"] == "n/a"


def test_reduced_settings_come_from_the_runs_parameters(tmp_path):
    run = RunFolder(tmp_path / "run").create()
    run.params.write_text(yaml.safe_dump({"steps": {
        "05b_relu_cnn_claims": {"base_chapter": "05_relu_cnn", "settings": {"image_size": 128}},
        "08b_compact_cnn": {"image_size": 128, "epochs": 40},
        "08b_compact_cnn-nickparvar": {"model_name": "compact_cnn", "dataset": "nickparvar",
                                       "image_size": 112, "epochs": 30},
        "08c_shortcut_ablation": {"base_chapter": "08b_compact_cnn",
                                  "settings": {"image_size": 80}}}}))
    test = pd.DataFrame({"model": ["compact_cnn"], "dataset": ["nickparvar"]},
                        index=["compact_cnn-nickparvar"])
    assert summary.reduced_settings(run, test, "compact_cnn-nickparvar") == {
        "claims_image_size": "128", "ablation_image_size": "80",
        "ablation_epochs": "40",  # not in the settings: the base chapter's
        "shipped_image_size": "112", "shipped_epochs": "30"}
    assert summary.reduced_settings(run, test, None)["shipped_epochs"] == "n/a"


def test_model_settings_come_from_the_runs_parameters(tmp_path):
    run = RunFolder(tmp_path / "run").create()
    run.params.write_text(yaml.safe_dump({"steps": {
        "04_inceptionv3": {"image_size": 75, "head_epochs": 1, "finetune_epochs": 0,
                           "finetune_learning_rate": 1.0e-4, "unfreeze_from": 200},
        "05_relu_cnn": {"image_size": 32, "epochs": 1, "learning_rate": 2.0e-3,
                        "batch_size": 16, "patience": 5},
        "08b_compact_cnn": {"widths": [8, 16, 16, 32], "patience": 10}}}))
    words = summary.model_settings(run)
    assert {k: words[f"settings_{k}"] for k in (
        "inception_image_size", "inception_head_epochs", "inception_finetune_epochs",
        "inception_finetune_learning_rate", "inception_unfreeze_from")} == {
        "inception_image_size": "75", "inception_head_epochs": "1",
        "inception_finetune_epochs": "0", "inception_finetune_learning_rate": "0.0001",
        "inception_unfreeze_from": "200"}
    assert (words["settings_relu_learning_rate"], words["settings_relu_batch_size"]) == (
        "0.002", "16")
    assert words["settings_compact_widths"] == "8, 16, 16, 32"
    assert words["settings_convnext_image_size"] == "n/a"  # a step the run did not have
    assert all(v == "n/a" for v in summary.model_settings(
        RunFolder(tmp_path / "empty").create()).values())


def test_the_models_page_pastes_only_settings_the_benchmark_glues(tmp_path):
    """Every ``settings_*`` key book/models.md pastes is one ``model_settings`` returns,
    and a value for it, for a run of params/base.yaml and of the quick profile."""
    text = (paths.project_root() / "book" / "models.md").read_text()
    pasted = set(re.findall(r"09_benchmark\.ipynb::(settings_\w+):s", text))
    assert pasted
    for name in ("base", "quick"):
        profile = load_profile(name)
        run = RunFolder(tmp_path / name).create()
        run.params.write_text(yaml.safe_dump({"steps": {
            step.name: profile.resolve(step) for step in profile.steps}}))
        words = summary.model_settings(run)
        assert pasted <= set(words), sorted(pasted - set(words))
        assert all(words[k] != "n/a" for k in words), name
        if name == "base":
            assert words["settings_inception_image_size"] == "299"
            assert words["settings_convnext_finetune_epochs"] == "45"
        else:
            assert words["settings_relu_epochs"] == "1"  # a reduced run states its own


def test_class_recall_gives_counts_so_each_rate_is_shown_with_its_count():
    from brainmri import CLASS_NAMES, LOGIT_COLUMNS, PROB_COLUMNS

    labels = ["glioma", "glioma", "glioma", "pituitary", "no_tumor"]
    answers = ["glioma", "glioma", "meningioma", "pituitary", "glioma"]
    probs = [[float(a == c) for c in CLASS_NAMES] for a in answers]
    frame = pd.DataFrame(probs, columns=PROB_COLUMNS).assign(label=labels)
    frame[LOGIT_COLUMNS] = frame[PROB_COLUMNS].to_numpy()
    recall = summary.class_recall({("m", "test"): frame}, ["m"]).loc["m"]
    assert (recall["glioma"], recall["glioma n"]) == (2, 3)
    assert (recall["pituitary"], recall["pituitary n"]) == (1, 1)
    assert (recall["no_tumor"], recall["no_tumor n"]) == (0, 1)
    assert (recall["meningioma"], recall["meningioma n"]) == (0, 0)  # shown blank
