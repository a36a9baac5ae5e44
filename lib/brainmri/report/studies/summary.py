"""What the benchmark chapter (09) adds to ``metrics.csv`` for the book's prose pages: the
reproduction of report 000, per-class recall, the likelihood after temperature scaling,
the run's steps, machine and reduced settings, and the small rules that pick one word for
a result."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import yaml

from brainmri import CLASS_NAMES
from brainmri.data import sources
from brainmri.evaluation import benchmark, explain, metrics, published
from brainmri.evaluation.predictions import arrays
from brainmri.report.show.glued import number


def label(model: str) -> str:
    """A model as a reader names it: ``compact CNN (crop-union-bn)``."""
    base, _, variant = model.partition("+")
    name = published.DISPLAY.get(base, base)
    return f"{name} ({variant})" if variant else name


def dataset(name: str) -> str:
    return sources.DISPLAY.get(name, name)


def position(value: float, low: float, high: float) -> str:
    """Where a published figure lies against our interval: inside, above or below."""
    return "inside" if low <= value <= high else "above" if value > high else "below"


def compare(a: float, b: float, more: str = "more", fewer: str = "fewer",
            same: str = "as many") -> str:
    """One word for ``a`` against ``b``."""
    return more if a > b else fewer if a < b else same


def listing(items: list[str], empty: str = "none") -> str:
    """``a, b and c``; ``empty`` for no item."""
    items = [i for i in items if i]
    if not items:
        return empty
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def span(low: str, high: str) -> str:
    """``low to high``, or one value when both are the same."""
    return low if low == high else f"{low} to {high}"


def duration(seconds: float) -> str:
    """``1 h 44 min``, ``12 min``, ``40 s``."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{seconds:.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def machine(environment: dict) -> str:
    """``2 CPU cores, no GPU``."""
    gpus = environment.get("gpus") or []
    cores = environment.get("cpu_count")
    return (f"{cores} CPU cores" if cores else "CPUs") + (
        f", {len(gpus)} GPU{'s' if len(gpus) > 1 else ''}" if gpus else ", no GPU")


def steps(state: dict, before: str) -> pd.DataFrame:
    """The run's steps that came before ``before`` (in run order): status, why skipped,
    seconds."""
    rows = []
    for step, entry in state.items():
        if step.split("-")[0] >= before:
            continue
        why = entry.get("reason", "").split(":", 1)[-1].split("(")[0]
        rows.append({"step": step, "status": entry.get("status", ""),
                     "why": re.sub(r" for [\w+-]+\s*$", "", why.strip()),
                     "seconds": float(entry.get("seconds") or 0)})
    frame = pd.DataFrame(rows, columns=["step", "status", "why", "seconds"])
    return frame.assign(time=frame["seconds"].map(duration))


def _trained_with(steps: dict, step: str, name: str):
    """A parameter a study chapter trains with: its ``settings``, else its base chapter's."""
    values = steps.get(step) or {}
    settings = values.get("settings") or {}
    if name in settings:
        return settings[name]
    return (steps.get(values.get("base_chapter")) or {}).get(name)


def _run_steps(run) -> dict:
    """The run's resolved parameters, ``{step: {parameter: value}}`` (its ``params.yaml``)."""
    return ((yaml.safe_load(run.params.read_text()) or {}).get("steps", {})
            if run.params.exists() else {})


def reduced_settings(run, test: pd.DataFrame, shipped: str | None) -> dict[str, str]:
    """What the run trained with where the appendix names a cut: report 000's claims
    (chapter 05b) and the shortcut ablation (08c) against the shipped model (``shipped``,
    a tag of ``test``), read from the run's ``params.yaml`` and the model's sidecar."""
    steps = _run_steps(run)
    recipe = {}
    if shipped is not None and shipped in test.index:
        row = test.loc[shipped]
        recipe, _ = benchmark.recipe_of(run, shipped, row["model"], row["dataset"])
    return {
        "claims_image_size": number(_trained_with(steps, "05b_relu_cnn_claims", "image_size")),
        "ablation_image_size": number(
            _trained_with(steps, "08c_shortcut_ablation", "image_size")),
        "ablation_epochs": number(_trained_with(steps, "08c_shortcut_ablation", "epochs")),
        "shipped_image_size": number(recipe.get("image_size")),
        "shipped_epochs": number(recipe.get("epochs")),
    }


#: The settings the models page (book/models.md) states for the run: per model chapter,
#: the name its keys take (``settings_<name>_<parameter>``) and the parameters stated.
MODEL_SETTINGS = {
    "04_inceptionv3": ("inception", ["image_size", "head_epochs", "finetune_epochs",
                                     "finetune_learning_rate", "unfreeze_from"]),
    "05_relu_cnn": ("relu", ["image_size", "epochs", "learning_rate", "batch_size",
                             "patience"]),
    "06_relu_cnn_augmented": ("augmented", ["image_size", "epochs"]),
    "07_sigmoid_cnn": ("sigmoid", ["image_size", "epochs"]),
    "08_convnext_tiny": ("convnext", ["image_size", "head_epochs", "finetune_epochs",
                                      "head_learning_rate", "finetune_learning_rate",
                                      "patience"]),
    "08b_compact_cnn": ("compact", ["widths", "patience"]),
}


def _setting(value) -> str:
    """A parameter for prose: ``200``, ``0.0001``, ``16, 32, 64, 128``, a layer's name;
    ``n/a`` when the run has none."""
    if isinstance(value, list):
        return ", ".join(_setting(v) for v in value)
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not value.is_integer():
        return f"{value:g}"  # a learning rate: number() would round it to 0.0
    return number(value)


