"""Chapter 08c's generalisation levers (``studies.levers``): the readings per model, their
spread over seeds, effects judged against that spread, and the choice on the held-out
collection alone."""

import re

import pandas as pd
import pytest

from brainmri.report.studies import experiment, lever_tables, levers, shipping

#: The numbers a phrase carries, in order; not the digits of a name such as ``08c``.
NUMBER = re.compile(r"\b\d+(?:[.,]\d+)*\b")


def _scores(models: dict[str, tuple[float, float, float]]) -> pd.DataFrame:
    """Benchmark rows: (held-out accuracy, dedup accuracy, Br35H sensitivity) per model."""
    rows = []
    for model, (held, dedup, external) in models.items():
        rows += [{"model": model, "eval_set": "held_out_source", "accuracy": held,
                  "n": 100, "correct": round(100 * held), "tumour_sensitivity": 0.9,
                  "tumour_specificity": 0.8},
                 {"model": model, "eval_set": "test_dedup", "accuracy": dedup, "n": 50,
                  "correct": round(50 * dedup)},
                 {"model": model, "eval_set": "external_br35h", "tumour_sensitivity": external,
                  "n": 200, "tumours_found": round(200 * external),
                  "sens_ci_low": external - 0.07, "sens_ci_high": external + 0.07}]
    return pd.DataFrame(rows)


FIGURES = {  # lever: per seed (held-out, dedup, external)
    "plain": [(0.60, 0.95, 0.40), (0.62, 0.96, 0.45), (0.61, 0.95, 0.35)],
    "gin": [(0.70, 0.95, 0.60), (0.72, 0.94, 0.55), (0.71, 0.95, 0.65)],
    "bigaug": [(0.63, 0.90, 0.38), (0.58, 0.91, 0.44), (0.62, 0.90, 0.36)],
}


@pytest.fixture()
def table():
    models, figures = [], {}
    for lever, seeds in FIGURES.items():
        for seed, values in zip((42, 7, 2026), seeds):
            name = f"m+{levers.PREFIX}{lever}-seed{seed}"
            models.append({"model": name, "lever": lever, "seed": seed})
            figures[name] = values
        name = f"m+{levers.PREFIX}{lever}-ensemble"
        models.append({"model": name, "lever": lever, "seed": levers.ENSEMBLE})
        figures[name] = (0.99, 0.99, 0.99)  # must not enter the seed spread
    return levers.readings(pd.DataFrame(models), _scores(figures))


def test_readings_carry_each_figure_and_its_count(table):
    row = table[table["model"] == f"m+{levers.PREFIX}gin-seed7"].iloc[0]
    assert row["held-out accuracy"] == pytest.approx(0.72)
    assert (row["held-out correct"], row["held-out accuracy n"]) == (72, 100)
    assert (row["external found"], row["external sensitivity n"]) == (110, 200)
    assert row["dedup test correct"] == 47


def test_spread_leaves_the_ensemble_out(table):
    s = levers.spread(table)
    assert list(s["seeds"]) == [3, 3, 3]
    assert s.loc["gin", ("held-out accuracy", "mean")] == pytest.approx(0.71)
    assert s.loc["gin", ("held-out accuracy", "max")] == pytest.approx(0.72)
    assert s.loc["plain", ("external sensitivity", "min")] == pytest.approx(0.35)


def test_effects_beyond_the_widest_seed_range_only(table):
    e = levers.effects(levers.spread(table), "plain").set_index(["lever", "reading"])
    # gin: +10 points held out against ranges of 2 points: helps
    assert e.loc[("gin", "held-out accuracy"), "verdict"] == "helps"
    # gin on Br35H: +20 points against ranges of 10: helps; bigaug: -0.7 against 10: noise
    assert e.loc[("gin", "external sensitivity"), "verdict"] == "helps"
    assert e.loc[("bigaug", "external sensitivity"), "verdict"] == "noise"
    # bigaug at home: -5 points against ranges of 1: hurts
    assert e.loc[("bigaug", "dedup test accuracy"), "verdict"] == "hurts"
    assert e.loc[("bigaug", "dedup test accuracy"), "change"] == pytest.approx(-0.05)
    assert "plain" not in e.index.get_level_values("lever")


