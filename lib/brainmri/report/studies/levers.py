"""Generalisation levers chosen by how a model transfers to a collection it never saw.

Protocol (issue 21). Every lever trains on the home dataset with one collection held out
entirely (``hold_out_source``, Sartaj: the only collection that brings both classes), once
per seed, and each model is read three ways:

- the held-out collection, all of its images: the only score a choice rests on;
- the home deduplicated test set, beside it (what the lever costs at home);
- Br35H's new tumour images: reported, never used to choose (evaluation only).

With Sartaj held out, source and class coincide in training (figshare brings the tumours,
Br35H the healthy brains): a lever that scores well on Sartaj learned tumours rather than
collections. The seeds of one lever also form an ensemble (averaged probabilities), and
each trained model can be adapted to Br35H as a whole (AdaBN: batch-norm statistics
re-estimated on its unlabelled images), a deployment mode reported in its own table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainmri.core.runfolder import ABLATION_PREFIX, model_tag
from brainmri.data import dataset, duplicates, recipes
from brainmri.data.inputs import ModelInputs
from brainmri.evaluation import benchmark, ensemble, metrics, predictions
from brainmri.modeling import recalibrate
from brainmri.report.series.notebook import Params
from brainmri.report.studies import experiment, study

#: Variant names of the lever models: ``ablation-lever-<name>-seed<seed>``.
PREFIX = ABLATION_PREFIX + "lever-"
ENSEMBLE = "ensemble"
#: A lever's models scored with test-time augmentation (``score_mirrored``).
TTA = "+tta"
#: The three readings, as (benchmark eval set, column in the levers table).
READINGS = {"held-out accuracy": ("held_out_source", "accuracy"),
            "dedup test accuracy": ("test_dedup", "accuracy"),
            "external sensitivity": ("external_br35h", "tumour_sensitivity")}
#: The clinical reading with its threshold chosen on the held-out collection
#: (``held_out_threshold``), judged over seeds like the three above.
THRESHOLDED = ("external sensitivity at held-out t*", "home specificity at held-out t*")

#: The verdict on a lever measured with one seed: retraining alone moves a recipe by its
#: seed range, so one seed supports no claim.
ONE_SEED = "one seed: no claim"


def train(base: dict, levers: list[dict], seeds: list[int], run_folder, scoring: dict,
          adapt_to: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train every lever (``base`` parameters with the lever's changes) with each seed, and
    the seeds' ensemble; score them like the benchmark.

    Returns (one row per model: lever, seed, the three readings with their counts; and the
    AdaBN table: each model's Br35H readings before and after adapting its batch-norm
    statistics to all of ``adapt_to``'s images, when ``adapt_to`` is given)."""
    if not base.get("hold_out_source"):
        raise ValueError("the levers need hold_out_source: the collection they are chosen on")
    models, adapted = [], []
    for lever in levers:
        changes = {k: v for k, v in lever.items() if k != "name"}
        members, twins = [], []
        for seed in seeds:
            p = Params(chapter="levers", run=run_folder, **{
                **base, **changes, "seed": seed, "split_seed": base["seed"],
                "variant": f"{PREFIX}{lever['name']}-seed{seed}"})
            members.append(experiment.display_name(p))
            twins.append(f"{base['model_name']}+{PREFIX}{lever['name']}{TTA}-seed{seed}")
            row = _study_row(p, twins[-1], adapt_to)
            models += [{"model": members[-1], "lever": lever["name"], "seed": seed,
                        **row["cost"]},
                       {"model": twins[-1], "lever": lever["name"] + TTA, "seed": seed}]
            if adapt_to:
                adapted.append({"lever": lever["name"], "seed": seed, **row["adabn"]})
        for name, group in ((lever["name"], members), (lever["name"] + TTA, twins)):
            if len(group) > 1:
                model = f"{base['model_name']}+{PREFIX}{name}-{ENSEMBLE}"
                ensemble.save(run_folder, group, base["dataset"], model)
                models.append({"model": model, "lever": name, "seed": ENSEMBLE})
    scores = benchmark.benchmark(run_folder, models=[m["model"] for m in models],
                                 studies=True, **scoring)
    table = readings(pd.DataFrame(models), scores)
    thresholded = pd.DataFrame([held_out_threshold(run_folder, m, base["dataset"],
                                                   scoring["target_sensitivity"])
                                for m in table["model"]], index=table.index)
    return table.join(thresholded), pd.DataFrame(adapted)


