"""The generated blocks of the two files no notebook renders: README.md and the model card.

``brainmri tables --run reference`` rewrites each block between ``<!-- name:start -->``
and ``<!-- name:end -->`` of README.md and models/README.md from ``results/<run>/``
(metrics.csv, ablation.csv, state.json, environment.json, split_counts.csv,
leakage.json, params.yaml) and the shipped model's sidecar. The book's pages do not
need this: they paste their numbers from the executed chapters with myst-nb's glue.
:func:`render_all` gives what the files should hold, so a test can check that the
committed files match the run. A block whose source is missing is left empty.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from brainmri.core import paths
from brainmri.core.errors import BrainMRIError
from brainmri.core.files import atomic_write_text
from brainmri.core.runfolder import RunFolder
from brainmri.data.sources import DISPLAY as DATASETS
from brainmri.evaluation import benchmark
from brainmri.evaluation.published import DISPLAY as MODELS
from brainmri.report.show.tables import (
    CARD,
    SHIPPED,
    SHIPPED_MODEL,
    RunFiles,
    ablation_table,
    card_table,
    count,
    pct,
    percent,
    table,
    wrap,
)
from brainmri.report.studies.summary import duration as _duration
from brainmri.report.studies.summary import listing as _join
from brainmri.report.studies.summary import machine

# --- the blocks -----------------------------------------------------------------------------


def readme_run(r: RunFiles) -> str:
    """README, Results: what the run is, where its time went, what it trained."""
    seconds = r.seconds()
    longest = sorted(seconds.items(), key=lambda kv: -kv[1])[:3]
    text = (f"The committed {r.name} run (`results/{r.name}/`, `params/{r.name}.yaml`) ran on "
            f"{machine(r.environment)}, in {_duration(sum(seconds.values()))} of notebook "
            f"time over {len(seconds)} steps; the longest were "
            + _join([f"`{s}` ({_duration(t)})" for s, t in longest]) + ".")
    on: dict[str, list[str]] = {}
    for m, d in r.metrics[["model", "dataset"]].drop_duplicates().itertuples(index=False):
        on.setdefault(MODELS.get(m.split("+")[0], m), []).append(DATASETS.get(d, d))
    text += (" It trained " + _join([f"the {m} on {_join(sorted(d))}" for m, d in on.items()])
             + "; report 000's models at the report's settings.")
    if r.shipped and r.row(r.shipped, "test") is not None:
        text += f" The shipped model is `{r.shipped}`."
    skipped = [s for s, e in r.state.items()
               if isinstance(e, dict) and e.get("status") == "skipped"]
    if skipped:
        text += (f" Skipped on that machine: {_join([f'`{s}`' for s in skipped])} (see "
                 "state.json for why); the run has no rows for their models.")
    revisions = {s.get("revision") for s in r.state.values() if isinstance(s, dict)} - {None}
    if len(revisions) == 1:
        text += f" Every step ran at revision `{revisions.pop()}`."
    return wrap(text)


def card_model(r: RunFiles) -> str:
    """Model card, What it is: the shipped file's own figures."""
    s = r.sidecar
    if not s:
        return ""
    parts = [f"The shipped model has {count(s['parameters'])} weights"
             + (f" in a {r.model_file.stat().st_size / 1e6:.1f} MB file"
                if r.model_file and r.model_file.exists() else "") + "."]
    if s.get("temperature"):
        parts.append(f"Its validation temperature is {s['temperature']:.3f} (below 1: the raw "
                     "model was under-confident on validation images; above 1: "
                     "over-confident).")
    ood = s.get("ood", {})
    if ood.get("false_alarm_rate") is not None:
        parts.append(f"Its out-of-distribution threshold flags "
                     f"{percent(ood['false_alarm_rate'], 0)} of the "
                     f"{count(ood.get('n_val', 0))} clean validation images.")
    return wrap(" ".join(parts))


def card_training(r: RunFiles) -> str:
    """Model card, Data and training: the split's sizes and how long training took."""
    parts = []
    dataset = r.sidecar.get("dataset", "")
    c = r.split_counts
    if c is not None:
        d = c[c["dataset"] == dataset]
        train, val = d.loc[d["split"] == "train", "n"].sum(), d.loc[d["split"] == "val", "n"].sum()
        if train:
            parts.append(f"The split gave {count(train)} {DATASETS.get(dataset, dataset)} training "
                         f"and {count(val)} validation images (before any images a recipe adds).")
    exported = [s for s, p in r.params.items()
                if isinstance(p, dict) and p.get("export_to") == SHIPPED_MODEL.as_posix()]
    step = next((s for s in exported + [f"08b_compact_cnn-{dataset}"] if s in r.seconds()), None)
    if step:
        t = r.sidecar.get("training", {})
        parts.append(f"Training from scratch (step `{step}` of the {r.name} run) took "
                     f"{_duration(r.seconds()[step])} on {machine(r.environment)}, for at most "
                     f"{t.get('epochs')} epochs with early stopping (patience "
                     f"{t.get('patience')}).")
    return wrap(" ".join(parts))


