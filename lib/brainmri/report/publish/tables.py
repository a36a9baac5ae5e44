"""Markdown for the two files no notebook renders (README.md and the model card): the
run's metrics as tables, the cell formats they share, and the run's files read once
(``RunFiles``). ``publish.blocks`` writes the generated blocks with them.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from brainmri.core import paths
from brainmri.core.errors import BrainMRIError
from brainmri.core.runfolder import RunFolder
from brainmri.report.show import frames, glued

SHIPPED_MODEL = paths.SHIPPED_MODEL
SHIPPED = SHIPPED_MODEL.with_suffix(".json")  # the shipped model's sidecar
CARD = Path("models") / "README.md"
ORDER = {"test": 0, "test_dedup": 1, "external": 2, "external_br35h": 3}


# --- cells ----------------------------------------------------------------------------------


def pct(x) -> str:
    return "" if pd.isna(x) else f"{100 * x:.1f}"


def ci(x, low, high) -> str:
    return "" if pd.isna(x) else f"{pct(x)} ({pct(low)}-{pct(high)})"


def ece_change(before, after, pattern: str) -> str:
    """ECE before and after temperature scaling; blank on a tumour-only external set."""
    return "" if pd.isna(before) else pattern.format(before, after)


def count(x) -> str:
    return "" if pd.isna(x) else f"{int(x):,}"


def percent(x, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f} %"


_RISKY = re.compile(r"^([-+*>#|]|\d+[.)])(\s|$)")  # what would start a list, quote or heading


def wrap(text: str, first: str = "", rest: str = "") -> str:
    """Markdown prose wrapped at 88 columns, no line starting like a list or a heading."""
    lines = textwrap.wrap(text, 88, initial_indent=first, subsequent_indent=rest,
                          break_long_words=False, break_on_hyphens=False)
    out = []
    for line in lines:
        if out and _RISKY.match(line[len(rest):]):
            out[-1] += " " + line[len(rest):]
        else:
            out.append(line)
    return "\n".join(out)


def _ordered(metrics: pd.DataFrame) -> pd.DataFrame:
    """Rows by training dataset and model, then official, deduplicated, external test,
    and the external tumour-detection set (Br35H)."""
    return metrics.assign(_o=metrics["eval_set"].map(ORDER)).sort_values(
        ["dataset", "model", "_o"])


def _flag(r) -> str:
    """`` (constant)`` after a model whose answer never changes on the set."""
    return " (constant)" if bool(getattr(r, "degenerate", False)) else ""


# --- tables ---------------------------------------------------------------------------------


def _trained_on(r) -> str:
    """Every collection the model learned from (``nickparvar+sartaj`` for a recipe that
    adds Sartaj's training images), not only its home dataset."""
    trained = getattr(r, "trained_on", None)
    return r.dataset if trained is None or pd.isna(trained) or not trained else trained


def _rate(k, n) -> str:
    """``19/19 (83-100)*``: a rate with its count and Wilson interval, marked under
    ``glued.FEW_CASES`` cases (:func:`frames.rate_column`); blank when not measured."""
    if k is None or n is None or pd.isna(k) or pd.isna(n):
        return ""
    return frames.rate_column([k], [n])[0]


def _found(r) -> str:
    tumours = getattr(r, "tumours", None)
    if tumours is None or pd.isna(tumours):  # a run written before the counts were
        return pct(r.tumour_sensitivity)
    return _rate(tumours - r.missed_tumours, tumours)


def _few_note(lines: list[str]) -> list[str]:
    """The caption a Markdown table cannot have: what ``*`` means, when a cell has it."""
    if any(f"){frames.FEW_MARK} |" in line for line in lines):
        lines += ["", f"Cells marked {frames.FEW_MARK} rest on fewer than {glued.FEW_CASES} "
                      "cases: read them with care."]
    return lines


def table(metrics: pd.DataFrame) -> str:
    """README: one row per (model, training collections, evaluation set)."""
    lines = ["| model | trained on | evaluated on | n | accuracy % (95 % CI) | macro F1 % | "
             "tumours found (95 % CI %) | ECE (after T) |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in _ordered(metrics).itertuples():
        lines.append(
            f"| {r.model}{_flag(r)} | {_trained_on(r)} | {r.eval_set} | {r.n} | "
            f"{ci(r.accuracy, r.acc_ci_low, r.acc_ci_high)} | {pct(r.f1_macro)} | "
            f"{_found(r)} | "
            f"{ece_change(r.ece, r.ece_tempscaled, '{:.3f} ({:.3f})')} |")
    return "\n".join(_few_note(lines))


def card_table(metrics: pd.DataFrame) -> str:
    """Model card: the clinical reading next to accuracy, with intervals; each clinical
    rate as the count it rests on, since a specificity may rest on few images."""
    lines = ["| trained on | evaluated on | n | accuracy % (95 % CI) | macro F1 % (95 % CI) | "
             "tumours found (95 % CI %) | no-tumour images cleared (95 % CI %) | "
             "ECE before / after T | flagged as unusual % |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in _ordered(metrics).itertuples():
        cleared = "" if pd.isna(r.tumour_specificity) else \
            _rate(r.no_tumours_cleared, r.no_tumours)
        lines.append(
            f"| {_trained_on(r)} | {r.eval_set} | {r.n} | "
            f"{ci(r.accuracy, r.acc_ci_low, r.acc_ci_high)} | "
            f"{ci(r.f1_macro, r.f1_macro_ci_low, r.f1_macro_ci_high)} | "
            f"{_found(r)} | {cleared} | "
            f"{ece_change(r.ece, r.ece_tempscaled, '{:.3f} / {:.3f}')} | "
            f"{pct(getattr(r, 'ood_flagged', None))} |")
    return "\n".join(_few_note(lines))


def _counted(r: pd.Series, rate: str, k: str, n: str) -> str:
    """``k/n`` when the run recorded the counts behind ``rate`` (ablation tables written
    before they were recorded give the bare share)."""
    if n in r and pd.notna(r[n]) and pd.notna(r[k]):
        return f"{int(r[k])}/{int(r[n])}"
    return pct(r[rate])


def ablation_table(ablation: pd.DataFrame) -> str:
    """Model card: chapter 08c's table (``ablation.csv``), one row per variant; each home
    rate as the count it rests on (a specificity on 19 images reads 19/19)."""
    lines = ["| variant | validation accuracy | test accuracy | test specificity | "
             "dedup test accuracy % | external tumour sensitivity % (95 % CI) | external n |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for _, r in ablation.iterrows():
        if "test no-tumour images" in r and pd.notna(r["test no-tumour images"]):
            r = r.copy()
            r["test cleared"] = r["test no-tumour images"] - r["test false alarms"]
        lines.append(
            f"| {r['model']} | {_counted(r, 'val accuracy', 'val correct', 'val images')} | "
            f"{_counted(r, 'test accuracy', 'test correct', 'test images')} | "
            f"{_counted(r, 'test specificity', 'test cleared', 'test no-tumour images')} | "
            f"{pct(r['dedup test accuracy'])} | "
            f"{ci(r['external sensitivity'], r['external CI low'], r['external CI high'])} | "
            f"{count(r['external n'])} |")
    return "\n".join(lines)


# --- the run's files ------------------------------------------------------------------------


def _csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.exists() else None


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


@dataclass
class RunFiles:
    """What the README and the model card read: one run folder and the shipped model.
    A missing file reads as empty; ``metrics.csv`` is required."""

    name: str
    folder: RunFolder
    root: Path

    def __post_init__(self):
        f = self.folder
        if not f.metrics.exists():
            raise BrainMRIError(f"{f.metrics} not found; run the series (09_benchmark) first.")
        self.metrics = pd.read_csv(f.metrics)
        self.sidecar, self.model_file = _json(self.root / SHIPPED), self.root / SHIPPED_MODEL
        self.ablation, self.split_counts = _csv(f.ablation), _csv(f.split_counts)
        self.levers = _csv(f.levers)
        self.leakage, self.state = _json(f.leakage), _json(f.state)
        self.environment = _json(f.environment)
        params = yaml.safe_load(f.params.read_text()) if f.params.exists() else {}
        self.params = (params or {}).get("steps", {})
        variant = self.sidecar.get("training", {}).get("variant")
        #: the shipped model's name in metrics.csv (None without a sidecar)
        self.shipped = (None if not self.sidecar else
                        f"{self.sidecar['model']}+{variant}" if variant else self.sidecar["model"])

    @classmethod
    def load(cls, folder: RunFolder, root: Path | None = None, name: str | None = None
             ) -> RunFiles:
        return cls(name or folder.name, folder, root or paths.project_root())

    def row(self, model: str | None, eval_set: str) -> pd.Series | None:
        m = self.metrics
        hit = m[(m["model"] == model) & (m["eval_set"] == eval_set)]
        return None if hit.empty else hit.iloc[0]

    def seconds(self) -> dict[str, float]:
        return {step: float(s["seconds"]) for step, s in self.state.items()
                if isinstance(s, dict) and s.get("seconds") is not None}
