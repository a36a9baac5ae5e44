"""Builders, the shared training path, evaluation files and determinism."""

import numpy as np
import pandas as pd
import pytest

from brainmri import CLASS_NAMES
from brainmri.core.runfolder import RunFolder
from brainmri.data import dataset as data
from brainmri.data.inputs import ModelInputs, balanced_indices, make_dataset
from brainmri.data.pixels import PixelSpec
from brainmri.evaluation import predictions as evaluate
from brainmri.modeling import builders as models
from brainmri.modeling import devices, saved
from brainmri.modeling import training as train
from brainmri.report.series.profiles import chapter_defaults


@pytest.mark.parametrize("name,shape,kwargs", [
    ("relu_cnn", (32, 32, 1), {}), ("sigmoid_cnn", (32, 32, 1), {}),
    ("compact_cnn", (32, 32, 3), {"widths": (8, 8, 16, 16), "dropout": 0.3}),
    ("inception_v3", (75, 75, 3), {"weights": "none"}),
    ("convnext_tiny", (32, 32, 3), {"weights": None}),
])
def test_builders_end_in_logits_then_softmax(name, shape, kwargs):
    model = models.build(name, shape, **kwargs)
    assert model.layers[-1].name == "probabilities"
    assert model.get_layer("logits").units == len(CLASS_NAMES)
    assert model.get_layer(models.GRADCAM_LAYER[name]) is not None
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype("float32")
    probs = np.asarray(model(x))
    assert probs.shape == (2, 4) and np.allclose(probs.sum(1), 1, atol=1e-5)
    logits = np.asarray(models.logits_model(model)(x))
    assert np.allclose(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), probs, atol=1e-5)


def test_builders_refuse_options_they_do_not_take():
    with pytest.raises(TypeError, match="relu_cnn takes no option"):
        models.build("relu_cnn", (32, 32, 1), widths=(8, 8, 8, 8))
    with pytest.raises(TypeError):
        models.build("inception_v3", (75, 75, 3))  # the weights must be chosen explicitly


def test_pool_placement_cost_is_about_four_times():
    cost = models.pool_placement_cost((256, 256, 1))
    assert 1.0 < cost.iloc[0] < 1.2 and 4.3 < cost.iloc[1] < 4.7


def test_sigmoid_model_uses_sigmoid_in_convolutions_only():
    model = models.build("sigmoid_cnn", (32, 32, 1))
    assert model.get_layer("conv1").activation.__name__ == "sigmoid"
    assert model.get_layer("fc").activation.__name__ == "relu"


def test_missing_local_weights_file_is_a_clear_error(tmp_path):
    from brainmri.core.errors import WeightsUnavailableError

    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        models.build("inception_v3", (75, 75, 3), weights=str(tmp_path / "nope.h5"))


def test_offline_imagenet_download_is_reported_as_unavailable(monkeypatch):
    import keras

    from brainmri.core.errors import WeightsUnavailableError

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- "
                        "[Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline, raising=False)
    with pytest.raises(WeightsUnavailableError) as info:
        models.build("convnext_tiny", (32, 32, 3), weights="imagenet")
    message = str(info.value)
    assert message.startswith("skipped: ImageNet weights unavailable")
    assert "convnext_tiny_notop.h5" in message and "models" in message


def test_set_trainable_by_index_and_by_name():
    model = models.build("compact_cnn", (32, 32, 3), widths=(8, 8, 16, 16), dropout=0.3)
    first = [layer.name for layer in model.layers].index("stage3_a")
    n = train.set_trainable(model, "stage3")
    assert n == len(model.layers) - first
    assert not model.get_layer("stem").trainable and model.get_layer("logits").trainable
    assert train.set_trainable(model, 0) == len(model.layers)


def test_balancing_tops_every_class_up_to_the_largest():
    labels = np.array([0] * 10 + [1] * 4 + [2] * 7)
    idx = balanced_indices(labels, seed=0)
    assert np.bincount(labels[idx]).tolist() == [10, 10, 10]
    assert set(idx[:21]) == set(range(21))  # every original kept once


