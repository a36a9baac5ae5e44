"""Metric functions against values computed by hand."""

import numpy as np
import pytest

from brainmri import CLASS_NAMES
from brainmri.evaluation import metrics, published

G, M, N, P = (CLASS_NAMES.index(c) for c in ("glioma", "meningioma", "no_tumor", "pituitary"))


def one_hot_probs(pred, n=4, confidence=0.97):
    probs = np.full((len(pred), n), (1 - confidence) / (n - 1))
    probs[np.arange(len(pred)), pred] = confidence
    return probs


@pytest.fixture
def case():
    # 10 images. Errors: glioma->meningioma (1), glioma->no_tumor (1), no_tumor->pituitary (1)
    y = np.array([G, G, G, G, M, M, N, N, P, P])
    pred = np.array([G, G, M, N, M, M, N, P, P, P])
    return y, pred, one_hot_probs(pred)


def test_per_class_by_hand(case):
    y, _, probs = case
    table = metrics.per_class(y, probs)
    # glioma: TP 2, FN 2, FP 0 -> P 1, R .5 ; meningioma: TP 2, FP 1 -> P 2/3, R 1
    assert table.loc["glioma", ["precision", "recall", "fp", "fn"]].tolist() == [1, .5, 0, 2]
    assert table.loc["meningioma", "precision"] == pytest.approx(2 / 3)
    assert table.loc["no_tumor", ["precision", "recall", "fp", "fn"]].tolist() == pytest.approx(
        [.5, .5, 1, 1])
    assert table.loc["pituitary", ["precision", "recall", "fp", "fn"]].tolist() == pytest.approx(
        [2 / 3, 1, 1, 0])
    assert table["fp"].sum() == table["fn"].sum() == 3  # every error is one FP and one FN


def test_global_metrics_by_hand(case):
    y, _, probs = case
    g = metrics.global_metrics(y, probs)
    assert g["accuracy"] == pytest.approx(0.7)
    assert g["recall_w"] == pytest.approx(g["accuracy"])  # weighted recall is accuracy
    pw = (4 * 1 + 2 * (2 / 3) + 2 * 0.5 + 2 * (2 / 3)) / 10
    assert g["precision_w"] == pytest.approx(pw)
    f1 = {"g": 2 / 3, "m": 0.8, "n": 0.5, "p": 0.8}
    assert g["f1_w"] == pytest.approx((4 * f1["g"] + 2 * f1["m"] + 2 * f1["n"] + 2 * f1["p"]) / 10)
    assert g["f1_macro"] == pytest.approx(sum(f1.values()) / 4)
    assert g["f1_report"] == pytest.approx(2 * pw * 0.7 / (pw + 0.7))
    assert g["f1_report"] != pytest.approx(g["f1_w"])
    assert g["fp"] == g["fn"] == 3
    assert g["loss"] == pytest.approx(-np.mean(np.log(probs[np.arange(10), y])))


def test_report_f1_arithmetic_by_hand():
    classes = ("glioma", "meningioma", "no_tumor", "pituitary")
    figures = {"precision_w": 0.6, "recall_w": 0.4,
               "precision": dict(zip(classes, (1.0, 0.5, 0.0, 1.0))),
               "recall": dict(zip(classes, (0.5, 0.5, 0.0, 1.0))),
               "f1": dict(zip(classes, (0.1, 0.2, 0.3, 0.4)))}
    out = metrics.report_f1_arithmetic(figures, dict(zip(classes, (1, 2, 3, 4))))
    assert out["harmonic"] == pytest.approx(2 * 0.6 * 0.4 / 1.0)  # 0.48
    assert out["f1_weighted"] == pytest.approx((0.1 + 0.4 + 0.9 + 1.6) / 10)  # 0.3
    # 2PR/(P+R) per class; a class with P = R = 0 scores 0
    assert list(out["f1_from_pr"].values()) == pytest.approx([2 / 3, 0.5, 0.0, 1.0])
    assert out["f1_weighted_from_pr"] == pytest.approx((2 / 3 + 2 * 0.5 + 4 * 1.0) / 10)


def test_report_000_global_f1_is_the_weighted_f1_not_its_formula():
    """The metrics page's claim, on the published figures of the ReLU CNN."""
    relu = published.REPORT_000["relu_cnn"]
    out = metrics.report_f1_arithmetic(relu, published.REPORT_000_TEST_SUPPORT)
    assert round(out["harmonic"], 2) == 0.69 != relu["f1_report"]
    # the weighted F1 gives the published 0.62 or 0.63, within the rounding of the rows
    assert round(out["f1_weighted"], 2) == relu["f1_summary"]
    assert round(out["f1_weighted_from_pr"], 2) == relu["f1_report"]


def test_confusion_normalised_rows_sum_to_one(case):
    y, pred, _ = case
    cm = metrics.confusion(y, pred, "true")
    assert np.allclose(cm.sum(axis=1), 1)
    assert metrics.confusion(y, pred).loc["glioma", "meningioma"] == 1


