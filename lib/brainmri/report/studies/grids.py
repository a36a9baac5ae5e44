"""Studies that train one recipe several ways and tabulate the models like the benchmark:
chapter 05b's colour-mode x epochs grid (report 000's untested claims) and chapter 08c's
ablation of what the compact CNN learns from. Each model is one ``experiment.run``; the
ablation's models are study rows (``study``) that a later run restores."""

from __future__ import annotations

import pandas as pd

from brainmri.core.runfolder import ABLATION_PREFIX, model_tag
from brainmri.evaluation import predictions
from brainmri.report.series.notebook import Params
from brainmri.report.studies import study
from brainmri.report.studies.experiment import (
    Result,
    bn_twin,
    continue_training,
    display_name,
    run,
    with_reestimated_batchnorm,
)


def ablation(base: dict, variants: list[dict], run_folder, scoring: dict,
             repeat: list[str] = (), seeds: list[int] = ()) -> pd.DataFrame:
    """Train one model per variant (``base`` parameters with the variant's changes), and
    its batch-norm re-estimated twin when ``also_bn``; score them all like the benchmark.
    The variants named in ``repeat`` are trained again with each of ``seeds``.

    One row per model: its recipe (variant name, ``+bn`` for the twin) and seed,
    validation accuracy (the only figure a choice may rest on), the home test and
    deduplicated test, and the external Br35H tumour images.
    """
    from brainmri.evaluation import benchmark

    repeats = [{**v, "seed": seed} for v in variants if v["name"] in repeat
               for seed in seeds if seed != base["seed"]]
    names, recipes, model_seeds = [], [], []
    for variant in [*variants, *repeats]:
        changes = {k: v for k, v in variant.items() if k not in ("name", "also_bn")}
        seed = changes.get("seed", base["seed"])
        suffix = "" if seed == base["seed"] else f"-seed{seed}"
        p = Params(chapter="ablation", run=run_folder, **{
            **base, **changes, "variant": ABLATION_PREFIX + variant["name"] + suffix})
        twins = [display_name(bn_twin(p))] if variant.get("also_bn") else []

        def train(p=p, twins=twins) -> dict:
            result = run(p, reuse=True)
            if twins:
                with_reestimated_batchnorm(result)
            return {}

        study.reuse_or_train(p, twins, train)  # a row of an earlier run, else trained
        names.append(display_name(p))
        recipes.append(variant["name"])
        if twins:
            names.append(twins[0])
            recipes.append(variant["name"] + "+bn")
        model_seeds += [seed] * (len(names) - len(model_seeds))
    scores = benchmark.benchmark(run_folder, models=names, studies=True, **scoring)
    table = scores.pivot_table(index="model", columns="eval_set", aggfunc="first",
                               values=["accuracy", "tumour_sensitivity", "tumour_specificity",
                                       "sens_ci_low", "sens_ci_high", "n", "no_tumours",
                                       "false_alarms", "tumours", "missed_tumours",
                                       "correct"])
    val = {name: _val_counts(run_folder, name, base["dataset"]) for name in names}
    out = pd.DataFrame({
        "recipe": pd.Series(recipes, index=names),
        "seed": pd.Series(model_seeds, index=names),
        "val accuracy": pd.Series({name: k / n for name, (k, n) in val.items()}),
        "test accuracy": table[("accuracy", "test")],
        "dedup test accuracy": table.get(("accuracy", "test_dedup")),
        "test specificity": table[("tumour_specificity", "test")],
        "dedup test specificity": table.get(("tumour_specificity", "test_dedup")),
        "external sensitivity": table.get(("tumour_sensitivity", "external_br35h")),
        "external CI low": table.get(("sens_ci_low", "external_br35h")),
        "external CI high": table.get(("sens_ci_high", "external_br35h")),
        "external n": table.get(("n", "external_br35h")),
        # the counts behind the rates (a specificity on 19 images must say so)
        "val correct": pd.Series({name: k for name, (k, _) in val.items()}),
        "val images": pd.Series({name: n for name, (_, n) in val.items()}),
        "test correct": table.get(("correct", "test")),
        "test images": table.get(("n", "test")),
        "test no-tumour images": table.get(("no_tumours", "test")),
        "test false alarms": table.get(("false_alarms", "test")),
        "dedup test no-tumour images": table.get(("no_tumours", "test_dedup")),
        "dedup test false alarms": table.get(("false_alarms", "test_dedup")),
        "external missed": table.get(("missed_tumours", "external_br35h")),
    })
    numeric = out.columns.drop("recipe")  # a set no variant was scored on: NaN, not None
    out[numeric] = out[numeric].apply(pd.to_numeric, errors="coerce")
    return out.reindex(names)


def epochs_and_colour(base: dict, color_modes: list[str], epochs: list[int],
                      seeds: list[int], run_folder, scoring: dict) -> pd.DataFrame:
    """Report 000's untested claims (colour mode, number of epochs) as a grid, and the
    spread over seeds of its cheapest cell.

    Each colour mode trains for ``epochs[0]`` epochs, then on to ``epochs[1]`` (one
    training, read twice: see ``continue_training``). The first colour mode at
    ``epochs[0]`` is trained again with each extra seed. One row per model: its setting,
    validation accuracy and test accuracy with the benchmark's bootstrap interval.
    """
    from brainmri.evaluation import benchmark

    short, long_ = epochs
    rows = []

    def train(color_mode: str, seed: int) -> Result:
        suffix = "" if seed == base["seed"] else f"-seed{seed}"
        p = Params(chapter="claims", run=run_folder, **{
            **base, "color_mode": color_mode, "epochs": short, "seed": seed,
            "variant": f"{ABLATION_PREFIX}{color_mode}-{short}ep{suffix}"})
        result = run(p)
        rows.append((display_name(p), color_mode, short, seed))
        return result

    for color_mode in color_modes:
        result = train(color_mode, base["seed"])
        longer = continue_training(
            result, long_ - short, f"{ABLATION_PREFIX}{color_mode}-{long_}ep")
        rows.append((display_name(longer.p), color_mode, long_, base["seed"]))
    for seed in seeds:
        if seed != base["seed"]:
            train(color_modes[0], seed)
    table = pd.DataFrame(rows, columns=["model", "color_mode", "epochs", "seed"])
    table.insert(0, "setting", [f"{c}, {e} epochs" for c, e in zip(table["color_mode"],
                                                                   table["epochs"])])
    scores = benchmark.benchmark(run_folder, models=table["model"].tolist(), studies=True,
                                 **scoring)
    test = scores[scores["eval_set"] == "test"].set_index("model")
    val = [_val_counts(run_folder, m, base["dataset"]) for m in table["model"]]
    table["val accuracy"] = [k / n for k, n in val]
    table["val correct"] = [k for k, _ in val]
    table["val images"] = [n for _, n in val]
    table["test accuracy"] = table["model"].map(test["accuracy"])
    table["test CI low"] = table["model"].map(test["acc_ci_low"])
    table["test CI high"] = table["model"].map(test["acc_ci_high"])
    table["test images"] = table["model"].map(test["n"])
    return table


def _val_counts(run_folder, model: str, dataset_name: str) -> tuple[int, int]:
    """(correct, images) of ``model`` on its validation split: the count behind the
    validation accuracy a recipe is chosen on."""
    frame = pd.read_csv(run_folder.predictions(model_tag(model, dataset_name), "val"))
    y, probs = predictions.arrays(frame)[:2]
    return int((probs.argmax(axis=1) == y).sum()), len(y)
