"""Regenerate the README's results table (and the model card's) from ``metrics.csv``.

``brainmri tables --run reference`` rewrites the block between
``<!-- results:start -->`` and ``<!-- results:end -->`` in README.md, and the same block
in models/README.md restricted to the shipped model, so the numbers in both files are
always the ones the committed run produced.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from brainmri.core import paths
from brainmri.core.errors import BrainMRIError
from brainmri.core.files import atomic_write_text
from brainmri.core.runfolder import RunFolder

START, END = "<!-- results:start -->", "<!-- results:end -->"
SHIPPED = Path("models") / "brainmri_compact.json"  # the shipped model's sidecar


def shipped_model(root: Path) -> str:
    """The shipped model's name in ``metrics.csv``: its builder, plus the recipe's variant
    when it was trained with one (the sidecar records both)."""
    sidecar = json.loads((root / SHIPPED).read_text())
    variant = sidecar.get("training", {}).get("variant")
    return f"{sidecar['model']}+{variant}" if variant else sidecar["model"]


def _pct(x) -> str:
    return "" if pd.isna(x) else f"{100 * x:.1f}"


def _ci(x, low, high) -> str:
    return "" if pd.isna(x) else f"{_pct(x)} ({_pct(low)}-{_pct(high)})"


def _ece(before, after, pattern: str) -> str:
    """ECE before and after temperature scaling; blank where it does not apply (a
    tumour-only external set has no four-class calibration)."""
    return "" if pd.isna(before) else pattern.format(before, after)


def _count(x) -> str:
    return "" if pd.isna(x) else str(int(x))


def _ordered(metrics: pd.DataFrame) -> pd.DataFrame:
    """Rows by training dataset and model, then official, deduplicated, external test,
    and the external tumour-detection set (Br35H)."""
    order = {"test": 0, "test_dedup": 1, "external": 2, "external_br35h": 3}
    return metrics.assign(_o=metrics["eval_set"].map(order)).sort_values(
        ["dataset", "model", "_o"])


def table(metrics: pd.DataFrame) -> str:
    """Markdown: one row per (model, training dataset, evaluation set)."""
    lines = ["| model | trained on | evaluated on | n | accuracy % (95 % CI) | macro F1 % | "
             "tumour sensitivity % | missed tumours | ECE (after T) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in _ordered(metrics).itertuples():
        lines.append(
            f"| {r.model} | {r.dataset} | {r.eval_set} | {r.n} | "
            f"{_ci(r.accuracy, r.acc_ci_low, r.acc_ci_high)} | {_pct(r.f1_macro)} | "
            f"{_pct(r.tumour_sensitivity)} | {_count(r.missed_tumours)} | "
            f"{_ece(r.ece, r.ece_tempscaled, '{:.3f} ({:.3f})')} |")
    return "\n".join(lines)


def card_table(metrics: pd.DataFrame) -> str:
    """Markdown for the model card: the clinical reading next to accuracy, with CIs."""
    lines = ["| trained on | evaluated on | n | accuracy % (95 % CI) | macro F1 % (95 % CI) | "
             "tumour sensitivity % (95 % CI) | tumour specificity % | ECE before / after T | "
             "flagged as unusual % |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in _ordered(metrics).itertuples():
        lines.append(
            f"| {r.dataset} | {r.eval_set} | {r.n} | "
            f"{_ci(r.accuracy, r.acc_ci_low, r.acc_ci_high)} | "
            f"{_ci(r.f1_macro, r.f1_macro_ci_low, r.f1_macro_ci_high)} | "
            f"{_ci(r.tumour_sensitivity, r.sens_ci_low, r.sens_ci_high)} | "
            f"{_pct(r.tumour_specificity)} | {_ece(r.ece, r.ece_tempscaled, '{:.3f} / {:.3f}')} | "
            f"{_pct(getattr(r, 'ood_flagged', None))} |")
    return "\n".join(lines)


def headline_table(metrics: pd.DataFrame) -> str:
    """Markdown for the book's results chapter: one row per model, accuracy on the
    official and deduplicated test sets, and the external figures."""
    wide = metrics.pivot_table(index=["model", "dataset"], columns="eval_set", aggfunc="first",
                               values=["accuracy", "acc_ci_low", "acc_ci_high", "n",
                                       "tumour_sensitivity"])
    lines = ["| model | trained on | official test accuracy % (95 % CI) | deduplicated test "
             "accuracy % (n) | other dataset's test accuracy % | Br35H new tumours found % |",
             "|---|---|---:|---:|---:|---:|"]
    for (model, dataset), r in wide.iterrows():
        def get(value, eval_set, row=r):
            return row.get((value, eval_set), float("nan"))
        dedup_n = get("n", "test_dedup")
        lines.append(
            f"| {model} | {dataset} | "
            f"{_ci(get('accuracy', 'test'), get('acc_ci_low', 'test'), get('acc_ci_high', 'test'))}"
            f" | {_pct(get('accuracy', 'test_dedup'))}"
            f"{'' if pd.isna(dedup_n) else f' ({int(dedup_n)})'} | "
            f"{_pct(get('accuracy', 'external'))} | "
            f"{_pct(get('tumour_sensitivity', 'external_br35h'))} |")
    return "\n".join(lines)


def ablation_table(ablation: pd.DataFrame) -> str:
    """Markdown for chapter 08c's table (``ablation.csv``): one row per variant."""
    lines = ["| variant | validation accuracy % | test accuracy % | test specificity % | "
             "dedup test accuracy % | external tumour sensitivity % (95 % CI) | external n |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for _, r in ablation.iterrows():
        lines.append(
            f"| {r['model']} | {_pct(r['val accuracy'])} | {_pct(r['test accuracy'])} | "
            f"{_pct(r['test specificity'])} | {_pct(r['dedup test accuracy'])} | "
            f"{_ci(r['external sensitivity'], r['external CI low'], r['external CI high'])} | "
            f"{_count(r['external n'])} |")
    return "\n".join(lines)


def _replace_block(path: Path, name: str, rendered: str, source: str, run: str) -> None:
    """Rewrite the generated block ``<!-- name:start -->`` ... ``<!-- name:end -->``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text()
    if start not in text or end not in text:
        raise BrainMRIError(f"{path} has no {start} ... {end} block")
    body = (f"{start}\n<!-- generated by `brainmri tables --run {run}` from "
            f"results/{run}/{source}; do not edit by hand -->\n\n{rendered}\n\n{end}")
    head, rest = text.split(start, 1)
    atomic_write_text(head + body + rest.split(end, 1)[1], path)


def update(readme: Path, metrics_file: Path, run: str, model: str | None = None) -> None:
    """Rewrite the generated results block of ``readme``: every model, or only ``model``'s
    rows."""
    metrics = pd.read_csv(metrics_file)
    if model is not None:
        metrics = metrics[metrics["model"] == model]
    rendered = table(metrics) if model is None else card_table(metrics)
    _replace_block(readme, "results", rendered, metrics_file.name, run)


def update_all(run: str) -> list[Path]:
    """Rewrite README.md's table and the model card's from ``results/<run>/metrics.csv``
    (and the card's ablation block from ``ablation.csv``, when the run has one)."""
    folder = RunFolder.named(run)
    if not folder.metrics.exists():
        raise BrainMRIError(f"{folder.metrics} not found; run the series (09_benchmark) first.")
    root = paths.project_root()
    update(root / "README.md", folder.metrics, run)
    written = [root / "README.md"]
    results = root / "book" / "results.md"
    if results.exists() and "<!-- headline:start -->" in results.read_text():
        _replace_block(results, "headline", headline_table(pd.read_csv(folder.metrics)),
                       folder.metrics.name, run)
        written.append(results)
    card = root / "models" / "README.md"
    if card.exists():
        update(card, folder.metrics, run, model=shipped_model(root))
        if folder.ablation.exists() and "<!-- ablation:start -->" in card.read_text():
            _replace_block(card, "ablation", ablation_table(pd.read_csv(folder.ablation)),
                           folder.ablation.name, run)
        written.append(card)
    return written
