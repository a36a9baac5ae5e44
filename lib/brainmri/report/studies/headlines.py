"""The worded values chapter 09 (benchmark) and chapter 10 (explainability) glue for the
book's prose pages. Each function reads a run's tables and returns ``{glue key: text}``,
so that a chapter glues them in one line and the arithmetic behind a sentence lives in one
tested place instead of a notebook cell."""

from __future__ import annotations

import pandas as pd

from brainmri.core.files import read_json
from brainmri.evaluation import benchmark, explain, published
from brainmri.report.show import frames
from brainmri.report.show.glued import number, p_value, percent, rate
from brainmri.report.studies import levers, summary
from brainmri.report.studies.findings import ALPHA

#: Evaluation sets as the pages name them.
SETS = {
    "test": "official test",
    "test_dedup": "deduplicated test",
    "external": "other dataset's test",
    "external_br35h": "Br35H tumours",
}
NA = "n/a"
#: What McNemar's test says of two models, by whether it rejects equality at ALPHA.
PAIRED = {False: "cannot tell them apart", True: "separates them"}
#: The source audit's figure of Br35H tumours the image statistics call healthy.
CALLED_NONE = "Br35H new tumour images called no_tumor"


def _row(table: pd.DataFrame, tag: str | None, eval_set: str) -> pd.Series | None:
    hit = table[(table["tag"] == tag) & (table["eval_set"] == eval_set)]
    return None if hit.empty else hit.iloc[0]


def _right(r: pd.Series | None) -> str:
    """Images answered right, as a rate with its count."""
    return NA if r is None else rate(round(r["accuracy"] * r["n"]), r["n"])


def _acc_ci(r: pd.Series | None, low: str = "acc_ci_low", high: str = "acc_ci_high") -> str:
    if r is None:
        return NA
    return f"{percent(r['accuracy'])} (95 % CI {100 * r[low]:.1f}-{100 * r[high]:.1f})"


def shipped_tag(test: pd.DataFrame) -> str | None:
    """The shipped model's tag: the compact CNN trained on report 001's dataset."""
    return next((tag for tag, r in test.iterrows()
                 if r["model"].startswith("compact_cnn")
                 and r["dataset"] == published.REPORT_001_DATASET), None)


def named(table: pd.DataFrame) -> pd.DataFrame:
    """``metrics.csv`` with a reader's names beside the code names: the model's, marked
    `` (constant)`` on a set where it gives one answer for every image, and every
    collection it trained on (the recipe's additions included, as the benchmark recorded
    them), so that no table shows a constant model or an added collection unannounced."""
    constant = (table["degenerate"].fillna(False).astype(bool) if "degenerate" in table
                else pd.Series(False, index=table.index))
    recorded = (table["trained_on"] if "trained_on" in table
                else pd.Series(None, index=table.index, dtype=object))
    collections = [str(r).split("+") if isinstance(r, str) and r else [d]
                   for r, d in zip(recorded, table["dataset"])]
    return table.assign(
        name=[summary.label(m) + (" (constant)" if c else "")
              for m, c in zip(table["model"], constant)],
        trained_on=[" + ".join(summary.dataset(c) for c in cs) for cs in collections])


def roster(table: pd.DataFrame):
    """One row per model: what it trained on, where it was scored, whether it is constant."""
    scored = (table.groupby("tag", sort=False)
              .agg(name=("name", "first"), trained_on=("trained_on", "first"),
                   sets=("eval_set", lambda s: ", ".join(SETS.get(x, x) for x in s)),
                   constant=("degenerate", lambda d: "yes" if d.any() else ""))
              .reset_index())
    return frames.table(scored, {"name": "model", "trained_on": "trained on",
                                 "sets": "scored on", "constant": "constant answer"},
                        caption="The models of this run and the sets they were scored on")


