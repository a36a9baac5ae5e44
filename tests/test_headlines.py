"""The worded values chapters 09 and 10 glue (``studies.headlines``), on a small table whose
figures are chosen to be recognisable."""

import re

import pandas as pd
import pytest

from brainmri.core.runfolder import RunFolder
from brainmri.report.studies import headlines

SHIPPED = "compact_cnn+crop-union-bn-nickparvar"
#: The numbers a phrase carries, in order (``2,000``, ``2.40``).
NUMBER = re.compile(r"\b\d+(?:[.,]\d+)*\b")


def _names(words: str, *names: str) -> list[str]:
    """Which of ``names`` ``words`` holds, in the order it gives them."""
    return re.findall("|".join(map(re.escape, names)), words)


def _row(tag, eval_set, **values):
    model, dataset = tag.rsplit("-", 1)
    row = {"tag": tag, "model": model, "dataset": dataset, "eval_set": eval_set, "n": 100,
           "accuracy": 0.9, "acc_ci_low": 0.85, "acc_ci_high": 0.94, "degenerate": False,
           "ece": 0.08, "ece_tempscaled": 0.02, "tumour_sensitivity": 0.5,
           "missed_tumours": 50, "no_tumours": 19, "no_tumours_cleared": 19,
           "specificity_on": "test_dedup", "threshold": 0.31, "missed_tumours_thr": 13,
           "false_alarms": 2, "false_alarms_thr": 0}
    row.update(values)
    return row


def _table():
    return headlines.named(pd.DataFrame([
        _row(SHIPPED, "test", missed_tumours=6),
        _row(SHIPPED, "test_dedup", accuracy=0.98, acc_ci_low=0.96, acc_ci_high=0.99),
        _row(SHIPPED, "external", n=127, accuracy=45 / 127),
        _row(SHIPPED, "external_br35h", n=756, tumour_sensitivity=322 / 756,
             missed_tumours=434),
        _row("relu_cnn-sartaj", "test", accuracy=0.66),
        _row("relu_cnn-sartaj", "external_br35h", n=756, tumour_sensitivity=249 / 756,
             missed_tumours=507),
        _row("sigmoid_cnn-sartaj", "test", degenerate=True, accuracy=0.28, ece=0.5,
             ece_tempscaled=0.1),
        _row("sigmoid_cnn-sartaj", "external_br35h", n=756, tumour_sensitivity=1.0,
             missed_tumours=0, degenerate=True),
    ]))


def test_ranges_leave_out_the_constant_model_and_name_it():
    words = headlines.br35h_words(_table(), SHIPPED)
    assert words["br35h_range"].startswith("32.9 % (ReLU CNN")
    assert words["br35h_range"].split(" to ")[1].startswith("42.6 % (compact CNN")
    assert "100" not in words["br35h_range"]
    assert words["degenerate_models"] == "sigmoid CNN"
    assert words["shipped_br35h"].startswith("322/756 (42.6 %")
    assert words["shipped_home_specificity"].endswith("only 19 cases)")
    assert words["shipped_home_specificity_on"] == "deduplicated test"


def test_the_threshold_reading_says_it_misses_more():
    table = _table()
    test = table[table["eval_set"] == "test"].set_index("tag")
    assert headlines.shipped_tag(test) == SHIPPED
    words = headlines.threshold_words(test, SHIPPED, 0.99)
    assert (words["shipped_missed_argmax"], words["shipped_missed_thr"]) == ("6", "13")
    assert words["shipped_thr_word"] == "more"
    assert words["shipped_threshold"] == "0.31"
    assert words["target_sensitivity"] == "99 %"


def test_a_run_without_a_shipped_model_reads_not_available():
    table = _table()
    table = table[table["tag"] != SHIPPED]
    test = table[table["eval_set"] == "test"].set_index("tag")
    assert headlines.shipped_tag(test) is None
    assert set(headlines.threshold_words(test, None, 0.99).values()) >= {"n/a"}
    assert headlines.br35h_words(table, None)["shipped_br35h"] == "n/a"


def test_shipped_words_compare_with_report_001_and_count_calibration(tmp_path):
    run = RunFolder(tmp_path / "run").create()
    words = headlines.shipped_words(run, _table(), SHIPPED)
    assert words["shipped_dedup_acc"] == "98.0 % (95 % CI 96.0-99.0)"
    assert words["shipped_vs_001"].endswith("below")
    # the sigmoid CNN's lowered ECE is not counted: it is constant
    assert words["ece_lowered"] == "3 of 3"
    assert words["nickparvar_dedup_removed"] == "n/a"  # no leakage file in this run


def test_seed_words_put_the_shipped_kind_first():
    spread = pd.DataFrame({"chapter": ["08c, Br35H sensitivity"] * 2,
                           "setting": ["crop-union", "crop-union+bn"], "seeds": [3, 3],
                           "min": [0.30, 0.33], "max": [0.40, 0.41],
                           "sd over seeds": [0.04, 0.031], "bootstrap CI width": [0.07, 0.07]})
    words = headlines.seed_words(spread)
    assert (words["seeds_08c_low"], words["seeds_08c_high"]) == ("33.0 %", "41.0 %")
    assert (words["seeds_08c_n"], words["seeds_08c_sd"], words["seeds_08c_ci"]) == (
        "3", "3.1", "7.0")
    assert words["seeds_05b_low"] == words["seeds_05b_n"] == "n/a"