def test_tumour_vs_none_by_hand(case):
    y, _, probs = case
    r = metrics.tumour_vs_none(y, probs)
    # 8 tumours; 1 called no_tumor (glioma -> no_tumor); 2 no-tumour, 1 called pituitary.
    assert (r["tumours"], r["missed_tumours"], r["false_alarms"]) == (8, 1, 1)
    assert r["tumour_sensitivity"] == pytest.approx(7 / 8)
    assert r["tumour_specificity"] == pytest.approx(1 / 2)
    assert r["missed_glioma"] == 1 and r["missed_meningioma"] == 0


def test_threshold_reaches_the_target_on_the_data_it_was_chosen_on():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 2000)
    probs = rng.dirichlet(np.ones(4), 2000)
    for target in (0.9, 0.99, 1.0):
        t = metrics.threshold_for_sensitivity(y, probs, target)
        sens = metrics.tumour_vs_none(y, probs, t)["tumour_sensitivity"]
        assert sens >= target
        # and it is the largest such threshold: a hair lower misses one more tumour
        lower = metrics.tumour_vs_none(y, probs, np.nextafter(t, 0) - 1e-12)
        assert lower["tumour_sensitivity"] <= sens


def test_threshold_by_hand():
    y = np.array([G, G, G, G, N])
    p_none = np.array([0.1, 0.2, 0.6, 0.9, 0.95])
    probs = np.column_stack([1 - p_none, np.zeros(5), p_none, np.zeros(5)])
    # target 0.75 allows floor(0.25 * 4) = 1 miss: threshold just above 0.6
    t = metrics.threshold_for_sensitivity(y, probs, 0.75)
    assert 0.6 < t < 0.6001
    assert metrics.tumour_vs_none(y, probs, t)["missed_tumours"] == 1


def test_ece_is_zero_when_confidence_matches_accuracy():
    rng = np.random.default_rng(1)
    n = 200_000
    conf = rng.uniform(0.3, 1.0, n)
    y = np.zeros(n, int)
    correct = rng.random(n) < conf
    probs = np.zeros((n, 4))
    probs[:, 0] = conf
    probs[:, 1] = 1 - conf
    y[~correct] = 1  # when wrong, the true class is another one
    assert metrics.ece(y, probs, 15) < 0.01


def test_ece_of_an_overconfident_model():
    y = np.array([0, 1] * 50)
    probs = np.tile([1.0, 0, 0, 0], (100, 1))  # always certain, right half of the time
    assert metrics.ece(y, probs, 15) == pytest.approx(0.5)


def test_temperature_recovers_the_generating_temperature():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3, (20_000, 4))
    true_t = 2.5
    p = metrics.softmax(logits, true_t)
    y = np.array([rng.choice(4, p=row) for row in p])
    assert metrics.fit_temperature(logits, y) == pytest.approx(true_t, rel=0.1)


def test_mcnemar_exact_and_chi_square():
    a = np.array([True] * 10 + [False] * 2 + [True] * 5)
    b = np.array([False] * 10 + [True] * 2 + [True] * 5)
    r = metrics.mcnemar(a, b)
    assert (r["b"], r["c"], r["method"]) == (10, 2, "exact")
    assert r["p_value"] == pytest.approx(2 * (1 + 12 + 66) / 4096)
    a = np.array([True] * 30 + [False] * 10)
    r = metrics.mcnemar(a, ~a)
    assert r["method"] == "chi2-cc" and r["statistic"] == pytest.approx(19 ** 2 / 40)
    assert r["p_value"] == pytest.approx(0.002663, rel=1e-3)


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 400)
    probs = one_hot_probs(np.where(rng.random(400) < 0.8, y, (y + 1) % 4))
    point, low, high = metrics.bootstrap_ci(y, probs, metrics.accuracy, n_resamples=1000, seed=0)
    assert low < point < high
    assert high - low == pytest.approx(2 * 1.96 * np.sqrt(0.8 * 0.2 / 400), rel=0.25)
    again = metrics.bootstrap_ci(y, probs, metrics.accuracy, n_resamples=1000, seed=0)
    assert again == (point, low, high)


def test_wilson_interval_on_few_cases():
    low, high = metrics.wilson(19, 19)  # 1.000 on 19 images is not a certainty
    assert low == pytest.approx(0.8318, abs=1e-4) and high == pytest.approx(1.0)
    low, high = metrics.wilson(0, 19)
    assert low == pytest.approx(0.0) and high == pytest.approx(1 - 0.8318, abs=1e-4)
    low, high = metrics.wilson(7, 10)
    assert (low, high) == (pytest.approx(0.3968, abs=1e-4), pytest.approx(0.8922, abs=1e-4))
    assert all(np.isnan(metrics.wilson(0, 0)))