def threshold_words(test: pd.DataFrame, shipped: str | None, target: float) -> dict:
    """The shipped model's argmax and threshold readings on its home test set."""
    words = {"target_sensitivity": percent(target, 0)}
    s = test.loc[shipped] if shipped else None
    columns = {"shipped_missed_argmax": "missed_tumours",
               "shipped_missed_thr": "missed_tumours_thr",
               "shipped_alarms_argmax": "false_alarms",
               "shipped_alarms_thr": "false_alarms_thr"}
    words.update({k: NA if s is None else number(s[c]) for k, c in columns.items()})
    words["shipped_name"] = NA if s is None else s["name"]
    words["shipped_threshold"] = NA if s is None else f"{s['threshold']:.2f}"
    words["shipped_thr_word"] = (NA if s is None else
                                 summary.compare(s["missed_tumours_thr"], s["missed_tumours"]))
    return words


def seed_spreads(run) -> pd.DataFrame:
    """Chapters 05b's and 08c's seed repeats (its ablation and its levers, ensembles left
    out), one row per retrained setting."""
    spreads = []
    for path, by, value, low, high, chapter in (
            (run.claims, "setting", "test accuracy", "test CI low", "test CI high",
             "05b, test accuracy"),
            (run.ablation, "recipe", "external sensitivity", "external CI low",
             "external CI high", "08c, Br35H sensitivity"),
            (run.levers, "lever", "external sensitivity", "external CI low",
             "external CI high", "08c levers, Br35H sensitivity")):
        if path.exists():
            table = pd.read_csv(path)
            if "seed" in table:
                table = table[table["seed"].astype(str) != levers.ENSEMBLE]
            spreads.append(benchmark.seed_spread(table, by=by, value=value,
                                                 ci_low=low, ci_high=high)
                           .assign(chapter=chapter))
    return (pd.concat(spreads).rename_axis("setting").reset_index() if spreads
            else pd.DataFrame(columns=["chapter", "setting"]))


def seed_words(spread: pd.DataFrame) -> dict:
    """Each chapter's seed range (``seeds_05b_*``, ``seeds_08c_*``: lowest, highest, number
    of seeds, SD in points, one model's interval width in points), the shipped kind of
    recipe (``+bn``) first."""
    words = {}
    for key, chapter in (("seeds_05b", "05b, test accuracy"),
                         ("seeds_08c", "08c, Br35H sensitivity")):
        rows = spread[spread["chapter"] == chapter]
        # stable: among several +bn recipes, the first repeated (crop-union, shipped)
        rows = rows.sort_values("setting", key=lambda s: ~s.str.endswith("+bn"), kind="stable")
        r = rows.iloc[0] if not rows.empty else None
        parts = {} if r is None else {
            "low": percent(r["min"]), "high": percent(r["max"]), "n": number(r["seeds"]),
            "sd": f"{100 * r['sd over seeds']:.1f}",
            "ci": f"{100 * r['bootstrap CI width']:.1f}"}
        words.update({f"{key}_{part}": parts.get(part, NA)
                      for part in ("low", "high", "n", "sd", "ci")})
    return words


def br35h_table(external: pd.DataFrame):
    """Br35H's new tumours found, beside each model's home specificity (argmax and t*)."""
    e = external.reset_index()
    e = e.assign(
        found=frames.rate_column(e["n"] - e["missed_tumours"], e["n"]),
        found_thr=frames.rate_column(e["n"] - e["missed_tumours_thr"], e["n"]),
        spec=frames.rate_column(e["no_tumours_cleared"], e["no_tumours"]),
        spec_thr=frames.rate_column(e["no_tumours_cleared_thr"], e["no_tumours"]),
        collection=[_fired(e, i) for i in range(len(e))])
    return frames.table(e, {"name": "model", "found": "Br35H tumours found (95 % CI)",
                            "found_thr": "found at t*", "spec": "home specificity",
                            "spec_thr": "home specificity at t*",
                            "collection": "collection check fired, home / Br35H"},
                        caption="Br35H new tumour images; home-test specificity; batches "
                                "of 20 images the collection check calls new")


