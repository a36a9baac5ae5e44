"""Regenerate every figure of our run that the README, the book and the model card quote.

``brainmri tables --run reference`` rewrites each block between ``<!-- name:start -->``
and ``<!-- name:end -->`` in README.md, the model card (models/README.md) and the book
chapters results.md, conclusion.md and discussion.md: the results tables (from
``metrics.csv`` and ``ablation.csv``), and the sentences around them that state a result
of the run (accuracies, intervals, counts of images, duplicates, ECE, temperatures,
times), worded from the numbers of ``results/<run>/`` (metrics.csv, ablation.csv,
claims.csv, sources.json, leakage.json, split_counts.csv, xai_faithfulness.csv,
state.json, environment.json, params.yaml, predictions/, duplicates/) and of the shipped
model's sidecar. The reports' own figures come from ``brainmri.evaluation.published``.
No figure of the run is typed by hand in those files; :func:`render_all` gives what the
files should hold, so a test can check that the committed files match the run.
A block whose source file (or row) is missing is left empty, and a sentence whose
source is missing is left out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from brainmri.core import paths
from brainmri.core.errors import BrainMRIError
from brainmri.core.files import atomic_write_text
from brainmri.core.runfolder import RunFolder
from brainmri.evaluation import explain, published
from brainmri.evaluation import metrics as scoring

START, END = "<!-- results:start -->", "<!-- results:end -->"
SHIPPED = Path("models") / "brainmri_compact.json"  # the shipped model's sidecar
SHIPPED_MODEL = SHIPPED.with_suffix(".keras")
CARD = Path("models") / "README.md"


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


# --- generated blocks -------------------------------------------------------------------


def _provenance(run: str, sources: tuple[str, ...]) -> str:
    """Where a block comes from: run files by name, project files by path."""
    own = [s for s in sources if "/" not in s]
    other = [s for s in sources if "/" in s]
    parts = []
    if len(own) == 1:
        parts.append(f"results/{run}/{own[0]}")
    elif own:
        parts.append(f"results/{run}/ ({', '.join(own)})")
    return " and ".join(parts + other)


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


def _replace_block(path: Path, name: str, rendered: str, source: str, run: str) -> None:
    """Rewrite the generated block ``<!-- name:start -->`` ... ``<!-- name:end -->`` of
    ``path`` (``source``: a file of ``results/<run>/``)."""
    text = path.read_text()
    atomic_write_text(render_block(text, name, rendered, f"results/{run}/{source}", run,
                                   where=str(path)), path)


def update(readme: Path, metrics_file: Path, run: str, model: str | None = None) -> None:
    """Rewrite the generated results block of ``readme``: every model, or only ``model``'s
    rows."""
    metrics = pd.read_csv(metrics_file)
    if model is not None:
        metrics = metrics[metrics["model"] == model]
    rendered = table(metrics) if model is None else card_table(metrics)
    _replace_block(readme, "results", rendered, metrics_file.name, run)


# --- the run's files --------------------------------------------------------------------


def _csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.exists() else None


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


@dataclass
class RunFiles:
    """Everything the generated prose reads: one run folder and the shipped model."""

    name: str
    folder: RunFolder
    metrics: pd.DataFrame
    sidecar: dict = field(default_factory=dict)
    model_file: Path | None = None
    ablation: pd.DataFrame | None = None
    claims: pd.DataFrame | None = None
    split_counts: pd.DataFrame | None = None
    xai: pd.DataFrame | None = None
    sources: dict = field(default_factory=dict)
    leakage: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    @classmethod
    def load(cls, folder: RunFolder, root: Path | None = None, name: str | None = None
             ) -> RunFiles:
        """Read ``folder`` (and the shipped model's sidecar under ``root``); a missing
        file reads as empty. ``metrics.csv`` is required."""
        if not folder.metrics.exists():
            raise BrainMRIError(f"{folder.metrics} not found; run the series "
                                "(09_benchmark) first.")
        root = root or paths.project_root()
        params = yaml.safe_load(folder.params.read_text()) if folder.params.exists() else {}
        return cls(
            name=name or folder.name, folder=folder, metrics=pd.read_csv(folder.metrics),
            sidecar=_json(root / SHIPPED), model_file=root / SHIPPED_MODEL,
            ablation=_csv(folder.ablation), claims=_csv(folder.root / "claims.csv"),
            split_counts=_csv(folder.split_counts), xai=_csv(folder.xai),
            sources=_json(folder.sources), leakage=_json(folder.leakage),
            state=_json(folder.state), environment=_json(folder.environment),
            params=(params or {}).get("steps", {}))

    # metrics.csv ----------------------------------------------------------------------
    @property
    def shipped(self) -> str | None:
        """The shipped model's name in metrics.csv (None without a sidecar)."""
        if not self.sidecar:
            return None
        variant = self.sidecar.get("training", {}).get("variant")
        return f"{self.sidecar['model']}+{variant}" if variant else self.sidecar["model"]

    def row(self, model: str | None, eval_set: str, dataset: str | None = None
            ) -> pd.Series | None:
        m = self.metrics
        hit = m[(m["model"] == model) & (m["eval_set"] == eval_set)
                & ((m["dataset"] == dataset) if dataset else True)]
        return None if hit.empty else hit.iloc[0]

    def models(self, dataset: str | None = None) -> list[tuple[str, str]]:
        """(model, training dataset) pairs, in metrics.csv's order."""
        pairs = self.metrics[["model", "dataset"]].drop_duplicates()
        if dataset:
            pairs = pairs[pairs["dataset"] == dataset]
        return list(pairs.itertuples(index=False, name=None))

    # state.json, params.yaml ----------------------------------------------------------
    def seconds(self) -> dict[str, float]:
        """Each step's duration (state.json), for steps that ran or were skipped."""
        return {step: float(s["seconds"]) for step, s in self.state.items()
                if isinstance(s, dict) and s.get("seconds") is not None}

    def skipped(self) -> dict[str, str]:
        return {step: s.get("reason", "") for step, s in self.state.items()
                if isinstance(s, dict) and s.get("status") == "skipped"}

    def param(self, step: str, *keys, default=None):
        value = self.params.get(step, {})
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return default
            value = value[key]
        return value

    # predictions and duplicates ---------------------------------------------------------
    def predictions(self, model: str, dataset: str, split: str = "test") -> pd.DataFrame | None:
        return _csv(self.folder.predictions(f"{model}-{dataset}", split))


# --- wording ----------------------------------------------------------------------------

DATASETS = {"sartaj": "Sartaj", "nickparvar": "Nickparvar", "br35h": "Br35H",
            "figshare": "figshare"}
MODELS = {"inception_v3": "InceptionV3", "convnext_tiny": "ConvNeXt-Tiny",
          "relu_cnn": "ReLU CNN", "relu_cnn_augmented": "augmented ReLU CNN",
          "sigmoid_cnn": "sigmoid CNN", "compact_cnn": "compact CNN",
          "relu_cnn_rgb": "RGB CNN", "relu_cnn_16_epochs_grayscale": "grey CNN after 16 epochs"}
EXPLAINERS = {"GradCAM": "Grad-CAM", "GuidedBackprop": "Guided Backprop",
              "IntegratedGradients": "Integrated Gradients", "SmoothGrad": "SmoothGrad"}
MODES = {"grayscale": "grey", "rgb": "RGB"}
WORDS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve"]
#: A map "leans towards the outline" when its mass density on the head's outline band is
#: at least this many times the band's share of the image.
CONTOUR_LEANING = 1.1
HOME = ("sartaj", "nickparvar")  # the two four-class datasets; each is the other's external


def _ds(dataset: str) -> str:
    return DATASETS.get(dataset, dataset)


def _other(dataset: str) -> str:
    return next((d for d in HOME if d != dataset), dataset)


def _word(n: int) -> str:
    return WORDS[n] if 0 <= n < len(WORDS) else f"{n:,}"


def _n(x) -> str:
    return f"{int(x):,}"


def _p(x, digits: int = 1) -> str:
    """A share as a percentage: ``65.5 %``."""
    return f"{100 * x:.{digits}f} %"


def _pci(x, low, high) -> str:
    """``65.5 % (95 % CI 60.7-70.3)``."""
    return f"{_p(x)} (95 % CI {100 * low:.1f}-{100 * high:.1f})"


def _pub(x: float) -> str:
    """A published share as the report gives it, in per cent: 0.67 -> ``67 %``,
    0.9908 -> ``99.08 %``."""
    decimals = max(0, len(repr(float(x)).split(".")[1].rstrip("0")) - 2)
    return f"{100 * x:.{decimals}f} %"


def _points(diff: float) -> str:
    value = abs(100 * diff)
    return f"{value:.1f} point{'' if f'{value:.1f}' == '1.0' else 's'}"


def _of(k, n, what: str, det: str = "the") -> str:
    """``262 of the 394 test images (66 %)``; ``det`` may be a possessive."""
    return f"{_n(k)} of {det} {_n(n)} {what} ({100 * k / n:.0f} %)"


def _pubfig(x) -> str:
    """A published figure as the report prints it: 0.10 -> ``0.10``, 0.9908 -> ``0.9908``."""
    if isinstance(x, int):
        return str(x)
    return f"{x:.{max(2, len(repr(float(x)).split('.')[1]))}f}"


def _e3(x) -> str:
    """An ECE, to three decimals."""
    return f"{x:.3f}"


def _pvalue(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{seconds:.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _join(items: list[str], word: str = "and") -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {word} {items[-1]}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _position(value: float, low: float, high: float) -> str:
    """Where a published figure lies against our interval."""
    return "inside" if low <= value <= high else "above" if value > high else "below"


def _most(share: float) -> str:
    return "most" if share > 0.5 else "half" if share == 0.5 else "less than half"


_RISKY = re.compile(r"^(%|>|[-+*=|]+$|#+$|\d+[.)]$)")
_SPAN = re.compile(r"\{[a-z]+\}`[^`]*`|`[^`]*`|\S+ %")


def _wrap(text: str, first: str = "", rest: str = "", width: int = 88) -> str:
    """Markdown wrapped at ``width``, never breaking a code span, a role or ``x %``, and
    never starting a line with what Markdown would read as a list, a heading or a
    MyST comment."""
    protected = _SPAN.sub(lambda m: m.group(0).replace(" ", "\x00"), text)
    lines, line = [], first
    for token in protected.split():
        fresh = line in (first, rest)
        if not fresh and len(line) + 1 + len(token) > width and not _RISKY.match(token):
            lines.append(line)
            line = rest + token
        else:
            line = line + token if fresh else f"{line} {token}"
    lines.append(line)
    return "\n".join(lines).replace("\x00", " ")


def _bullets(items: list[str], ordered: bool = False) -> str:
    out = []
    for i, item in enumerate(i for i in items if i):
        mark = f"{i + 1}. " if ordered else "- "
        out.append(_wrap(item, mark, " " * len(mark)))
    return "\n".join(out)


def _paragraphs(*parts: str | None) -> str:
    return "\n\n".join(_wrap(p) for p in parts if p)


def _sentences(*parts: str | None) -> str:
    return " ".join(p for p in parts if p)


# --- figures shared by several blocks ------------------------------------------------------


def _label(r: RunFiles, model: str, dataset: str) -> str:
    """How prose names a model of the run: ``the ReLU CNN``, ``the compact CNN trained on
    Sartaj``, ``the shipped compact CNN``."""
    base = model.split("+")[0]
    name = MODELS.get(base, base)
    if model == r.shipped:
        return f"the shipped {name}"
    if sum(m.split("+")[0] == base for m, _ in r.models()) > 1:
        return f"the {name} trained on {_ds(dataset)}"
    return f"the {name}"


def _where(dataset: str, eval_set: str) -> str:
    return {"test": f"{_ds(dataset)}'s test set",
            "test_dedup": f"{_ds(dataset)}'s deduplicated test set",
            "external": f"{_ds(_other(dataset))}'s test set",
            "external_br35h": "Br35H's new tumour images"}.get(eval_set, eval_set)


def _reason(reason: str) -> tuple[str, str | None]:
    """(why, model) from a skipped step's reason: ``skipped: ImageNet weights unavailable
    for inception_v3 (...)``."""
    found = re.match(r"skipped:\s*(?P<why>.+?)(?: for (?P<model>[\w+-]+))?\s*(?:\(|$)", reason)
    if not found:
        return reason.split("(")[0].strip() or "skipped", None
    return found["why"], found["model"]


def _skipped_models(r: RunFiles) -> list[tuple[str, str, str]]:
    """(step, model or step, why) for every skipped step."""
    out = []
    for step, reason in r.skipped().items():
        why, model = _reason(reason)
        out.append((step, model or step, why))
    return out


def _machine(r: RunFiles) -> str:
    cores = r.environment.get("cpu_count")
    gpus = r.environment.get("gpus")
    parts = [f"{cores} CPU cores" if cores else "CPUs"]
    if gpus is not None:
        parts.append(f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''}" if gpus else "no GPU")
    return ", ".join(parts)


def _class_recall(frame: pd.DataFrame, label: str) -> tuple[int, int]:
    """(found, total) images of ``label``."""
    of = frame[frame["label"] == label]
    return int((of["prediction"] == label).sum()), len(of)


def _collapse(frame: pd.DataFrame) -> tuple[str, float]:
    """The most frequent answer and its share."""
    shares = frame["prediction"].value_counts(normalize=True)
    return str(shares.index[0]), float(shares.iloc[0])


def _published_collapse(figures: dict) -> str | None:
    recall = figures.get("recall", {})
    whole = [c for c, v in recall.items() if v == 1.0]
    return whole[0] if len(whole) == 1 and sum(recall.values()) == 1.0 else None


@dataclass
class Reproduction:
    model: str
    acc: float
    low: float
    high: float
    published: float
    position: str  # of the published figure against our interval
    collapsed: tuple[str, float] | None  # ours: (class, share) when one class takes >= 95 %
    published_collapse: str | None
    glioma: tuple[int, int] | None  # ours: found, total
    published_glioma: float | None
    epochs: int | None

    @property
    def verdict(self) -> str:
        """``yes`` when the published accuracy lies in our interval, or when both collapse
        to one class."""
        if self.position == "inside" or (self.collapsed and self.published_collapse):
            return "yes"
        return "no"

    @property
    def name(self) -> str:
        return MODELS.get(self.model, self.model)

    def gliomas(self, short: bool = False) -> str:
        """How many gliomas it finds, against the report's glioma recall."""
        if not self.glioma or self.published_glioma is None or not self.glioma[1]:
            return ""
        found, total = self.glioma
        ours, theirs = found / total, self.published_glioma
        close = abs(ours - theirs) <= 0.1
        if short:
            word = ("with the same blindness to gliomas" if close and ours < 0.3 else
                    "finding as many gliomas" if close else
                    "finding more gliomas" if ours > theirs else "finding fewer gliomas")
            return f", {word} (glioma recall {_p(ours, 0)} against {_pub(theirs)})"
        word = ("as few" if close and ours < 0.5 else "as many" if close else
                "more" if ours > theirs else "fewer")
        return (f"; it finds {word} gliomas ({found} of the {total} glioma test images, "
                f"against the report's glioma recall of {_pub(theirs)})")

    def collapse(self) -> str:
        cls, share = self.collapsed
        ours = cls.replace("_", " ")
        theirs = (self.published_collapse or "").replace("_", " ")
        how = ("to *" + ours + "*, as in the report" if theirs == ours else
               f"as in the report, though to *{ours}* rather than {theirs}" if theirs else
               f"to *{ours}*, unlike the report's")
        return f"collapses to one class {how}"

    def sentence(self, short: bool = False) -> str:
        """What our version of the model shows against the report's."""
        theirs = _pub(self.published)
        if self.collapsed:
            cls, share = self.collapsed
            if short:
                return f"The {self.name} {self.collapse()}."
            return (f"The {self.name} {self.collapse()}: it answers {cls.replace('_', ' ')} "
                    f"for {_p(share)} of the test images, and its accuracy, {_p(self.acc)}, "
                    "is that class's share of the test set.")
        if short and self.position != "inside":
            verb = "falls short" if self.position == "above" else "does better"
            return f"The {self.name} {verb} ({_p(self.acc)} against {theirs})."
        text = f"The {self.name} reaches {_pci(self.acc, self.low, self.high)} against the " \
               f"published {theirs}"
        if short:
            return text + self.gliomas(short=True) + "."
        text += {"inside": ", which lies inside our interval",
                 "above": ", which lies above our interval",
                 "below": ", which lies below our interval"}[self.position]
        if self.position == "above" and self.epochs and "augmented" in self.model:
            text += (f": {self.epochs} epochs of augmented, oversampled data leave ours "
                     "under-trained")
        return text + self.gliomas() + "."


def _step_of(r: RunFiles, model: str) -> str | None:
    """The chapter that trains ``model`` (``05_relu_cnn``), from state.json or params."""
    return next((s for s in [*r.state, *r.params] if s.split("_", 1)[-1] == model), None)


def _reproductions(r: RunFiles) -> list[Reproduction]:
    """Our versions of report 000's models against its figures (Sartaj test set)."""
    out = []
    for model, figures in published.REPORT_000.items():
        row = r.row(model, "test", "sartaj")
        if row is None or "accuracy" not in figures:
            continue
        frame = r.predictions(model, "sartaj")
        collapsed = glioma = None
        if frame is not None:
            top = _collapse(frame)
            collapsed = top if top[1] >= 0.95 else None
            glioma = _class_recall(frame, "glioma")
        step = _step_of(r, model)
        epochs = (r.param(step, "epochs") if step else None) or figures.get("epochs")
        out.append(Reproduction(
            model, row["accuracy"], row["acc_ci_low"], row["acc_ci_high"],
            figures["accuracy"], _position(figures["accuracy"], row["acc_ci_low"],
                                           row["acc_ci_high"]),
            collapsed, _published_collapse(figures), glioma,
            figures.get("recall", {}).get("glioma"), epochs))
    return out


def _names(models: list[str]) -> str:
    """``the ReLU and sigmoid CNNs``."""
    names = [MODELS.get(m, m) for m in models]
    if len(names) > 1 and all(n.endswith(" CNN") for n in names):
        return f"the {_join([n[:-4] for n in names])} CNNs"
    return f"the {_join(names)}"


def _compact_versus_relu(r: RunFiles) -> dict | None:
    """Our compact CNN against our ReLU CNN on Sartaj's test set (McNemar on the same
    images, glioma recall)."""
    a, b = r.row("compact_cnn", "test", "sartaj"), r.row("relu_cnn", "test", "sartaj")
    if a is None or b is None:
        return None
    out = {"compact": a, "relu": b, "p": None, "n": int(a["n"])}
    fa, fb = r.predictions("compact_cnn", "sartaj"), r.predictions("relu_cnn", "sartaj")
    if fa is not None and fb is not None:
        merged = fa.merge(fb, on="path", suffixes=("_a", "_b"))
        test = scoring.mcnemar((merged["prediction_a"] == merged["label_a"]).to_numpy(),
                               (merged["prediction_b"] == merged["label_b"]).to_numpy())
        out.update(p=test["p_value"], n=len(merged), glioma_a=_class_recall(fa, "glioma"),
                   glioma_b=_class_recall(fb, "glioma"))
    return out


def _recipe(r: RunFiles) -> str:
    """What the shipped recipe changes, from its sidecar."""
    t = r.sidecar.get("training", {})
    parts = []
    if t.get("crop"):
        parts.append("crop to the head")
    if t.get("extra_training"):
        parts.append(f"{_ds(t['extra_training'])}'s training images added")
    if t.get("restyle"):
        parts.append(f"{_p(t['restyle'], 0)} of training images restyled")
    if t.get("drop_source"):
        parts.append(f"no-tumour images with a copy in {_ds(t['drop_source'])} left out")
    if t.get("bn_reestimate"):
        parts.append("batch-norm statistics re-estimated")
    return ", ".join(parts)


_SEED = re.compile(r"-seed(?P<seed>\d+)(?=\+|$)")


def _ablation(r: RunFiles) -> pd.DataFrame | None:
    """ablation.csv with ``variant`` (without the model's name), ``group`` (the variant
    without a seed) and ``seed`` (the run's seed where the name gives none)."""
    if r.ablation is None or r.ablation.empty:
        return None
    seed = r.param("08c_shortcut_ablation", "seed", default=r.sidecar.get("seed"))
    a = r.ablation.copy()
    a["variant"] = a["model"].str.split("+ablation-", n=1, regex=False).str[-1]
    found = a["variant"].str.extract(_SEED)["seed"]
    a["group"] = a["variant"].str.replace(_SEED, "", regex=True)
    a["seed"] = found.astype(float).fillna(seed if seed is not None else float("nan"))
    a["repeat"] = found.notna()
    return a


def _shipped_variant(r: RunFiles) -> str | None:
    """The ablation variant with the shipped recipe: ``crop-union-bn`` -> ``crop-union+bn``."""
    variant = r.sidecar.get("training", {}).get("variant")
    if not variant:
        return None
    return variant[:-3] + "+bn" if variant.endswith("-bn") else variant


def _recipe_rank(r: RunFiles) -> tuple[str, int, int, float] | None:
    """(variant, rank, variants, validation accuracy) of the shipped recipe in chapter
    08c's ablation, ranked on validation accuracy (ablation.csv)."""
    a = _ablation(r)
    variant = _shipped_variant(r)
    if a is None or variant is None:
        return None
    single = a[~a["repeat"]].sort_values("val accuracy", ascending=False)
    if variant not in set(single["variant"]):
        return None
    rank = list(single["variant"]).index(variant) + 1
    return variant, rank, len(single), single.set_index("variant").loc[variant, "val accuracy"]


def _ordinal(n: int) -> str:
    return {1: "first", 2: "second", 3: "third"}.get(n, f"{n}th")


def _recipe_choice(r: RunFiles) -> str:
    """``the recipe that chapter 08c's ablation ranked first on validation accuracy
    (94.0 %)`` (or its rank), from ablation.csv."""
    ranked = _recipe_rank(r)
    if ranked is None:
        return "the recipe of chapter 08c"
    _, rank, n, val = ranked
    where = "first" if rank == 1 else f"{_ordinal(rank)} of {n}"
    return (f"the recipe that chapter 08c's ablation ranked {where} on validation accuracy "
            f"({_p(val)})")


def _levers(r: RunFiles) -> int | None:
    """How many levers the ablation's variants pull (params.yaml), batch norm included."""
    variants = r.param("08c_shortcut_ablation", "variants")
    if not variants:
        return None
    keys = {k for v in variants for k in v if k not in ("name", "also_bn")}
    return len(keys) + any(v.get("also_bn") for v in variants)


def _calibration(r: RunFiles, sets=("test", "external")) -> tuple[list, list, list]:
    """(lowered, raised, unchanged) ECE changes by temperature scaling, as
    (model, dataset, eval_set, before, after)."""
    lowered, raised, same = [], [], []
    m = r.metrics.dropna(subset=["ece", "ece_tempscaled"])
    for row in m[m["eval_set"].isin(sets)].itertuples():
        item = (row.model, row.dataset, row.eval_set, row.ece, row.ece_tempscaled)
        diff = row.ece_tempscaled - row.ece
        (lowered if diff <= -0.005 else raised if diff >= 0.005 else same).append(item)
    return lowered, raised, same


def _br35h_share(r: RunFiles) -> dict | None:
    """How much of Sartaj's Training and Testing folders has a copy in Br35H
    (duplicates/br35h_sartaj_overlap.csv and leakage.json's folder sizes)."""
    pairs = _csv(r.folder.overlap("br35h", "sartaj"))
    sizes = r.leakage.get("datasets", {}).get("sartaj", {})
    if pairs is None or not sizes:
        return None
    unique = pairs.groupby("sartaj_split")["sartaj_path"].nunique()
    return {"train": int(unique.get("train", 0)), "n_train": sizes["n_train"],
            "test": int(unique.get("test", 0)), "n_test": sizes["n_test"],
            "test_paths": set(pairs.loc[pairs["sartaj_split"] == "test", "sartaj_path"]),
            "train_glioma": int(pairs[(pairs["sartaj_split"] == "train")
                                      & (pairs["sartaj_label"] == "glioma")]
                                ["sartaj_path"].nunique())}


def _sartaj_br35h_sentence(r: RunFiles) -> str | None:
    s = _br35h_share(r)
    if s is None:
        return None
    test, train = s["test"] / s["n_test"], s["train"] / s["n_train"]
    word = ("far more" if test > 2 * train else "more" if test > train else
            "no more" if test == train else "fewer")
    return (f"Sartaj's `Testing` folder draws {word} of its images from the Br35H collection "
            f"than its `Training` folder: {_of(s['test'], s['n_test'], 'test images')} have a "
            f"copy in Br35H, against {_of(s['train'], s['n_train'], 'training images')}.")


def _collections(r: RunFiles) -> dict[str, dict[str, int]] | None:
    """Nickparvar's images per collection, for no-tumour and tumour classes."""
    table = r.sources.get("nickparvar_class_by_source")
    if not table:
        return None
    out = {"no_tumor": {}, "tumour": {}}
    for key, counts in table.items():
        group = "no_tumor" if key.split("/")[-1] == "no_tumor" else "tumour"
        for source, n in counts.items():
            if source != "All":
                out[group][source] = out[group].get(source, 0) + int(n)
    return out


def _from(counts: dict[str, int]) -> str:
    return _join([f"{_ds(s)} ({_n(n)})" for s, n in
                  sorted(counts.items(), key=lambda kv: -kv[1]) if n])


def _seed_spreads(r: RunFiles) -> list[str]:
    """Sentences on the models trained again with other seeds (claims.csv, ablation.csv)."""
    out = []
    c = r.claims
    if c is not None and not c.empty and c.groupby("setting")["seed"].nunique().max() > 1:
        for _, g in c.groupby("setting", sort=False):
            if g["seed"].nunique() < 2:
                continue
            first = g.iloc[0]
            mode = MODES.get(first["color_mode"], first["color_mode"])
            width = (g["test CI high"] - g["test CI low"]).mean()
            out.append(
                f"chapter 05b retrains the ReLU CNN ({mode}, {int(first['epochs'])} epochs) with "
                f"{_word(g['seed'].nunique())} seeds: its test accuracy ranges from "
                f"{_p(g['test accuracy'].min())} to {_p(g['test accuracy'].max())}, against a "
                f"bootstrap interval {_points(width)} wide")
    a = _ablation(r)
    if a is not None and a["repeat"].any():
        repeated = [(group, g) for group, g in a.groupby("group", sort=False)
                    if g["seed"].nunique() > 1]
        shipped = [(group, g) for group, g in repeated if group == _shipped_variant(r)]
        for group, g in shipped or repeated:  # the shipped recipe's, when it was repeated
            out.append(
                f"chapter 08c retrains its variant `{group}` with {_word(g['seed'].nunique())} "
                f"seeds: validation accuracy ranges from {_p(g['val accuracy'].min())} to "
                f"{_p(g['val accuracy'].max())}, Br35H tumour sensitivity from "
                f"{_p(g['external sensitivity'].min())} to "
                f"{_p(g['external sensitivity'].max())}")
    return out


def _claims_sentence(r: RunFiles) -> str | None:
    """Chapter 05b: the report's untested claims (colour mode, epochs), from claims.csv."""
    c = r.claims
    if c is None or c.empty:
        return None
    wanted = {("grayscale", 6): "relu_cnn", ("grayscale", 16): "relu_cnn_16_epochs_grayscale"}
    cells = []
    for _, g in c.groupby("setting", sort=False):
        row = g.iloc[0]
        mode, epochs = str(row["color_mode"]), int(row["epochs"])
        name = wanted.get((mode, epochs), "relu_cnn_rgb" if mode == "rgb" else None)
        figure = published.reported(name, "sartaj") if name else None
        low, high = row["test CI low"], row["test CI high"]
        text = (f"{MODES.get(mode, mode)} after {epochs} epochs {_p(row['test accuracy'])} "
                f"(95 % CI {100 * low:.1f}-{100 * high:.1f}")
        if figure and "accuracy" in figure:
            where = _position(figure["accuracy"], low, high)
            text += (f"; the report's {_pub(figure['accuracy'])} lies "
                     + ("inside" if where == "inside" else where))
        cells.append(text + ")")
    size = r.param("05b_relu_cnn_claims", "settings", "image_size")
    at = f" at {size} px" if size else ""
    return (f"Chapter 05b puts the report's untested claims on colour and epochs to the test"
            f"{at}: " + "; ".join(cells) + ".")


# --- the blocks ---------------------------------------------------------------------------


def readme_run(r: RunFiles) -> str:
    """README, Results: what the reference run is."""
    seconds = r.seconds()
    longest = sorted(seconds.items(), key=lambda kv: -kv[1])[:3]
    first = (f"The committed {r.name} run (`results/{r.name}/`, `params/{r.name}.yaml`) ran "
             f"on {_machine(r)}")
    if seconds:
        first += (f", in {_duration(sum(seconds.values()))} of notebook time over "
                  f"{len(seconds)} steps; the longest were "
                  + _join([f"`{s}` ({_duration(t)})" for s, t in longest]))
    first += "."
    report = [m for m, _ in r.models("sartaj") if m in published.REPORT_000]
    ours: dict[str, list[str]] = {}
    for model, dataset in r.models():
        if model not in published.REPORT_000:
            ours.setdefault(MODELS.get(model.split("+")[0], model), []).append(_ds(dataset))
    trained = []
    if report:
        trained.append(f"report 000's {_names(report)[4:]} on Sartaj at the report's settings")
    trained += [f"our {name} on {_join(sorted(set(on), reverse=True))}"
                for name, on in ours.items()]
    second = f"It trained {_join(trained, 'and')}." if trained else None
    if r.shipped and r.row(r.shipped, "test") is not None:
        dataset = _ds(r.sidecar.get("dataset", ""))
        second = _sentences(second, (
            f"On {dataset} it used `{r.shipped}` ({_recipe(r)}), {_recipe_choice(r)}: this is "
            "the shipped model."))
    skipped = _skipped_models(r)
    third = None
    if skipped:
        names = _join([MODELS.get(m, m) for _, m, _ in skipped])
        whys = sorted({why for _, _, why in skipped})
        third = (f"{names} {'were' if len(skipped) > 1 else 'was'} skipped on that machine "
                 f"({'; '.join(whys)}), so the run has no rows for "
                 f"{'them' if len(skipped) > 1 else 'it'}.")
    libraries = {s.get("library") or (s.get("key", "").split("-") + [""])[1]
                 for s in r.state.values() if isinstance(s, dict)} - {""}
    revisions = {s.get("revision") for s in r.state.values() if isinstance(s, dict)} - {None}
    fourth = None
    if len(libraries) > 1:
        fourth = (f"Its steps ran on {_word(len(libraries))} versions of the library code: the "
                  "run was resumed step by step while the code changed.")
    elif libraries:
        fourth = ("All its steps ran on the same version of the library code"
                  + (f" (revision `{revisions.pop()}`)." if len(revisions) == 1 else "."))
    return _paragraphs(_sentences(first, second, third, fourth))


def results_brief(r: RunFiles) -> str:
    """book/results.md: the run in one paragraph."""
    seconds = r.seconds()
    took = f", {_duration(sum(seconds.values()))}" if seconds else ""
    text = (f"The book is published from the committed {r.name} run (`results/{r.name}/`, "
            f"{_machine(r)}{took}). Its headline figures, from `metrics.csv`, are below; every "
            "other number is on the benchmark page.")
    skipped = _skipped_models(r)
    if skipped:
        whys = sorted({why for _, _, why in skipped})
        quoted = []
        for _, model, _ in skipped:
            if model in published.REPORT_000:
                quoted.append(f"report 000's {MODELS.get(model, model)}")
            elif model in published.REPORT_001:
                quoted.append(f"report 001's {MODELS.get(model, model)}")
        text += (f" {_join([MODELS.get(m, m) for _, m, _ in skipped])} "
                 f"{'were' if len(skipped) > 1 else 'was'} skipped on that machine "
                 f"({'; '.join(whys)})")
        text += (f", so {_join(quoted)} appear{'s' if len(quoted) == 1 else ''} only through "
                 "the published figures." if quoted else ".")
    return _paragraphs(text)


def _published_name(key: str) -> str:
    return {"relu_cnn_augmented": "augmented CNN"}.get(key, MODELS.get(key, key))


def results_published(r: RunFiles) -> str:
    """book/results.md: the published figures our models are compared with."""
    present = {m for m, _ in r.models()}
    keys = [k for k in published.REPORT_000 if k in present
            or k == published.BEST_PUBLISHED["sartaj"]]
    first = ("The published figures to compare with: report 000's "
             + _join([f"{_published_name(k)} {published.REPORT_000[k]['accuracy']:g}"
                      for k in keys])
             + " on Sartaj's test set; report 001's "
             + _join([f"{_published_name(k)} {v['accuracy']:g}"
                      for k, v in published.REPORT_001.items()])
             + " on Nickparvar's.")
    second = None
    if r.shipped and r.row(r.shipped, "test") is not None:
        second = (f"The compact CNN trained on {_ds(r.sidecar.get('dataset', 'nickparvar'))} "
                  f"is the shipped model, with {_recipe_choice(r)} (`{r.shipped}`).")
    return _paragraphs(_sentences(first, second))


def _dash(x, fmt: str = "{:g}") -> str:
    return "—" if x is None else fmt.format(x)


def published_000(r: RunFiles | None = None) -> str:
    """Report 000's table, from ``brainmri.evaluation.published``."""
    rows = [("InceptionV3 (baseline)", "inception_v3"), ("ReLU CNN", "relu_cnn"),
            ("Augmented ReLU CNN", "relu_cnn_augmented"), ("Sigmoid CNN", "sigmoid_cnn"),
            ("ReLU CNN, fine-tuned, grey", "relu_cnn_16_epochs_grayscale"),
            ("Same CNN, RGB input", "relu_cnn_rgb")]
    lines = ["| Model | Epochs | Accuracy | Weighted precision | Weighted recall | "
             "F1 (published) | Errors | AUC (weighted) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, key in rows:
        f = published.REPORT_000[key]
        epochs = _dash(f.get("epochs"), "{}")
        if set(f) <= {"accuracy", "epochs"}:  # the discussion's figures: accuracy only
            lines.append(f"| {label} | {epochs} | ≈ {_pubfig(f['accuracy'])} | | | | | |")
            continue
        cells = [_pubfig(f[k]) if f.get(k) is not None else "—"
                 for k in ("accuracy", "precision_w", "recall_w", "f1_report", "fp", "auc_w")]
        lines.append(f"| {label} | {epochs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def published_001(r: RunFiles | None = None) -> str:
    """Report 001's table, from ``brainmri.evaluation.published``."""
    lines = ["| Model | Accuracy | Weighted precision | Weighted recall | Weighted F1 | "
             "ROC-AUC per class (glioma, meningioma, pituitary, no tumour) |",
             "|---|---:|---:|---:|---:|---|"]
    for key, f in published.REPORT_001.items():
        auc = f.get("auc", {})
        cells = [_pubfig(f[k]) if f.get(k) is not None else "—"
                 for k in ("accuracy", "precision_w", "recall_w", "f1_w")]
        lines.append(f"| {MODELS.get(key, key)} | " + " | ".join(cells) + " | "
                     + ", ".join(_pubfig(auc[c]) for c in ("glioma", "meningioma",
                                                            "pituitary", "no_tumor")
                                 if c in auc) + " |")
    return "\n".join(lines)


def _sartaj_dedup(r: RunFiles) -> dict | None:
    rows = r.metrics[(r.metrics["dataset"] == "sartaj") & (r.metrics["eval_set"] == "test_dedup")]
    if rows.empty:
        return None
    sizes = r.leakage.get("datasets", {}).get("sartaj", {})
    return {"n": int(rows["n"].iloc[0]), "no_tumours": rows["no_tumours"].iloc[0],
            "low": rows["accuracy"].min(), "high": rows["accuracy"].max(),
            "removed": sizes.get("test_images_with_copy_in_training"),
            "n_test": sizes.get("n_test")}


def _br35h_rows(r: RunFiles) -> pd.DataFrame:
    return r.metrics[r.metrics["eval_set"] == "external_br35h"]


def _best_ablation(r: RunFiles) -> pd.Series | None:
    a = _ablation(r)
    if a is None:
        return None
    single = a[~a["repeat"]]
    return single.loc[single["external sensitivity"].idxmax()]


def _calibration_text(r: RunFiles) -> str | None:
    """What temperature scaling does to the ECE, test set by test set."""
    lowered, raised, same = _calibration(r)
    if not (lowered or raised):
        return None
    by_set: dict[str, dict[str, list]] = {}
    for kind, items in (("lowers", lowered), ("raises", raised), ("leaves", same)):
        for model, dataset, eval_set, before, after in items:
            on = dataset if eval_set == "test" else _other(dataset)
            by_set.setdefault(on, {}).setdefault(kind, []).append(
                f"{_label(r, model, dataset)} ({_e3(before)} to {_e3(after)})" if kind != "leaves"
                else f"{_label(r, model, dataset)} ({_e3(before)})")
    sentences = []
    for on, kinds in by_set.items():
        clauses = []
        for kind, items in kinds.items():
            obj = "that" if clauses else "the ECE"
            clauses.append(f"leaves {obj} of {_join(items)} unchanged" if kind == "leaves"
                           else f"{kind} {obj} of {_join(items)}")
        lead = ("temperature scaling fitted on validation" if not sentences else "it")
        sentences.append(f"on {_ds(on)}'s test set {lead} {_join(clauses)}")
    text = _cap("; ".join(sentences)) + "."
    if raised:
        text += " A temperature fitted on validation data cannot correct for a distribution shift."
    return text


def results_findings(r: RunFiles) -> str:
    """book/results.md: "What these numbers say", worded from the numbers."""
    items = []
    repro = _reproductions(r)
    if repro:
        items.append("**Reproduction.** " + " ".join(x.sentence() for x in repro))
    vs = _compact_versus_relu(r)
    ship = r.row(r.shipped, "test") if r.shipped else None
    if vs or ship is not None:
        parts = []
        if vs:
            a, b = vs["compact"], vs["relu"]
            p = vs["p"]
            lead = ("barely differs from" if p is None or p >= 0.05 else
                    "beats" if a["accuracy"] > b["accuracy"] else "falls behind")
            text = (f"**On the Sartaj test set our compact CNN {lead} the ReLU CNN**: "
                    f"{_pci(a['accuracy'], a['acc_ci_low'], a['acc_ci_high'])} against "
                    f"{_p(b['accuracy'])}")
            if p is not None:
                text += (f"; McNemar's test on the same {_n(vs['n'])} images "
                         + ("cannot tell them apart" if p >= 0.05 else "separates them")
                         + f" ({_pvalue(p)})")
                (fa, ta), (fb, _) = vs["glioma_a"], vs["glioma_b"]
                word = "more" if fa > fb else "fewer" if fa < fb else "as many"
                joint = "although" if lead == "barely differs from" and fa != fb else "and"
                text += f", {joint} it finds {word} gliomas ({fa} of {ta}, against {fb})"
            best = published.BEST_PUBLISHED["sartaj"]
            fig = published.REPORT_000[best]["accuracy"]
            text += (f". The report's best figure on this test set, its "
                     f"{_published_name(best)}'s {_pub(fig)}, lies "
                     f"{_position(fig, a['acc_ci_low'], a['acc_ci_high'])} that interval.")
            parts.append(text)
        if ship is not None:
            key = published.BEST_PUBLISHED["nickparvar"]
            fig = published.REPORT_001[key]["accuracy"]
            diff = ship["accuracy"] - fig
            parts.append(
                f"On Nickparvar the shipped recipe reaches "
                f"{_pci(ship['accuracy'], ship['acc_ci_low'], ship['acc_ci_high'])}, "
                f"{_points(diff)} {'above' if diff > 0 else 'below'} the pretrained "
                f"{MODELS.get(key, key)}'s published {_pub(fig)}, without ImageNet weights.")
        items.append(" ".join(parts))
    d = _sartaj_dedup(r)
    if d:
        lead = ("**The Sartaj test set is the problem, not only the models.**" if d["high"] < 0.5
                else "**The deduplicated Sartaj test set.**")
        none = ("none of them without a tumour" if d["no_tumours"] == 0 else
                f"{_n(d['no_tumours'])} of them without a tumour")
        removed = (f"the {_n(d['removed'])} test images with a copy in the training folder are "
                   "removed" if d["removed"] else
                   "the test images with a copy in the training folder are removed")
        text = (f"{lead} Once {removed}, {_n(d['n'])} images remain, {none}, and the models "
                f"score between {_p(d['low'])} and {_p(d['high'])} on them")
        ext = r.row("compact_cnn", "external", "sartaj")
        if ext is not None:
            text += (f", while the Sartaj-trained compact CNN classifies {_p(ext['accuracy'])} "
                     f"of the {_n(ext['n'])} Nickparvar test images it has never seen")
        text += "."
        source = _sartaj_br35h_sentence(r)
        if source:
            text += " The {doc}`source audit <notebooks/01c_source_audit>` shows why. " + source
        items.append(text)
    br = _br35h_rows(r)
    if not br.empty:
        found = [f"{_p(x.tumour_sensitivity)} ({_label(r, x.model, x.dataset)})"
                 for x in br.itertuples()]
        homes = [r.row(x.model, "test", x.dataset) for x in br.itertuples()]
        home = [h["tumour_sensitivity"] for h in homes if h is not None]
        word = "less than half" if br["tumour_sensitivity"].max() < 0.5 else (
            "most" if br["tumour_sensitivity"].min() > 0.5 else "between a fraction and most")
        count = (f"{'Both' if len(br) == 2 else 'All ' + _word(len(br))} models scored on it "
                 if len(br) > 1 else "The one model scored on it ")
        text = (f"**Tumours from a new collection.** {count}find {word} of Br35H's "
                f"{_n(br['n'].iloc[0])} tumour images that no training folder contains (last "
                f"column): {_join(found)}")
        if home:
            text += (f", against a tumour sensitivity of {_p(min(home))}"
                     + (f" to {_p(max(home))}" if len(home) > 1 else "")
                     + " on their home test sets")
        best = _best_ablation(r)
        if best is not None:
            text += (". No variant of the {doc}`ablation <notebooks/08c_shortcut_ablation>` "
                     f"finds more than {_p(best['external sensitivity'])} (`{best['variant']}`)")
        items.append(text + ".")
    calibration = _calibration_text(r)
    if calibration:
        items.append("**Calibration.** " + calibration)
    return _bullets(items)


def conclusion_answers(r: RunFiles) -> str:
    """book/conclusion.md: what the run answers, question by question."""
    skipped = _skipped_models(r)
    seconds = r.seconds()
    machine = _machine(r)
    if any("ImageNet" in why for _, _, why in skipped):
        machine += ", no ImageNet weights"
    if seconds:
        machine += f", {_duration(sum(seconds.values()))}"
    intro = (f"The committed {r.name} run ({machine}) answers these questions as follows; "
             "{doc}`results` has the table and the benchmark page every figure.")
    items = []
    # 1. reproduction
    repro = _reproductions(r)
    if repro or skipped:
        yes = [x.model for x in repro if x.verdict == "yes"]
        no = [x.model for x in repro if x.verdict == "no"]
        verdict = []
        if yes:
            verdict.append(f"yes for {_names(yes)}")
        if no:
            verdict.append(f"not for {_names(no)}")
        if skipped:
            verdict.append("not tested for "
                           + ("the transfer models" if all("ImageNet" in w for *_, w in skipped)
                              else _join([MODELS.get(m, m) for _, m, _ in skipped])))
        said = _join(verdict, "and") if len(verdict) < 3 else ", ".join(verdict)
        text = f"**Reproduction: {said}.** "
        text += " ".join(x.sentence(short=True) for x in repro)
        if skipped:
            text += (f" {_join([MODELS.get(m, m) for _, m, _ in skipped])} "
                     f"{'were' if len(skipped) > 1 else 'was'} skipped on the {r.name} machine ("
                     + "; ".join(sorted({w for *_, w in skipped})) + ").")
        text += " " + (_claims_sentence(r) or "")
        items.append(text.strip())
    # 2. improvement
    vs = _compact_versus_relu(r)
    ship = r.row(r.shipped, "test") if r.shipped else None
    if vs or ship is not None:
        verdict, parts = [], []
        if vs:
            a, b, p = vs["compact"], vs["relu"], vs["p"]
            best = max(published.REPORT_000[k]["accuracy"] for k in published.REPORT_000)
            better = (a["acc_ci_low"] > best and p is not None and p < 0.05
                      and a["accuracy"] > b["accuracy"])
            verdict.append(("yes" if better else "not") + " on the Sartaj test set")
            size = r.sidecar.get("parameters")
            weights = f" ({size / 1e6:.2f} million weights, CPU training)" if size else ""
            text = (f"Our compact CNN{weights} scores "
                    f"{_pci(a['accuracy'], a['acc_ci_low'], a['acc_ci_high'])} on Sartaj's test "
                    f"set against the ReLU CNN's {_p(b['accuracy'])}")
            if p is not None:
                (fa, ta), (fb, _) = vs["glioma_a"], vs["glioma_b"]
                text += (f", {'a tie' if p >= 0.05 else 'a significant difference'} for "
                         f"McNemar's test ({_pvalue(p)}), while finding "
                         f"{'more' if fa > fb else 'fewer' if fa < fb else 'as many'} gliomas "
                         f"({fa} of {ta}, against {fb})")
            key = published.BEST_PUBLISHED["sartaj"]
            fig = published.REPORT_000[key]["accuracy"]
            text += (f"; report 000's best figure, {_pub(fig)} ({_published_name(key)}), lies "
                     f"{_position(fig, a['acc_ci_low'], a['acc_ci_high'])} its interval.")
            parts.append(text)
        if ship is not None:
            key = published.BEST_PUBLISHED["nickparvar"]
            fig = published.REPORT_001[key]["accuracy"]
            diff = ship["accuracy"] - fig
            verdict.append(("yes" if diff >= 0 else "nearly" if diff > -0.02 else "not")
                           + " on Nickparvar")
            parts.append(
                f"On Nickparvar the shipped recipe ({_recipe(r)}) reaches "
                f"{_pci(ship['accuracy'], ship['acc_ci_low'], ship['acc_ci_high'])}, "
                f"{_points(diff)} {'above' if diff > 0 else 'below'} report 001's pretrained "
                f"{MODELS.get(key, key)} ({_pub(fig)}), at home. The figures are in "
                "{doc}`results`.")
        items.append(f"**Improvement: {', '.join(verdict)}.** " + " ".join(parts))
    # 3. honesty of the scores
    d = _sartaj_dedup(r)
    br = _br35h_rows(r)
    parts = []
    if d and d["removed"] and d["n_test"]:
        share = _br35h_share(r)
        other = share is not None and share["test"] / share["n_test"] > 2 * share["train"] / \
            share["n_train"]
        copies = _of(d["removed"], d["n_test"], "test images", "Sartaj's")
        parts.append(
            f"{_cap(copies)} have a copy in the training folder, and on the remaining "
            f"{_n(d['n'])} the models score between {_p(d['low'])} and {_p(d['high'])}"
            + (": Sartaj's test folder samples another collection than its training folder "
               "({doc}`source audit <notebooks/01c_source_audit>`)." if other else "."))
    nick = r.leakage.get("datasets", {}).get("nickparvar", {})
    dedup = r.row(r.shipped, "test_dedup") if r.shipped else None
    if nick and ship is not None and dedup is not None:
        drop = ship["accuracy"] - dedup["accuracy"]
        copies = _of(nick["test_images_with_copy_in_training"], nick["n_test"], "test images",
                     "its")
        text = (f"On Nickparvar, removing the {copies} "
                f"that have a copy in training moves the shipped model's accuracy from "
                f"{_p(ship['accuracy'])} to {_p(dedup['accuracy'])}"
                f" ({'only ' if abs(drop) < 0.01 else ''}{_points(drop)})")
        groups = _collections(r)
        if groups:
            text += (f", but the dataset's no-tumour images come from "
                     f"{_join([_ds(s) for s, n in groups['no_tumor'].items() if n])} and its "
                     f"tumours from {_join([_ds(s) for s, n in groups['tumour'].items() if n])}")
        if not br.empty:
            missed = [f"{_p(1 - x.tumour_sensitivity)} ({_label(r, x.model, x.dataset)})"
                      for x in br.itertuples()]
            text += (f", and the models scored on Br35H's {_n(br['n'].iloc[0])} tumour images "
                     f"that no training folder contains miss {_join(missed)} of them")
        parts.append(text + ".")
    best = _best_ablation(r)
    a = _ablation(r)
    if best is not None:
        levers = _levers(r)
        what = (f"{_word(levers)} levers in {_n((~a['repeat']).sum())} variants" if levers
                else f"{_n((~a['repeat']).sum())} variants")
        parts.append(f"The {{doc}}`ablation <notebooks/08c_shortcut_ablation>` measures {what} "
                     f"against this shortcut; the best finds {_p(best['external sensitivity'])} "
                     f"of those tumours (`{best['variant']}`).")
    if ship is not None:
        ext = r.row(r.shipped, "external")
        if ext is not None and pd.notna(ship["ece"]) and pd.notna(ext["ece"]):
            home_word = "lowers" if ship["ece_tempscaled"] < ship["ece"] else "raises"
            ext_word = "lowers" if ext["ece_tempscaled"] < ext["ece"] else "raises"
            parts.append(
                f"Temperature scaling {home_word} the shipped model's ECE at home "
                f"({_e3(ship['ece'])} to {_e3(ship['ece_tempscaled'])}) "
                f"{'and' if home_word == ext_word else 'but'} {ext_word} it on "
                f"{_where(r.sidecar.get('dataset', 'nickparvar'), 'external')} "
                f"({_e3(ext['ece'])} to {_e3(ext['ece_tempscaled'])}).")
    if parts:
        small = (d is not None and d["high"] < 0.5 and not br.empty
                 and br["tumour_sensitivity"].max() < 0.5)
        lead = ("**Honesty of the scores: the home test sets measure little of what matters.**"
                if small else "**Honesty of the scores.**")
        items.append(lead + " " + " ".join(parts))
    # 4. explanations
    x = r.xai
    if x is not None and not x.empty:
        flagged = x[x["flag_insensitive_to_weights"].astype(str) == "True"]
        n = len(x)
        density = x["mass_on_contour"] / x["area_on_contour"]
        leaning = x[density > CONTOUR_LEANING]
        verdict = ("they pass the checks we could run" if flagged.empty else
                   f"{_word(len(flagged))} of {_word(n)} fail the randomisation check")
        text = (f"**Explanations: {verdict}.** "
                + (f"{'Both' if n == 2 else 'All ' + _word(n)} model × explainer pairs change "
                   "when the weights are randomised" if flagged.empty else
                   f"{_cap(_word(n - len(flagged)))} of the {_word(n)} model × explainer pairs "
                   "change when the weights are randomised")
                + f", and put {100 * x['mass_in_brain'].min():.0f}-"
                  f"{100 * x['mass_in_brain'].max():.0f} % of their attribution on the head "
                  f"(which covers {100 * x['area_in_brain'].min():.0f}-"
                  f"{100 * x['area_in_brain'].max():.0f} % of the image)")
        if leaning.empty:
            text += (f"; none leans towards the head's outline (at most {density.max():.2f} "
                     "times the outline band's share of the image).")
        else:
            pairs = []
            for row in leaning.itertuples():
                model, _, dataset = row.model.rpartition("-")
                pairs.append(f"{EXPLAINERS.get(row.explainer, row.explainer)} on "
                             f"{_label(r, model, dataset)}")
            rest = density[density <= CONTOUR_LEANING]
            text += (f"; {'only ' if len(leaning) == 1 else ''}{_join(pairs)} "
                     f"lean{'s' if len(leaning) == 1 else ''} towards the head's outline "
                     f"({density.max():.2f} times the outline band's share of the image"
                     + (f", the others at most {rest.max():.2f}" if len(rest) else "") + ").")
        text += (" Details in {doc}`explainability` and the {doc}`explanations notebook "
                 "<notebooks/10_explainability>`.")
        items.append(text)
    return _wrap(intro) + "\n\n" + _bullets(items, ordered=True)


def discussion_compute(r: RunFiles) -> str:
    """book/discussion.md, Compute: the reports' epochs, our machine and seeds."""
    short, long_ = (published.REPORT_000[k] for k in ("relu_cnn", "relu_cnn_16_epochs_grayscale"))
    first = (f"Report 000 limited its CNNs to {short.get('epochs')} epochs for lack of compute, "
             f"and found that {long_.get('epochs')} epochs helped ({_pub(short['accuracy'])} "
             f"to {_pub(long_['accuracy'])} test accuracy for its ReLU CNN). We keep the "
             "reports' settings for the reproductions, so those models are, by design, not "
             "trained to convergence.")
    seconds = r.seconds()
    second = (f"Our {r.name} run is trained on {_machine(r)}"
              + (f" ({_duration(sum(seconds.values()))} for the whole series)" if seconds else "")
              + ", which rules out large searches over hyperparameters.")
    spreads = _seed_spreads(r)
    if spreads:
        third = (_cap("; ".join(spreads)) + ". The other models are trained with one seed, "
                 "and their confidence intervals cover only the sampling of test images, not "
                 "the variability due to initialisation.")
    else:
        third = ("Each model is trained with one seed: the variability due to initialisation "
                 "is therefore not part of our confidence intervals, which cover only the "
                 "sampling of test images.")
    return _paragraphs(_sentences(first, second, third))


def discussion_shift(r: RunFiles) -> str:
    """book/discussion.md, A shifted test set: the class balance of Sartaj's folders."""
    c = r.split_counts
    if c is None:
        return ""
    s = c[c["dataset"] == "sartaj"]
    test, train = s[s["split"] == "test"], s[s["split"].isin(["train", "val"])]
    if test.empty or train.empty:
        return ""
    t_no, t_n = test.loc[test["class"] == "no_tumor", "n"].sum(), test["n"].sum()
    r_no, r_n = train.loc[train["class"] == "no_tumor", "n"].sum(), train["n"].sum()
    word = "differs" if abs(t_no / t_n - r_no / r_n) > 0.05 else "barely differs"
    return _paragraphs(
        f"The Sartaj `Testing` folder does not look like its `Training` folder: the class "
        f"balance {word}, with no tumour on {_of(t_no, t_n, 'test images')}, against "
        f"{_of(r_no, r_n, 'training images')}.")


def discussion_shortcut(r: RunFiles) -> str:
    """book/discussion.md: the collection an image comes from tells its class."""
    groups = _collections(r)
    if not groups:
        return ""
    no_br = groups["tumour"].get("br35h", 0)
    text = ("The {doc}`source audit <notebooks/01c_source_audit>` shows that on "
            "Nickparvar's dataset the collection an image comes from and its class are nearly "
            f"the same question: the no-tumour images come from {_from(groups['no_tumor'])}, "
            f"the tumour images from {_from(groups['tumour'])}"
            + (", never from Br35H." if no_br == 0 else f", {_n(no_br)} from Br35H."))
    stats = r.sources.get("tumour_from_statistics")
    on = r.sources.get("shortcut_on_br35h", {})
    if stats:
        text += (" A classifier that sees only ten numbers about framing and grey levels, and "
                 "nothing of the anatomy, tells tumour from no tumour at home with "
                 f"{_p(stats['accuracy'])} cross-validated accuracy (majority baseline "
                 f"{_p(stats['majority_baseline'])})")
        called = on.get("Br35H new tumour images called no_tumor")
        if called is not None:
            text += (f"; on Br35H's {_n(on.get('Br35H new tumour images', 0))} tumour images, "
                     f"which no training folder contains, it answers \"no tumour\" for "
                     f"{_most(called)} of them ({_p(called)})")
        text += "."
    ship = r.row(r.shipped, "external_br35h") if r.shipped else None
    if ship is not None:
        missed = 1 - ship["tumour_sensitivity"]
        text += (f" Our shipped CNN, trained on Nickparvar, misses {_p(missed)} of them "
                 + ("too, and the home test set cannot reveal it, because it is drawn from "
                    "the same mixture of collections." if missed > 0.5 else
                    "; the home test set could not have revealed it, because it is drawn from "
                    "the same mixture of collections."))
    return _paragraphs(text)


def _drop_variant(r: RunFiles, names) -> str | None:
    """The variant that only leaves out the images of one source (params.yaml; else by
    name)."""
    variants = r.param("08c_shortcut_ablation", "variants") or []
    for v in variants:
        if set(v) - {"name", "also_bn"} == {"drop_source"} and v["name"] in names:
            return v["name"]
    return next((v for v in names if v.startswith("drop")), None)


def ablation_summary(r: RunFiles) -> str:
    """What the ablation found, in numbers (the discussion and the model card)."""
    a = _ablation(r)
    if a is None:
        return ""
    single = a[~a["repeat"]].set_index("variant")
    parts = []
    if "baseline" in single.index and len(single) > 1:
        b = single.loc["baseline"]
        others = single.drop(index="baseline")
        higher = others[others["external sensitivity"] > b["external CI high"]]
        best = others.loc[others["external sensitivity"].idxmax()]
        parts.append(
            f"In this run the baseline recipe finds "
            f"{_pci(b['external sensitivity'], b['external CI low'], b['external CI high'])} of "
            f"Br35H's new tumour images, at a home test specificity of "
            f"{_p(b['test specificity'])}.")
        near = best["external sensitivity"] >= single["test accuracy"].min() - 0.1
        k, n = len(higher), len(others)
        count = (f"All {_n(n)} other variants find more" if k == n and n > 1 else
                 f"None of the {_n(n)} other variants finds more" if k == 0 else
                 f"Of the {_n(n)} other variants, {_n(k)} find{'s' if k == 1 else ''} more")
        parts.append(
            f"{count} (above the baseline's interval), the best "
            f"{_p(best['external sensitivity'])} "
            f"(`{best.name}`, home specificity {_p(best['test specificity'])}): "
            + ("none comes near" if not near else "the best comes near")
            + f" the home test sets, where the variants reach "
              f"{_p(single['test accuracy'].min())} to {_p(single['test accuracy'].max())} "
              "accuracy.")
        drop = _drop_variant(r, list(single.index))
        if drop:
            v = single.loc[drop]
            source = r.param("08c_shortcut_ablation", "variants")
            source = next((x.get("drop_source") for x in source or [] if x["name"] == drop),
                          None)
            gain = v["external sensitivity"] - b["external sensitivity"]
            cost = b["test specificity"] - v["test specificity"]
            what = (f"the training images with a copy in {_ds(source)}" if source
                    else "the training images of one source")
            parts.append(
                f"Leaving out {what} (`{drop}`) {'raises' if gain > 0 else 'lowers'} Br35H "
                f"sensitivity to {_p(v['external sensitivity'])} "
                f"{'but lowers' if cost > 0 else 'and raises'} home specificity to "
                f"{_p(v['test specificity'])}"
                + (f", {_points(cost)} below the baseline's: its gain is paid for with false "
                   "alarms at home." if gain > 0 and cost > 0.05 else "."))
    spreads = [s for s in _seed_spreads(r) if s.startswith("chapter 08c")]
    if spreads:
        parts.append(_cap(spreads[0]) + ".")
    return _paragraphs(" ".join(parts))


def discussion_gliomas(r: RunFiles) -> str:
    """book/discussion.md: the Sartaj test gliomas the models miss."""
    n = r.sources.get("sartaj_test_gliomas_without_training_copy")
    share = _br35h_share(r)
    leaked = _csv(r.folder.test_with_copy("sartaj"))
    if not n or share is None or leaked is None:
        return ""
    found, paths_ = [], set()
    for model, dataset in r.models("sartaj"):
        frame = r.predictions(model, dataset)
        if frame is None:
            continue
        gliomas = frame[(frame["label"] == "glioma") & ~frame["path"].isin(leaked["test_path"])]
        paths_ = set(gliomas["path"])
        found.append((gliomas["prediction"] == "glioma").mean())
    if not found or not paths_:
        return ""
    in_br35h = len(paths_ & share["test_paths"])
    most = in_br35h / len(paths_) > 0.5
    train = _of(share["train"], share["n_train"], "training images", "Sartaj's")
    text = ("The {doc}`source audit <notebooks/01c_source_audit>` also explains the Sartaj "
            "test gliomas that the models miss. Of the "
            f"{_n(n)} without a copy in Sartaj's training folder, the "
            f"{_word(len(found))} models find between {_p(min(found))} and {_p(max(found))}; "
            f"{_n(in_br35h)} of them ({100 * in_br35h / len(paths_):.0f} %) have a copy in "
            "Br35H"
            + (", so that most are not mislabelled tumours but scans of another collection"
               if most else "")
            + f". Br35H is behind {train}, {_n(share['train_glioma'])} of them gliomas, but "
              f"{_of(share['test'], share['n_test'], 'test images', 'its')}.")
    return _paragraphs(text)


def card_model(r: RunFiles) -> str:
    """Model card, What it is: the shipped file's own figures."""
    s = r.sidecar
    if not s:
        return ""
    parts = []
    if s.get("parameters"):
        size = (f" in a {r.model_file.stat().st_size / 1e6:.1f} MB file"
                if r.model_file and r.model_file.exists() else "")
        parts.append(f"The shipped model has {_n(s['parameters'])} weights{size}.")
    t = s.get("temperature")
    if t:
        parts.append(f"Its validation temperature is {t:.3f}"
                     + (" (below 1: the raw model was under-confident on validation images)."
                        if t < 1 else " (above 1: the raw model was over-confident on "
                        "validation images)." if t > 1 else "."))
    ood = s.get("ood", {})
    if ood.get("false_alarm_rate") is not None:
        parts.append(f"Its out-of-distribution threshold flags {_p(ood['false_alarm_rate'], 0)} "
                     f"of the {_n(ood.get('n_val', 0))} clean validation images.")
    return _paragraphs(" ".join(parts))


def card_training(r: RunFiles) -> str:
    """Model card, Data and training: how long training took, on what."""
    dataset = r.sidecar.get("dataset", "")
    exported = [step for step, p in r.params.items()  # the step that wrote the shipped file
                if isinstance(p, dict) and p.get("export_to") == SHIPPED_MODEL.as_posix()]
    step = next((s for s in exported + [f"08b_compact_cnn-{dataset}"] if s in r.seconds()),
                None)
    parts = []
    c = r.split_counts
    if c is not None:
        d = c[c["dataset"] == r.sidecar.get("dataset")]
        train, val = d.loc[d["split"] == "train", "n"].sum(), d.loc[d["split"] == "val", "n"].sum()
        if train:
            extra = r.sidecar.get("training", {}).get("extra_training")
            parts.append(f"The split gave {_n(train)} {_ds(r.sidecar['dataset'])} training and "
                         f"{_n(val)} validation images"
                         + (f" (before {_ds(extra)}'s images were added)." if extra else "."))
    if step:
        t = r.sidecar.get("training", {})
        parts.append(f"Training from scratch (step `{step}` of the {r.name} run) took "
                     f"{_duration(r.seconds()[step])} on {_machine(r)}, for at most "
                     f"{t.get('epochs')} epochs with early stopping (patience "
                     f"{t.get('patience')}).")
    return _paragraphs(" ".join(parts))


def card_metrics_note(r: RunFiles) -> str:
    """Model card, Metrics: how the flags and intervals were computed."""
    ood = r.sidecar.get("ood", {})
    parts = []
    if ood.get("false_alarm_rate") is not None:
        parts.append(
            "\"flagged as unusual\" is the share of images whose energy score is above the "
            "sidecar's out-of-distribution threshold (set to flag "
            f"{_p(ood['false_alarm_rate'], 0)} of the {_n(ood.get('n_val', 0))} clean "
            "validation images): the `warning` that `brainmri predict` prints.")
    n_boot, seed = r.param("09_benchmark", "n_bootstrap"), r.param("09_benchmark", "seed")
    if n_boot:
        parts.append(f"Intervals are percentile bootstrap 95 % intervals ({_n(n_boot)} "
                     f"resamples{f', seed {seed}' if seed is not None else ''}).")
    return _paragraphs(" ".join(parts))


def card_ablation_note(r: RunFiles) -> str:
    """Model card, the ablation: its settings and what chose the recipe."""
    a = _ablation(r)
    if a is None:
        return ""
    size = r.param("08c_shortcut_ablation", "settings", "image_size")
    epochs = r.param("08c_shortcut_ablation", "settings", "epochs")
    at = (f" at reduced size ({size} px, {epochs} epochs)" if size and epochs else "")
    levers = _levers(r)
    text = (f"Chapter `08c_shortcut_ablation` trains the same network{at} once per lever"
            + (f" ({_word(levers)} levers, {_n((~a['repeat']).sum())} variants)" if levers
               else "")
            + " and scores every variant on validation, home test and Br35H's new tumour "
              "images. Only the validation column chose the recipe")
    ranked = _recipe_rank(r)
    if ranked:
        variant, rank, n, val = ranked
        text += (f": `{variant}` ranks {_ordinal(rank)}"
                 + (f" of {n}" if rank > 1 else "") + f" there ({_p(val)})")
    return _paragraphs(text + ".")


def card_failures(r: RunFiles) -> str:
    """Model card, Known failure modes: the two that the run's figures measure."""
    items = []
    ext = r.row(r.shipped, "external_br35h") if r.shipped else None
    home = r.row(r.shipped, "test") if r.shipped else None
    if ext is not None:
        missed = 1 - ext["tumour_sensitivity"]
        word = "mostly" if missed > 0.5 else "often" if missed > 0.2 else "sometimes"
        text = (f"**Tumours from another collection are {word} missed.** On Br35H's "
                f"{_n(ext['n'])} tumour images that no training folder contains, the model finds "
                f"{_pci(ext['tumour_sensitivity'], ext['sens_ci_low'], ext['sens_ci_high'])} of "
                "the tumours")
        if home is not None:
            text += f", against {_p(home['tumour_sensitivity'])} on its home test set"
        text += (" (the `external_br35h` row). Nickparvar's no-tumour class comes from Br35H's "
                 "collection and its tumour classes from others, so \"looks like a Br35H scan\" "
                 "is a cue for \"no tumour\" at home")
        best = _best_ablation(r)
        if best is not None:
            text += (f"; no variant of the ablation found more than "
                     f"{_p(best['external sensitivity'])} (chapter `08c`)")
        items.append(text + ". Do not read a `no_tumor` answer on images from a new scanner "
                     "as reassurance.")
    dataset = r.sidecar.get("dataset", "nickparvar")
    nick = r.leakage.get("datasets", {}).get(dataset, {})
    dedup = r.row(r.shipped, "test_dedup") if r.shipped else None
    if nick and dedup is not None and nick["share_of_test_with_copy_in_training"] > 0.05:
        copies = _of(nick["test_images_with_copy_in_training"], nick["n_test"], "test images",
                     f"{_ds(dataset)}'s")
        items.append(
            f"**Leakage-inflated home scores.** {_cap(copies)} have a copy in its training "
            f"folder; the `test_dedup` row ({_p(dedup['accuracy'])} accuracy on the other "
            f"{_n(dedup['n'])}) is the more honest home figure.")
    return _bullets(items)


# --- which blocks live where ----------------------------------------------------------------

Block = tuple[str, Callable[[RunFiles], str], tuple[str, ...]]
PUBLISHED = "lib/brainmri/evaluation/published.py"
SIDECAR = str(SHIPPED)

#: file -> its generated blocks: (marker name, generator, the files its figures come from).
def step_times(r: RunFiles) -> str:
    """The appendix's table: each step's status and measured duration, in run order."""
    rows = ["| Step | Status | Time |", "|---|---|---:|"]
    for step, entry in r.state.items():
        rows.append(f"| `{step}` | {entry.get('status', '')} | "
                    f"{_duration(float(entry.get('seconds') or 0))} |")
    total = sum(float(e.get("seconds") or 0) for e in r.state.values())
    rows.append(f"| **total** | | **{_duration(total)}** |")
    return "\n".join(rows)


BLOCKS: dict[str, list[Block]] = {
    "README.md": [
        ("run", readme_run, ("state.json", "environment.json", "metrics.csv", "ablation.csv",
                             SIDECAR)),
        ("results", lambda r: table(r.metrics), ("metrics.csv",)),
    ],
    "book/results.md": [
        ("brief", results_brief, ("state.json", "environment.json", PUBLISHED)),
        ("headline", lambda r: headline_table(r.metrics), ("metrics.csv",)),
        ("published", results_published, ("metrics.csv", "ablation.csv", SIDECAR, PUBLISHED)),
        ("findings", results_findings,
         ("metrics.csv", "ablation.csv", "leakage.json", "predictions/", "duplicates/",
          "params.yaml", SIDECAR, PUBLISHED)),
        ("published-000", published_000, (PUBLISHED,)),
        ("published-001", published_001, (PUBLISHED,)),
    ],
    "book/conclusion.md": [
        ("answers", conclusion_answers,
         ("metrics.csv", "ablation.csv", "claims.csv", "leakage.json", "sources.json",
          "xai_faithfulness.csv", "state.json", "environment.json", "predictions/",
          "params.yaml", SIDECAR, PUBLISHED)),
    ],
    "book/discussion.md": [
        ("compute", discussion_compute,
         ("state.json", "environment.json", "claims.csv", "ablation.csv", PUBLISHED)),
        ("shift", discussion_shift, ("split_counts.csv",)),
        ("shortcut", discussion_shortcut, ("sources.json", "metrics.csv", SIDECAR)),
        ("ablation", ablation_summary, ("ablation.csv", "params.yaml")),
        ("gliomas", discussion_gliomas,
         ("sources.json", "leakage.json", "predictions/", "duplicates/")),
    ],
    "book/appendix.md": [
        ("steptimes", step_times, ("state.json",)),
    ],
    "book/explainability.md": [
        ("xai", lambda r: "" if r.xai is None or "n_images" not in r.xai  # an older run
         else explain.findings(r.xai),
         ("xai_faithfulness.csv",)),
    ],
    str(CARD): [
        ("model", card_model, (SIDECAR, str(SHIPPED_MODEL))),
        ("training", card_training, ("state.json", "environment.json", "split_counts.csv",
                                     SIDECAR)),
        ("metrics-note", card_metrics_note, ("params.yaml", SIDECAR)),
        ("results", lambda r: card_table(r.metrics[r.metrics["model"] == r.shipped]),
         ("metrics.csv",)),
        ("ablation-note", card_ablation_note, ("ablation.csv", "params.yaml", SIDECAR)),
        ("ablation", lambda r: "" if r.ablation is None else ablation_table(r.ablation),
         ("ablation.csv",)),
        ("ablation-summary", ablation_summary,
         ("ablation.csv", "params.yaml")),
        ("failures", card_failures, ("metrics.csv", "leakage.json", "ablation.csv", SIDECAR)),
    ],
}

#: Blocks a file must have (the others are filled where their markers are).
REQUIRED = {("README.md", "results")}


def render_text(text: str, blocks: list[Block], r: RunFiles, where: str = "text") -> str:
    """``text`` with each of ``blocks`` whose markers it holds regenerated from ``r``."""
    for name, generate, sources in blocks:
        if f"<!-- {name}:start -->" not in text:
            continue
        text = render_block(text, name, generate(r), _provenance(r.name, sources), r.name,
                            where=where)
    return text


def render_all(run: str, folder: RunFolder | None = None, root: Path | None = None
               ) -> dict[Path, str]:
    """{file: the text it should hold} for every file with generated blocks, from
    ``results/<run>/`` (or ``folder``)."""
    root = root or paths.project_root()
    r = RunFiles.load(folder or RunFolder.named(run), root, name=run)
    out = {}
    for rel, blocks in BLOCKS.items():
        path = root / rel
        if not path.exists():
            continue
        text = path.read_text()
        for file, name in REQUIRED:
            if file == rel and f"<!-- {name}:start -->" not in text:
                raise BrainMRIError(f"{path} has no <!-- {name}:start --> ... "
                                    f"<!-- {name}:end --> block")
        out[path] = render_text(text, blocks, r, where=str(path))
    return out


def update_all(run: str) -> list[Path]:
    """Rewrite every generated block (README.md, the model card, the book's results,
    conclusion and discussion chapters) from ``results/<run>/``; the files written."""
    written = []
    for path, text in render_all(run).items():
        if path.read_text() != text:
            atomic_write_text(text, path)
        written.append(path)
    return written