def test_a_lever_trained_on_one_seed_gives_no_claim_and_is_not_chosen(table):
    one_seed = table[(table["lever"] != "gin") | (table["seed"] == 42)]
    s = levers.spread(one_seed)
    assert s.loc["gin", "seeds"] == 1
    e = levers.effects(s, "plain").set_index(["lever", "reading"])
    gin = e.loc["gin"]
    assert set(gin["verdict"]) == {"one seed: no claim"}
    assert gin["seed range"].isna().all()
    assert e.loc[("bigaug", "dedup test accuracy"), "verdict"] == "hurts"  # 3 seeds each
    assert levers.chosen(s, levers.effects(s, "plain"), "plain") != "gin"


def test_the_choice_rests_on_the_held_out_collection_alone(table):
    s = levers.spread(table)
    assert levers.chosen(s, levers.effects(s, "plain"), "plain") == "gin"
    # a lever better on Br35H but not on the held-out collection is not chosen
    s.loc["bigaug", ("external sensitivity", "mean")] = 0.99
    assert levers.chosen(s, levers.effects(s, "plain"), "plain") == "gin"


def test_a_lever_within_the_seed_spread_is_not_chosen(table):
    s = levers.spread(table).drop(index="gin")
    # bigaug's held-out mean (61.0) equals plain's: noise, so the baseline stays
    assert levers.chosen(s, levers.effects(s, "plain"), "plain") == "plain"


def test_words_name_the_choice_and_the_adaptation(table):
    s = levers.spread(table)
    adabn = pd.DataFrame({"lever": ["gin"], "seed": [42], "plain tumours found": [322],
                          "adapted tumours found": [588], "new tumours": [756],
                          "plain healthy cleared": [1500], "adapted healthy cleared": [1122],
                          "healthy": [1500]})
    words = lever_tables.words(s, levers.effects(s, "plain"), adabn, "plain")
    assert words["lever_chosen"] == "gin"
    assert words["lever_chosen_held"].startswith("71.0 % (SD 1.0 points, 70.0 % to 72.0 %)")
    assert words["adabn_found"] == "42.6 % to 77.8 %"
    assert words["adabn_cleared"] == "100.0 % to 74.8 %"
    # balanced accuracy (42.6 + 100) / 2 = 71.3 to (77.8 + 74.8) / 2 = 76.3: one seed has no
    # spread, so the rise counts; a model that trades healthy images for tumours does not
    assert words["adabn_balanced"] == "71.3 % to 76.3 %"
    assert words["adabn_verdict"].endswith("better, beyond the seed spread")
    traded = adabn.assign(**{"adapted tumours found": [700], "adapted healthy cleared": [300]})
    verdict = lever_tables.words(s, levers.effects(s, "plain"), traded, "plain")["adabn_verdict"]
    assert verdict.startswith("the adapted models separate tumours from healthy images worse: "
                              "the adaptation pushes every model towards")
    helps = words["lever_helps"]  # gin, on the held-out reading, with its change
    assert "gin" in helps and "bigaug" not in helps and "+10.0" in helps
    assert helps.index("gin") < helps.index("held-out accuracy") < helps.index("+10.0")


def test_levers_refuse_to_run_without_a_held_out_collection(tmp_path):
    with pytest.raises(ValueError, match="hold_out_source"):
        levers.train({"dataset": "nickparvar"}, [{"name": "plain"}], [42], tmp_path, {})


def test_test_time_augmentation_averages_the_mirrored_images_logits():
    import keras
    import numpy as np

    from brainmri.modeling.builders import build, flip_averaged, logits_model

    keras.utils.set_random_seed(0)
    model = build("compact_cnn", (32, 32, 1), widths=[4, 4, 8, 8], dropout=0.0)
    x = np.random.default_rng(0).normal(size=(3, 32, 32, 1)).astype("float32")
    plain = np.asarray(logits_model(model)(x))
    mirrored = np.asarray(logits_model(model)(x[:, :, ::-1]))
    tta = flip_averaged(model)
    out = np.asarray(logits_model(tta)(x))
    assert np.allclose(out, (plain + mirrored) / 2, atol=1e-5)
    assert np.allclose(out, np.asarray(logits_model(tta)(x[:, :, ::-1])), atol=1e-5)


