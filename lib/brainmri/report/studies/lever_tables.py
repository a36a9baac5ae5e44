"""Chapter 08c's lever tables and the words its findings paste (``studies.levers``
computes the readings, their spread over seeds and the effects)."""

from __future__ import annotations

import pandas as pd

from brainmri import CLASS_NAMES
from brainmri.report.show import frames
from brainmri.report.show.glued import percent
from brainmri.report.studies.levers import THRESHOLDED, TTA, chosen, helping_in
from brainmri.report.studies.summary import listing


def _mean_sd(s: pd.DataFrame, name: str) -> list[str]:
    return [f"{100 * m:.1f} ± {100 * sd:.1f}" if sd == sd else f"{100 * m:.1f}"
            for m, sd in zip(s[(name, "mean")], s[(name, "sd")])]


def models_table(table: pd.DataFrame):
    """One row per trained model and ensemble, each reading with its count (their
    test-time-augmented twins are summarised in ``spread_table`` only)."""
    table = table[~table["lever"].str.endswith(TTA)]
    shown = table.assign(
        seed=table["seed"].astype(str),
        held=frames.rate_column(table["held-out correct"], table["held-out accuracy n"]),
        dedup=frames.rate_column(table["dedup test correct"], table["dedup test accuracy n"]),
        external=frames.rate_column(table["external found"],
                                    table["external sensitivity n"]))
    return frames.table(shown, {"lever": "Lever", "seed": "Seed",
                                "held": "Sartaj, held out: right (95 % CI, %)",
                                "dedup": "Home dedup. test: right (95 % CI, %)",
                                "external": "Br35H tumours found (95 % CI, %)"},
                        caption="Every lever model, and the ensemble of its seeds")


def source_groups(base: dict, run) -> pd.DataFrame:
    """The lever models' training images by class and source collection, as source-aware
    training attributes them (chapter 01c's near copies). It shows what the source-aware
    levers can act on: where every class comes from one collection, source-balanced
    sampling only balances the classes, and a class-conditional adversary has nothing to
    tell apart within a class."""
    from brainmri.data.recipes import inputs_for
    from brainmri.report.series.notebook import Params

    p = Params(chapter="levers", run=run, **{**base, "source_balance": True})
    inputs = inputs_for(p, splits=("train",))
    labels = [CLASS_NAMES[int(i)] for i in inputs.arrays["train"][1]]
    groups = pd.crosstab(pd.Series(labels, name="class"),
                         pd.Series(inputs.sources, name="source"))
    return groups.reindex(CLASS_NAMES, fill_value=0).rename_axis(columns=None)


def source_groups_table(groups: pd.DataFrame):
    """:func:`source_groups` with the number of collections each class comes from."""
    from brainmri.data.sources import DISPLAY

    shown = groups.assign(collections=(groups > 0).sum(axis=1)).reset_index()
    sources = list(groups.columns)
    return frames.table(shown, {"class": "Class", **{s: DISPLAY.get(s, s) for s in sources},
                                "collections": "Collections"},
                        counts=[*sources, "collections"],
                        caption="Lever training images by class and source collection")


def source_words(groups: pd.DataFrame) -> dict:
    """How many classes come from a single collection in the levers' training data."""
    single = int(((groups > 0).sum(axis=1) == 1).sum())
    return {"lever_single_source": f"{single} of {len(groups)}"}


#: Each reading's column in the spread table.
SPREAD_HEADERS = {"held-out accuracy": "Sartaj held out, %",
                  "dedup test accuracy": "Home dedup. test, %",
                  "external sensitivity": "Br35H tumours found, %",
                  THRESHOLDED[0]: "Br35H found at Sartaj's t*, %",
                  THRESHOLDED[1]: "Home healthy at Sartaj's t*, %"}


def spread_table(s: pd.DataFrame):
    """Per lever: mean ± SD over seeds of each reading."""
    names = [n for n in dict.fromkeys(s.columns.get_level_values(0)) if n != "seeds"]
    shown = pd.DataFrame({"lever": s.index, "seeds": s["seeds"].to_numpy(),
                          **{name: _mean_sd(s, name) for name in names}})
    return frames.table(shown, {"lever": "Lever", "seeds": "Seeds",
                                **{n: SPREAD_HEADERS[n] for n in names}},
                        counts=["seeds"], caption="Mean ± SD over seeds")


#: Each reading's column in the effects table.
EFFECT_HEADERS = {"held-out accuracy": "Sartaj held out", "dedup test accuracy": "Home dedup.",
                  "external sensitivity": "Br35H found",
                  THRESHOLDED[0]: "Br35H found at Sartaj's t*",
                  THRESHOLDED[1]: "Home healthy at Sartaj's t*"}


def effects_table(e: pd.DataFrame):
    """One row per lever, one column per reading: the change of the mean in points, its
    verdict, and the widest seed range it was judged against."""
    cells = e.assign(cell=[f"{100 * c:+.1f} ({v}; range {100 * r:.1f})" if c == c else v
                           for c, v, r in zip(e["change"], e["verdict"], e["seed range"])])
    wide = cells.pivot(index=["lever", "against"], columns="reading", values="cell")
    order = list(dict.fromkeys(zip(e["lever"], e["against"])))
    wide = wide.reindex(index=pd.MultiIndex.from_tuples(order, names=["lever", "against"]))
    wide = wide.reset_index()
    readings = [r for r in EFFECT_HEADERS if r in wide.columns]
    return frames.table(wide, {"lever": "Lever", "against": "Against",
                               **{r: EFFECT_HEADERS[r] for r in readings}},
                        caption="Change of the mean against the baseline (read the same way), "
                                "points (verdict; widest seed range)")


