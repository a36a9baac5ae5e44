"""The "What we found" paragraphs: the run's numbers appear, formatted as the chapters
format them, and each interpretation follows the numbers it rests on. Also the chapter
01c tables that moved into the library, and where each chapter shows its paragraph."""

from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pandas as pd
import pytest

from brainmri import CLASS_NAMES
from brainmri.core import paths
from brainmri.core.runfolder import RunFolder
from brainmri.data import provenance
from brainmri.data.duplicates import Overlap
from brainmri.data.pixels import PixelSpec
from brainmri.evaluation import metrics, predictions, published, shortcuts, variance
from brainmri.report import findings
from brainmri.report.experiment import Result
from brainmri.report.notebook import Params

LEAD = "**What we found.**"


# --- 01 -----------------------------------------------------------------------------


def _counts(dataset, table):
    return pd.DataFrame([(dataset, s, c, n) for (s, c), n in table.items()],
                        columns=["dataset", "split", "class", "n"])


def _inventory(sizes_modes):
    return pd.DataFrame([{"ok": True, "width": w, "height": h, "mode": m}
                         for (w, h, m), k in sizes_modes.items() for _ in range(k)])


def test_data_exploration_counts_balance_sizes_and_skips():
    counts = {
        "sartaj": _counts("sartaj", {("train", "glioma"): 661, ("train", "no_tumor"): 316,
                                     ("val", "glioma"): 165, ("val", "no_tumor"): 79,
                                     ("test", "glioma"): 100, ("test", "no_tumor"): 105}),
        "br35h": _counts("br35h", {("test", "tumour"): 835, ("test", "no_tumor"): 1500}),
    }
    inventories = {"sartaj": _inventory({(512, 512, "RGB"): 3, (236, 236, "L"): 1}),
                   "br35h": _inventory({(225, 225, "RGB"): 2})}
    text = findings.data_exploration(counts, inventories, pd.DataFrame())
    assert text.startswith(LEAD)
    assert "The splits hold: sartaj 977 training, 244 validation and 205 test images; " \
           "br35h 2,335 test images." in text
    assert "no_tumor in sartaj (316 images, 48% of the largest, glioma, with 661)" in text
    assert "512 x 512 in sartaj (75% of its files)" in text
    assert "75% and 100% of their files" in text
    assert "Every one of the 6 files could be decoded." in text
    assert "differ in size or storage" in text

    uniform = {"br35h": _inventory({(225, 225, "RGB"): 2})}
    skipped = pd.DataFrame({"path": ["a.jpg"], "error": ["truncated"]})
    text = findings.data_exploration({"br35h": counts["br35h"]}, uniform, skipped)
    assert "1 of the 2 files could not be used" in text
    assert "100% of its files are stored as RGB" in text
    assert "share one size and one colour mode" in text
    assert "smallest training class" not in text  # an evaluation-only dataset has none


# --- 01b ----------------------------------------------------------------------------


def _audit_summary(n_test, exact, near, per_class, agreement=1.0):
    return {"rule": {"max_distance": 4, "min_correlation": 0.95}, "n_test": n_test,
            "test_images_with_exact_copy_in_training": exact,
            "test_images_with_near_copy_in_training": near,
            "test_images_with_copy_in_training": exact + near,
            "share_of_test_with_copy_in_training": (exact + near) / n_test,
            "cross_split_pairs_label_agreement": agreement,
            "per_class": {label: {"test_images": t, "with_copy_in_training": w}
                          for label, (t, w) in per_class.items()}}


def test_leakage_audit_reports_copies_per_dataset_and_across():
    summaries = {"sartaj": _audit_summary(
        394, 88, 174, {"glioma": (100, 20), "no_tumor": (105, 105), "meningioma": (115, 110),
                       "pituitary": (74, 27)}, agreement=0.99087)}
    shared = {"datasets": "sartaj & nickparvar", "shared images of the first": 2539,
              "shared images of the second": 2824, "exact pairs": 0, "labels agree": 0.998}
    text = findings.leakage_audit(summaries, 0.9, 10, shared)
    assert text.startswith(LEAD)
    assert "at most 4 bits apart, thumbnails correlated at 0.95 or more" in text
    assert "finds 90% of 10 planted copies" in text
    assert "262 of the 394 test images (66.5%)" in text
    assert "88 byte-identical, 174 near" in text
    assert "near), by class from 20 of 100 glioma images to 105 of 105 no_tumor images;" in text
    assert "same label in 99.1% of the pairs" in text
    assert "2,539 sartaj images have a copy in nickparvar (2,824 nickparvar" in text
    assert "scores every model again" in text