def _fired(e: pd.DataFrame, i: int) -> str:
    """``92/2,000 / 2,000/2,000``: home and external batches the collection check fired
    on; empty where it was not measured."""
    if "collection_home_batches" not in e or pd.isna(e["collection_home_batches"].iloc[i]):
        return ""
    r = e.iloc[i]
    return (f"{int(r['collection_home_warned']):,}/{int(r['collection_home_batches']):,} / "
            f"{int(r['collection_external_warned']):,}/"
            f"{int(r['collection_external_batches']):,}")


def br35h_words(table: pd.DataFrame, shipped: str | None) -> dict:
    """The range over informative models, the degenerate ones, the shipped model's row."""
    external = table[table["eval_set"] == "external_br35h"].set_index("tag")
    br = benchmark.informative(table)
    br = br[br["eval_set"] == "external_br35h"]

    def who(r):
        return f"{percent(r['tumour_sensitivity'])} ({r['name']}, {r['trained_on']})"

    sb = external.loc[shipped] if shipped in external.index else None
    degenerate = table.loc[table["degenerate"] & (table["eval_set"] == "test"),
                           "model"].map(summary.label)
    return {
        "br35h_n": number(external["n"].iloc[0] if not external.empty else 0),
        "br35h_range": NA if br.empty else summary.span(
            who(br.loc[br["tumour_sensitivity"].idxmin()]),
            who(br.loc[br["tumour_sensitivity"].idxmax()])),
        "degenerate_models": summary.listing(sorted(set(degenerate))),
        "shipped_br35h": NA if sb is None else rate(sb["n"] - sb["missed_tumours"], sb["n"]),
        "shipped_home_specificity": (NA if sb is None else
                                     rate(sb["no_tumours_cleared"], sb["no_tumours"])),
        "shipped_home_specificity_on": NA if sb is None else SETS.get(sb["specificity_on"], ""),
    }


def accuracy_by_set(table: pd.DataFrame):
    """Images answered right per model and home evaluation set, with their intervals."""
    wide = table[table["eval_set"].isin(["test", "test_dedup", "external"])]
    wide = wide.assign(right=frames.rate_column((wide["accuracy"] * wide["n"]).round(),
                                                wide["n"]))
    wide = wide.pivot_table(index=["tag", "name", "trained_on"], columns="eval_set",
                            values="right", aggfunc="first").reset_index()
    wide = wide.reindex(columns=["name", "trained_on", "test", "test_dedup", "external"])
    return frames.table(wide, {"name": "model", "trained_on": "trained on",
                               "test": "official test", "test_dedup": "deduplicated test",
                               "external": "other dataset's test"},
                        caption="Images classified right (95 % CI %), by evaluation set")


def sartaj_words(run, table: pd.DataFrame, saved: dict, shipped: str | None) -> dict:
    """Sartaj's deduplicated test, its differences from the training folder, and the source
    audit's figures (chapters 01, 01b and 01c) that explain them."""
    sartaj = published.REPORT_000_DATASET
    leak = read_json(run.leakage, {}).get("datasets", {}).get(sartaj, {})
    informative = benchmark.informative(table)
    dedup = informative[(informative["dataset"] == sartaj)
                        & (informative["eval_set"] == "test_dedup")]
    every = table[(table["dataset"] == sartaj) & (table["eval_set"] == "test_dedup")]
    words = {
        "sartaj_test_n": number(leak.get("n_test", float("nan"))),
        "sartaj_dedup_removed": number(leak.get("test_images_with_copy_in_training",
                                                float("nan"))),
        "sartaj_dedup_n": NA if every.empty else number(every["n"].iloc[0]),
        "sartaj_dedup_no_tumours": NA if every.empty else number(every["no_tumours"].iloc[0]),
        "sartaj_dedup_range": NA if dedup.empty else summary.span(
            percent(dedup["accuracy"].min()), percent(dedup["accuracy"].max())),
    }
    stuck = every[every["degenerate"]]
    # what a constant answer scores on this set: its class's share
    answer = (summary.first_class_share(saved[(stuck["tag"].iloc[0], "test")])[0]
              if not stuck.empty else None)
    words.update({
        "sartaj_dedup_constant": "none" if stuck.empty else stuck["name"].iloc[0],
        "sartaj_dedup_constant_answer": NA if answer is None else
        answer.replace("_", " ").replace("tumor", "tumour"),
        "sartaj_dedup_constant_acc": NA if stuck.empty else percent(stuck["accuracy"].iloc[0]),
    })
    cross = table[(table["dataset"] == sartaj) & (table["eval_set"] == "external")
                  & table["model"].str.startswith("compact_cnn")]
    away = _row(table, shipped, "external")
    words["compact_sartaj_on_nickparvar"] = _right(None if cross.empty else cross.iloc[0])
    words["shipped_sartaj"] = _right(away)
    words["shipped_sartaj_n"] = NA if away is None else number(away["n"])
    words.update(_sartaj_folders(run, leak))
    words.update(_source_audit(read_json(run.sources, {})))
    return words


