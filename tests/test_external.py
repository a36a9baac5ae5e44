"""External validity: the Br35H collection, the source audit's helpers, and the levers
that change what a model learns from (crop, batch-norm re-estimation)."""

import numpy as np
import pandas as pd
import pytest

from brainmri.core.errors import DatasetNotFoundError
from brainmri.core.runfolder import RunFolder
from brainmri.data import dataset, duplicates, provenance
from brainmri.data import sources as datasets
from brainmri.data.pixels import PixelSpec, crop_to_head
from brainmri.evaluation import benchmark, shortcuts
from brainmri.modeling import recalibrate
from brainmri.report.publish import blocks, tables
from synthetic import make_dataset

SCORING = {"target_sensitivity": 0.99, "n_bootstrap": 200, "seed": 0, "ece_bins": 15}


def test_br35h_is_binary_and_evaluation_only(tmp_path):
    make_dataset(tmp_path, "br35h", {"Testing": 5}, seed=2)
    spec = datasets.get_spec("br35h")
    assert spec.labels == ("tumour", "no_tumor") and spec.evaluation_only
    assert not datasets.get_spec("sartaj").evaluation_only
    ds = dataset.load("br35h", tmp_path, 0.2, 0)
    assert set(ds.files["split"]) == {"test"}  # nothing to train or select on
    assert ds.files.groupby("label").size().to_dict() == {"no_tumor": 5, "tumour": 5}
    assert ds.pixels_of(ds.files["path"][:3], PixelSpec(32, "rgb", "area")).shape == (3, 32, 32, 3)


def test_br35h_is_found_in_the_github_archive_layout(tmp_path):
    """The fallback download unpacks as <repo>-main/datasets/{yes,no}/."""
    make_dataset(tmp_path / "unzipped", "br35h", {"Testing": 2})
    nested = tmp_path / "repo-main" / "datasets"
    nested.parent.mkdir()
    (tmp_path / "unzipped" / "brain-tumor-detection").rename(nested)
    assert datasets._find_layout(tmp_path, datasets.get_spec("br35h")) == nested


def test_missing_or_empty_class_folder_is_named(tmp_path):
    root = make_dataset(tmp_path, "sartaj", {"Training": 2, "Testing": 2})
    for f in (root / "Testing" / "pituitary_tumor").iterdir():
        f.unlink()
    (root / "Training" / "meningioma_tumor").rename(root / "Training" / "meningioma")
    with pytest.raises(DatasetNotFoundError) as error:
        datasets.locate("sartaj", tmp_path)
    message = str(error.value)
    assert "Training/meningioma_tumor is missing" in message
    assert "Testing/pituitary_tumor is empty" in message
    assert "Expected layout" in message


def test_external_rows_score_only_tumour_images_without_a_training_copy(trained_run_copy):
    run = RunFolder(trained_run_copy[0])
    frame = pd.read_csv(run.predictions("compact_cnn-sartaj", "br35h"))
    tumours = frame[frame["label"] == "tumour"]
    assert len(tumours) and (frame["label"] == "no_tumor").any()
    assert "external_br35h" not in set(benchmark.benchmark(run, **SCORING)["eval_set"]), \
        "without the audit's exclusion list nothing may be scored"
    seen = tumours["path"].iloc[:3]
    run.external_exclusions("br35h").parent.mkdir(exist_ok=True)
    pd.DataFrame({"path": seen}).to_csv(run.external_exclusions("br35h"), index=False)
    rows = benchmark.benchmark(run, **SCORING).set_index("eval_set")
    row = rows.loc["external_br35h"]
    assert row["n"] == len(tumours) - 3
    kept = tumours[~tumours["path"].isin(seen)]
    called_tumour = kept[["p_glioma", "p_meningioma", "p_pituitary"]].sum(1) > kept["p_no_tumor"]
    assert row["tumour_sensitivity"] == pytest.approx(called_tumour.mean())
    assert row["missed_tumours"] == (~called_tumour).sum()
    assert row["sens_ci_low"] <= row["tumour_sensitivity"] <= row["sens_ci_high"]
    # the specificity that keeps "everything is a tumour" honest comes from home
    assert row["specificity_on"] in ("test", "test_dedup")  # dedup when the audit ran
    # the share predict would flag as unlike the training images, from the sidecar
    assert 0 <= row["ood_flagged"] <= 1 and 0 <= rows.loc["test", "ood_flagged"] <= 0.5
    home = rows.loc[row["specificity_on"]]
    assert row["no_tumours"] == home["no_tumours"] > 0
    assert row["tumour_specificity"] == pytest.approx(
        rows.loc[row["specificity_on"], "tumour_specificity"])
    # the README and model-card tables show the row, blank where a figure does not apply
    for rendered in (tables.table(rows.reset_index()), tables.card_table(rows.reset_index())):
        rows_shown = [x for x in rendered.splitlines() if x.startswith("|")]
        line = next(x for x in rows_shown if "external_br35h" in x)
        found = int(row["tumours"] - row["missed_tumours"])
        assert "nan" not in line and f"| {found}/{int(row['tumours'])} (" in line
        assert rows_shown[-1] == line  # after the home rows