def test_leakage_audit_without_any_copy_says_so():
    summaries = {"sartaj": _audit_summary(10, 0, 0, {"glioma": (10, 0)}, agreement=None)}
    text = findings.leakage_audit(summaries, 1.0, 5, None)
    assert "0 of the 10 test images (0.0%)" in text
    assert "No test image has a copy in training" in text
    assert "Across datasets" not in text and "same label" not in text


# --- 01c: the tables -----------------------------------------------------------------


@pytest.fixture
def collections():
    """Sartaj files, and its overlaps with Br35H and Nickparvar."""
    sartaj = pd.DataFrame({
        "path": [f"s{i}" for i in range(8)],
        "official_split": ["train"] * 4 + ["test"] * 4,
        "label": ["glioma", "glioma", "no_tumor", "pituitary",
                  "glioma", "glioma", "glioma", "no_tumor"]})

    def overlap(other, pairs):
        return Overlap((other, "sartaj"), pd.DataFrame(
            [{f"{other}_path": f"{other}{i}", "sartaj_path": s, f"{other}_label": lab,
              f"{other}_split": split, "sartaj_split": "x", "distance": 0, "exact": True}
             for i, (s, lab, split) in enumerate(pairs)]))

    br35h = overlap("br35h", [("s4", "tumour", "test"), ("s5", "tumour", "test"),
                              ("s0", "tumour", "test"), ("s7", "no_tumor", "test")])
    nick = overlap("nickparvar", [("s4", "glioma", "train"), ("s4", "glioma", "test"),
                                  ("s6", "meningioma", "train")])
    return sartaj, br35h, nick


def test_provenance_tables_of_the_source_audit(collections, tmp_path):
    sartaj, br35h, nick = collections
    by_source = provenance.class_by_source(sartaj.assign(source=["figshare"] * 6 + ["br35h"] * 2))
    assert by_source.loc[("All", ""), "All"] == 8
    assert by_source.loc[("test", "no_tumor"), "br35h"] == 1

    run = RunFolder.at(tmp_path).create()
    assert provenance.test_copies(run, "sartaj").empty
    run.test_with_copy("sartaj").parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"test_path": ["s6"]}).to_csv(run.test_with_copy("sartaj"), index=False)
    leaked = provenance.test_copies(run, "sartaj")
    hard = provenance.test_without_copy(sartaj, "glioma", leaked)
    assert hard["path"].tolist() == ["s4", "s5"]

    copies = provenance.copies_of(hard["path"], br35h, "sartaj")
    assert sorted(copies["sartaj_path"]) == ["s4", "s5"]
    elsewhere = provenance.labels_elsewhere(hard["path"], {"nickparvar": nick, "br35h": br35h},
                                            "sartaj", "gliomas")
    assert elsewhere.loc["glioma", "gliomas with a copy in nickparvar"] == 1  # s4, twice
    assert elsewhere.loc["tumour", "gliomas with a copy in br35h"] == 2
    assert elsewhere.loc["tumour", "gliomas with a copy in nickparvar"] == 0

    by_origin = provenance.split_class_by_copy(sartaj, br35h, "sartaj", "Br35H")
    assert list(by_origin.columns) == ["copy in Br35H", "no copy in Br35H"]
    assert by_origin.loc[("test", "glioma"), "copy in Br35H"] == 2
    assert by_origin.loc[("train", "glioma"), "copy in Br35H"] == 1

    files = pd.DataFrame({"path": ["a", "b", "c"], "label": ["tumour", "tumour", "no_tumor"]})
    marked = provenance.mark_in_training(files, pd.DataFrame({"path": ["a"]}))
    assert marked["in_training"].tolist() == [True, False, False]
    table = provenance.external_table(marked)
    assert table.loc["tumour", "new: external test"] == 1
    assert table.loc["All", "All"] == 3
    assert provenance.new_images(marked, "tumour")["path"].tolist() == ["b"]