def _sartaj_folders(run, leak: dict) -> dict:
    """Why Sartaj's test folder differs from its training folder: class balance, and how
    many of its images come from the Br35H collection."""
    sartaj = published.REPORT_000_DATASET
    counts = (pd.read_csv(run.split_counts) if run.split_counts.exists()
              else pd.DataFrame(columns=["dataset", "split", "class", "n"]))
    own = counts[counts["dataset"] == sartaj]
    words = {}
    for key, splits in (("sartaj_test_no_tumour", ["test"]),
                        ("sartaj_train_no_tumour", ["train", "val"])):
        part = own[own["split"].isin(splits)]
        words[key] = NA if part.empty else rate(
            part.loc[part["class"] == "no_tumor", "n"].sum(), part["n"].sum())
    in_br35h = run.overlap("br35h", sartaj)
    pairs = pd.read_csv(in_br35h) if in_br35h.exists() else None
    for key, split, size in (("sartaj_test_in_br35h", "test", "n_test"),
                             ("sartaj_train_in_br35h", "train", "n_train")):
        words[key] = NA if pairs is None or not leak else rate(
            pairs.loc[pairs["sartaj_split"] == split, "sartaj_path"].nunique(), leak[size])
    return words


def _source_audit(audit: dict) -> dict:
    """Chapter 01c's shortcut figures and where Nickparvar's classes come from."""
    stats = audit.get("tumour_from_statistics", {})
    on = audit.get("shortcut_on_br35h", {})
    words = {
        "stats_accuracy": percent(stats["accuracy"]) if stats else NA,
        "stats_majority": percent(stats["majority_baseline"]) if stats else NA,
        "stats_br35h_none": percent(on[CALLED_NONE]) if CALLED_NONE in on else NA,
    }
    by_source = {"no_tumor": {}, "tumour": {}}
    for key, row in audit.get("nickparvar_class_by_source", {}).items():
        group = by_source["no_tumor" if key.endswith("/no_tumor") else "tumour"]
        for source, n in row.items():
            if source != "All":
                group[source] = group.get(source, 0) + int(n)
    for key, group in (("nick_no_tumour_sources", "no_tumor"),
                       ("nick_tumour_sources", "tumour")):
        ranked = sorted(by_source[group].items(), key=lambda kv: -kv[1])
        words[key] = summary.listing([f"{summary.dataset(s)} ({n:,})" for s, n in ranked if n])
    return words


def run_steps(run, chapter: str):
    """The run's steps before ``chapter`` as a table, and the run's name, machine, time and
    skipped steps as words."""
    ran = summary.steps(read_json(run.state, {}), chapter)
    machine = summary.machine(read_json(run.environment, {}))
    shown = frames.table(ran.assign(why=ran["why"].where(ran["status"] == "skipped", "")),
                         {"step": "step", "status": "status", "why": "why skipped",
                          "time": "time"},
                         caption=f"Steps of run {run.name} ({machine})")
    skipped = ran[ran["status"] == "skipped"]
    words = {
        "run_name": run.name, "run_machine": machine,
        "run_time": summary.duration(ran["seconds"].sum()),
        "skipped": summary.listing([f"{summary.listing(list(g['step']))} ({why})"
                                    for why, g in skipped.groupby("why")]),
    }
    return shown, words