def test_explanation_words_count_maps_denser_on_the_outline():
    xai = pd.DataFrame({"model": ["a", "a", "b"],
                        "explainer": ["GradCAM", "SmoothGrad", "GradCAM"],
                        "n_images": 8, "n_sanity": 4,
                        "flag_insensitive_to_weights": [False, True, False],
                        "randomisation_similarity": [0.2, 0.9, 0.3],
                        "mass_in_brain": [0.8, 0.5, 0.9], "area_in_brain": [0.6, 0.6, 0.6],
                        "mass_on_contour": [0.10, 0.05, 0.12], "area_on_contour": 0.05})
    best = pd.DataFrame({"insertion": ["Grad-CAM (0.7)", "Grad-CAM (0.6)"],
                         "deletion": ["Grad-CAM (0.1)", "SmoothGrad (0.2)"]}, index=["a", "b"])
    names = pd.Series({"a": "model A", "b": "model B"})
    words = headlines.explanation_words(xai, best, names, set(), 0.5)
    assert words["xai_outline"] == "2 of 3"
    # the largest ratio, 0.12 / 0.05, with its explainer and model
    assert NUMBER.findall(words["xai_outline_max"]) == ["2.40"]
    assert _names(words["xai_outline_max"], "Grad-CAM", "SmoothGrad", "model A",
                  "model B") == ["Grad-CAM", "model B"]
    assert words["xai_outline_others"] == "2.00 times"
    # one of three pairs fails the randomisation check: SmoothGrad on model A
    assert NUMBER.findall(words["xai_flagged"]) == ["1", "3"]
    assert _names(words["xai_flagged"], "Grad-CAM", "SmoothGrad", "model A",
                  "model B") == ["SmoothGrad", "model A"]
    assert words["xai_leader"] == "Grad-CAM (2 of 2 models)"
    assert words["xai_agree"] == "1 of 2"
    assert words["xai_head_denser"] == "2 of 3"
    # a constant model is counted as explained, but none of its maps enters a figure
    constant = pd.DataFrame({"model": ["c"], "explainer": ["GradCAM"], "n_images": 8,
                             "n_sanity": 4, "flag_insensitive_to_weights": [True],
                             "randomisation_similarity": [0.99], "mass_in_brain": [0.1],
                             "area_in_brain": [0.6], "mass_on_contour": [0.5],
                             "area_on_contour": 0.05})
    words = headlines.explanation_words(pd.concat([xai, constant], ignore_index=True),
                                        best, names, {"c"}, 0.5)
    assert words["xai_n_models"] == "3" and words["xai_n_pairs"] == "4"
    assert words["xai_outline"] == "2 of 3"
    assert NUMBER.findall(words["xai_outline_max"]) == ["2.40"]  # not the constant's 10
    assert "model B" in words["xai_outline_max"]
    assert NUMBER.findall(words["xai_flagged"]) == ["1", "3"]  # the constant's pair left out
    assert "model A" in words["xai_flagged"]
    assert words["xai_similarity"] == "0.20 to 0.90"
    assert words["xai_head"] == "50 % to 90 %"


def test_seed_spreads_read_the_levers_without_their_ensembles(tmp_path):
    run = RunFolder(tmp_path / "run").create()
    rows = [{"lever": lever, "seed": seed, "external sensitivity": value,
             "external CI low": value - 0.05, "external CI high": value + 0.05}
            for lever, values in (("plain", (0.40, 0.45, 0.35, 0.99)),
                                  ("gin", (0.60, 0.55, 0.65, 0.99)))
            for seed, value in zip((42, 7, 2026, "ensemble"), values)]
    pd.DataFrame(rows).to_csv(run.levers, index=False)
    spread = headlines.seed_spreads(run).set_index("setting")
    assert list(spread["seeds"]) == [3, 3]
    assert spread.loc["gin", "max"] == pytest.approx(0.65)  # not the ensemble's 0.99
    assert set(spread["chapter"]) == {"08c levers, Br35H sensitivity"}
    assert headlines.seed_words(spread.reset_index())["seeds_08c_low"] == "n/a"


def test_the_br35h_table_shows_the_collection_check_where_measured():
    table = _table()
    external = table[table["eval_set"] == "external_br35h"].set_index("tag").assign(
        no_tumours_cleared_thr=19, missed_tumours_thr=400,
        collection_home_warned=[92, None, None], collection_home_batches=[2000, None, None],
        collection_external_warned=[2000, None, None],
        collection_external_batches=[2000, None, None])
    html = headlines.br35h_table(external).to_html()
    assert "92/2,000 / 2,000/2,000" in html  # home, then Br35H batches flagged
    assert html.count("2,000/2,000") == 1  # the others were not measured: empty cells


def test_named_rows_mark_constant_models_and_every_collection_trained_on():
    table = headlines.named(pd.DataFrame([
        _row(SHIPPED, "test", trained_on="nickparvar+sartaj"),
        _row("sigmoid_cnn-sartaj", "test", degenerate=True, trained_on="sartaj"),
        _row("relu_cnn-sartaj", "test", trained_on=None),
    ]))
    assert list(table["name"]) == ["compact CNN (crop-union-bn)", "sigmoid CNN (constant)",
                                   "ReLU CNN"]
    assert list(table["trained_on"]) == ["Nickparvar + Sartaj", "Sartaj", "Sartaj"]