def _study_row(p: Params, twin: str, adapt_to: str | None) -> dict:
    """One lever model's row of the study: restored when the run holds one with the same
    key (``study.reuse_or_train``), else trained, scored (its test-time-augmented
    ``twin`` too) and stored."""
    def train() -> dict:
        result = experiment.run(p, reuse=True)
        score_mirrored(result, twin)
        return {"cost": experiment.training_cost(result.folder),
                "adabn": adabn_reading(result, adapt_to) if adapt_to else None}

    return study.reuse_or_train(p, [twin], train, {"adapt_to": adapt_to})


def held_out_threshold(run, model: str, dataset_name: str, target: float) -> dict:
    """The clinical threshold on P(no tumour) chosen on the held-out collection (the
    smallest that finds ``target`` of its tumours: a collection the model never saw, so
    the threshold is set where the model is unsure), applied to Br35H's new tumour images
    and to the healthy images of the home deduplicated test set (most of the official
    set's healthy images are Br35H's, whose copies stay in training with Sartaj held out;
    the benchmark pairs external figures with the same set)."""
    tag = model_tag(model, dataset_name)
    y, probs, _ = predictions.arrays(pd.read_csv(run.predictions(tag,
                                                                 predictions.HELD_OUT_SPLIT)))
    t = metrics.threshold_for_sensitivity(y, probs, target)
    br35h = pd.read_csv(run.predictions(tag, predictions.DETECTION_SPLIT))
    new = br35h[(br35h["label"] == "tumour") & ~br35h["path"].isin(_copies_in_training(run))]
    home = pd.read_csv(run.predictions(tag, "test"))
    home = home[~home["path"].isin(duplicates.read_paths(run.test_with_copy(dataset_name),
                                                         "test_path"))]
    y_home, probs_home, _ = predictions.arrays(home)
    healthy = y_home == metrics.NO_TUMOR
    found = int((predictions.arrays(new)[1][:, metrics.NO_TUMOR] < t).sum())
    cleared = int((probs_home[healthy, metrics.NO_TUMOR] >= t).sum())
    return {"held-out t*": t, "external found at held-out t*": found,
            THRESHOLDED[0]: found / len(new) if len(new) else np.nan,
            "home healthy cleared at held-out t*": cleared,
            "home healthy": int(healthy.sum()),
            THRESHOLDED[1]: cleared / healthy.sum() if healthy.any() else np.nan}