def reproduction_words(repro: pd.DataFrame) -> dict:
    """Report 000's models trained again against their published figures."""
    by_model = repro.set_index("model") if not repro.empty else pd.DataFrame()
    words = {"published_glioma_recall": percent(
        published.REPORT_000["relu_cnn"]["recall"]["glioma"], 0)}
    for model in ("relu_cnn", "relu_cnn_augmented", "sigmoid_cnn"):
        r = by_model.loc[model] if model in by_model.index else None
        words[f"{model}_acc"] = _acc_ci(r, "low", "high")
        words[f"{model}_published"] = percent(published.REPORT_000[model]["accuracy"], 0)
        words[f"{model}_position"] = NA if r is None else r["position"]
        words[f"{model}_gliomas"] = NA if r is None else f"{r['gliomas_found']}/{r['gliomas']}"
        words[f"{model}_top"] = NA if r is None else r["top_class"]
        words[f"{model}_top_share"] = NA if r is None else percent(r["top_share"])
    return words


def compact_words(test: pd.DataFrame, mcnemar: pd.DataFrame, saved: dict) -> dict:
    """The compact CNN on Sartaj against the ReLU CNN and report 000's best figure."""
    sartaj = published.REPORT_000_DATASET
    compact = test[(test["model"] == "compact_cnn") & (test["dataset"] == sartaj)]
    relu = test[(test["model"] == "relu_cnn") & (test["dataset"] == sartaj)]
    pair = mcnemar
    if not mcnemar.empty:
        a, b = mcnemar["model_a"], mcnemar["model_b"]
        pair = mcnemar[(a.isin(compact.index) & b.isin(relu.index))
                       | (a.isin(relu.index) & b.isin(compact.index))]
    c = None if compact.empty else compact.iloc[0]
    p = None if pair.empty else pair["p_value"].iloc[0]
    best = published.BEST_PUBLISHED[sartaj]
    figure = published.REPORT_000[best]["accuracy"]
    return {
        "compact_sartaj_acc": _acc_ci(c),
        "compact_vs_relu_p": NA if p is None else p_value(p),
        "compact_vs_relu_verdict": NA if p is None else PAIRED[p < ALPHA],
        "compact_gliomas": NA if c is None else "{}/{}".format(
            *summary.found(saved[(compact.index[0], "test")], "glioma")),
        "best_000": percent(figure, 0),
        "best_000_name": published.DISPLAY[best],
        "best_000_position": NA if c is None else summary.position(
            figure, c["acc_ci_low"], c["acc_ci_high"]),
    }


def shipped_words(run, table: pd.DataFrame, shipped: str | None) -> dict:
    """The shipped model on its home test sets against report 001, and its calibration."""
    nick = published.REPORT_001_DATASET
    figure = published.REPORT_001[published.BEST_PUBLISHED[nick]]["accuracy"]
    home, dedup = _row(table, shipped, "test"), _row(table, shipped, "test_dedup")
    away = _row(table, shipped, "external")
    leak = read_json(run.leakage, {}).get("datasets", {}).get(nick, {})
    scored = benchmark.informative(table)
    scored = scored[scored["eval_set"].isin(["test", "external"])].dropna(
        subset=["ece", "ece_tempscaled"])
    lowered = scored[scored["ece_tempscaled"] < scored["ece"] - 0.005]
    return {
        "published_001": f"{100 * figure:.2f} %",
        "shipped_acc": _acc_ci(home),
        "shipped_dedup_acc": _acc_ci(dedup),
        "shipped_vs_001": NA if home is None else (
            f"{abs(100 * (home['accuracy'] - figure)):.1f} points "
            f"{summary.compare(home['accuracy'], figure, 'above', 'below', 'level with')}"),
        "nickparvar_dedup_removed": number(leak.get("test_images_with_copy_in_training",
                                                    float("nan"))),
        "nickparvar_test_n": NA if home is None else number(home["n"]),
        "shipped_sartaj_ece": (NA if away is None else
                               f"{away['ece']:.3f} to {away['ece_tempscaled']:.3f}"),
        "shipped_home_ece": (NA if home is None else
                             f"{home['ece']:.3f} to {home['ece_tempscaled']:.3f}"),
        "ece_lowered": f"{len(lowered)} of {len(scored)}",
    }


