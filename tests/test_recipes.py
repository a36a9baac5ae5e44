"""What a model learns from (``data.recipes``): a held-out collection never reaches the
training or validation images, and is scored whole."""

import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from brainmri.data import recipes
from brainmri.data.sources import get_spec
from synthetic import make_dataset


def _params(data, **changes):
    # exact copies only: the synthetic slices of one class look alike to the real rule
    values = dict(dataset="nickparvar", data_dir=str(data), val_fraction=0.25, seed=3,
                  subset=None, image_size=32, color_mode="grayscale", resample="area",
                  crop=None, normalization="standardize", batch_size=8, augment="none",
                  balance=False, max_distance=0, min_correlation=0.999, drop_source=None,
                  extra_training=None, restyle=0.0, hold_out_source=None)
    return SimpleNamespace(**{**values, **changes})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Nickparvar-like home data holding copies of four Sartaj images: two in its
    Training folder (they land in training or validation), two in its Testing folder."""
    data = tmp_path_factory.mktemp("data")
    make_dataset(data, "sartaj", {"Training": 6, "Testing": 2}, size=48, seed=1)
    home = make_dataset(data, "nickparvar", {"Training": 8, "Testing": 3}, size=48, seed=2)
    make_dataset(data, "br35h", {"Testing": 4}, size=48, seed=5)  # source labelling reads it
    sartaj = data / get_spec("sartaj").folder
    nick = get_spec("nickparvar")
    glioma = {v: k for k, v in nick.class_folders.items()}["glioma"]
    train_folder, test_folder = list(nick.split_folders)
    for i, (split, name) in enumerate([("Training", "img 000.jpg"), ("Training", "img 001.jpg"),
                                       ("Testing", "img 000.jpg"), ("Testing", "img 001.jpg")]):
        target = home / (train_folder if i < 2 else test_folder) / glioma / f"copy {i}.jpg"
        shutil.copy(sartaj / split / "glioma_tumor" / name, target)
    return data


def test_a_held_out_collection_never_reaches_training_or_validation(data):
    plain = recipes.inputs_for(_params(data))
    held = recipes.inputs_for(_params(data, hold_out_source="sartaj"))
    seen = lambda inputs: set(inputs.files("train")["path"]) | set(inputs.files("val")["path"])  # noqa: E731
    copies = {p for p in seen(plain) if "copy" in p}
    assert len(copies) == 2  # both Training-folder copies were seen without the hold-out
    assert not {p for p in seen(held) if "copy" in p}
    assert sum(held.held_out["copies_set_aside"].values()) == 2
    assert held.held_out["source"] == "sartaj" and held.held_out["images"] == 4 * 8
    for split in ("train", "val", "test"):  # arrays stay aligned with their files
        assert len(held.arrays[split][1]) == len(held.files(split))
    # the home test set is untouched: it selects nothing
    assert list(held.files("test")["path"]) == list(plain.files("test")["path"])
    assert plain.held_out is None


def test_the_held_out_collection_is_scored_whole(data):
    whole = recipes.held_out_collection(_params(data, hold_out_source="sartaj"))
    assert whole.name == "sartaj" and set(whole.files["split"]) == {"test"}
    assert len(whole.split("test")) == 4 * (6 + 2)  # both folders, every class
    assert sorted(np.unique(whole.labels("test"))) == [0, 1, 2, 3]  # the four classes


@pytest.mark.parametrize("changes, message", [
    ({"hold_out_source": "nickparvar"}, "home dataset itself"),
    ({"hold_out_source": "sartaj", "extra_training": "sartaj"}, "both held out and added"),
])
def test_contradictory_recipes_are_refused(data, changes, message):
    with pytest.raises(ValueError, match=message):
        recipes.inputs_for(_params(data, **changes))


def test_the_benchmark_scores_a_held_out_collection_whole(tmp_path):
    """A model trained with ``hold_out_source`` gets a ``held_out_source`` row on every
    image of that collection (both folders): nothing is excluded, as the recipe kept
    every copy out of training and validation."""
    from brainmri import CLASS_NAMES
    from brainmri.core.runfolder import RunFolder
    from brainmri.evaluation import benchmark
    from synthetic import saved_predictions

    four = list(CLASS_NAMES) * 3
    for split in ("val", "test"):
        saved_predictions(tmp_path, "compact_cnn+held", "nickparvar", split, four, four)
    answers = four[:9] + ["no_tumor"] * 3  # the last meningioma and pituitary missed
    saved_predictions(tmp_path, "compact_cnn+held", "nickparvar", "heldout", four, answers,
                      paths=[f"Training/s{i}.jpg" for i in range(8)]
                      + [f"Testing/s{i}.jpg" for i in range(4)], eval_dataset="sartaj")
    rows = benchmark.benchmark(RunFolder(tmp_path), target_sensitivity=0.9, n_bootstrap=50,
                               seed=0, ece_bins=5).set_index("eval_set")
    row = rows.loc["held_out_source"]
    assert row["n"] == 12 and row["excluded_copies"] == 0
    assert row["correct"] == 10 and row["accuracy"] == pytest.approx(10 / 12)
    assert (row["tumours_found"], row["tumours"]) == (7, 9)  # glioma, meningioma, pituitary


def test_a_split_seed_shares_one_validation_split_across_training_seeds(data):
    """Seed repeats of one lever form an ensemble: image by image, so one split."""
    files = lambda p, s: list(recipes.inputs_for(p).files(s)["path"])  # noqa: E731
    shared = [_params(data, seed=seed, split_seed=3) for seed in (3, 11)]
    assert files(shared[0], "val") == files(shared[1], "val")
    assert files(shared[0], "train") == files(shared[1], "train")
    own = _params(data, seed=11)  # no split_seed: the seed draws the split
    assert recipes.split_seed(own) == 11
    assert files(own, "val") != files(shared[0], "val")


def test_source_balanced_training_names_each_images_collection(data):
    inputs = recipes.inputs_for(_params(data, source_balance=True, split_seed=3))
    train = inputs.files("train")
    sources = dict(zip(train["path"], inputs.sources))
    copies = {path for path in sources if "copy" in path}
    assert copies and {sources[path] for path in copies} == {"sartaj"}
    assert {s for path, s in sources.items() if path not in copies} == {"figshare"}
    groups = [f"{s}/{c}" for s, c in zip(inputs.sources, inputs.arrays["train"][1])]
    assert len(set(groups)) > 4  # a class split by collection: more groups than classes
    # the pipeline oversamples every group to the largest: no group is left small
    seen = np.concatenate([y.numpy() for _, y in inputs.train()])
    assert len(seen) >= len(set(groups)) * max(groups.count(g) for g in set(groups)) - 8


def test_added_training_images_carry_their_collection(data):
    inputs = recipes.inputs_for(_params(data, source_balance=True, extra_training="sartaj"))
    n_home = len(inputs.files("train"))
    assert set(inputs.sources[n_home:]) == {"sartaj"}
    assert len(inputs.sources) == len(inputs.arrays["train"][1])


def test_the_gradient_reversal_flips_the_gradient_and_nothing_else():
    import tensorflow as tf

    from brainmri.modeling.adversarial import GradientReversal

    x = tf.constant([[1.0, -2.0, 3.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = GradientReversal(0.5)(x)
        loss = tf.reduce_sum(y * tf.constant([[1.0, 2.0, 3.0]]))
    assert np.allclose(y.numpy(), x.numpy())
    assert np.allclose(tape.gradient(loss, x).numpy(), [[-0.5, -1.0, -1.5]])


def test_source_adversarial_training_keeps_and_checkpoints_the_classifier(data, tmp_path):
    import keras

    from brainmri.modeling import training
    from brainmri.modeling.adversarial import SourceAdversarial
    from brainmri.modeling.builders import build

    inputs = recipes.inputs_for(_params(data, source_adversarial=1.0, split_seed=3))
    assert inputs.sources is not None and not inputs.balance_sources
    keras.utils.set_random_seed(0)
    classifier = build("compact_cnn", inputs.spec.shape, widths=[4, 4, 8, 8], dropout=0.0)
    before = [w.copy() for w in classifier.get_weights()]
    wrapper = SourceAdversarial(classifier, len(inputs.source_names), weight=1.0)
    config = training.FitConfig(epochs=2, learning_rate=1e-2, patience=5, schedule="plateau",
                                reduce_lr_patience=2, reduce_lr_factor=0.5,
                                min_learning_rate=1e-6, warmup_epochs=0, warmup_start=0.1,
                                cosine_floor=0.01, label_smoothing=0.0, weight_decay=0.0,
                                restore_best=False)
    history = training.fit(wrapper, inputs, config, tmp_path)
    assert {"loss", "val_loss", "source_loss"} <= set(history.columns)
    assert any(not np.allclose(a, b) for a, b in zip(before, classifier.get_weights()))
    saved = keras.models.load_model(tmp_path / "best.keras")
    assert saved.name == classifier.name and len(saved.layers) == len(classifier.layers)