def test_shortcut_check_summarises_the_statistics_only_classifier():
    rng = np.random.default_rng(0)
    labels = pd.Series(["glioma", "meningioma", "no_tumor", "pituitary"] * 50)
    assert set(shortcuts.tumour_or_not(labels)) == {"tumour", "no_tumor"}
    tumour = (labels != "no_tumor").to_numpy()
    features = pd.DataFrame({"a": np.where(tumour, 1.0, 0.0) + rng.normal(0, .01, 200),
                             "b": rng.normal(size=200)})
    other = pd.DataFrame({"a": np.zeros(6), "b": np.zeros(6)})  # look like no-tumour images
    home, summary = shortcuts.shortcut_check(features, labels, other, "Br35H", seed=0)
    assert summary["home: tumour vs none, cross-validated accuracy"] == home["accuracy"] == 1.0
    assert summary["home: majority baseline"] == 0.75
    assert summary["Br35H new tumour images"] == 6
    assert summary["Br35H new tumour images called no_tumor"] == 1.0


# --- 01c: the paragraph ---------------------------------------------------------------


def _by_source(no_tumour, tumour):
    rows = {("train", "no_tumor"): no_tumour, ("train", "glioma"): tumour}
    frame = pd.DataFrame(rows).T
    frame.index.names = ["official_split", "label"]
    frame.loc[("All", ""), :] = frame.sum()
    return frame.astype(int)


def _shortcut(home, baseline, called):
    return {"home: tumour vs none, cross-validated accuracy": home,
            "home: majority baseline": baseline, "Br35H new tumour images": 756,
            "Br35H new tumour images called no_tumor": called}


def _by_origin(test_glioma, train_glioma):
    index = pd.MultiIndex.from_tuples([("test", "glioma"), ("train", "glioma")],
                                      names=["official_split", "label"])
    return pd.DataFrame({"copy in Br35H": [test_glioma[0], train_glioma[0]],
                         "no copy in Br35H": [test_glioma[1], train_glioma[1]]}, index=index)


def test_source_audit_numbers_and_the_readings_they_support():
    by_source = _by_source({"br35h": 1131, "sartaj": 865, "figshare": 0},
                           {"br35h": 0, "sartaj": 1959, "figshare": 3064})
    copies = pd.DataFrame({"sartaj_path": ["s1", "s2", "s2"], "br35h_label": ["tumour"] * 3})
    text = findings.source_audit(by_source, _shortcut(0.985, 0.716, 0.66), 100, copies,
                                 _by_origin((45, 55), (3, 497)))
    assert text.startswith(LEAD)
    assert "come from Br35H\n(1,131) and Sartaj (865), none from\nfigshare" in text
    assert "figshare (3,064) and Sartaj\n(1,959), none from Br35H (0)." in text
    assert "98.5% cross-validated accuracy" in text and "majority class: 71.6%" in text
    assert "calls 66.0% of Br35H's\n756 new tumour images" in text
    assert "and it fails on a new collection" in text
    assert "Of the 100 Sartaj test gliomas" in text
    assert "2 have a copy in Br35H, labelled tumour there" in text
    assert "none contradicts Sartaj's label" in text
    assert "45% of Sartaj's test gliomas have a Br35H copy against\n0.6% of its training" in text
    assert "The hard gliomas are not label\nnoise" in text

    # other numbers, other readings
    by_source = _by_source({"br35h": 10, "sartaj": 5, "figshare": 7},
                           {"br35h": 4, "sartaj": 20, "figshare": 30})
    copies = pd.DataFrame({"sartaj_path": ["s1"], "br35h_label": ["no_tumor"]})
    text = findings.source_audit(by_source, _shortcut(0.7, 0.716, 0.1), 3, copies,
                                 _by_origin((1, 9), (5, 5)))
    assert "and 7 from\nfigshare" in text and "and 4 from Br35H." in text
    assert "offer no shortcut" in text
    assert "some contradict Sartaj's label" in text and "label noise" in text
    text = findings.source_audit(by_source, _shortcut(0.99, 0.7, 0.005), 3,
                                 copies.assign(br35h_label="tumour"), _by_origin((1, 9), (5, 5)))
    assert "still finds most tumours" in text
    assert "do not\nsingle out the test gliomas" in text


# --- 02 -----------------------------------------------------------------------------