# -- chapter 10 -------------------------------------------------------------------------

def _first_word(column: pd.Series) -> pd.Series:
    return column.str.split(" [(]", regex=True).str[0]


def constant_models(run, explained: set[str]) -> set[str]:
    """The explained models chapter 09 found answering one class for every test image: their
    explainers tie, so they are left out of the rankings."""
    scored = pd.read_csv(run.metrics) if run.metrics.exists() else pd.DataFrame()
    if "degenerate" not in scored:
        return set()
    flagged = scored["degenerate"].astype(bool) & (scored["eval_set"] == "test")
    return set(scored.loc[flagged, "tag"]) & explained


def explanation_words(xai: pd.DataFrame, best: pd.DataFrame, names: pd.Series,
                      constant: set[str], flag: float) -> dict:
    """Chapter 10's findings: who leads faithfulness, the randomisation check, where the
    attribution mass lies. The ``constant`` models (one answer for every image) are
    counted as explained but left out of every range and count of maps: their maps
    explain no decision."""
    def explainer(name: str) -> str:
        return explain.DISPLAY.get(name, name)

    everything, xai = xai, xai[~xai["model"].isin(constant)]
    leaders = _first_word(best["insertion"]).value_counts()
    agree = _first_word(best["insertion"]) == _first_word(best["deletion"])
    flagged = xai[xai["flag_insensitive_to_weights"].astype(bool)]
    density = (xai["mass_on_contour"] / xai["area_on_contour"]).sort_values(ascending=False)
    outline = density[density > 1]
    top = xai.loc[density.index[0]] if not xai.empty else None

    def extent(column: str) -> str:
        return (NA if xai.empty else
                f"{percent(xai[column].min(), 0)} to {percent(xai[column].max(), 0)}")

    return {
        "xai_n_images": number(everything["n_images"].min() if not everything.empty else 0),
        "xai_n_models": number(everything["model"].nunique()),
        "xai_n_pairs": number(len(everything)),
        "xai_n_sanity": number(everything["n_sanity"].min() if not everything.empty else 0),
        "xai_constant": summary.listing(sorted(names.get(t, t) for t in constant)),
        "xai_leader": NA if leaders.empty else (
            f"{summary.listing(list(leaders.index[leaders == leaders.iloc[0]]))} "
            f"({leaders.iloc[0]} of {len(best)} models)"),
        "xai_agree": f"{int(agree.sum())} of {len(best)}",
        "xai_flagged": "none" if flagged.empty else (
            f"{len(flagged)} of {len(xai)}: " + summary.listing(
                [f"{explainer(r.explainer)} on {names.get(r.model, r.model)}"
                 for r in flagged.itertuples()])),
        "xai_flag": number(flag, 2),
        "xai_similarity": NA if xai.empty else summary.span(
            f"{xai['randomisation_similarity'].min():.2f}",
            f"{xai['randomisation_similarity'].max():.2f}"),
        "xai_head": extent("mass_in_brain"),
        "xai_head_area": extent("area_in_brain"),
        "xai_head_denser": f"{int((xai['mass_in_brain'] > xai['area_in_brain']).sum())} "
                           f"of {len(xai)}",
        "xai_outline": f"{len(outline)} of {len(xai)}",
        "xai_outline_max": NA if top is None else (
            f"{density.iloc[0]:.2f} times ({explainer(top['explainer'])} on the "
            f"{names.get(top['model'], top['model'])})"),
        "xai_outline_others": "no other map" if len(outline) < 2 else summary.span(
            f"{outline.iloc[1:].min():.2f}", f"{outline.iloc[1:].max():.2f}") + " times",
        "xai_outline_median": f"{density.median():.2f}" if not xai.empty else NA,
    }