def card_metrics_note(r: RunFiles) -> str:
    """Model card, Metrics: how the flags and intervals were computed."""
    ood = r.sidecar.get("ood", {})
    parts = []
    if ood.get("false_alarm_rate") is not None:
        parts.append("\"flagged as unusual\" is the share of images whose energy score is above "
                     "the sidecar's out-of-distribution threshold (set to flag "
                     f"{percent(ood['false_alarm_rate'], 0)} of the "
                     f"{count(ood.get('n_val', 0))} clean "
                     "validation images): the `warning` that `brainmri predict` prints.")
    bench = r.params.get("09_benchmark", {})
    if bench.get("n_bootstrap"):
        parts.append(f"Intervals are percentile bootstrap 95 % intervals "
                     f"({count(bench['n_bootstrap'])} resamples, seed {bench.get('seed')}); a "
                     "specificity is given as a count, as it may rest on few images.")
    return wrap(" ".join(parts))


def card_ablation_note(r: RunFiles) -> str:
    """Model card: how the ablation chose the recipe, and the spread over seeds."""
    a = r.ablation
    if a is None or a.empty:
        return ""
    single = a[~a["model"].str.contains("-seed")]
    best = single.loc[single["val accuracy"].idxmax()]
    text = (f"Chapter `08c_shortcut_ablation` trains the same network at reduced size once "
            f"per recipe ({len(single)} variants) and scores each on validation, home test and "
            f"Br35H's new tumour images. Only the validation column chose the recipe "
            f"(`{best['recipe']}` ranks first there, {percent(best['val accuracy'])}).")
    spread = benchmark.seed_spread(a, by="recipe", value="external sensitivity",
                                   ci_low="external CI low", ci_high="external CI high")
    if not spread.empty:
        s = spread.sort_values("max").iloc[-1]
        text += (f" Retrained with {int(s['seeds'])} seeds, `{spread.sort_values('max').index[-1]}`"
                 f"'s Br35H sensitivity ranges from {percent(s['min'])} to {percent(s['max'])}: a "
                 "difference between two variants smaller than that is not an effect of the "
                 "lever (the chapter's verdicts).")
    return wrap(text)


def card_levers_note(r: RunFiles) -> str:
    """Model card: the levers chosen with Sartaj held out, and the external figures with
    their seed spread (issue 21)."""
    from brainmri.report.studies import levers

    if r.levers is None or r.levers.empty:
        return ""
    s = levers.spread(r.levers)
    baseline = s.index[0]
    taken = r.sidecar.get("training", {}).get("levers_taken") or []
    too_slow = r.sidecar.get("training", {}).get("levers_too_slow") or {}
    seeds = int(s["seeds"].max())

    def span(lever: str) -> str:
        x = s.loc[lever, "external sensitivity"]
        return f"{percent(x['min'])} to {percent(x['max'])} (mean {percent(x['mean'])})"

    trained = [name for name in s.index if not name.endswith(levers.TTA)]
    text = (f"Chapter `08c_shortcut_ablation` also trains {len(trained)} levers {seeds} times "
            f"each with Sartaj held out, and chooses on Sartaj alone. This model took "
            + (", ".join(f"`{t}`" for t in taken) if taken else "none" if too_slow
               else "none (no lever beat the baseline there beyond the seed spread)")
            + "".join(f" (`{name}` helped{' too' if taken else ''}, but was predicted to "
                      f"take training to "
                      f"{minutes} minutes, past the "
                      f"{r.sidecar['training'].get('training_minutes')} allowed)"
                      for name, minutes in too_slow.items())
            + f". Trained that way (smaller inputs, fewer epochs, no Sartaj), over {seeds} "
            f"seeds, the `{baseline}` lever finds {span(baseline)} of Br35H's new tumour "
            f"images")
    text += (f"; `{taken[0]}`, {span(taken[0])}." if taken and taken[0] in s.index
             else ".")
    text += (" This model itself is one seed of the recipe trained on all the training data "
             "(its own figures are in the table above).")
    return wrap(text)