def adabn_table(adabn: pd.DataFrame):
    """Br35H before and after adapting the batch-norm statistics to it, per lever: the
    mean over its seeds and their range (the same images read by each seed's model, so
    the counts are not pooled into one rate)."""
    rates = adabn.assign(**{
        "found": adabn["plain tumours found"] / adabn["new tumours"],
        "found_adapted": adabn["adapted tumours found"] / adabn["new tumours"],
        "cleared": adabn["plain healthy cleared"] / adabn["healthy"],
        "cleared_adapted": adabn["adapted healthy cleared"] / adabn["healthy"]})
    columns = ["found", "found_adapted", "cleared", "cleared_adapted"]
    g = rates.groupby("lever", sort=False)[columns]
    low, mean, high = g.min(), g.mean(), g.max()
    shown = pd.DataFrame({c: [f"{100 * m:.1f} ({100 * lo:.1f}-{100 * hi:.1f})"
                              for m, lo, hi in zip(mean[c], low[c], high[c])]
                          for c in columns}, index=mean.index).reset_index()
    shown["seeds"] = g.size().to_numpy()
    shown["images"] = [f"{int(t)} / {int(h)}" for t, h in
                       zip(adabn.groupby("lever", sort=False)["new tumours"].first(),
                           adabn.groupby("lever", sort=False)["healthy"].first())]
    return frames.table(shown, {"lever": "Lever", "seeds": "Seeds",
                                "images": "New tumours / healthy images",
                                "found": "Tumours found, as trained",
                                "found_adapted": "… after AdaBN",
                                "cleared": "Healthy called healthy, as trained",
                                "cleared_adapted": "… after AdaBN"},
                        counts=["seeds"],
                        caption="AdaBN on Br35H (deployment mode): mean % over seeds "
                                "(lowest-highest)")


def words(s: pd.DataFrame, e: pd.DataFrame, adabn: pd.DataFrame, baseline: str) -> dict:
    """The keys chapter 08c's findings paste about the levers."""
    best = chosen(s, e, baseline)

    def reading(lever: str, name: str) -> str:
        r = s.loc[lever, name]
        return (f"{percent(r['mean'])} (SD {100 * r['sd']:.1f} points, "
                f"{percent(r['min'])} to {percent(r['max'])})")

    verdicts = {v: listing([f"{r.lever} on {r.reading} ({100 * r.change:+.1f})"
                            for r in e[e["verdict"] == v].itertuples()])
                for v in ("helps", "hurts")}
    out = {"lever_chosen": best, "lever_baseline": baseline,
           "lever_beating": listing(helping_in(s, e)),
           "lever_seeds": f"{int(s['seeds'].max())}",
           "lever_helps": verdicts["helps"], "lever_hurts": verdicts["hurts"],
           "lever_noise": f"{int((e['verdict'] == 'noise').sum())} of "
                          f"{int((e['verdict'] != 'not measured').sum())}"}
    for key, name in (("held", "held-out accuracy"), ("dedup", "dedup test accuracy"),
                      ("external", "external sensitivity"), ("external_thr", THRESHOLDED[0]),
                      ("home_spec_thr", THRESHOLDED[1])):
        have = name in s.columns.get_level_values(0)
        out[f"lever_chosen_{key}"] = reading(best, name) if have else "n/a"
        out[f"lever_baseline_{key}"] = reading(baseline, name) if have else "n/a"
    rows = adabn[adabn["lever"] == best] if not adabn.empty else adabn
    if not rows.empty:  # the chosen lever's models, the mean of their rates over seeds
        out.update(_adabn_words(rows))
    else:
        out["adabn_found"] = out["adabn_cleared"] = out["adabn_balanced"] = "n/a"
        out["adabn_verdict"] = "not measured"
    return out


def _shares(rows: pd.DataFrame, state: str) -> tuple[pd.Series, pd.Series]:
    """Each model's share of Br35H's new tumours found and of its healthy images cleared,
    as trained (``plain``) or ``adapted``."""
    return (rows[f"{state} tumours found"] / rows["new tumours"],
            rows[f"{state} healthy cleared"] / rows["healthy"])


def _adabn_words(rows: pd.DataFrame) -> dict:
    """AdaBN's effect on the chosen recipe's models, and whether it separates Br35H's
    tumours from its healthy images better or only moves the decision: the change of their
    balanced accuracy (the mean of the two shares, which a shift of the decision alone
    trades one for the other) against its seed range as trained."""
    (found, cleared), (found_ad, cleared_ad) = _shares(rows, "plain"), _shares(rows, "adapted")
    before, after = (found + cleared) / 2, (found_ad + cleared_ad) / 2
    change, spread = after.mean() - before.mean(), before.max() - before.min()
    if change > spread:
        verdict = "the adapted models separate tumours from healthy images better, beyond " \
                  "the seed spread"
    else:
        verdict = ("the adapted models separate tumours from healthy images "
                   + ("worse" if change < -spread else "no better"))
        if (found_ad > found).all() and (cleared_ad < cleared).all():
            verdict += (": the adaptation pushes every model towards \"tumour\", as a lower "
                        "decision threshold would, and is not a usable mode at these settings")
    return {"adabn_found": f"{percent(found.mean())} to {percent(found_ad.mean())}",
            "adabn_cleared": f"{percent(cleared.mean())} to {percent(cleared_ad.mean())}",
            "adabn_balanced": f"{percent(before.mean())} to {percent(after.mean())}",
            "adabn_verdict": verdict}
