"""The generated blocks of the two files no notebook renders: README.md and the model card.

``brainmri tables --run reference`` rewrites each block between ``<!-- name:start -->``
and ``<!-- name:end -->`` of README.md and models/README.md from ``results/<run>/``
(metrics.csv, ablation.csv, state.json, environment.json, split_counts.csv,
leakage.json, params.yaml) and the shipped model's sidecar. The book's pages do not
need this: they paste their numbers from the executed chapters with myst-nb's glue.
:func:`render_all` gives what the files should hold, so a test can check that the
committed files match the run. A block whose source is missing is left empty.

The English lives in ``templates/`` (one Jinja2 template per block, its values named at
its top); each block function here only computes those values, already formatted
(``percent``, ``count``, ``pct``, durations, lists), and :func:`fill` renders and wraps.
To change a sentence, edit its template: the tests check the numbers, not the words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import jinja2
import pandas as pd

from brainmri.core import paths
from brainmri.core.errors import BrainMRIError
from brainmri.core.files import atomic_write_text
from brainmri.core.runfolder import RunFolder
from brainmri.data.sources import DISPLAY as DATASETS
from brainmri.evaluation import benchmark
from brainmri.evaluation.published import DISPLAY as MODELS
from brainmri.report.publish.tables import (
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

# --- filling a template -------------------------------------------------------------------

TEMPLATES = Path(__file__).parent / "templates"
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False,
                          undefined=jinja2.StrictUndefined, trim_blocks=True,
                          lstrip_blocks=True)
#: ``items | each("`{}` ({})")``: each item (a tuple fills several ``{}``) in the pattern
_ENV.filters["each"] = lambda items, pattern: [
    pattern.format(*i) if isinstance(i, tuple | list) else pattern.format(i) for i in items]
#: ``names | listing``: "a, b and c"
_ENV.filters["listing"] = _join


def fill(template: str, /, **context) -> str:
    """``templates/<template>.md.j2`` filled with ``context`` (values already formatted),
    as Markdown: a blank line starts a paragraph, any other line break reads as a space,
    and each paragraph is wrapped by :func:`wrap`; a paragraph starting with ``- `` is a
    list item (consecutive items stay together) and one starting with ``|`` a table, kept
    as it is."""
    text = _ENV.get_template(f"{template}.md.j2").render(**context)
    out = ""
    for part in (p.strip() for p in re.split(r"\n[ \t]*\n", text)):
        if not part:
            continue
        flat = " ".join(part.split())
        item = flat.startswith("- ")
        if out:
            out += "\n" if item and out.rsplit("\n\n", 1)[-1].startswith("- ") else "\n\n"
        out += (part if part.startswith("|") else
                wrap(flat[2:], "- ", "  ") if item else wrap(flat))
    return out


# --- the blocks: each computes its template's values -----------------------------------------


def readme_run(r: RunFiles) -> str:
    """README, Results: what the run is, where its time went, what it trained."""
    seconds = r.seconds()
    on: dict[str, list[str]] = {}
    for m, d in r.metrics[["model", "dataset"]].drop_duplicates().itertuples(index=False):
        on.setdefault(MODELS.get(m.split("+")[0], m), []).append(DATASETS.get(d, d))
    revisions = {s.get("revision") for s in r.state.values() if isinstance(s, dict)} - {None}
    return fill(
        "readme_run", name=r.name, machine=machine(r.environment),
        total=_duration(sum(seconds.values())), steps=len(seconds),
        longest=[(s, _duration(t)) for s, t in sorted(seconds.items(), key=lambda kv: -kv[1])[:3]],
        trained=[(m, _join(sorted(d))) for m, d in on.items()],
        shipped=r.shipped if r.shipped and r.row(r.shipped, "test") is not None else "",
        skipped=[s for s, e in r.state.items()
                 if isinstance(e, dict) and e.get("status") == "skipped"],
        revision=revisions.pop() if len(revisions) == 1 else "")


def _flagged(sidecar: dict) -> dict:
    """The out-of-distribution threshold's share of clean validation images it flags."""
    ood = sidecar.get("ood", {})
    if ood.get("false_alarm_rate") is None:
        return {"flagged": "", "n_val": ""}
    return {"flagged": percent(ood["false_alarm_rate"], 0), "n_val": count(ood.get("n_val", 0))}


def card_model(r: RunFiles) -> str:
    """Model card, What it is: the shipped file's own figures."""
    s = r.sidecar
    if not s:
        return ""
    size = r.model_file.stat().st_size if r.model_file and r.model_file.exists() else None
    return fill("card_model", weights=count(s["parameters"]),
                megabytes=f"{size / 1e6:.1f}" if size is not None else "",
                temperature=f"{s['temperature']:.3f}" if s.get("temperature") else "",
                **_flagged(s))


def card_training(r: RunFiles) -> str:
    """Model card, Data and training: the split's sizes and how long training took."""
    dataset = r.sidecar.get("dataset", "")
    train = val = 0
    if (c := r.split_counts) is not None:
        d = c[c["dataset"] == dataset]
        train, val = d.loc[d["split"] == "train", "n"].sum(), d.loc[d["split"] == "val", "n"].sum()
    exported = [s for s, p in r.params.items()
                if isinstance(p, dict) and p.get("export_to") == SHIPPED_MODEL.as_posix()]
    step = next((s for s in exported + [f"08b_compact_cnn-{dataset}"] if s in r.seconds()), None)
    t = r.sidecar.get("training", {})
    return fill("card_training", train=count(train) if train else "", val=count(val),
                dataset=DATASETS.get(dataset, dataset), step=step or "", name=r.name,
                took=_duration(r.seconds()[step]) if step else "",
                machine=machine(r.environment), epochs=t.get("epochs"),
                patience=t.get("patience"))