def test_overlap_labels_agree_at_the_level_both_sets_can_say():
    pairs = pd.DataFrame({"br35h_label": ["tumour", "tumour", "no_tumor"],
                          "sartaj_label": ["glioma", "no_tumor", "no_tumor"],
                          "br35h_path": list("abc"), "sartaj_path": list("def"),
                          "exact": [False] * 3})
    assert duplicates.Overlap(("br35h", "sartaj"), pairs).summary()["label_agreement"] \
        == pytest.approx(2 / 3)
    row = duplicates.Overlap(("br35h", "sartaj"), pairs).shared_counts()
    assert row["datasets"] == "br35h & sartaj" and row["shared images of the first"] == 3
    same = pairs.assign(br35h_label=["glioma", "pituitary", "no_tumor"])
    assert duplicates.Overlap(("br35h", "sartaj"), same).summary()["label_agreement"] \
        == pytest.approx(2 / 3)


def _overlap(a, b, a_paths, b_paths, b_split, a_label="tumour", b_label="glioma"):
    n = len(a_paths)
    return duplicates.Overlap((a, b), pd.DataFrame({
        f"{a}_path": a_paths, f"{b}_path": b_paths, f"{a}_label": [a_label] * n,
        f"{b}_label": [b_label] * n, f"{a}_split": ["test"] * n, f"{b}_split": b_split,
        "distance": [0] * n, "exact": [True] * n}))


def test_sources_and_training_copies_follow_the_matches():
    files = pd.DataFrame({"path": ["n1", "n2", "n3", "n4"]})
    sources = provenance.nickparvar_sources(files, {
        "sartaj": _overlap("nickparvar", "sartaj", ["n1", "n2"], ["s1", "s2"], ["train"] * 2),
        "br35h": _overlap("nickparvar", "br35h", ["n2", "n3"], ["b2", "b3"], ["test"] * 2)})
    # n2 is in both: the first collection named wins; n4 is in neither: figshare
    assert sources.tolist() == ["sartaj", "sartaj", "br35h", provenance.FIGSHARE]
    seen = provenance.copies_in_training("br35h", {
        "sartaj": _overlap("br35h", "sartaj", ["b1", "b2"], ["s1", "s2"], ["train", "test"]),
        "nickparvar": _overlap("br35h", "nickparvar", ["b1", "b3"], ["n1", "n3"],
                               ["train", "train"])})
    assert seen.set_index("path")["copy_in"].to_dict() == {"b1": "nickparvar,sartaj",
                                                           "b3": "nickparvar"}
    assert seen.set_index("path")["copies"].to_dict() == {"b1": 2, "b3": 1}