def _variance_stats(factor):
    report = published.VARIANCE_000
    return {"n_images": 2297, "n_features": 196608,
            "intra": {k: v * factor for k, v in report["intra"].items()},
            "inter": report["inter"] * factor, "R_report": report["R_report"] * factor,
            "between_over_within": 0.0778, "explained_share": 0.0722, "f_ratio": 59.5}


def test_variance_against_the_report():
    stats = _variance_stats(1.01)
    text = findings.variance(stats, variance.compare_with_report(stats))
    assert text.startswith(LEAD)
    assert "On 2,297 images of 196,608 values each" in text
    assert f"against the report's {published.VARIANCE_000['inter']:,.4g} (+1.0%)" in text
    assert "R is 41.63 against 41.22 (+1.0%)" in text
    assert "by +1.0% to +1.0%" in text
    assert "within 5% of the report's, so this run reproduces them" in text
    assert "explains 7.2% of the pixel variance (B / W = 0.078)" in text
    assert "F ratio is 59.5: the class means differ (F above 1), but by little" in text

    stats = {**_variance_stats(0.5), "explained_share": 0.7, "f_ratio": 0.8}
    text = findings.variance(stats, variance.compare_with_report(stats))
    assert "largest relative difference is -50.0%" in text
    assert "does not reproduce" in text
    assert "barely differ (F at most 1), and by more than the spread" in text


# --- 03 -----------------------------------------------------------------------------


def test_preprocessing_arrays_and_the_min_max_check():
    shapes = pd.DataFrame([{"split": "train", "shape": "(2297, 256, 256, 1)", "MB": 143.6},
                           {"split": "val", "shape": "(573, 256, 256, 1)", "MB": 35.8},
                           {"split": "test", "shape": "(394, 256, 256, 1)", "MB": 24.6}])
    text = findings.preprocessing(PixelSpec(256, "grayscale", "area"), "standardize", shapes,
                                  2.4e-7)
    assert text.startswith(LEAD)
    assert "a 256 x 256 grayscale array (area resampling)" in text
    assert "`standardize`" in text
    assert "2,297 training, 573 validation and 394 test images, 204.0 MB" in text
    assert "at most 2.4e-07: float rounding only" in text
    text = findings.preprocessing(PixelSpec(32, "rgb", "area", "head"), "unit", shapes, 0.5)
    assert "cropped to the head" in text and "more than float rounding" in text


# --- model chapters -------------------------------------------------------------------


def _frame(labels, predicted, split, eval_dataset=None, scale=3.0):
    """A predictions frame: ``labels`` and the class predicted for each image."""
    logits = np.zeros((len(labels), len(CLASS_NAMES)))
    logits[np.arange(len(labels)), [CLASS_NAMES.index(c) for c in predicted]] = scale
    files = pd.DataFrame({"path": [f"{split}{i}.jpg" for i in range(len(labels))],
                          "label": labels})
    probs = metrics.softmax(logits)
    return predictions.predictions_frame(files, logits, probs, "m", "sartaj", split, seed=0,
                                         eval_dataset=eval_dataset)


def _result(model_name, dataset, labels, predicted, history, extra=None, **params):
    p = Params(chapter="test", run=None, model_name=model_name, dataset=dataset,
               learning_rate=1e-3, patience=3, ece_bins=15, **params)
    frames = {"val": _frame(labels, predicted, "val"), "test": _frame(labels, predicted, "test"),
              **(extra or {})}
    return Result(p, None, None, None, history, frames, temperature=1.5)


