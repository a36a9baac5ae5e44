"""The benchmark table from saved predictions, and the explainability checks."""

import numpy as np
import pandas as pd
import pytest

from brainmri.core.runfolder import RunFolder
from brainmri.evaluation import attributions, benchmark, explain, map_checks
from brainmri.modeling import builders as models
from brainmri.modeling import saved
from brainmri.report.publish import blocks
from brainmri.report.publish import tables as readme_table

SCORING = {"target_sensitivity": 0.99, "n_bootstrap": 200, "seed": 0, "ece_bins": 15}


def test_benchmark_scores_test_and_deduplicated_sets(trained_run_copy):
    run = RunFolder(trained_run_copy[0])
    test = pd.read_csv(run.predictions("compact_cnn-sartaj", "test"))
    leaked = test["path"].iloc[:5]
    run.test_with_copy("sartaj").parent.mkdir(exist_ok=True)
    pd.DataFrame({"test_path": leaked}).to_csv(run.test_with_copy("sartaj"), index=False)
    table = benchmark.benchmark(run, **SCORING)
    rows = table.set_index("eval_set")
    assert set(rows.index) == {"test", "test_dedup"}
    assert rows.loc["test", "n"] == len(test) and rows.loc["test_dedup", "n"] == len(test) - 5
    for column in benchmark.COLUMNS:
        assert column in table.columns
    t = rows.loc["test"]
    assert t["acc_ci_low"] <= t["accuracy"] <= t["acc_ci_high"]
    assert t["temperature"] > 0 and 0 <= t["ece"] <= 1
    assert 0 < t["threshold"] <= 1 and 0 <= t["tumour_sensitivity_thr"] <= 1


def test_readme_and_model_card_tables_come_from_metrics_csv(trained_run):
    table = benchmark.benchmark(RunFolder(trained_run[0]), **SCORING)
    page = "intro\n<!-- results:start -->\nstale\n<!-- results:end -->\noutro\n"
    readme = blocks.render_block(page, "results", readme_table.table(table),
                                       "results/demo/metrics.csv", "demo")
    card = blocks.render_block(page, "results", readme_table.card_table(
        table[table["model"] == "compact_cnn"]), "results/demo/metrics.csv", "demo")
    for text in (readme, card):
        assert "stale" not in text and text.startswith("intro") and text.endswith("outro\n")
        row = table.iloc[0]
        assert f"{100 * row['accuracy']:.1f}" in text  # the number, not a placeholder
        assert f"{100 * row['acc_ci_low']:.1f}" in text


def test_mcnemar_table_pairs_models_on_the_same_images(trained_run, tmp_path):
    test = pd.read_csv(RunFolder(trained_run[0]).predictions("compact_cnn-sartaj", "test"))
    other = test.copy()
    other["model"] = "always_glioma"
    other["prediction"] = "glioma"
    (tmp_path / "predictions").mkdir()
    test.to_csv(tmp_path / "predictions" / "a-sartaj_test.csv", index=False)
    other.to_csv(tmp_path / "predictions" / "b-sartaj_test.csv", index=False)
    table = benchmark.mcnemar_table(RunFolder(tmp_path))
    assert len(table) == 1 and table.loc[0, "n"] == len(test)
    assert table.loc[0, "b"] + table.loc[0, "c"] == int(
        ((test["prediction"] == test["label"]) != (other["prediction"] == other["label"])).sum())


@pytest.fixture(scope="module")
def explained(trained_run):
    run_dir, folder, data_root = trained_run
    model, meta = saved.load_saved(folder)
    frame = pd.read_csv(RunFolder(run_dir).predictions("compact_cnn-sartaj", "test")).head(6)
    raw, x = explain.images_for(frame, meta, data_root)
    y = frame["label"].map(["glioma", "meningioma", "no_tumor", "pituitary"].index).to_numpy()
    explainers = attributions.make_explainers(model, meta["gradcam_layer"], 4, 4)
    maps = attributions.explain(explainers, x, y)
    return model, x, y, raw, maps


def test_explained_images_are_read_by_the_predictions_paths(trained_run):
    """Chapter 10 explains the images the predictions name, whatever subset or order the
    predictions file has (it used to reload the whole test split and index it by row)."""
    from brainmri.data.pixels import PixelSpec, load_file

    run_dir, folder, data_root = trained_run
    _, meta = saved.load_saved(folder)
    frame = pd.read_csv(RunFolder(run_dir).predictions("compact_cnn-sartaj", "test"))
    picked = frame.sample(n=7, random_state=3)
    raw, _ = explain.images_for(picked, meta, data_root)
    spec = PixelSpec(meta["image_size"], meta["color_mode"], meta["resample"])
    root = data_root / "brain-tumor-classification-mri"
    for pixels, path in zip(raw, picked["path"]):
        assert np.array_equal(pixels, load_file(root / path, spec)), path