def _head(frame_hw, box, value=180):
    image = np.zeros((*frame_hw, 3), np.uint8)
    (top, left), (h, w) = box
    yy, xx = np.mgrid[:h, :w]
    ellipse = ((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2 <= 1
    image[top:top + h, left:left + w][ellipse] = value
    return image


def test_crop_to_head_removes_framing_and_aspect():
    wide = _head((100, 300), ((20, 200), (60, 50)))  # small head, far right, wide frame
    crop = crop_to_head(wide, margin=0.0)
    assert crop.shape[0] == crop.shape[1] == 60
    assert crop.mean() > 0.5 * 180 * np.pi / 4 * 50 / 60  # mostly head, not background
    same_head = crop_to_head(_head((400, 400), ((10, 10), (60, 50))), margin=0.0)
    assert np.array_equal(crop, same_head)  # where and in what frame: no longer visible
    blank = np.zeros((40, 50, 3), np.uint8)
    assert crop_to_head(blank) is blank


def test_image_statistics_expose_a_framing_shortcut():
    rng = np.random.default_rng(0)
    small = [_head((64, 64), ((rng.integers(8, 16), rng.integers(8, 16)), (30, 30)),
                   int(rng.integers(120, 220))) for _ in range(40)]
    large = [_head((64, 64), ((rng.integers(0, 4), rng.integers(0, 4)), (58, 58)),
                   int(rng.integers(120, 220))) for _ in range(40)]
    stats = shortcuts.image_statistics(np.stack(small + large))
    assert len(stats) == 80 and stats.notna().all().all()
    source = pd.Series(["a"] * 40 + ["b"] * 40)
    check = shortcuts.source_predictability(stats, source, seed=0)
    assert check["accuracy"] > 0.95 and check["majority_baseline"] == 0.5
    assert check["confusion"].to_numpy().sum() == 80
    assert set(shortcuts.transfer(stats, source, stats.iloc[:5], seed=0)) == {"a"}
    # a collection whose every image has a copy in training leaves nothing to ask
    labels = pd.Series(["glioma"] * 40 + ["no_tumor"] * 40)
    _, shortcut = shortcuts.shortcut_check(stats, labels, stats.iloc[:0], "Br35H", seed=0)
    assert shortcut["Br35H new tumour images"] == 0
    assert np.isnan(shortcut["Br35H new tumour images called no_tumor"])


def test_batchnorm_reestimate_gives_the_exact_average_and_keeps_momentum():
    import keras

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.9)(inputs))
    rng = np.random.default_rng(0)
    arrays = [rng.normal(loc=5.0, scale=2.0, size=(8, 3)).astype("float32") for _ in range(6)]
    batches = [(arrays[0],), *arrays[1:]]  # tf.data yields an unlabelled batch as (images,)
    assert recalibrate.reestimate_batchnorm(model, batches) == 6
    layer = recalibrate.batchnorm_layers(model)[0]
    expected_mean = np.mean([b.mean(0) for b in arrays], axis=0)
    expected_var = np.mean([b.var(0) for b in arrays], axis=0)
    assert np.allclose(layer.moving_mean.numpy(), expected_mean, atol=1e-5)
    assert np.allclose(layer.moving_variance.numpy(), expected_var, rtol=1e-3)
    assert layer.momentum == 0.9


def test_restyle_gives_images_another_images_grey_levels_and_keeps_the_rest():
    from brainmri.data.restyle import match_styles

    rng = np.random.default_rng(0)
    dark = np.stack([_head((32, 32), ((4, 4), (24, 24)), 60) for _ in range(10)])
    bright = np.stack([_head((32, 32), ((4, 4), (24, 24)), 220) for _ in range(10)])
    images = np.concatenate([dark, bright]) + rng.integers(0, 3, (20, 32, 32, 3), np.uint8)
    before = images.copy()
    assert np.array_equal(match_styles(images, 0.0, seed=0), images)
    styled = match_styles(images, 1.0, seed=0)
    assert np.array_equal(images, before)  # the caller's arrays are never changed
    assert styled.dtype == images.dtype and styled.shape == images.shape
    # every image now carries one of the set's two styles, mixed across the two groups
    tissue_level = styled.reshape(20, -1).max(1)
    assert set(np.round(tissue_level, -1)) <= {60, 70, 220, 230}
    assert len(set(np.round(tissue_level[:10], -1))) == 2 or \
        len(set(np.round(tissue_level[10:], -1))) == 2
    with pytest.raises(ValueError, match="share"):
        match_styles(images, 1.5, seed=0)


def test_model_card_ablation_block_is_generated_from_the_run(tmp_path):
    ablation = pd.DataFrame({
        "model": ["compact_cnn+ablation-baseline", "compact_cnn+ablation-baseline+bn"],
        "val accuracy": [0.884, 0.931], "test accuracy": [0.868, 0.932],
        "test specificity": [0.99, 1.0], "dedup test specificity": [1.0, 1.0],
        "dedup test accuracy": [0.845, 0.918], "external sensitivity": [0.206, 0.398],
        "external CI low": [0.18, 0.36], "external CI high": [0.235, 0.43],
        "external n": [756, 756]})
    card = "# card\n<!-- ablation:start -->\nold\n<!-- ablation:end -->\nrest\n"
    text = blocks.render_block(card, "ablation", tables.ablation_table(ablation),
                               "results/demo/ablation.csv", "demo")
    assert "old" not in text and text.endswith("rest\n") and "results/demo/ablation.csv" in text
    assert "| compact_cnn+ablation-baseline+bn | 93.1 | 93.2 | 100.0 | 91.8 | 39.8 (36.0-43.0) " \
           "| 756 |" in text
    with pytest.raises(Exception, match="no <!-- results:start -->"):
        blocks.render_block(text, "results", "x", "metrics.csv", "demo")
    # a run that recorded the counts behind its home rates shows them (issue 28, rule 2)
    counted = ablation.assign(**{"val correct": [401, 422], "val images": [454, 454],
                                 "test correct": [354, 380], "test images": [408, 408],
                                 "test no-tumour images": [19, 19],
                                 "test false alarms": [1, 0]})
    row = tables.ablation_table(counted).splitlines()[-1]
    assert row.startswith("| compact_cnn+ablation-baseline+bn | 422/454 | 380/408 | 19/19 | ")