def test_model_chapter_from_a_real_result():
    labels = list(CLASS_NAMES) * 2
    predicted = ["glioma", "meningioma", "no_tumor", "glioma"] * 2  # pituitary missed
    history = pd.DataFrame({"val_loss": [1.0, 0.8, 0.9, 0.95], "phase": "train"})
    external = _frame(["glioma", "no_tumor"], ["glioma", "glioma"], "external", "nickparvar")
    detection = _frame(["tumour"] * 4, ["glioma", "no_tumor", "pituitary", "meningioma"],
                       predictions.DETECTION_SPLIT, "br35h")
    result = _result("relu_cnn", "sartaj", labels, predicted, history, epochs=6,
                     extra={"external": external, predictions.DETECTION_SPLIT: detection})
    ours = result.versus_published()["this run"]
    text = findings.model_chapter(result)
    assert text.startswith(LEAD)
    assert "`relu_cnn` reaches 75.0% test accuracy on the 8 test images of sartaj" in text
    assert f"weighted F1 {ours['f1_w']:.3f} and macro F1 {ours['f1_macro']:.3f}" in text
    assert "stopped early after 4 of the 6 epochs allowed, keeping the weights of epoch 2, " \
           "the lowest validation loss." in text
    assert "published figure for the same model is 67.0%: ours is 8.0 points higher, " \
           "within the ±30.0 points 95 % sampling margin" in text
    assert "measured on 8 images" in text
    assert "temperature fitted on validation is 1.50, above 1" in text
    calibration = result.calibration().iloc[0]
    assert f"{calibration['ECE before']:.3f} to {calibration['ECE after']:.3f}" in text
    assert "50.0% accuracy on nickparvar test (external)" in text
    assert "75.0% tumour sensitivity on br35h tumour images (all), images that also " \
           "appear in a training folder included; chapter 09 removes those" in text
    assert "Its test predictions use only 3 of the 4 classes (glioma, meningioma and " \
           "no_tumor)." in text



def _fake(model_name, dataset, accuracy, n, published_accuracy, test, history, calibration,
          **params):
    """A stand-in for experiment.Result with the tables given."""
    column = f"published: {published.BEST_PUBLISHED[dataset]}" \
        if published.reported(model_name, dataset) is None else f"published: {model_name}"
    versus = pd.DataFrame({"this run": {"accuracy": accuracy, "f1_w": 0.5, "f1_macro": 0.4},
                           column: {"accuracy": published_accuracy}})
    p = Params(chapter="test", run=None, model_name=model_name, dataset=dataset, **params)
    return SimpleNamespace(p=p, test=test.head(n) if len(test) > n else test,
                           history=history, versus_published=lambda: versus,
                           calibration=lambda: calibration)


def _calibration(t, before, after):
    return pd.DataFrame({"temperature": [t], "ECE before": [before], "ECE after": [after],
                         "accuracy": [0.9]}, index=["nickparvar test"])


def test_model_chapter_wording_follows_the_numbers():
    test = pd.DataFrame({"prediction": list(CLASS_NAMES) * 100})
    full = pd.DataFrame({"val_loss": np.linspace(1, .5, 40), "phase": "train"})
    result = _fake("compact_cnn", "nickparvar", 0.7, 400, 0.9908, test, full,
                   _calibration(0.56, 0.05, 0.08), epochs=40, learning_rate=2e-3, patience=10,
                   variant="crop")
    text = findings.model_chapter(result)
    assert "`compact_cnn+crop` reaches 70.0%" in text
    assert "trained for all 40 epochs allowed, keeping the weights of epoch 40" in text
    assert "best published model on this test set, `convnext_tiny`, reached 99.1%: ours is " \
           "29.1 points lower, beyond the ±4.5 points" in text
    assert "0.56, below 1: the raw probabilities were underconfident" in text
    assert "raises the test ECE from 0.050 to 0.080" in text
    assert "only" not in text and "Outside" not in text
    assert text.endswith("one training run scored on one test set; chapter 09 adds confidence "
                         "intervals, paired tests between models and the test set without the "
                         "images that also appear in training.")
    one_epoch = _fake("compact_cnn", "nickparvar", 0.7, 400, 0.9908, test, full.head(1),
                      _calibration(0.56, 0.05, 0.08), epochs=1, learning_rate=2e-3,
                      patience=10)
    text = findings.model_chapter(one_epoch)
    assert "it trained for the one epoch allowed." in text

    # a collapsed model, trained without restoring the best epoch; the gradient check
    collapsed = pd.DataFrame({"prediction": ["pituitary"] * 8})
    result = _fake("sigmoid_cnn", "sartaj", 0.25, 8, 0.25, collapsed, full.head(6),
                   _calibration(1.0, 0.1, 0.1), epochs=6, learning_rate=1e-3, patience=3,
                   restore_best=False)
    norms = pd.DataFrame({"relu, initial": [2e-2, 1e-2], "sigmoid, initial": [2e-5, 1e-3]},
                         index=["conv1", "conv2"])
    text = findings.model_chapter(result, norms)
    assert "keeping the last epoch's weights" in text
    assert "is 25.0%, the same as ours" in text
    assert "Every test image is called pituitary: the model has collapsed" in text
    assert "exactly 1" in text and "leaves the test ECE at 0.100" in text
    assert "first layer (`conv1`) is 1,000 times smaller with sigmoid than with ReLU units " \
           "(2.00e-05 against 2.00e-02)" in text