def _frame(labels, p_none):
    """A predictions frame: P(no tumour) as given, the rest on glioma."""
    from brainmri import LOGIT_COLUMNS, PROB_COLUMNS

    frame = pd.DataFrame(0.0, index=range(len(labels)), columns=PROB_COLUMNS + LOGIT_COLUMNS)
    frame["p_no_tumor"] = p_none
    frame["p_glioma"] = 1 - frame["p_no_tumor"]
    frame["label"], frame["path"] = labels, [f"img{i}.jpg" for i in range(len(labels))]
    return frame


def test_the_held_out_threshold_is_set_on_the_held_out_collection_only(tmp_path):
    from brainmri.core.runfolder import RunFolder

    run = RunFolder(tmp_path).create()
    tag = "m-nickparvar"
    for split, frame in {
            # held out: 4 tumours (P(no tumour) up to 0.6) and 2 healthy brains
            "heldout": _frame(["glioma"] * 4 + ["no_tumor"] * 2, [0.1, 0.2, 0.4, 0.6, 0.9, 0.95]),
            # Br35H: img0 has a copy in training and is left out
            "br35h": _frame(["tumour"] * 4, [0.7, 0.5, 0.65, 0.1]),
            # home test: img1 (cleared at t*) has a copy in training and is left out
            "test": _frame(["glioma", "no_tumor", "no_tumor", "no_tumor"],
                           [0.1, 0.62, 0.5, 0.7])}.items():
        path = run.predictions(tag, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
    excluded = run.external_exclusions("br35h")
    excluded.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"path": ["img0.jpg"]}).to_csv(excluded, index=False)
    pd.DataFrame({"test_path": ["img1.jpg"]}).to_csv(run.test_with_copy("nickparvar"),
                                                     index=False)
    row = levers.held_out_threshold(run, "m", "nickparvar", 1.0)
    assert 0.6 < row["held-out t*"] < 0.61  # just above the most doubtful held-out tumour
    assert row["external found at held-out t*"] == 2  # 0.5 and 0.1 < t*; 0.65 is missed
    assert row[levers.THRESHOLDED[0]] == pytest.approx(2 / 3)
    # the deduplicated home set: img2 (0.5 < t*) and img3 (0.7, cleared)
    assert (row["home healthy cleared at held-out t*"], row["home healthy"]) == (1, 2)


def _shipping_run(tmp_path, table, levers_defined, **values):
    import yaml

    from brainmri.core.runfolder import RunFolder
    from brainmri.report.series.notebook import Params

    run = RunFolder(tmp_path).create()
    table.to_csv(run.levers, index=False)
    run.params.write_text(yaml.safe_dump({"steps": {shipping.CHAPTER: {
        "levers": levers_defined, "settings": {"image_size": 80}}}}))
    return Params(chapter="08b_compact_cnn", run=run, variant="crop-union-bn",
                  augment="strong", pretrain_epochs=0, levers_from=shipping.CHAPTER, **values)


def test_the_shipped_recipe_takes_the_levers_that_beat_the_baseline_held_out(table, tmp_path):
    defined = [{"name": "plain"}, {"name": "gin", "augment": "gin"},
               {"name": "bigaug", "augment": "bigaug"}]
    p = _shipping_run(tmp_path, table, defined)
    assert levers.helping(table, "plain") == ["gin"]
    q = shipping.with_chosen(p)
    assert (q.augment, q.variant, q.levers_taken) == ("gin", "crop-union-bn-gin", ["gin"])
    assert p.augment == "strong"  # a new set of parameters; the chapter's own unchanged