def _union_run(root, extra_training="sartaj", record="sidecar", audit_sartaj=True):
    """A Nickparvar model whose recipe may add Sartaj's training images, with its
    predictions on Sartaj's test set: s0 is shared by the two datasets, s1 has a copy in
    Sartaj's Training folder only (what the addition brings), s2-s5 are new."""
    import json

    import yaml

    from brainmri import CLASS_NAMES
    from synthetic import saved_predictions

    run = RunFolder(root)
    four = list(CLASS_NAMES) * 2
    model = "compact_cnn+union" if extra_training else "compact_cnn"
    for split in ("val", "test"):
        saved_predictions(root, model, "nickparvar", split, four, four)
    sartaj = [f"Testing/s{i}.jpg" for i in range(6)]
    saved_predictions(root, model, "nickparvar", "external", four[:6], four[:6],
                      paths=sartaj, eval_dataset="sartaj")
    run.overlap("nickparvar", "sartaj").parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"nickparvar_path": ["Training/n9.jpg"], "sartaj_path": [sartaj[0]],
                  "nickparvar_split": ["train"], "sartaj_split": ["test"]}
                 ).to_csv(run.overlap("nickparvar", "sartaj"), index=False)
    pd.DataFrame({"test_path": ["test/0.jpg"]}).to_csv(run.test_with_copy("nickparvar"),
                                                           index=False)
    if audit_sartaj:
        pd.DataFrame({"test_path": [sartaj[1]]}).to_csv(run.test_with_copy("sartaj"),
                                                        index=False)
    recipe = {"model_name": "compact_cnn", "dataset": "nickparvar",
              "variant": "union" if extra_training else None, "extra_training": extra_training}
    if record == "sidecar":
        folder = run.model_dir(f"{model}-nickparvar")
        folder.mkdir(parents=True)
        (folder / "model.json").write_text(json.dumps({"model": "compact_cnn",
                                                       "training": recipe}))
    elif record == "params":
        run.params.write_text(yaml.safe_dump({"steps": {"08b_compact_cnn-nickparvar": recipe}}))
    return run


@pytest.mark.parametrize("record", ["sidecar", "params"])
def test_external_row_leaves_out_copies_in_what_the_recipe_added(tmp_path, record):
    rows = benchmark.benchmark(_union_run(tmp_path, record=record), **SCORING
                               ).set_index("eval_set")
    row = rows.loc["external"]
    assert row["n"] == 4  # s0 (shared) and s1 (in Sartaj's Training folder) left out
    assert (row["excluded_copies"], row["excluded_recipe_copies"]) == (2, 1)
    assert (row["trained_on"], row["recipe_record"]) == ("nickparvar+sartaj", record)
    assert tuple(rows.loc["test_dedup", ["excluded_copies", "excluded_recipe_copies"]]) == (1, 0)


def test_external_row_keeps_images_the_model_never_trained_on(tmp_path):
    row = benchmark.benchmark(_union_run(tmp_path, extra_training=None), **SCORING
                              ).set_index("eval_set").loc["external"]
    assert row["n"] == 5  # s1's copy lies in Sartaj's Training folder, not seen
    assert (row["excluded_copies"], row["excluded_recipe_copies"]) == (1, 0)
    assert row["trained_on"] == "nickparvar"


def test_external_row_without_a_record_or_an_audit(tmp_path):
    # no record of the recipe: it may have added any collection, so s1 is left out too
    row = benchmark.benchmark(_union_run(tmp_path / "a", record=None), **SCORING
                              ).set_index("eval_set").loc["external"]
    assert (row["n"], row["recipe_record"], row["trained_on"]) == (
        4, "unknown", "nickparvar+sartaj")
    # the audit of Sartaj's own copies is missing: the row is not scored at all
    sets = benchmark.benchmark(_union_run(tmp_path / "b", audit_sartaj=False), **SCORING
                               )["eval_set"]
    assert "external" not in set(sets) and "test" in set(sets)