def model_settings(run) -> dict[str, str]:
    """The model chapters' settings the models page states, read from the run's
    ``params.yaml`` (:data:`MODEL_SETTINGS`); ``n/a`` for a step the run did not have."""
    steps = _run_steps(run)
    return {f"settings_{name}_{parameter}": _setting((steps.get(step) or {}).get(parameter))
            for step, (name, parameters) in MODEL_SETTINGS.items() for parameter in parameters}


def first_class_share(frame: pd.DataFrame) -> tuple[str, float]:
    """The most frequent answer of a predictions frame and its share."""
    shares = frame["prediction"].value_counts(normalize=True)
    return str(shares.index[0]), float(shares.iloc[0])


def reproduction(table: pd.DataFrame, saved: dict) -> pd.DataFrame:
    """Our versions of report 000's models against its published test accuracy: one row
    per model of the report that this run trained."""
    rows = []
    test = table[(table["eval_set"] == "test")
                 & (table["dataset"] == published.REPORT_000_DATASET)]
    for model, figures in published.REPORT_000.items():
        row = test[test["model"] == model]
        if row.empty:
            continue
        r = row.iloc[0]
        frame = saved[(r["tag"], "test")]
        top, share = first_class_share(frame)
        gliomas = frame[frame["label"] == "glioma"]
        rows.append({"model": model, "tag": r["tag"], "n": int(r["n"]),
                     "accuracy": r["accuracy"], "low": r["acc_ci_low"], "high": r["acc_ci_high"],
                     "published": figures["accuracy"],
                     "position": position(figures["accuracy"], r["acc_ci_low"],
                                          r["acc_ci_high"]),
                     "top_class": top.replace("_", " ").replace("tumor", "tumour"),
                     "top_share": share,
                     "gliomas_found": int((gliomas["prediction"] == "glioma").sum()),
                     "gliomas": len(gliomas),
                     "published_glioma_recall": figures.get("recall", {}).get("glioma")})
    return pd.DataFrame(rows)


def class_recall(saved: dict, tags, eval_set: str = "test") -> pd.DataFrame:
    """Per-class recall of every model in ``tags``: for each class, its images found
    (column ``<class>``) and its images (``<class> n``), so that a recall is shown with
    its count."""
    rows = {}
    for tag in tags:
        y, probs, _ = arrays(saved[(tag, eval_set)])
        pred = probs.argmax(1)
        rows[tag] = {}
        for k, c in enumerate(CLASS_NAMES):
            rows[tag][c] = int((pred[y == k] == k).sum())
            rows[tag][f"{c} n"] = int((y == k).sum())
    return pd.DataFrame.from_dict(rows, orient="index")


def nll(saved: dict, tag: str, temperature: float, eval_set: str = "test") -> float:
    """Negative log-likelihood of ``tag``'s test predictions after temperature scaling."""
    y, _, logits = arrays(saved[(tag, eval_set)])
    probs = np.clip(metrics.softmax(logits, temperature), 1e-15, 1)
    return float(-np.log(probs[np.arange(len(y)), y]).mean())


def found(frame: pd.DataFrame, cls: str) -> tuple[int, int]:
    """(images of ``cls`` called ``cls``, images of ``cls``) in a predictions frame."""
    of = frame[frame["label"] == cls]
    return int((of["prediction"] == cls).sum()), len(of)


def most_faithful(xai: pd.DataFrame, degenerate=()) -> pd.DataFrame:
    """Per ranked model (``explain.ranking``: not those in ``degenerate``), the most
    faithful explainer by each metric, as ``Grad-CAM (0.734)``."""
    ranks = explain.ranking(xai, degenerate)
    scores = xai.set_index(["model", "explainer"])
    return pd.DataFrame({
        metric: [f"{explain.DISPLAY.get(e, e)} ({scores.loc[(m, e), metric]:.3f})"
                 for m, e in ranks.loc[ranks["ranked"], f"by_{metric}"].items()]
        for metric in explain.BEST}, index=ranks.index[ranks["ranked"]])


def outcome_mass(table: pd.DataFrame | None) -> dict:
    """``explain.mass_by_outcome`` as glue keys: for the ``missed`` and ``found`` external
    images, their number and the shares of the evidence and of the area on the head
    ("n/a" where there is no such image or nothing was measured)."""
    words = {}
    for outcome in ("missed", "found"):
        r = None if table is None or outcome not in table.index else table.loc[outcome]
        words[f"external_{outcome}_images"] = "n/a" if r is None else number(r["images"])
        words[f"external_{outcome}_mass"] = ("n/a" if r is None
                                             else f"{100 * r['mass_in_brain']:.0f} %")
        words[f"external_{outcome}_area"] = ("n/a" if r is None
                                             else f"{100 * r['area_in_brain']:.0f} %")
    return words


def stages(seconds: pd.DataFrame) -> pd.DataFrame:
    """Chapter 10's seconds per model (``explain.timing_table``) in five stages: the maps
    shown, the maps scored (every explainer together), the faithfulness metrics, the
    randomisation check, and the total."""

    def total(prefix):
        return seconds[[c for c in seconds.columns if str(c).startswith(prefix)]].sum(axis=1)
    return pd.DataFrame({"shown": total("shown maps"), "scored": total("scored maps"),
                         "faithfulness": seconds.reindex(
                             columns=list(explain.BEST)).fillna(0).sum(axis=1),
                         "randomisation": total("randomisation"),
                         "total": seconds.get("total", total(""))})
