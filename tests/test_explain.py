"""Chapter 10: which models it explains (every chapter model, no study model, no silent
gap), the shared MuFidelity, the generated findings and the figure of each model's maps."""

import json
import shutil

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from brainmri import CLASS_NAMES  # noqa: E402
from brainmri.core.errors import BrainMRIError  # noqa: E402
from brainmri.core.runfolder import RunFolder  # noqa: E402
from brainmri.evaluation import attributions, explain, map_checks  # noqa: E402

#: Tiny settings: seconds per model on the 32 px synthetic compact CNN.
TINY = {"per_class": 1, "faithfulness_samples": 6, "ig_steps": 4, "smoothgrad_samples": 4,
        "scored_ig_steps": 2, "scored_smoothgrad_samples": 2, "deletion_steps": 3,
        "mufidelity_samples": 8, "sanity_samples": 3, "mask_threshold": 0.1,
        "randomisation_flag": 0.5, "seed": 0}

CHAPTER_TAGS = ["compact_cnn+crop-union-bn-sartaj", "compact_cnn-sartaj"]
STUDY_TAGS = ["compact_cnn+ablation-crop-sartaj", "relu_cnn+ablation-grayscale-6ep-seed7-sartaj",
              "compact_cnn+ablation-crop-union-seed7+bn-sartaj"]


@pytest.mark.parametrize("tag, explained", [
    ("relu_cnn-sartaj", True), ("relu_cnn_augmented-sartaj", True),
    ("sigmoid_cnn-sartaj", True), ("compact_cnn+crop-union-bn-nickparvar", True),
    ("compact_cnn+ablation-crop-union-nickparvar", False),
    ("compact_cnn+ablation-crop-union-seed7-nickparvar", False),
    ("relu_cnn+ablation-rgb-16ep-sartaj", False),
    ("compact_cnn+ablation-crop-union-seed2026+bn-nickparvar", False),
])
def test_the_rule_keeps_chapter_models_and_leaves_out_study_models(tag, explained):
    assert explain.is_explained(tag) is explained


def _add_model(run: RunFolder, source, tag: str, model_name: str = "compact_cnn") -> None:
    """A copy of the tiny trained model (and its predictions) under another tag."""
    shutil.copytree(source.model_dir("compact_cnn-sartaj"), run.model_dir(tag))
    meta = json.loads((run.model_dir(tag) / "model.json").read_text())
    (run.model_dir(tag) / "model.json").write_text(json.dumps({**meta, "model": model_name}))
    _add_predictions(run, source, tag)


def _add_predictions(run: RunFolder, source, tag: str) -> None:
    run.predictions(tag, "test").parent.mkdir(parents=True, exist_ok=True)
    for split in ("val", "test"):
        shutil.copy(source.predictions("compact_cnn-sartaj", split), run.predictions(tag, split))


@pytest.fixture(scope="module")
def study_run(trained_run, tmp_path_factory):
    """A run holding two chapter models and three study models (all the tiny CNN)."""
    source = RunFolder(trained_run[0])
    run = RunFolder(tmp_path_factory.mktemp("xai") / "run").create()
    for tag in CHAPTER_TAGS + STUDY_TAGS:
        _add_model(run, source, tag, "relu_cnn" if tag.startswith("relu") else "compact_cnn")
    return run, source, trained_run[2]


def test_models_to_explain_are_the_saved_chapter_models(study_run):
    run = study_run[0]
    assert set(run.saved_models()) == set(CHAPTER_TAGS + STUDY_TAGS)  # all on disk
    assert list(explain.models_to_explain(run)) == sorted(CHAPTER_TAGS)
    assert list(explain.models_to_explain(run, ["compact_cnn"])) == sorted(CHAPTER_TAGS)
    assert explain.models_to_explain(run, ["relu_cnn"]) == {}