def card_metrics_note(r: RunFiles) -> str:
    """Model card, Metrics: how the flags and intervals were computed."""
    bench = r.params.get("09_benchmark", {})
    return fill("card_metrics_note", **_flagged(r.sidecar),
                resamples=count(bench["n_bootstrap"]) if bench.get("n_bootstrap") else "",
                seed=bench.get("seed"))


def card_ablation_note(r: RunFiles) -> str:
    """Model card: how the ablation chose the recipe, and the spread over seeds."""
    a = r.ablation
    if a is None or a.empty:
        return ""
    single = a[~a["model"].str.contains("-seed")]
    best = single.loc[single["val accuracy"].idxmax()]
    spread = benchmark.seed_spread(a, by="recipe", value="external sensitivity",
                                   ci_low="external CI low", ci_high="external CI high")
    widest = None
    if not spread.empty:
        s = spread.sort_values("max")
        widest = {"seeds": int(s.iloc[-1]["seeds"]), "recipe": s.index[-1],
                  "low": percent(s.iloc[-1]["min"]), "high": percent(s.iloc[-1]["max"])}
    return fill("card_ablation_note", variants=len(single), best=best["recipe"],
                best_accuracy=percent(best["val accuracy"]), spread=widest)


def card_levers_note(r: RunFiles) -> str:
    """Model card: the levers chosen with Sartaj held out, and the external figures with
    their seed spread (issue 21)."""
    from brainmri.report.studies import levers

    if r.levers is None or r.levers.empty:
        return ""
    s = levers.spread(r.levers)
    training = r.sidecar.get("training", {})
    external = s["external sensitivity"]
    return fill(
        "card_levers_note", baseline=s.index[0], seeds=int(s["seeds"].max()),
        levers=sum(not name.endswith(levers.TTA) for name in s.index),
        taken=training.get("levers_taken") or [],
        too_slow=list((training.get("levers_too_slow") or {}).items()),
        allowed=training.get("training_minutes"),
        spans={name: {"low": percent(x["min"]), "high": percent(x["max"]),
                      "mean": percent(x["mean"])} for name, x in external.iterrows()})


def card_failures(r: RunFiles) -> str:
    """Model card, Known failure modes: the two that the run's figures measure."""
    ext, home, dedup = (r.row(r.shipped, s) for s in ("external_br35h", "test", "test_dedup"))
    nick = r.leakage.get("datasets", {}).get(r.sidecar.get("dataset", ""), {})
    c = r.sidecar.get("ood", {}).get("checks", {}).get("collection") or {"measured": {}}
    m = c["measured"]
    collection = None
    if "external" in m:
        own, other = m["home_test_batches"][m["limit_from"]["dataset"]], m["external"]
        collection = {"batch": c["batch"], "home_sets": count(own["n"]),
                      "home_warned": count(own["warned"]), "dataset": other["dataset"],
                      "warned": count(other["batches"]["warned"]),
                      "sets": count(other["batches"]["n"])}
    return fill(
        "card_failures",
        external=None if ext is None else {
            "n": count(ext["n"]), "found": percent(ext["tumour_sensitivity"]),
            "low": pct(ext["sens_ci_low"]), "high": pct(ext["sens_ci_high"])},
        home="" if home is None else percent(home["tumour_sensitivity"]),
        leakage=None if not nick or dedup is None else {
            "copies": count(nick["test_images_with_copy_in_training"]),
            "n_test": count(nick["n_test"]), "accuracy": percent(dedup["accuracy"]),
            "n": count(dedup["n"])},
        collection=collection)


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
    return fill("card_collection", batch=c["batch"], rate=percent(c["false_alarm_rate"]),
                draws=count(_draws(c["measured"]["by_size"])), table="\n".join(lines))


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

    def counted(b: dict, *keys: str) -> dict:
        return {k: count(b[k]) for k in keys}

    c = checks.get("collection") or {}
    cm = c.get("measured") or {}
    collection = None
    if "external" in cm:
        own = cm["limit_from"]["dataset"]
        ext_row = r.row(r.shipped, "external_br35h")
        collection = {
            "batch": c["batch"], "rate": percent(c["false_alarm_rate"]),
            "external": cm["external"]["dataset"], "own": DATASETS.get(own, own),
            "found": "" if ext_row is None else percent(ext_row["tumour_sensitivity"]),
            "own_sets": counted(cm["home_test_batches"][own], "warned", "n", "images"),
            "external_sets": counted(cm["external"]["batches"], "warned", "n"),
            "others": [{"name": DATASETS.get(name, name),
                        "cleaned": bool(b.get("training_copies_left_out")),
                        **counted(b, "warned", "n")}
                       for name, b in cm["home_test_batches"].items() if name != own]}
    return fill("readme_checks", n_val=count(checks["n_val"]),
                dataset=DATASETS.get(r.sidecar["dataset"], r.sidecar["dataset"]),
                home={"share": percent(m["home_test"]["share"]),
                      **counted(m["home_test"], "n", "warned")},
                non_mri=counted(m["non_mri"], "warned", "n"), collection=collection)


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