def card_failures(r: RunFiles) -> str:
    """Model card, Known failure modes: the two that the run's figures measure."""
    items = []
    ext, home = (r.row(r.shipped, s) for s in ("external_br35h", "test"))
    if ext is not None:
        items.append(
            f"**Tumours from another collection are missed.** On Br35H's {count(ext['n'])} "
            f"tumour images that no training folder contains, the model finds "
            f"{percent(ext['tumour_sensitivity'])} (95 % CI {pct(ext['sens_ci_low'])}-"
            f"{pct(ext['sens_ci_high'])}) of the tumours"
            + (f", against {percent(home['tumour_sensitivity'])} on its home test set" if home
               is not None else "")
            + " (the `external_br35h` row). Nickparvar's no-tumour class comes from Br35H's "
              "collection and its tumour classes from others, so \"looks like a Br35H scan\" "
              "is a cue for \"no tumour\" at home. Do not read a `no_tumor` answer on images "
              "from a new scanner as reassurance.")
    nick = r.leakage.get("datasets", {}).get(r.sidecar.get("dataset", ""), {})
    dedup = r.row(r.shipped, "test_dedup")
    if nick and dedup is not None:
        items.append(
            f"**Leakage-inflated home scores.** {count(nick['test_images_with_copy_in_training'])}"
            f" of the {count(nick['n_test'])} home test images have a copy in the training folder; "
            f"the `test_dedup` row ({percent(dedup['accuracy'])} accuracy on the other "
            f"{count(dedup['n'])}) is the more honest home figure.")
    c = r.sidecar.get("ood", {}).get("checks", {}).get("collection") or {"measured": {}}
    if "external" in (m := c["measured"]):
        home, ext = m["home_test_batches"][m["limit_from"]["dataset"]], m["external"]
        items.append(
            f"**A new collection is flagged as a whole, not image by image.** Per image the "
            f"warnings rarely fire on another hospital's scans; on {c['batch']} or "
            f"more images `brainmri predict` compares their mean feature distance with a "
            f"limit and says when they look like a collection the model did not train on: "
            f"measured on {count(home['n'])} random sets of {c['batch']} held-out home "
            f"test images it fired on {count(home['warned'])}, on {ext['dataset']}'s new "
            f"tumours on {count(ext['batches']['warned'])} of {count(ext['batches']['n'])}.")
    return "\n".join(wrap(item, "- ", "  ") for item in items)


def collection_frame(sidecar: dict) -> pd.DataFrame | None:
    """How often a model's collection check fires, per set of images and set size (its
    sidecar's ``ood.checks.collection.measured.by_size``): one row per set, with the
    images it holds and, per size, ``k/n (share)`` of random sets flagged (blank where
    the set is too small); None when the sidecar holds no such measurement."""
    c = sidecar.get("ood", {}).get("checks", {}).get("collection") or {}
    by_size = (c.get("measured") or {}).get("by_size")
    if not by_size:
        return None
    sizes = sorted({size for row in by_size.values() for size in row if size != "images"},
                   key=int)

    cleaned = {f"{name} test" for name, b in c["measured"].get("home_test_batches", {}).items()
               if b.get("training_copies_left_out")}

    def shown(name: str) -> str:
        label = name + (", no training copy" if name in cleaned else "")
        for code, display in DATASETS.items():
            label = label.replace(code, display)
        return label

    return pd.DataFrame([
        {"images scored": shown(name), "images": count(row["images"]),
         **{f"sets of {s} flagged": ("" if s not in row else
                                     f"{count(row[s]['warned'])}/{count(row[s]['n'])} "
                                     f"({percent(row[s]['share'])})") for s in sizes}}
        for name, row in by_size.items()])