def test_eval_pipeline_keeps_order_and_normalises():
    x = np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4, 1)
    batches = list(make_dataset(x, np.arange(5), batch_size=2, normalization="standardize"))
    labels = np.concatenate([b[1].numpy() for b in batches])
    assert labels.tolist() == [0, 1, 2, 3, 4]
    first = batches[0][0].numpy()
    assert np.allclose(first.reshape(2, -1).mean(1), 0, atol=1e-5)


def _quick_training(root, seed):
    devices.seed_everything(seed)
    ds = data.load("sartaj", root, 0.2, seed)
    inputs = ModelInputs(ds, PixelSpec(32, "grayscale", "area"), normalization="standardize",
                         batch_size=8, augment="basic", balance=True, seed=seed)
    model = models.build("relu_cnn", inputs.spec.shape)
    config = train.FitConfig.for_phase(chapter_defaults("05_relu_cnn"), 2, 1e-3)
    train.fit(model, inputs, config, root / f"out{seed}", verbose=0)
    return evaluate.predict(model, inputs, "test")[1]


def test_same_seed_gives_identical_predictions(synthetic_root):
    """The notebooks' path (seeded split, augmentation, balancing, training) is
    deterministic on CPU: two runs with the same seed agree exactly."""
    a = _quick_training(synthetic_root, 7)
    b = _quick_training(synthetic_root, 7)
    assert np.array_equal(a, b)


def test_training_learns_and_writes_its_files(trained_run):
    run_dir, folder, _ = trained_run
    history = train.load_history(folder)
    assert len(history) >= 2 and (folder / "best.keras").exists()
    assert {"seconds", "images_per_s", "learning_rate", "val_loss"} <= set(history.columns)
    test = pd.read_csv(RunFolder(run_dir).predictions("compact_cnn-sartaj", "test"))
    assert list(test.columns[:8]) == evaluate.ID_COLUMNS
    probs = test[evaluate.PROB_COLUMNS].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (test["label"] == test["prediction"]).mean() > 0.5  # chance is 0.25


def test_saved_model_reloads_safely_with_its_metadata(trained_run):
    _, folder, _ = trained_run
    model, meta = saved.load_saved(folder)
    assert meta["image_size"] == 32 and meta["color_mode"] == "rgb"
    assert meta["temperature"] > 0 and meta["training"]["widths"] == [8, 16, 16, 32]
    assert meta["class_names"] == list(CLASS_NAMES) and meta["gradcam_layer"] == "last_conv"
    assert model.get_layer("logits") is not None


def test_experiment_trains_in_two_phases_for_transfer_models(synthetic_root, tmp_path):
    """The one experiment call: a transfer model's head phase, then fine-tuning from
    ``unfreeze_from``, with the history continued across phases and every file saved."""
    from brainmri.report.series import notebook
    from brainmri.report.studies import experiment

    p = notebook.setup("08_convnext_tiny", {
        "data_dir": str(synthetic_root), "image_size": 32, "weights": "none",
        "head_epochs": 1, "finetune_epochs": 1, "batch_size": 16, "augment": "none"},
        run_dir=str(tmp_path / "run"))
    result = experiment.run(p)
    phases = train.phase_table(result.folder)
    assert list(phases.index) == ["head", "finetune"]
    assert phases.loc["head", "trainable layers"] < phases.loc["finetune", "trainable layers"]
    assert list(result.history["phase"]) == ["head", "finetune"]
    assert (result.folder / "model.keras").exists()
    assert set(result.predictions) == {"val", "test", "br35h"}  # Br35H: external, always
    for split in ("test", "br35h"):  # saved under the model's tag, not the dataset's
        assert p.run.predictions("convnext_tiny-nickparvar", split).exists()
    assert result.versus_published().loc["accuracy", "published: convnext_tiny"] == 0.9908