def test_a_chapter_model_with_predictions_but_no_saved_model_is_an_error(study_run, tmp_path):
    """What made the committed run explain 3 of 5 models, silently: the model folders of
    chapters 06 and 07 were not in the run folder (they are not committed)."""
    _, source, _ = study_run
    run = RunFolder(tmp_path / "run").create()
    _add_model(run, source, "compact_cnn-sartaj")
    _add_predictions(run, source, "sigmoid_cnn-sartaj")  # predicted, model folder missing
    _add_predictions(run, source, "compact_cnn+ablation-crop-sartaj")  # a study: ignored
    _add_predictions(run, source, "compact_cnn+baseline+bn-sartaj")  # a twin: never saved
    with pytest.raises(BrainMRIError, match="sigmoid_cnn-sartaj") as info:
        explain.models_to_explain(run)
    assert "1 model(s)" in str(info.value) and "--force" in str(info.value)
    # a model left out by name is not missing
    assert list(explain.models_to_explain(run, ["compact_cnn"])) == ["compact_cnn-sartaj"]


def test_every_saved_chapter_model_is_explained_and_scored(study_run):
    run, _, data_root = study_run
    explained = list(explain.explain_run(run, data_root, None, **TINY))
    assert [e.tag for e in explained] == sorted(CHAPTER_TAGS)
    xai = explain.scores_table(explained)
    assert list(xai.columns) == explain.SCORE_COLUMNS
    assert len(xai) == len(CHAPTER_TAGS) * len(explain.EXPLAINERS)
    assert set(xai["model"]) == set(CHAPTER_TAGS)
    metrics = xai[["deletion", "insertion", "mufidelity", "randomisation_similarity"]]
    assert np.isfinite(metrics.to_numpy(float)).all()
    assert xai[["deletion", "insertion"]].stack().between(0, 1).all()
    assert (xai["n_images"] == TINY["faithfulness_samples"]).all()
    assert (xai["n_sanity"] == TINY["sanity_samples"]).all()
    for e in explained:
        for stage in ("read images", "shown maps: IntegratedGradients",
                      "scored maps: SmoothGrad", "deletion", "insertion", "mufidelity",
                      "randomisation check", "total"):
            assert e.seconds[stage] > 0, (e.tag, stage)
        # the shown maps: one per picked image, for every explainer
        assert all(m.shape[0] == len(e.examples) for m in e.maps.values())
    timing = explain.timing_table(explained)
    assert list(timing.index) == sorted(CHAPTER_TAGS) and "mufidelity" in timing.columns
    assert set(explain.ranking(xai).index) == set(CHAPTER_TAGS)


def _linear_model(weights: np.ndarray):
    """Logits: class 0 = sum(w * x), the other classes 0 (so removing pixels from a
    subset lowers class 0's probability by a monotone function of sum(w * (x - b)))."""
    import keras

    inputs = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inputs)
    dense = keras.layers.Dense(4, use_bias=False, name="logits")
    model = keras.Model(inputs, dense(flat))
    kernel = np.zeros((64, 4), np.float32)
    kernel[:, 0] = weights.ravel() * 0.05
    dense.set_weights([kernel])
    return model


def test_shared_mufidelity_scores_an_exact_attribution_one_and_its_opposite_minus_one():
    from xplique.metrics import MuFidelity

    rng = np.random.default_rng(0)
    w = rng.uniform(0.5, 1.5, (8, 8))
    x = rng.uniform(0.2, 1.0, (3, 8, 8, 1)).astype(np.float32)
    model = _linear_model(w)
    baseline = map_checks.background_baseline(x)
    exact = (w * (x - baseline)[..., 0]).astype(np.float32)  # exactly what removal costs
    targets = attributions.one_hot(np.zeros(3, int))
    metric = MuFidelity(model, x, targets, grid_size=8, nb_samples=40, batch_size=16,
                        baseline_mode=map_checks.background_baseline, activation="softmax")
    maps = {"exact": exact, "opposite": -exact, "flat": np.ones_like(exact)}
    scores = map_checks.shared_mufidelity(metric, maps, seed=0)
    assert scores["exact"] == pytest.approx(1.0, abs=1e-6)
    assert scores["opposite"] == pytest.approx(-1.0, abs=1e-6)
    assert scores["flat"] < 0.9  # the count of removed pixels alone ranks less well
    # the same seed draws the same subsets, whatever ran before (no global RNG state)
    import keras

    keras.utils.set_random_seed(123)
    assert map_checks.shared_mufidelity(metric, maps, seed=0) == scores