def test_every_explainer_gives_one_map_per_image(explained):
    _, x, _, _, maps = explained
    assert set(maps) == set(explain.EXPLAINERS)
    for m in maps.values():
        assert m.shape == x.shape[:3] and np.isfinite(m).all()


def test_faithfulness_and_sanity_scores_are_finite(explained):
    model, x, y, raw, maps = explained
    table = map_checks.faithfulness(model, x, y, maps, steps=4, mufidelity_samples=8, seed=0)
    assert list(table.columns) == ["deletion", "insertion", "mufidelity"]
    assert np.isfinite(table[["deletion", "insertion"]].to_numpy()).all()
    checks = map_checks.sanity_and_mass(model, x, y, raw, maps, 4, 4, seed=0, mask_threshold=0.1,
                                     randomisation_flag=0.5)
    assert ((checks["mass_in_brain"] >= 0) & (checks["mass_in_brain"] <= 1)).all()
    assert (checks["randomisation_similarity"].abs() <= 1).all()


def test_randomised_copy_has_new_weights(explained):
    model = explained[0]
    clone = map_checks.randomized_copy(model, seed=1)
    assert not np.allclose(clone.get_layer("logits").get_weights()[0],
                           model.get_layer("logits").get_weights()[0])


def test_brain_mask_and_mass_shares_on_a_known_image():
    img = np.zeros((1, 40, 40, 1), np.uint8)
    img[0, 10:30, 10:30] = 200  # a 20 x 20 "brain" = 25 % of the image
    mask = map_checks.brain_mask(img, 0.1)
    assert mask.sum() == 400
    inside = np.zeros((1, 40, 40))
    inside[0, 15:25, 15:25] = 1.0
    band = map_checks.contour_band(mask, width=1)
    shares = map_checks.mass_shares(inside, mask, band)
    assert shares["mass_in_brain"] == pytest.approx(1.0)
    assert shares["area_in_brain"] == pytest.approx(0.25)
    assert shares["mass_on_contour"] == pytest.approx(0.0)
    edge = np.zeros((1, 40, 40))
    edge[0, 10, 10:30] = 1.0
    assert map_checks.mass_shares(edge, mask, band)["mass_on_contour"] == pytest.approx(1.0)


def test_gradcam_reaches_the_transfer_models_named_layers():
    for name, shape in (("convnext_tiny", (32, 32, 3)), ("inception_v3", (75, 75, 3))):
        model = models.build(name, shape, weights="none")
        x = np.random.default_rng(0).normal(size=(1, *shape)).astype("float32")
        explainer = attributions.gradcam(model, models.GRADCAM_LAYER[name])
        cam = np.asarray(explainer(x, attributions.one_hot(np.array([0]))))
        assert cam.shape[1:3] == shape[:2] and np.isfinite(cam).all()


def _toy_run(root):
    """Hand-made predictions of one Sartaj model: 19 no-tumour test images all cleared;
    10 gliomas, 8 named, 1 called meningioma (still found), 1 called no tumour (missed);
    Br35H: 6 tumours, 5 found (its 3 no-tumour images are never scored)."""
    from brainmri import CLASS_NAMES
    from synthetic import saved_predictions

    four = list(CLASS_NAMES) * 3
    saved_predictions(root, "toy", "sartaj", "val", four, four)
    labels = ["no_tumor"] * 19 + ["glioma"] * 10
    predicted = ["no_tumor"] * 19 + ["glioma"] * 8 + ["meningioma", "no_tumor"]
    saved_predictions(root, "toy", "sartaj", "test", labels, predicted)
    saved_predictions(root, "toy", "sartaj", "br35h", ["tumour"] * 6 + ["no_tumor"] * 3,
                      ["glioma"] * 5 + ["no_tumor"] * 4, eval_dataset="br35h")
    run = RunFolder(root)
    run.external_exclusions("br35h").parent.mkdir(parents=True)
    pd.DataFrame({"path": []}).to_csv(run.external_exclusions("br35h"), index=False)
    return run