def test_levers_that_set_the_same_parameter_are_not_combined(table, tmp_path):
    better = table.copy()
    bigaug = better["lever"] == "bigaug"
    better.loc[bigaug, "held-out accuracy"] += 0.15  # bigaug now helps too, and leads
    defined = [{"name": "plain"}, {"name": "gin", "augment": "gin"},
               {"name": "bigaug", "augment": "bigaug"}]
    q = shipping.with_chosen(_shipping_run(tmp_path, better, defined))
    assert levers.helping(better, "plain") == ["bigaug", "gin"]
    assert (q.augment, q.levers_taken) == ("bigaug", ["bigaug"])
    # levers that set different parameters combine
    defined[1] = {"name": "gin", "pretrain_epochs": 6}
    q = shipping.with_chosen(_shipping_run(tmp_path, better, defined))
    assert (q.augment, q.pretrain_epochs) == ("bigaug", 6)
    assert q.variant == "crop-union-bn-bigaug-gin"


def test_without_levers_from_or_the_levers_file_the_recipe_is_clear(table, tmp_path):
    p = _shipping_run(tmp_path, table, [{"name": "plain"}])
    p.levers_from = None
    assert shipping.with_chosen(p) is p
    p.levers_from = shipping.CHAPTER
    p.run.levers.unlink()
    with pytest.raises(FileNotFoundError, match="run chapter 08c_shortcut_ablation"):
        shipping.with_chosen(p)


def test_the_effects_table_has_a_row_per_lever_and_a_column_per_reading(table):
    html = lever_tables.effects_table(levers.effects(levers.spread(table), "plain")).to_html()
    assert html.count("<tr") == 1 + 2  # a header, gin and bigaug
    assert "+10.0 (helps; range 2.0)" in html  # gin, held out
    assert all(lever_tables.EFFECT_HEADERS[r] in html for r in set(levers.effects(
        levers.spread(table), "plain")["reading"]))  # a column per reading


def _synthetic_collections(tmp_path, monkeypatch):
    """Tiny Sartaj, Nickparvar and Br35H folders (and a cache of their own) for training."""
    from synthetic import make_dataset

    data = tmp_path / "data"
    make_dataset(data, "sartaj", {"Training": 8, "Testing": 4}, size=48, seed=1)
    make_dataset(data, "nickparvar", {"Training": 10, "Testing": 6}, size=48, seed=2)
    make_dataset(data, "br35h", {"Testing": 24}, size=48, seed=3)
    monkeypatch.setenv("BRAIN_MRI_CACHE", str(tmp_path / "cache"))
    return data


