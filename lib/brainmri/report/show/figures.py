"""Figures shared by the chapters, and their one style. Each plotting function returns
the matplotlib Figure it drew.

The style is seaborn's theme, set once in :func:`set_style`. The book shows a figure at
its natural size, or shrunk to its text column (676 CSS px) when wider, so the fonts are
sized for the widest chart, :data:`MAX_WIDTH` inches: tick and legend labels then stay
at 9 pt or more on the page. Charts wider than that are wrapped or capped.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from brainmri import CLASS_NAMES

CLASS_COLORS = dict(zip(CLASS_NAMES, ("#c0392b", "#2980b9", "#7f8c8d", "#27ae60")))
SPLIT_COLORS = {"train": "#34495e", "val": "#e67e22", "test": "#16a085"}

#: The book's text column in CSS px (sphinx-book-theme); wider figures are shrunk to it.
BOOK_COLUMN_PX = 676
#: Widest chart (inches, at 100 dpi) whose tick and legend labels stay >= 9 pt in the book.
MAX_WIDTH = 10.0
#: Thumbnails a row in an image grid: about 160 CSS px each in the book's column.
THUMBNAILS_PER_ROW = 4
#: seaborn "notebook" fonts x 1.2: ticks and legends 13.2 pt, so 9.3 pt at MAX_WIDTH.
FONT_SCALE = 1.2


def set_style() -> None:
    """The figure style of every chapter, set in this one place (seaborn's theme)."""
    sns.set_theme(context="notebook", style="ticks", font_scale=FONT_SCALE, rc={
        "figure.dpi": 100, "savefig.dpi": 110, "figure.figsize": (8, 4),
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": False,
        "image.cmap": "gray",
    })


def class_balance(counts: pd.DataFrame, title: str = "") -> plt.Figure:
    """Grouped bars: images per class, one bar per split (``counts``: split, class, n)."""
    splits = [s for s in SPLIT_COLORS if s in set(counts["split"])]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    sns.barplot(counts, x="class", y="n", hue="split", order=CLASS_NAMES, hue_order=splits,
                palette=SPLIT_COLORS, estimator="sum", errorbar=None, saturation=1, ax=ax)
    for bars in ax.containers:
        ax.bar_label(bars, fontsize="small", padding=1)
    ax.set(xlabel="", ylabel="images")
    ax.legend(title="split", frameon=False)
    ax.set_title(title or "Images per class and split")
    return fig


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str] | None = None,
               ncols: int = 6, size: float = 1.8, suptitle: str = "") -> plt.Figure:
    """Images in a grid; grayscale (H, W, 1) and RGB (H, W, 3) both accepted. At most
    :data:`THUMBNAILS_PER_ROW` a row, whatever ``ncols`` asks: more would shrink each
    image, and its caption, to a few dozen pixels in the book's column."""
    n = len(images)
    ncols = max(1, min(ncols, THUMBNAILS_PER_ROW, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, img in enumerate(images):
        ax = axes.flat[i]
        img = np.asarray(img)
        ax.imshow(img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img, cmap="gray")
        if titles is not None:
            ax.set_title(titles[i], fontsize=10)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def size_and_mode(inventory: pd.DataFrame) -> plt.Figure:
    """Image sizes (scatter, one colour per class) and the colour modes found."""
    ok = inventory[inventory["ok"].astype(bool)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8),
                                   gridspec_kw={"width_ratios": [2, 1]})
    for label in CLASS_NAMES:
        part = ok[ok["label"] == label]
        ax1.scatter(part["width"], part["height"], s=8, alpha=0.35, label=label,
                    color=CLASS_COLORS[label])
    ax1.set_xlabel("width (px)")
    ax1.set_ylabel("height (px)")
    ax1.set_title("Image size by class")
    ax1.legend(frameon=False, markerscale=2)
    modes = ok["mode"].value_counts()
    ax2.bar(modes.index.astype(str), modes.to_numpy(), color="#555")
    ax2.set_title("Colour mode")
    ax2.set_ylabel("images")
    fig.tight_layout()
    return fig


def histogram_by_class(values: dict[str, np.ndarray], xlabel: str, title: str,
                       bins: int = 64, density: bool = True) -> plt.Figure:
    """One step histogram per class on shared bins; ``density`` normalises each class.
    The counts come from numpy (the arrays can hold millions of pixels; seaborn on the
    raw values takes seconds) and seaborn draws them as weights."""
    labels = list(values)
    arrays = [np.ravel(v) for v in values.values()]
    filled = [a for a in arrays if a.size] or [np.zeros(1)]  # a class may have no images
    edges = np.histogram_bin_edges([min(float(a.min()) for a in filled),
                                    max(float(a.max()) for a in filled)], bins)
    centres = (edges[:-1] + edges[1:]) / 2
    long = pd.DataFrame({
        "value": np.tile(centres, len(labels)),
        "weight": np.concatenate([np.histogram(a, edges)[0] for a in arrays]),
        "class": pd.Categorical(np.repeat(labels, len(centres)), labels)})
    palette = ({k: CLASS_COLORS[k] for k in labels}
               if all(k in CLASS_COLORS for k in labels) else None)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    sns.histplot(long, x="value", weights="weight", hue="class", hue_order=labels,
                 palette=palette, bins=bins, binrange=(edges[0], edges[-1]),
                 stat="density" if density else "count", common_norm=False, element="step",
                 fill=False, linewidth=1.4, ax=ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density" if density else "count")
    ax.set_title(title)
    sns.move_legend(ax, "best", title=None, frameon=False)
    return fig


def compare_bars(ours: dict[str, float], reference: dict[str, float], title: str,
                 ylabel: str = "", log: bool = False) -> plt.Figure:
    """Side-by-side bars of our values and the report's for the same keys."""
    keys = list(reference)
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.bar(x - 0.2, [reference[k] for k in keys], 0.4, label="report", color="#bbb")
    ax.bar(x + 0.2, [ours[k] for k in keys], 0.4, label="this run", color="#2c3e50")
    ax.set_xticks(x, keys)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(frameon=False)
    return fig


def training_curves(history: pd.DataFrame, title: str = "") -> plt.Figure:
    """Loss and accuracy per epoch, training vs validation; phases are shaded."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    epochs = np.arange(1, len(history) + 1)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, history[metric], "o-", ms=3, label="train", color="#34495e")
        ax.plot(epochs, history[f"val_{metric}"], "o-", ms=3, label="validation",
                color="#e67e22")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        if "phase" in history and history["phase"].nunique() > 1:
            for phase, part in history.groupby("phase", sort=False):
                first = part.index.min() + 1
                if first > 1:
                    ax.axvline(first - 0.5, color="#999", ls="--", lw=1)
                    ax.text(first - 0.4, ax.get_ylim()[1], phase, va="top", fontsize=8,
                            color="#666")
    axes[0].legend(frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrices(y_true: np.ndarray, y_pred: np.ndarray, title: str = "") -> plt.Figure:
    """Counts and row-normalised (recall) confusion matrices side by side."""
    from brainmri.evaluation.metrics import confusion

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    for ax, normalize, fmt in ((axes[0], None, ".0f"), (axes[1], "true", ".2f")):
        cm = confusion(y_true, y_pred, normalize)
        sns.heatmap(cm, annot=True, fmt=fmt, cmap="Blues", vmin=0, cbar=False,
                    linewidths=0.5, ax=ax)
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")
        ax.tick_params(axis="y", labelrotation=0)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title("counts" if normalize is None else "share of each true class")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def grouped_bars(table: pd.DataFrame, title: str, ylabel: str = "", log: bool = False
                 ) -> plt.Figure:
    """One group per row of ``table``, one bar per column."""
    groups, series = [str(i) for i in table.index], [str(c) for c in table.columns]
    long = pd.DataFrame({"group": np.repeat(groups, len(series)),
                         "series": np.tile(series, len(groups)),
                         "value": table.to_numpy(float).ravel()})
    width = min(MAX_WIDTH, max(6, 0.6 * len(groups) * len(series)))
    fig, ax = plt.subplots(figsize=(width, 4.4), layout="constrained")
    sns.barplot(long, x="group", y="value", hue="series", order=groups, hue_order=series,
                errorbar=None, saturation=1, legend=False, ax=ax)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right", rotation_mode="anchor")
    if log:
        ax.set_yscale("log")
    ax.set(xlabel="", ylabel=ylabel, title=title)
    # Under the chart, in rows: inside, it would hide bars once the width is capped.
    fig.legend(ax.containers, series, loc="outside lower center", ncols=min(len(series), 4),
               frameon=False)
    return fig


def curves_grid(histories: dict[str, pd.DataFrame]) -> plt.Figure:
    """Training curves of several models side by side (loss on top, accuracy below),
    three models to a row of panels so that the figure stays within MAX_WIDTH."""
    n = len(histories)
    ncols = min(3, n)
    blocks = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(2 * blocks, ncols, figsize=(3.3 * ncols, 5 * blocks),
                             squeeze=False)
    for unused in range(n, blocks * ncols):
        block, col = divmod(unused, ncols)
        axes[2 * block, col].axis("off")
        axes[2 * block + 1, col].axis("off")
    for i, (tag, history) in enumerate(histories.items()):
        block, col = divmod(i, ncols)
        epochs = np.arange(1, len(history) + 1)
        for row, metric in enumerate(("loss", "accuracy")):
            ax = axes[2 * block + row, col]
            if i:  # one y scale per metric across all models, as before
                ax.sharey(axes[row, 0])
            ax.plot(epochs, history[metric], "o-", ms=3, color="#34495e", label="train")
            ax.plot(epochs, history[f"val_{metric}"], "o-", ms=3, color="#e67e22",
                    label="validation")
            if row == 0:
                ax.set_title(wrap_tag(tag), fontsize="medium")
                ax.set_yscale("log")
            ax.set_xlabel("epoch" if row == 1 else "")
            if col == 0:
                ax.set_ylabel("loss (log)" if row == 0 else "accuracy")
            else:
                ax.tick_params(which="both", labelleft=False)
    axes[1, 0].legend(frameon=False)
    fig.tight_layout()
    return fig


def _panels(n: int, per_row: int = 2):
    """A grid of ``n`` square-ish panels, at most ``per_row`` wide (two keep the figure
    within MAX_WIDTH with room for each panel's legend); unused cells hidden."""
    ncols = min(per_row, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 4.2 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes


def reliability_diagrams(items: dict[str, tuple], n_bins: int) -> plt.Figure:
    """Per model: accuracy vs confidence before and after temperature scaling.

    ``items`` maps a model tag to (labels, probabilities, temperature-scaled probabilities).
    """
    from brainmri.evaluation.metrics import ece, reliability

    n = len(items)
    fig, axes = _panels(n)
    for ax, (tag, (y, probs, scaled)) in zip(axes.flat, items.items()):
        ax.plot([0, 1], [0, 1], color="#bbb", lw=1)
        for p, label, color in ((probs, "raw", "#c0392b"), (scaled, "temperature", "#2980b9")):
            table = reliability(y, p, n_bins).dropna()
            ax.plot(table["confidence"], table["accuracy"], "o-", ms=3, color=color,
                    label=f"{label} (ECE {ece(y, p, n_bins):.3f})")
        ax.set_title(wrap_tag(tag), fontsize="medium")
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.legend(frameon=False, loc="best")
    fig.tight_layout()
    return fig


def roc_grid(curves: dict[str, dict]) -> plt.Figure:
    """One-vs-rest ROC curves per class, one panel per model."""
    n = len(curves)
    fig, axes = _panels(n)
    for ax, (tag, per_class) in zip(axes.flat, curves.items()):
        ax.plot([0, 1], [0, 1], color="#bbb", lw=1)
        for name, (fpr, tpr, auc) in per_class.items():
            ax.plot(fpr, tpr, color=CLASS_COLORS[name], lw=1.3, label=f"{name} {auc:.2f}")
        ax.set_title(wrap_tag(tag), fontsize="medium")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(frameon=False, loc="lower right")
    fig.tight_layout()
    return fig


def wrap_tag(tag: str, width: int = 22) -> str:
    """A model tag (``model-dataset``) as a panel title: on two lines, model then
    dataset, when longer than ``width`` characters, so that neighbouring titles never
    run into each other."""
    model, _, dataset = tag.rpartition("-")
    return f"{model}\n{dataset}" if len(tag) > width and model else tag


def external_vs_home(table: pd.DataFrame, home: dict[str, str],
                     counts: dict[str, str] | None = None) -> plt.Figure:
    """One row per model: external tumour sensitivity with its 95 % interval (columns
    ``external sensitivity``, ``external CI low``, ``external CI high``), next to home
    figures (``home``: legend label -> column). A model that only moved its threshold
    gains on the left and loses on the right. Both axes start at 0 and every bar is
    labelled, so that a rate of 0 is seen; the legend goes under the chart. ``counts``
    (plotted column -> column of its number of cases) labels those bars ``k/n`` instead
    of a bare rate, with their 95 % Wilson interval as error bar: a specificity of 1.00
    on 19 images reads 19/19, and its bar shows how little that settles."""
    counts = counts or {}
    t = table.iloc[::-1]

    def labels(column: str, rates: np.ndarray) -> list[str]:
        if column not in counts:
            return [f"{r:.2f}" for r in rates]
        cases = t[counts[column]].to_numpy(float)
        return ["" if np.isnan(r) or np.isnan(n) else f"{round(r * n):.0f}/{n:.0f}"
                for r, n in zip(rates, cases)]

    limit = 1.4 if counts else 1.2  # room for "756/756" beside a full bar
    prefix = _common_prefix(list(t.index))
    names = [str(name)[len(prefix):] for name in t.index]
    height = 0.45 * len(names) * (1 if len(home) == 1 else 1.25) + 2
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, height), sharey=True,
                                      layout="constrained")
    if prefix:
        left.set_ylabel(f"{prefix}…")
    ext = t["external sensitivity"].to_numpy(float)
    err = np.vstack([ext - t["external CI low"].to_numpy(float),
                     t["external CI high"].to_numpy(float) - ext])
    y = np.arange(len(names))  # positions, not names: two rows may share a name
    bars = left.barh(y, ext, xerr=err, color="#c0392b", alpha=0.8, capsize=3)
    left.set_yticks(y, names)
    left.bar_label(bars, labels=labels("external sensitivity", ext), padding=4,
                   fontsize="small")
    left.set(xlim=(0, limit), xticks=np.linspace(0, 1, 5),
             xlabel="share of new Br35H\ntumours found",
             title="external tumour\nsensitivity (Br35H)")
    height = 0.8 / len(home)
    for k, ((label, column), color) in enumerate(zip(home.items(), ("#34495e", "#16a085",
                                                                     "#e67e22"))):
        rates = t[column].to_numpy(float)
        bars = right.barh(y + 0.4 - height * (k + 0.5), rates, height=height, label=label,
                          color=color,  # first legend entry on top
                          xerr=_wilson_errors(rates, t[counts[column]].to_numpy(float))
                          if column in counts else None, capsize=2)
        right.bar_label(bars, labels=labels(column, rates), padding=2, fontsize="small")
    right.set(xlim=(0, limit), xticks=np.linspace(0, 1, 5), xlabel="rate",
              title="home test\n(training dataset)")
    fig.legend(*right.get_legend_handles_labels(), loc="outside lower center",
               ncols=len(home), frameon=False)
    return fig


def _wilson_errors(rates: np.ndarray, cases: np.ndarray) -> np.ndarray:
    """(2, n) distances from each rate to its 95 % Wilson bounds, for ``xerr``: a rate on
    19 images gets the wide bar it deserves; none where the rate was not measured."""
    from brainmri.evaluation.metrics import wilson

    err = np.zeros((2, len(rates)))
    for i, (r, n) in enumerate(zip(rates, cases)):
        if not (np.isnan(r) or np.isnan(n)) and n > 0:
            low, high = wilson(int(round(r * n)), int(n))
            err[:, i] = (max(0.0, r - low), max(0.0, high - r))
    return err


def _common_prefix(names: list[str]) -> str:
    """What every name starts with, up to its last ``+`` or ``-`` (``compact_cnn+ablation-``
    for 08c's variants), so that a chart labels its rows by what differs; '' for one name."""
    import os

    if len(names) < 2:
        return ""
    prefix = os.path.commonprefix(names)
    cut = max(prefix.rfind("+"), prefix.rfind("-"))
    prefix = prefix[:cut + 1] if cut > 0 else ""
    return prefix if all(len(name) > len(prefix) for name in names) else ""


def claims_grid(versus: pd.DataFrame) -> plt.Figure:
    """Test accuracy per (colour mode, epochs) with its 95 % interval, and the report's
    figure for the same cell as an open marker (``claims.versus_published``'s frame).
    The legend goes under the chart, where it hides no interval."""
    t = versus.assign(color_mode=[s.split(",")[0] for s in versus.index],
                      epochs=[int(s.split(",")[1].split()[0]) for s in versus.index])
    fig, ax = plt.subplots(figsize=(6.5, 4.4), layout="constrained")
    palette = sns.color_palette(n_colors=t["color_mode"].nunique())
    for k, ((mode, rows), color) in enumerate(zip(t.groupby("color_mode", sort=False),
                                                  palette)):
        x = rows["epochs"].to_numpy() + (k - 0.5) * 0.25
        y = rows["test accuracy"].to_numpy(float)
        err = np.vstack([y - rows["test CI low"].to_numpy(float),
                         rows["test CI high"].to_numpy(float) - y])
        ax.errorbar(x, y, yerr=err, marker="o", capsize=4, color=color, label=f"{mode} (this run)")
        ax.scatter(x, rows["report 000"].to_numpy(float), marker="D", facecolors="none",
                   edgecolors=color, s=60, label=f"{mode} (report 000)")
    ax.set(xticks=sorted(t["epochs"].unique()), xlabel="epochs", ylabel="test accuracy",
           title="ReLU CNN: colour mode and epochs")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2,
               frameon=False, fontsize="small")
    return fig