def test_every_rate_carries_its_counts_and_wilson_interval(tmp_path):
    from brainmri.evaluation import metrics

    table = benchmark.benchmark(_toy_run(tmp_path), **SCORING)
    assert list(table.columns[1:len(benchmark.COLUMNS) + 1]) == benchmark.COLUMNS
    rows = table.set_index("eval_set")
    test = rows.loc["test"]
    assert (test["n"], test["correct"]) == (29, 27)
    assert test["accuracy"] == pytest.approx(27 / 29)
    assert (test["tumours"], test["tumours_found"], test["missed_tumours"]) == (10, 9, 1)
    assert (test["no_tumours"], test["no_tumours_cleared"]) == (19, 19)
    assert test["spec_wilson_low"] == pytest.approx(0.8318, abs=1e-4)  # 19/19: 0.83-1.00
    assert test["spec_wilson_high"] == pytest.approx(1.0)
    assert (test["sens_wilson_low"], test["sens_wilson_high"]) == pytest.approx(
        metrics.wilson(9, 10))
    for suffix in ("", "_thr"):  # the thresholded reading has its counts too
        assert test[f"tumours_found{suffix}"] == 10 - test[f"missed_tumours{suffix}"]
        assert test[f"no_tumours_cleared{suffix}"] == 19 - test[f"false_alarms{suffix}"]
        assert test[f"tumour_specificity{suffix}"] == pytest.approx(
            test[f"no_tumours_cleared{suffix}"] / 19)
        assert (test[f"spec_wilson_low{suffix}"], test[f"spec_wilson_high{suffix}"]) == \
            pytest.approx(metrics.wilson(test[f"no_tumours_cleared{suffix}"], 19))
    br35h = rows.loc["external_br35h"]
    assert (br35h["n"], br35h["tumours"], br35h["tumours_found"]) == (6, 6, 5)
    assert (br35h["sens_wilson_low"], br35h["sens_wilson_high"]) == pytest.approx(
        metrics.wilson(5, 6))
    # its specificity comes from the home test set, with that set's counts
    assert (br35h["no_tumours"], br35h["no_tumours_cleared"]) == (19, 19)
    assert br35h["spec_wilson_low"] == pytest.approx(test["spec_wilson_low"])
    assert br35h["spec_wilson_low_thr"] == pytest.approx(test["spec_wilson_low_thr"])


def test_a_model_naming_one_class_for_everything_is_degenerate(tmp_path):
    from brainmri import CLASS_NAMES
    from synthetic import saved_predictions

    run = _toy_run(tmp_path)  # "toy" names all four classes on validation
    labels = list(CLASS_NAMES) * 3
    saved_predictions(tmp_path, "constant", "sartaj", "val", labels, ["pituitary"] * 12)
    saved_predictions(tmp_path, "constant", "sartaj", "test", labels, ["glioma"] * 12)
    nearly = ["pituitary"] * 11 + ["no_tumor"]  # one image named otherwise: not degenerate
    saved_predictions(tmp_path, "nearly", "sartaj", "val", labels, nearly)
    saved_predictions(tmp_path, "nearly", "sartaj", "test", labels, nearly)
    table = benchmark.benchmark(run, **SCORING)
    flags = table.groupby("tag")["degenerate"].agg(set).to_dict()
    assert flags == {"toy-sartaj": {False}, "constant-sartaj": {True},
                     "nearly-sartaj": {False}}
    assert benchmark.degenerate_models(run) == {"constant-sartaj"}
    # ranges are taken without it: the constant model's 100 % sensitivity leads none
    kept = benchmark.informative(table)
    assert set(kept["tag"]) == {"toy-sartaj", "nearly-sartaj"}
    assert table["tumour_sensitivity"].max() == 1.0 > kept["tumour_sensitivity"].max()
    # the flag survives metrics.csv
    table.to_csv(tmp_path / "metrics.csv", index=False)
    assert set(benchmark.informative(pd.read_csv(tmp_path / "metrics.csv"))["tag"]) == \
        set(kept["tag"])


def test_a_degenerate_model_is_not_ranked_by_its_explainers():
    names = ["GradCAM", "SmoothGrad", "IntegratedGradients", "GuidedBackprop"]
    xai = pd.DataFrame({
        "model": ["good"] * 4 + ["constant"] * 4, "explainer": names * 2,
        "deletion": [0.3, 0.1, 0.2, 0.4, 0.24322, 0.24324, 0.24323, 0.24321],
        "insertion": [0.7, 0.5, 0.6, 0.4, 0.24322, 0.24324, 0.24323, 0.24321],
        "mufidelity": [0.2, 0.6, 0.4, 0.1, -0.07, 0.29, 0.02, -0.06],
        "randomisation_similarity": [0.1, 0.2, 0.3, 0.2, 0.1, 0.2, 0.9, 0.2],
        "flag_insensitive_to_weights": [False] * 4 + [False, False, True, False],
        "mass_in_brain": 0.8, "area_in_brain": 0.6, "mass_on_contour": 0.05,
        "area_on_contour": 0.05, "n_images": 8, "n_sanity": 4})
    ranks = explain.ranking(xai, {"constant"})
    assert ranks.loc["good", ["by_insertion", "by_deletion", "by_mufidelity"]].tolist() == [
        "GradCAM", "SmoothGrad", "SmoothGrad"]
    assert not ranks.loc["constant", "ranked"] and pd.isna(ranks.loc["constant", "by_insertion"])
    assert explain.ranking(xai, ())["ranked"].all()  # nothing known: every model ranked
    from brainmri.report.studies import summary

    assert list(summary.most_faithful(xai, {"constant"}).index) == ["good"]
