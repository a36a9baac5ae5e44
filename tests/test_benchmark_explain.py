"""The benchmark table from saved predictions, and the explainability checks."""

import numpy as np
import pandas as pd
import pytest

from brainmri.core.runfolder import RunFolder
from brainmri.evaluation import benchmark, explain
from brainmri.modeling import builders as models
from brainmri.modeling import saved
from brainmri.report import tables as readme_table

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


def test_readme_and_model_card_tables_come_from_metrics_csv(trained_run, tmp_path):
    table = benchmark.benchmark(RunFolder(trained_run[0]), **SCORING)
    metrics_file = tmp_path / "metrics.csv"
    table.to_csv(metrics_file, index=False)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{readme_table.START}\nstale\n{readme_table.END}\noutro\n")
    readme_table.update(readme, metrics_file, "demo")
    card = tmp_path / "card.md"
    card.write_text(readme.read_text())
    readme_table.update(card, metrics_file, "demo", model="compact_cnn")
    for text in (readme.read_text(), card.read_text()):
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
    maps = explain.explain(explain.make_explainers(model, meta["gradcam_layer"], 4, 4), x, y)
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
    table = explain.faithfulness(model, x, y, maps, steps=4, mufidelity_samples=8, seed=0)
    assert list(table.columns) == ["deletion", "insertion", "mufidelity"]
    assert np.isfinite(table[["deletion", "insertion"]].to_numpy()).all()
    checks = explain.sanity_and_mass(model, x, y, raw, maps, 4, 4, seed=0, mask_threshold=0.1)
    assert ((checks["mass_in_brain"] >= 0) & (checks["mass_in_brain"] <= 1)).all()
    assert (checks["randomisation_similarity"].abs() <= 1).all()


def test_randomised_copy_has_new_weights(explained):
    model = explained[0]
    clone = explain.randomized_copy(model, seed=1)
    assert not np.allclose(clone.get_layer("logits").get_weights()[0],
                           model.get_layer("logits").get_weights()[0])


def test_brain_mask_and_mass_shares_on_a_known_image():
    img = np.zeros((1, 40, 40, 1), np.uint8)
    img[0, 10:30, 10:30] = 200  # a 20 x 20 "brain" = 25 % of the image
    mask = explain.brain_mask(img, 0.1)
    assert mask.sum() == 400
    inside = np.zeros((1, 40, 40))
    inside[0, 15:25, 15:25] = 1.0
    band = explain.contour_band(mask, width=1)
    shares = explain.mass_shares(inside, mask, band)
    assert shares["mass_in_brain"] == pytest.approx(1.0)
    assert shares["area_in_brain"] == pytest.approx(0.25)
    assert shares["mass_on_contour"] == pytest.approx(0.0)
    edge = np.zeros((1, 40, 40))
    edge[0, 10, 10:30] = 1.0
    assert explain.mass_shares(edge, mask, band)["mass_on_contour"] == pytest.approx(1.0)


def test_gradcam_reaches_the_transfer_models_named_layers():
    for name, shape in (("convnext_tiny", (32, 32, 3)), ("inception_v3", (75, 75, 3))):
        model = models.build(name, shape, weights="none")
        x = np.random.default_rng(0).normal(size=(1, *shape)).astype("float32")
        explainer = explain.gradcam(model, models.GRADCAM_LAYER[name])
        cam = np.asarray(explainer(x, explain.one_hot(np.array([0]))))
        assert cam.shape[1:3] == shape[:2] and np.isfinite(cam).all()