def card_collection(r: RunFiles) -> str:
    """Model card: :func:`collection_frame` of the shipped model, as a table."""
    frame = collection_frame(r.sidecar)
    if frame is None:
        return ""
    c = r.sidecar["ood"]["checks"]["collection"]
    lines = ["| " + " | ".join(frame.columns) + " |",
             "|---|" + "---:|" * (len(frame.columns) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in frame.astype(str).to_numpy()]
    return wrap(f"The limit is placed for sets of {c['batch']}, so that "
                f"{percent(c['false_alarm_rate'])} of random sets of held-out home test "
                f"images reach it; each rate counts "
                f"{count(_draws(c['measured']['by_size']))} random sets, which overlap "
                "when the images are few.") + "\n\n" + "\n".join(lines)


def _draws(by_size: dict) -> int:
    """The number of random sets behind each rate of ``by_size`` (the same for all)."""
    return next(v["n"] for row in by_size.values() for k, v in row.items() if k != "images")


def readme_checks(r: RunFiles) -> str:
    """README, Classifying your own images: what the shipped model's out-of-distribution
    checks measured (its sidecar's ``ood.checks``), per image and per collection."""
    checks = r.sidecar.get("ood", {}).get("checks") or {}
    m = checks.get("measured")
    if not m:
        return ""
    home, odd = m["home_test"], m["non_mri"]
    dataset = DATASETS.get(r.sidecar["dataset"], r.sidecar["dataset"])
    text = (f"The limits are chosen together on the {count(checks['n_val'])} clean validation "
            f"images, so that none of them gets a warning, and stored in the model's sidecar "
            f"(`ood.checks`); measured, they warn on {percent(home['share'])} of "
            f"{dataset}'s {count(home['n'])} test images ({count(home['warned'])}) and "
            f"on {count(odd['warned'])} of {count(odd['n'])} non-MRI images made without the "
            "network (noise, checkerboards, gradients, drawings, scikit-image's photos, a "
            "retina image, a CT phantom, and real test slices inverted, tinted, "
            "false-coloured, binarised, buried in noise or reduced to edges). An image can be "
            "unlike the training data without being flagged.")
    c = checks.get("collection") or {}
    cm = c.get("measured") or {}
    if "external" in cm:
        own = cm["limit_from"]["dataset"]
        others = [f"{DATASETS.get(name, name)}'s test "
                  + ("images without a copy in training" if b.get("training_copies_left_out")
                     else "folder")
                  + f" on {count(b['warned'])} of {count(b['n'])}"
                  for name, b in cm["home_test_batches"].items() if name != own]
        ext = cm["external"]
        ext_row = r.row(r.shipped, "external_br35h")
        found = ("" if ext_row is None else
                 f", and the model finds only {percent(ext_row['tumour_sensitivity'])} of "
                 f"{cm['external']['dataset']}'s new tumours")
        text += ("\n\n" + f"Per image, these checks rarely fire on scans from another hospital"
                 f"{found}. "
                 f"So `predict` also judges the images **taken together** when it gets "
                 f"{c['batch']} or more: the mean feature distance of the set against a limit "
                 f"that {percent(c['false_alarm_rate'])} of random sets of {c['batch']} home test "
                 f"images reach. Above it, one line on stderr says that the images look like "
                 f"a collection the model was not trained on, and what that meant on "
                 f"{ext['dataset']}. Measured (limit placed on half of "
                 f"{DATASETS.get(own, own)}'s test set): it "
                 f"fires on {count(cm['home_test_batches'][own]['warned'])} of "
                 f"{count(cm['home_test_batches'][own]['n'])} random sets of {c['batch']} drawn "
                 f"from the other half ({count(cm['home_test_batches'][own]['images'])} images: "
                 f"the sets overlap), on {count(ext['batches']['warned'])} of "
                 f"{count(ext['batches']['n'])} sets of {ext['dataset']}'s new tumour images"
                 + (f", and on {', '.join(others)}" if others else "") + ".")
    return "\n\n".join(wrap(part) for part in text.split("\n\n"))


# --- which blocks live where ----------------------------------------------------------------

#: file -> its generated blocks (marker name -> generator).
BLOCKS: dict[str, dict[str, Callable[[RunFiles], str]]] = {
    "README.md": {"run": readme_run, "results": lambda r: table(r.metrics),
                  "checks": readme_checks},
    str(CARD): {
        "model": card_model, "training": card_training, "metrics-note": card_metrics_note,
        "results": lambda r: card_table(r.metrics[r.metrics["model"] == r.shipped]),
        "ablation-note": card_ablation_note,
        "ablation": lambda r: "" if r.ablation is None else ablation_table(r.ablation),
        "levers-note": card_levers_note,
        "failures": card_failures, "collection": card_collection},
}


def render_block(text: str, name: str, rendered: str, source: str, run: str,
                 where: str = "text") -> str:
    """``text`` with its block ``<!-- name:start -->`` ... ``<!-- name:end -->`` replaced by
    ``rendered`` (``source``: where the figures come from)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise BrainMRIError(f"{where} has no {start} ... {end} block")
    body = (f"{start}\n<!-- generated by `brainmri tables --run {run}` from "
            f"{source}; do not edit by hand -->\n\n")
    body += f"{rendered}\n\n{end}" if rendered.strip() else end
    head, rest = text.split(start, 1)
    return head + body + rest.split(end, 1)[1]


def render_all(run: str, folder: RunFolder | None = None, root: Path | None = None
               ) -> dict[Path, str]:
    """{file: the text it should hold} for README.md and the model card, from
    ``results/<run>/`` (or ``folder``). README.md must have its results block."""
    root = root or paths.project_root()
    r = RunFiles.load(folder or RunFolder.named(run), root, name=run)
    source = f"results/{run}/ and {SHIPPED}"
    out = {}
    for rel, blocks in BLOCKS.items():
        path = root / rel
        if not path.exists():
            continue
        text = path.read_text()
        for name, generate in blocks.items():
            if f"<!-- {name}:start -->" in text or (rel, name) == ("README.md", "results"):
                text = render_block(text, name, generate(r), source, run, where=str(path))
        out[path] = text
    return out


def update_all(run: str) -> list[Path]:
    """Rewrite every generated block of README.md and the model card from
    ``results/<run>/``; the files written."""
    written = []
    for path, text in render_all(run).items():
        if path.read_text() != text:
            atomic_write_text(text, path)
        written.append(path)
    return written