def test_training_set_one_image_past_a_full_batch_trains():
    """49 images in batches of 16 left a last batch of one, which crashed the process."""
    images = np.random.default_rng(0).integers(0, 255, (49, 16, 16, 3), np.uint8)
    labels = (np.arange(49) % 4).astype("int32")
    ds = make_dataset(images, labels, batch_size=16, normalization="standardize",
                      training=True, augment="none", seed=0)
    assert [int(b[0].shape[0]) for b in ds] == [16, 16, 16]
    model = models.build("compact_cnn", (16, 16, 3), widths=(4, 8, 8, 8), dropout=0.0)
    model.compile("adam", "sparse_categorical_crossentropy")
    assert len(model.fit(ds, epochs=1, verbose=0, shuffle=False).history["loss"]) == 1


def test_training_stores_the_validation_ood_threshold_in_the_sidecar(trained_run):
    """``brainmri predict`` flags unusual inputs with the threshold chosen on validation."""
    import json

    from brainmri.modeling import ood

    run_dir, model_dir, _ = trained_run
    entry = json.loads((model_dir / "model.json").read_text())["ood"]
    assert ood.check_entry(entry) is None
    val = pd.read_csv(RunFolder(run_dir).predictions("compact_cnn-sartaj", "val"))
    rate = chapter_defaults("08b_compact_cnn")["ood_false_alarm_rate"]
    assert entry == ood.from_predictions(val, rate)


def test_continued_training_is_the_shorter_model_trained_on(synthetic_root, tmp_path):
    """A claim "6 vs 16 epochs" trains once: the longer model keeps the shorter one's
    optimizer and history, and both are saved and scored under their own names; with
    ``restore_best`` off the shorter model ends on its last epoch."""
    from brainmri.report.series import notebook
    from brainmri.report.studies import experiment

    p = notebook.setup("05_relu_cnn", {
        "data_dir": str(synthetic_root), "image_size": 32, "epochs": 2, "batch_size": 16,
        "patience": 5, "restore_best": False, "variant": "ablation-short"},
        run_dir=str(tmp_path / "run"))
    short = experiment.run(p)
    weights = [w.copy() for w in short.model.get_weights()]
    iterations = int(short.model.optimizer.iterations.numpy())
    longer = experiment.continue_training(short, 1, "ablation-long")
    assert longer.p.epochs == 3 and longer.folder != short.folder
    assert len(longer.history) == 3 and list(longer.history["phase"])[-1] == "continued"
    assert len(train.load_history(short.folder)) == 2  # the shorter model's files stay
    assert int(longer.model.optimizer.iterations.numpy()) > iterations  # same optimizer
    assert any(not np.array_equal(a, b) for a, b in zip(weights, longer.model.get_weights()))
    for name in ("relu_cnn+ablation-short-sartaj", "relu_cnn+ablation-long-sartaj"):
        assert p.run.predictions(name, "test").exists()


def test_seed_spread_sets_the_spread_over_seeds_beside_the_bootstrap_width():
    from brainmri.evaluation import benchmark

    table = pd.DataFrame({"setting": ["a", "a", "a", "b"], "acc": [0.6, 0.7, 0.8, 0.5],
                          "lo": [0.55, 0.6, 0.75, 0.4], "hi": [0.65, 0.8, 0.85, 0.6]})
    out = benchmark.seed_spread(table, by="setting", value="acc", ci_low="lo", ci_high="hi")
    assert list(out.index) == ["a"]  # one seed: no spread to show
    row = out.loc["a"]
    assert row["seeds"] == 3 and row["min"] == 0.6 and row["max"] == 0.8
    assert row["range over seeds"] == pytest.approx(0.2)
    assert row["sd over seeds"] == pytest.approx(0.1)
    assert row["bootstrap CI width"] == pytest.approx((0.1 + 0.2 + 0.1) / 3)