def test_model_chapter_of_a_transfer_model_counts_both_phases():
    test = pd.DataFrame({"prediction": list(CLASS_NAMES)})
    history = pd.DataFrame({"val_loss": [0.5, 0.9, 0.8, 0.7],
                            "phase": ["head", "head", "finetune", "finetune"]})
    result = _fake("inception_v3", "sartaj", 0.5, 4, 0.71, test, history,
                   _calibration(2.0, 0.3, 0.1), head_epochs=2, finetune_epochs=3,
                   head_learning_rate=1e-3, finetune_learning_rate=1e-4, unfreeze_from=200,
                   patience=5)
    text = findings.model_chapter(result)
    assert "stopped early after 4 of the 5 epochs allowed, keeping the weights of epoch 4, " \
           "the lowest validation loss of its last phase" in text
    assert "2.00, above 1: the raw probabilities were overconfident" in text
    assert "lowers the test ECE from 0.300 to 0.100" in text


# --- 11 -----------------------------------------------------------------------------


def test_tryout_example_right_wrong_flagged_and_missing():
    meta = {"model": "compact_cnn", "dataset": "nickparvar", "temperature": 0.5577,
            "training": {"variant": "crop-union-bn"}}
    probabilities = pd.Series([0.91, 0.05, 0.03, 0.01], index=list(CLASS_NAMES))
    example = SimpleNamespace(path=Path("data/Testing/glioma/Te-gl_0013.jpg"),
                              prediction="glioma", probabilities=probabilities, warning="")
    text = findings.tryout(example, meta)
    assert text.startswith(LEAD)
    assert "`compact_cnn+crop-union-bn`, trained on nickparvar" in text
    assert "temperature 0.56" in text
    assert "**glioma** with probability 91.0%, and raises no warning." in text
    assert "filed under glioma, so the answer is right" in text

    wrong = SimpleNamespace(**{**vars(example), "path": Path("Testing/notumor/x.jpg"),
                               "warning": "unusual image"})
    text = findings.tryout(wrong, {**meta, "training": {}})
    assert "`compact_cnn`, trained" in text
    assert "flags it: unusual image." in text
    assert "filed under no_tumor, so the answer is wrong" in text
    tumour = SimpleNamespace(**{**vars(example), "path": Path("yes/y1.jpg")})
    assert "filed under tumour, so the answer is right" in findings.tryout(tumour, meta)
    elsewhere = SimpleNamespace(**{**vars(example), "path": Path("/tmp/upload.png")})
    assert "filed under" not in findings.tryout(elsewhere, meta)

    text = findings.tryout(None, None)
    assert text.startswith(LEAD) and "No worked example could run" in text


# --- where the chapters show it --------------------------------------------------------

GENERATED = ["01_data_exploration", "01b_leakage_audit", "01c_source_audit",
             "02_variance_analysis", "03_preprocessing", "05_relu_cnn", "06_relu_cnn_augmented",
             "07_sigmoid_cnn", "08b_compact_cnn", "11_try_the_model"]


@pytest.mark.parametrize("chapter", GENERATED)
def test_chapter_ends_with_its_generated_paragraph(chapter):
    nb = nbformat.read(paths.notebooks_dir() / f"{chapter}.ipynb", 4)
    last = nb.cells[-1]
    assert last.cell_type == "code" and "remove-input" in last.metadata.get("tags", [])
    assert "Markdown(findings." in last.source and not last.outputs


@pytest.mark.parametrize("chapter", ["04_inceptionv3", "08_convnext_tiny"])
def test_transfer_chapter_says_what_it_measures_before_it_can_stop(chapter):
    """A skipped chapter keeps only the cells up to the one that failed (the runner), so
    the paragraph sits before the training cell, and holds no measured number."""
    nb = nbformat.read(paths.notebooks_dir() / f"{chapter}.ipynb", 4)
    run = next(i for i, c in enumerate(nb.cells) if "experiment.run(" in c.source)
    before = nb.cells[run - 1]
    assert before.cell_type == "markdown" and before.source.startswith(LEAD)
    assert "quoted, not reproduced" in before.source and "%" not in before.source