@pytest.mark.slow
def test_every_lever_trains_end_to_end_on_synthetic_collections(tmp_path, monkeypatch):
    """The chapter's call with every training option the reference run uses, on tiny
    synthetic collections: a failure here would otherwise surface hours into that run."""
    from brainmri.report.series import notebook
    from brainmri.report.studies import experiment

    data = _synthetic_collections(tmp_path, monkeypatch)
    tiny = {"image_size": 32, "widths": [4, 8, 8, 16], "epochs": 2, "warmup_epochs": 0,
            "batch_size": 8, "external_dataset": None, "data_dir": str(data),
            "max_distance": 0, "min_correlation": 0.999}
    p = notebook.setup("08c_shortcut_ablation", {"data_dir": str(data)},
                       run_dir=str(tmp_path / "run"))
    excluded = p.run.external_exclusions("br35h")  # chapter 01c's list: no copy here
    excluded.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"path": []}).to_csv(excluded, index=False)
    base = notebook.parameters("08b_compact_cnn", {**tiny, "dataset": "nickparvar",
                                                   "crop": "head", "hold_out_source": "sartaj",
                                                   "seed": 42})
    scoring = {"target_sensitivity": 0.9, "n_bootstrap": 20, "ece_bins": 5, "seed": 42}
    table, adabn = levers.train(
        base, [{"name": "plain"}, {"name": "simclr", "pretrain_epochs": 1},
               {"name": "bigaug", "augment": "bigaug"}], [42, 7], p.run, scoring, "br35h")
    assert set(table["lever"]) == {"plain", "plain+tta", "simclr", "simclr+tta", "bigaug",
                                   "bigaug+tta"}
    assert (table["seed"] == levers.ENSEMBLE).sum() == 6
    assert table["held-out accuracy n"].notna().all()
    trained = table[(table["seed"] != levers.ENSEMBLE) & ~table["lever"].str.endswith(levers.TTA)]
    assert (trained["train seconds"] > 0).all() and (trained["images seen"] > 0).all()
    assert table[levers.THRESHOLDED[0]].between(0, 1).all()
    assert len(adabn) == 6 and (adabn["new tumours"] > 0).all()
    assert (p.run.model_dir("compact_cnn+ablation-lever-simclr-seed7-nickparvar")
            / "pretrain.json").exists()
    # the shipped recipe's training-time guard on these models' real costs, counting the
    # recipe's own training images: bigaug made to help, then judged too slow or not
    held = table["held-out accuracy"].where(table["lever"] != "bigaug", 1.0)
    table.assign(**{"held-out accuracy": held.where(table["lever"] == "bigaug", 0.0)}).to_csv(
        p.run.levers, index=False)
    shipped = notebook.Params(chapter="08b_compact_cnn", run=p.run, **{
        **base, "hold_out_source": None, "extra_training": "sartaj",
        "levers_from": shipping.CHAPTER, "training_minutes": 1e-6})
    q = shipping.with_chosen(shipped)
    assert q.levers_taken == [] and 0 <= q.levers_too_slow["bigaug"] < 1  # minutes
    shipped.training_minutes = 60
    assert shipping.with_chosen(shipped).levers_taken == ["bigaug"]
    # the source-aware options train with Sartaj added (ablation variants)
    for option in ({"source_balance": True}, {"source_adversarial": 1.0}):
        q = notebook.Params(chapter="ablation", run=p.run, **{
            **base, "hold_out_source": None, "extra_training": "sartaj", **option,
            "variant": "ablation-" + next(iter(option))})
        result = experiment.run(q)
        assert result.inputs.sources is not None
        assert result.model.name == "compact_cnn"  # the classifier, not the adversary


def test_source_groups_count_the_lever_training_images_by_class_and_collection(
        tmp_path, monkeypatch):
    """The table behind chapter 08c's words on the source-aware levers: every training
    image once, under its class and the collection it was attributed to."""
    from brainmri import CLASS_NAMES
    from brainmri.data import dataset
    from brainmri.report.series import notebook

    data = _synthetic_collections(tmp_path, monkeypatch)
    p = notebook.setup("08c_shortcut_ablation", {"data_dir": str(data)},
                       run_dir=str(tmp_path / "run"))
    base = notebook.parameters("08b_compact_cnn", {
        "image_size": 32, "dataset": "nickparvar", "crop": "head", "data_dir": str(data),
        "hold_out_source": "sartaj", "max_distance": 0, "min_correlation": 0.999,
        "seed": 42})
    groups = lever_tables.source_groups(base, p.run)
    home = dataset.load("nickparvar", str(data), base["val_fraction"], 42).split("train")
    assert list(groups.index) == list(CLASS_NAMES)
    # the synthetic collections share no image: every one is the home collection's own
    assert list(groups.columns) == ["figshare"]
    assert groups["figshare"].to_dict() == home["label"].value_counts().to_dict()
    assert lever_tables.source_words(groups) == {"lever_single_source": "4 of 4"}


def test_a_class_from_two_collections_is_not_counted_as_single_source():
    from brainmri import CLASS_NAMES

    groups = pd.DataFrame({"br35h": [0, 0, 700, 3], "figshare": [900, 400, 5, 500]},
                          index=pd.Index(CLASS_NAMES, name="class"))
    assert lever_tables.source_words(groups) == {"lever_single_source": "2 of 4"}
    shown = lever_tables.source_groups_table(groups).data
    assert shown["Collections"].tolist() == [1, 1, 2, 2]
    assert shown["Class"].tolist() == list(CLASS_NAMES)
    assert shown["Br35H"].tolist() == [0, 0, 700, 3]  # collections by their display names