def test_claims_grid_sits_beside_the_reports_figures():
    from brainmri.report.studies import claims

    rows = [("grayscale, 6 epochs", "grayscale", 6, 42, 0.60, 0.55, 0.65),
            ("grayscale, 16 epochs", "grayscale", 16, 42, 0.70, 0.65, 0.75),
            ("rgb, 6 epochs", "rgb", 6, 42, 0.62, 0.57, 0.67),
            ("rgb, 16 epochs", "rgb", 16, 42, 0.66, 0.61, 0.71),
            ("grayscale, 6 epochs", "grayscale", 6, 7, 0.50, 0.45, 0.55)]
    table = pd.DataFrame(rows, columns=["setting", "color_mode", "epochs", "seed",
                                        "test accuracy", "test CI low", "test CI high"])
    table["val accuracy"] = table["test accuracy"]
    table = table.assign(**{"val correct": 60, "val images": 100, "test images": 394})
    versus = claims.versus_published(table)
    assert versus.loc["grayscale, 16 epochs", "report 000"] == 0.71
    # the counts behind the rates travel with them (issue 28, rule 2)
    assert tuple(versus.loc["rgb, 6 epochs", ["val correct", "val images", "test images"]]) \
        == (60, 100, 394)
    assert versus.loc["grayscale, 6 epochs", "test accuracy"] == 0.60  # the run's seed


def test_calibration_table_uses_the_chapters_ece_bins(synthetic_root, tmp_path, monkeypatch):
    """A model chapter's calibration table bins by its own ``ece_bins`` (it used the
    function's default, so the parameter never reached chapters 04-08b)."""
    from brainmri.evaluation import metrics
    from brainmri.report.series import notebook
    from brainmri.report.studies import experiment
    from conftest import TINY_COMPACT

    p = notebook.setup("08b_compact_cnn", {**TINY_COMPACT, "epochs": 1, "ece_bins": 7,
                                           "data_dir": str(synthetic_root)},
                       run_dir=str(tmp_path / "run"))
    result = experiment.run(p)
    seen, ece = [], metrics.ece
    monkeypatch.setattr(metrics, "ece", lambda y, probs, n_bins: seen.append(n_bins)
                        or ece(y, probs, n_bins))
    table = result.calibration()
    assert seen and set(seen) == {7}
    assert table.loc["sartaj test", "ECE before"] == pytest.approx(
        ece(*evaluate.arrays(result.test)[:2], 7))


def test_a_recipe_that_holds_out_a_collection_is_scored_on_all_of_it(synthetic_root,
                                                                     tmp_path):
    """``hold_out_source``: the model never sees the collection in training or validation,
    and its predictions on every image of it (both folders) are saved as ``heldout``
    instead of the other dataset's test set (issue 21, source-held-out validation)."""
    from brainmri.report.series import notebook
    from brainmri.report.studies import experiment

    p = notebook.setup("08b_compact_cnn", {
        "data_dir": str(synthetic_root), "dataset": "nickparvar", "image_size": 32,
        "epochs": 1, "batch_size": 16, "widths": [4, 8, 8, 8], "external_binary": None,
        "external_dataset": "auto", "hold_out_source": "sartaj"},
        run_dir=str(tmp_path / "run"))
    result = experiment.run(p)
    assert set(result.predictions) == {"val", "test", "heldout"}
    held = pd.read_csv(p.run.predictions("compact_cnn-nickparvar", "heldout"))
    assert len(held) == 4 * (10 + 4) and set(held["eval_dataset"]) == {"sartaj"}
    assert result.inputs.held_out["source"] == "sartaj"


def test_a_study_resumed_after_a_stop_reuses_the_models_it_had_trained(synthetic_root,
                                                                       tmp_path, monkeypatch):
    """08c trains about thirty models in one step: run again after a stop, a model trained
    with the same parameters by the same library is read back, not trained again, and
    gives the same predictions; other parameters, or a plain chapter call, train anew."""
    from brainmri.report.series import notebook
    from brainmri.report.studies import experiment
    from conftest import TINY_COMPACT

    def params(**changes):
        return notebook.setup("08b_compact_cnn", {
            **TINY_COMPACT, "data_dir": str(synthetic_root), "epochs": 1,
            "variant": "ablation-resumed", **changes}, run_dir=str(tmp_path / "run"))

    first = experiment.run(params(), reuse=True)
    test_file = first.p.run.predictions("compact_cnn+ablation-resumed-sartaj", "test")
    before = pd.read_csv(test_file)
    fits = []
    monkeypatch.setattr(train, "fit", lambda *a, **k: fits.append(1) or train.load_history(a[3]))
    again = experiment.run(params(), reuse=True)
    assert fits == []
    pd.testing.assert_frame_equal(pd.read_csv(test_file), before, check_exact=False, atol=1e-5)
    assert list(again.history["epoch"]) == list(first.history["epoch"])
    experiment.run(params(learning_rate=1e-3), reuse=True)  # other parameters
    experiment.run(params())  # a chapter's call never reuses
    assert fits == [1, 1]