def readings(models: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """``models`` (model, lever, seed) with each reading and the counts behind it."""
    by = scores.set_index(["model", "eval_set"])
    out = models.copy()

    def pick(eval_set: str, column: str) -> list:
        return [by[column].get((m, eval_set), np.nan) for m in out["model"]]

    for name, (eval_set, column) in READINGS.items():
        out[name] = pd.to_numeric(pick(eval_set, column), errors="coerce")
        out[f"{name} n"] = pick(eval_set, "n")
    out["held-out correct"] = pick("held_out_source", "correct")
    out["dedup test correct"] = pick("test_dedup", "correct")
    out["external found"] = pick("external_br35h", "tumours_found")
    out["external CI low"] = pick("external_br35h", "sens_ci_low")
    out["external CI high"] = pick("external_br35h", "sens_ci_high")
    out["held-out sensitivity"] = pick("held_out_source", "tumour_sensitivity")
    out["held-out specificity"] = pick("held_out_source", "tumour_specificity")
    return out


def spread(table: pd.DataFrame) -> pd.DataFrame:
    """Per lever, over its single-seed models (not the ensemble): mean, SD, lowest and
    highest of each reading."""
    single = table[table["seed"] != ENSEMBLE]
    parts = {}
    for name in [*READINGS, *[t for t in THRESHOLDED if t in table]]:
        g = single.groupby("lever", sort=False)[name]
        parts.update({(name, "mean"): g.mean(), (name, "sd"): g.std(), (name, "min"): g.min(),
                      (name, "max"): g.max()})
    out = pd.DataFrame(parts)
    out["seeds"] = single.groupby("lever", sort=False).size()
    return out


def effects(spread_table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Each lever's change in mean against ``baseline``, per reading, and whether it is
    larger than the seed ranges of both (the widest of the two): smaller is noise. A
    lever read with test-time augmentation (``X+tta``) is set against the baseline read
    the same way, so that the augmentation's own effect is not credited to the lever;
    the baseline's twin is set against the baseline (that effect is TTA's). A lever or
    baseline with fewer than two seeds has no seed range: its change is no claim."""
    rows = []
    names = [n for n in dict.fromkeys(spread_table.columns.get_level_values(0)) if n != "seeds"]
    for lever in spread_table.index.drop(baseline, errors="ignore"):
        against = baseline + TTA if (lever.endswith(TTA) and lever != baseline + TTA
                                     and baseline + TTA in spread_table.index) else baseline
        for name in names:
            a, b = spread_table.loc[lever, name], spread_table.loc[against, name]
            change = a["mean"] - b["mean"]
            seeded = min(spread_table.loc[lever, "seeds"],
                         spread_table.loc[against, "seeds"]) >= 2
            yardstick = (max(a["max"] - a["min"], b["max"] - b["min"]) if seeded
                         else float("nan"))
            rows.append({"lever": lever, "against": against, "reading": name,
                         "change": change,
                         "seed range": yardstick,
                         "verdict": ("not measured" if change != change
                                     else ONE_SEED if not seeded
                                     else "noise" if not abs(change) > yardstick
                                     else "helps" if change > 0 else "hurts")})
    return pd.DataFrame(rows, columns=["lever", "against", "reading", "change", "seed range",
                                       "verdict"])


def chosen(spread_table: pd.DataFrame, effects_table: pd.DataFrame, baseline: str) -> str:
    """The best of ``helping``'s levers; ``baseline`` when none helps. The choice rests
    on the held-out collection alone: home and Br35H figures never enter it."""
    return next(iter(helping_in(spread_table, effects_table)), baseline)


def score_mirrored(result, name: str) -> None:
    """Save predictions of ``result``'s model with test-time augmentation (its logits
    averaged with the mirrored image's) under ``name``, on every split the model itself
    was scored on: the benchmark then reads it like any model."""
    from brainmri.modeling.builders import flip_averaged

    p, model = result.p, flip_averaged(result.model)
    predictions.evaluate(model, result.inputs, p.run, name)
    if p.external_binary:
        other = dataset.load(p.external_binary, p.data_dir, p.val_fraction,
                             recipes.split_seed(p), p.subset)
        predictions.evaluate_external(model, result.inputs, other, p.run, name)
    if getattr(p, "hold_out_source", None):
        predictions.evaluate_external(model, result.inputs, recipes.held_out_collection(p),
                                      p.run, name, predictions.HELD_OUT_SPLIT)


def adabn_reading(result, collection: str) -> dict:
    """Br35H read by ``result``'s model as trained and after AdaBN on all of
    ``collection``'s images (labels unused): new tumours found, and healthy images called
    healthy (Br35H's healthy images lie in Nickparvar's training data: a check that the
    adaptation does not simply call everything a tumour, not an external figure)."""
    import keras

    p = result.p
    other = dataset.load(collection, p.data_dir, p.val_fraction, recipes.split_seed(p),
                         p.subset)
    whole = dataset.Dataset(other.name, other.root, other.inventory,
                            other.files.assign(split="test"))
    inputs = ModelInputs(whole, result.inputs.spec, normalization=result.inputs.normalization,
                         batch_size=result.inputs.batch_size, seed=p.seed, splits=("test",))
    new = ~whole.files["path"].isin(_copies_in_training(p.run))
    tumour = (whole.files["label"] == "tumour").to_numpy()
    adapted = keras.models.clone_model(result.model)
    adapted.set_weights(result.model.get_weights())
    recalibrate.reestimate_batchnorm(adapted, inputs.eval("test", with_labels=False))
    row = {}
    for mode, model in (("plain", result.model), ("adapted", adapted)):
        _, probs = predictions.predict(model, inputs, "test")
        called_tumour = probs.argmax(1) != metrics.NO_TUMOR
        row[f"{mode} tumours found"] = int((called_tumour & tumour & new.to_numpy()).sum())
        row[f"{mode} healthy cleared"] = int((~called_tumour & ~tumour).sum())
    row["new tumours"] = int((tumour & new.to_numpy()).sum())
    row["healthy"] = int((~tumour).sum())
    return row


def _copies_in_training(run) -> set[str]:
    """Br35H images with a copy in a training folder (chapter 01c's list)."""
    path = run.external_exclusions(predictions.DETECTION_SPLIT)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run chapter 01c (source audit) first")
    return set(pd.read_csv(path)["path"])


# -- the choice ---------------------------------------------------------------------

def helping(table: pd.DataFrame, baseline: str) -> list[str]:
    """The training levers that beat ``baseline`` on the held-out collection beyond the
    seed spread, best mean first (test-time augmentation is left out: it changes how a
    model is read, not how it is trained, and ``brainmri predict`` reads models plainly)."""
    s = spread(table)
    return helping_in(s, effects(s, baseline))


def helping_in(s: pd.DataFrame, e: pd.DataFrame) -> list[str]:
    """``helping`` from a spread table and its effects, when the caller has them."""
    held = e[(e["reading"] == "held-out accuracy") & (e["verdict"] == "helps")
             & ~e["lever"].str.endswith(TTA)]
    means = s.loc[list(held["lever"]), ("held-out accuracy", "mean")]
    return list(means.sort_values(ascending=False, kind="stable").index)