def test_the_adabn_table_gives_each_levers_mean_and_range_over_seeds():
    adabn = pd.DataFrame({"lever": ["plain"] * 3, "seed": [42, 7, 2026],
                          "plain tumours found": [300, 322, 340],
                          "adapted tumours found": [560, 588, 600], "new tumours": 756,
                          "plain healthy cleared": [1500, 1500, 1499],
                          "adapted healthy cleared": [1100, 1122, 1150], "healthy": 1500})
    html = lever_tables.adabn_table(adabn).to_html()
    assert "42.4 (39.7-45.0)" in html  # the mean of the three seeds' rates and their range
    assert "756 / 1500" in html


def _with_tta(table, lift: dict[str, float]) -> pd.DataFrame:
    """``table`` plus each lever's test-time-augmented twins, ``lift`` added to the twins'
    held-out accuracy."""
    twins = table[table["seed"] != levers.ENSEMBLE].copy()
    twins["held-out accuracy"] += twins["lever"].map(lift).fillna(0.0)
    twins["lever"] += levers.TTA
    twins["model"] += levers.TTA
    return pd.concat([table, twins], ignore_index=True)


def test_a_lever_read_with_tta_is_set_against_the_baseline_read_the_same_way(table):
    """TTA adds 15 held-out points to every model: gin+tta against plain+tta is gin's own
    10 points, not 25; plain+tta against plain is TTA's effect; and no +tta twin is
    chosen, since the shipped model is read plainly."""
    s = levers.spread(_with_tta(table, {"plain": 0.15, "gin": 0.15, "bigaug": 0.15}))
    e = levers.effects(s, "plain").set_index(["lever", "reading"])
    row = e.loc[("gin+tta", "held-out accuracy")]
    assert row["against"] == "plain+tta" and row["change"] == pytest.approx(0.10)
    row = e.loc[("plain+tta", "held-out accuracy")]
    assert row["against"] == "plain" and row["change"] == pytest.approx(0.15)
    assert e.loc[("gin", "held-out accuracy"), "against"] == "plain"
    assert levers.chosen(s, levers.effects(s, "plain"), "plain") == "gin"  # not gin+tta


def test_the_choice_names_every_lever_the_shipped_recipe_combines(table):
    better = table.copy()
    better.loc[better["lever"] == "bigaug", "held-out accuracy"] += 0.15
    s = levers.spread(better)
    words = lever_tables.words(s, levers.effects(s, "plain"), pd.DataFrame(), "plain")
    assert words["lever_chosen"] == "bigaug"
    # both levers the recipe combines, then the baseline they beat
    assert words["lever_beating"] == "bigaug and gin"  # best first


def test_a_lever_the_recipe_already_has_is_not_taken(table, tmp_path):
    defined = [{"name": "plain"}, {"name": "gin", "augment": "strong"},
               {"name": "bigaug", "augment": "bigaug"}]
    q = shipping.with_chosen(_shipping_run(tmp_path, table, defined))
    assert getattr(q, "levers_taken", None) is None  # gin helps, but changes nothing here


def test_a_reading_without_images_is_not_measured_rather_than_noise(table):
    """The quick profile's deduplicated home set can hold no healthy image: its
    specificity is not a number, and its change is 'not measured', not counted as noise."""
    s = levers.spread(table)
    s[("home specificity at held-out t*", "mean")] = float("nan")
    for stat in ("sd", "min", "max"):
        s[("home specificity at held-out t*", stat)] = float("nan")
    e = levers.effects(s, "plain")
    rows = e[e["reading"] == "home specificity at held-out t*"]
    assert set(rows["verdict"]) == {"not measured"}
    assert "not measured" in lever_tables.effects_table(e).to_html()
    measured = len(e) - len(rows)
    words = lever_tables.words(s, e, pd.DataFrame(), "plain")
    assert words["lever_noise"].endswith(f"of {measured}")


#: Training seconds per seed for 1,000 images seen (08c's models at 80 px; res128 at 128);
#: simclr's pretraining: 60 s for 500 images pretrained (its supervised part costs plain's).
COSTS = {"plain": 100.0, "gin": 110.0, "bigaug": 180.0, "res128": 250.0, "simclr": 100.0}
DEFINED = [{"name": "plain"}, {"name": "gin", "augment": "gin"},
           {"name": "bigaug", "augment": "bigaug"}, {"name": "res128", "image_size": 128},
           {"name": "simclr", "pretrain_epochs": 5}]