@pytest.mark.parametrize("name,shape,kwargs", [
    ("relu_cnn", (32, 32, 1), {}),
    ("compact_cnn", (32, 32, 3), {"widths": (8, 8, 16, 16), "dropout": 0.3}),
    ("convnext_tiny", (32, 32, 3), {"weights": None}),  # its ``x + y`` operations
])
def test_a_mixed_precision_model_is_kept_as_a_float32_copy_of_its_weights(name, shape, kwargs):
    import keras

    from brainmri.modeling import precision

    with precision.training_policy("mixed_bfloat16"):
        mixed = models.build(name, shape, **kwargs)
    assert keras.config.dtype_policy().name == "float32"  # the policy is put back
    assert not precision.computes_in_float32(mixed)
    kept = precision.as_float32(mixed)
    assert precision.computes_in_float32(kept) and kept.name == mixed.name
    assert all(np.array_equal(a, b) for a, b in zip(mixed.get_weights(), kept.get_weights()))
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype("float32")
    probs = np.asarray(kept(x))
    assert probs.dtype == np.float32
    # the same function: bfloat16 keeps about 3 significant digits of each activation
    assert np.allclose(np.asarray(mixed(x), dtype=np.float32), probs, atol=0.02)
    assert precision.as_float32(kept) is kept


def test_bfloat16_on_a_cpu_without_it_warns_with_the_fix(tmp_path, monkeypatch):
    from brainmri.modeling import precision

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f\n")
    assert precision.native_bfloat16(cpuinfo) is False
    cpuinfo.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert precision.native_bfloat16(cpuinfo) is True
    assert precision.native_bfloat16(tmp_path / "absent") is None
    monkeypatch.setattr(precision, "native_bfloat16", lambda: False)
    monkeypatch.setattr(precision, "_has_gpu", lambda: False)
    with (pytest.warns(UserWarning, match="--set precision=float32"),
          precision.training_policy("mixed_bfloat16")):
        pass
    with (pytest.raises(ValueError, match="precision must be one of"),
          precision.training_policy("float16")):
        pass


def test_a_chapter_trained_in_mixed_precision_keeps_float32_and_trains_on(synthetic_root,
                                                                          tmp_path):
    """The evaluated and saved model computes in float32; the longer model of a claim
    trains on the mixed-precision model with its optimizer."""
    from brainmri.modeling import precision
    from brainmri.report.series import notebook
    from brainmri.report.studies import experiment

    p = notebook.setup("05_relu_cnn", {
        "data_dir": str(synthetic_root), "image_size": 32, "epochs": 1, "batch_size": 16,
        "precision": "mixed_bfloat16", "restore_best": False, "variant": "bf16"},
        run_dir=str(tmp_path / "run"))
    short = experiment.run(p)
    assert precision.computes_in_float32(short.model)
    assert not precision.computes_in_float32(short.trained)
    reloaded, _ = saved.load_saved(short.folder / "model.keras")
    assert precision.computes_in_float32(reloaded)
    iterations = int(short.trained.optimizer.iterations.numpy())
    longer = experiment.continue_training(short, 1, "bf16-long")
    assert int(longer.trained.optimizer.iterations.numpy()) > iterations
    assert precision.computes_in_float32(longer.model)
    assert all(np.array_equal(a, b) for a, b in zip(longer.trained.get_weights(),
                                                    longer.model.get_weights()))