def test_subset_masks_are_seeded_and_remove_the_asked_share():
    first = map_checks.subset_masks(np.random.default_rng(5), 400, 8, (32, 32), 0.2)
    again = map_checks.subset_masks(np.random.default_rng(5), 400, 8, (32, 32), 0.2)
    assert first.shape == (400, 32, 32, 1) and np.array_equal(first, again)
    assert set(np.unique(first)) == {0.0, 1.0}
    assert 1.0 - first.mean() == pytest.approx(0.2, abs=0.02)  # 25,600 cells drawn
    # each grid cell is a 4 x 4 block of one value (nearest-neighbour stretch)
    assert np.array_equal(first[:, ::4, ::4].repeat(4, 1).repeat(4, 2), first)
    # subsets differ from one another (the defect: repeated draws, ties in Spearman)
    flat = first.reshape(400, -1)
    assert len(np.unique(flat, axis=0)) == 400


def _table(changes: dict | None = None) -> pd.DataFrame:
    rows = []
    for model, shift in (("relu_cnn-sartaj", 0.0), ("compact_cnn-sartaj", 0.1)):
        for k, name in enumerate(explain.EXPLAINERS):
            rows.append({"model": model, "explainer": name, "deletion": 0.2 + 0.05 * k,
                         "insertion": 0.3 + 0.1 * k + shift, "mufidelity": 0.1 * k,
                         "randomisation_similarity": 0.1 * k,
                         "flag_insensitive_to_weights": False, "mass_in_brain": 0.9,
                         "area_in_brain": 0.6, "mass_on_contour": (0.03, 0.04, 0.05, 0.09)[k],
                         "area_on_contour": 0.07, "n_images": 64, "n_sanity": 16})
    table = pd.DataFrame(rows)
    for (model, explainer, column), value in (changes or {}).items():
        table.loc[(table["model"] == model) & (table["explainer"] == explainer), column] = value
    return table


def test_most_faithful_explainer_is_read_from_the_table():
    """Chapter 10's table: per model and metric, the winner and its score."""
    from brainmri.report.studies import summary

    best = summary.most_faithful(_table())
    # insertion grows with the explainer's index: GradCAM wins; deletion: GuidedBackprop
    assert best.loc["relu_cnn-sartaj"].tolist() == [
        "Grad-CAM (0.600)", "Guided Backprop (0.200)", "Grad-CAM (0.300)"]
    changed = summary.most_faithful(_table({("relu_cnn-sartaj", "SmoothGrad", "insertion"): 0.95}))
    assert changed.loc["relu_cnn-sartaj", "insertion"] == "SmoothGrad (0.950)"
    assert list(summary.most_faithful(_table(), {"compact_cnn-sartaj"}).index) == [
        "relu_cnn-sartaj"]


def test_explained_model_is_one_grid_with_grad_cam_over_the_image():
    """One figure per model: a row per picked image (labelled by its true class, and the
    prediction when wrong), a column per explainer; Grad-CAM is drawn over the image."""
    import matplotlib.pyplot as plt

    from brainmri.report.show import explanation_figures

    rng = np.random.default_rng(0)
    labels = list(CLASS_NAMES) + ["glioma", "pituitary"]
    predictions = list(CLASS_NAMES) + ["meningioma", "no_tumor"]
    examples = pd.DataFrame({"label": labels, "prediction": predictions,
                             "outcome": ["correct"] * 4 + ["misclassified"] * 2})
    raw = rng.integers(0, 255, (6, 16, 16, 1)).astype(np.uint8)
    maps = {name: rng.normal(size=(6, 16, 16)) for name in explain.EXPLAINERS}
    e = explain.ModelExplanation("tiny-sartaj", examples, raw, maps, pd.DataFrame())
    fig = explanation_figures.explained_model(e)
    assert isinstance(fig, plt.Figure)
    axes = np.array(fig.axes).reshape(6, 1 + len(explain.EXPLAINERS))
    assert [ax.get_ylabel() for ax in axes[:, 0]][:4] == [f"true {c}" for c in CLASS_NAMES]
    assert axes[4, 0].get_ylabel() == "true glioma\npred meningioma"
    assert [ax.get_title() for ax in axes[0]][0] == "image"
    gradcam = list(explain.EXPLAINERS).index("GradCAM") + 1
    assert all(len(ax.images) == 2 for ax in axes[:, gradcam])  # image + Grad-CAM overlay
    assert all(len(ax.images) == 1 for row in axes for ax in np.delete(row, gradcam))
    plt.close("all")