def _with_costs(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` plus res128 and simclr levers (plain's figures) and every model's cost."""
    extra = [table[table["lever"] == "plain"].assign(lever=name) for name in ("res128", "simclr")]
    out = pd.concat([table, *extra], ignore_index=True)
    single = out["seed"] != levers.ENSEMBLE
    out.loc[single, "train seconds"] = out.loc[single, "lever"].map(COSTS)
    out.loc[single, "images seen"] = 1000
    out.loc[single, "image size"] = 80
    out.loc[out["lever"] == "res128", "image size"] = 128
    pretrained = single & (out["lever"] == "simclr")
    out.loc[single, ["pretrain seconds", "pretrain images seen"]] = 0
    out.loc[pretrained, ["pretrain seconds", "pretrain images seen"]] = (60.0, 500)
    return out


def test_training_cost_counts_every_phase_and_the_pretraining(tmp_path):
    import json

    phase = {"seconds": 30.0, "epochs_run": 4,
             "inputs": {"images": {"train": 250}, "input_shape": [80, 80, 3]}}
    (tmp_path / "fit.json").write_text(json.dumps({"phases": [phase, phase]}))
    assert experiment.training_cost(tmp_path) == {
        "train seconds": 60.0, "images seen": 2000, "pretrain seconds": 0.0,
        "pretrain images seen": 0, "image size": 80}
    (tmp_path / "pretrain.json").write_text(json.dumps({"seconds": 15.0, "images": 250,
                                                       "epochs": 2}))
    cost = experiment.training_cost(tmp_path)
    assert (cost["pretrain seconds"], cost["pretrain images seen"]) == (15.0, 500)


def test_training_time_is_predicted_from_the_levers_own_models(table):
    defined = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in DEFINED}
    t = _with_costs(table)
    # at 128 px the res128 models give 0.25 s per image seen; gin costs 1.1 times plain
    minutes = shipping.predicted_minutes(t, defined, "plain", ["gin"], image_size=128,
                                       train_images=1000, epochs=40)
    assert minutes == pytest.approx(0.25 * 40_000 * 1.1 / 60)
    # simclr: pretraining once (0.12 s per image at 80 px, 2.5 times that at 128 px, for 5
    # epochs of 1,000 images), not once per supervised epoch
    minutes = shipping.predicted_minutes(t, defined, "plain", ["simclr"], image_size=128,
                                       train_images=1000, epochs=40)
    assert minutes == pytest.approx((0.25 * 40_000 + 0.12 * 2.5 * 1000 * 5) / 60)
    # no lever trained at 96 px: plain's rate scaled by the pixel count
    minutes = shipping.predicted_minutes(t, defined, "plain", [], image_size=96,
                                       train_images=1000, epochs=40)
    assert minutes == pytest.approx(0.1 * 1.44 * 40_000 / 60)


def test_a_lever_that_would_take_training_past_its_budget_is_left_out(table, tmp_path):
    """bigaug leads on held-out Sartaj but would take the recipe from 42 to 75 predicted
    minutes, over 60: it is left out and said so; gin (46 minutes) is taken."""
    from brainmri.report.studies import findings

    better = table.copy()
    better.loc[better["lever"] == "bigaug", "held-out accuracy"] += 0.15
    p = _shipping_run(tmp_path, _with_costs(better), DEFINED, image_size=128, epochs=40,
                      training_minutes=60)
    assert levers.helping(_with_costs(better), "plain")[:2] == ["bigaug", "gin"]
    q = shipping.with_chosen(p, train_images=250)  # 250 images x 40 epochs at 0.25 s: 42 min
    assert (q.augment, q.levers_taken, q.levers_too_slow) == ("gin", ["gin"], {"bigaug": 75.0})
    words = findings.recipe_parts(q)
    # gin taken; bigaug left out with its predicted minutes, over the 60 allowed
    assert words["levers_taken"] == "gin" and words["training_minutes"] == "60"
    assert words["levers_too_slow"] == "bigaug (75.0 min predicted)"
    # a larger budget takes bigaug (and gin then sets the same parameter: not combined)
    p.training_minutes = 80
    q = shipping.with_chosen(p, train_images=250)
    assert (q.levers_taken, q.levers_too_slow) == (["bigaug"], {})


def test_levers_without_their_training_costs_ask_for_chapter_08c_again(table, tmp_path):
    from brainmri.core.errors import BrainMRIError

    p = _shipping_run(tmp_path, table, DEFINED, image_size=128, epochs=40,
                      training_minutes=60)
    with pytest.raises(BrainMRIError, match="run 08c_shortcut_ablation again"):
        shipping.with_chosen(p, train_images=250)


@pytest.mark.slow
def test_a_study_row_is_reused_when_its_key_matches_and_retrained_when_not(tmp_path,
                                                                           monkeypatch):
    """Issue 33: a lever model, once trained and scored, leaves a row (predictions, costs,
    AdaBN readings; no weights) that a later run restores instead of training; the same
    table comes back. A row whose key no longer matches (another setting, another
    dataset's bytes) is trained again."""
    from brainmri.report.series import notebook
    from brainmri.report.studies import experiment, study

    data = _synthetic_collections(tmp_path, monkeypatch)
    tiny = {"image_size": 32, "widths": [4, 8, 8, 16], "epochs": 1, "warmup_epochs": 0,
            "batch_size": 8, "external_dataset": None, "data_dir": str(data),
            "max_distance": 0, "min_correlation": 0.999}
    base = notebook.parameters("08b_compact_cnn", {**tiny, "dataset": "nickparvar",
                                                   "hold_out_source": "sartaj", "seed": 42})
    scoring = {"target_sensitivity": 0.9, "n_bootstrap": 20, "ece_bins": 5, "seed": 42}

    def study_run(name):
        p = notebook.setup("08c_shortcut_ablation", {"data_dir": str(data)},
                           run_dir=str(tmp_path / name))
        excluded = p.run.external_exclusions("br35h")
        excluded.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"path": []}).to_csv(excluded, index=False)
        return p.run

    first = study_run("first")
    table, adabn = levers.train(base, [{"name": "plain"}], [42], first, scoring, "br35h")
    rows = tmp_path / study.FOLDER  # beside the run folders, shared by them
    assert sorted(path.name for path in rows.iterdir()) == [
        "compact_cnn+ablation-lever-plain-seed42-nickparvar"]
    assert not any(rows.rglob("*.keras"))  # no weights kept

    # a fresh run beside it trains nothing: the same table returns from the rows
    second = study_run("second")
    trained = []
    real_run = experiment.run
    monkeypatch.setattr(experiment, "run", lambda p, **kw: trained.append(p) or real_run(p, **kw))
    again, adabn_again = levers.train(base, [{"name": "plain"}], [42], second, scoring, "br35h")
    assert trained == []
    pd.testing.assert_frame_equal(again, table)
    pd.testing.assert_frame_equal(adabn_again, adabn)

    # another setting: the stored row does not match, the model is trained again, but
    # only within the study's budget: once spent, the chapter stops before training
    changed = {**base, "epochs": 2}
    study.limit(0)
    try:
        with pytest.raises(study.StudyBudgetSpent, match="run the same command again"):
            levers.train(changed, [{"name": "plain"}], [42], second, scoring, "br35h")
    finally:
        study.limit(None)
    assert trained == []
    levers.train(changed, [{"name": "plain"}], [42], second, scoring, "br35h")
    assert len(trained) == 1
    # other bytes in a dataset the model reads: not reused either
    from brainmri.data.sources import get_spec

    key = study.key({**changed, "seed": 42})
    image = next(p for p in (data / get_spec("nickparvar").folder).rglob("*") if p.is_file())
    image.write_bytes(b"not the same image")
    assert study.key({**changed, "seed": 42})["data"] != key["data"]
