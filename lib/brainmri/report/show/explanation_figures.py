"""Figures made of images: attribution maps over MRI slices (chapter 10, the try-the-model
chapter). They are shown as JPEG (:func:`show_jpeg`), which stores them at a fifth of
the PNG's bytes; charts stay in :mod:`brainmri.report.show.figures`."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from brainmri.report.show.figures import wrap_tag

#: JPEG quality and resolution of figures made of images (:func:`show_jpeg`): chapter
#: 10's grid comes out about 730 px wide, a little over the book's column, at about
#: 140 kB a model (the PNG of its 256 px maps: 1.5-1.8 MB).
JPEG_QUALITY = 75
JPEG_DPI = 100


def show_jpeg(fig: plt.Figure) -> None:
    """Show ``fig`` in the notebook as a JPEG, and close it. For figures made of images
    (attribution maps over MRI slices), which PNG stores at 5-10 times the bytes; charts
    stay PNG, which keeps their lines and text sharper and is smaller for them."""
    import io

    from IPython.display import Image, display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", dpi=JPEG_DPI, bbox_inches="tight",
                pil_kwargs={"quality": JPEG_QUALITY})
    plt.close(fig)
    display(Image(data=buffer.getvalue(), format="jpeg"))


def explanation_grid(raw: np.ndarray, maps: dict[str, np.ndarray], row_labels: list[str],
                     suptitle: str = "") -> plt.Figure:
    """One row per image: the image, each explainer's |attribution| map, and Grad-CAM
    drawn over the image (coarse regions read best in place). Five 1.4 in panels a row
    keep the figure within the book's column with 10 pt labels."""
    from brainmri.evaluation.explain import DISPLAY  # here: explain loads TensorFlow
    names = list(maps)
    n = len(raw)
    size = 1.4
    fig, axes = plt.subplots(n, 1 + len(names), figsize=(size * (1 + len(names)) + 0.6,
                                                         size * n + 0.5), squeeze=False)
    for r in range(n):
        img = raw[r]
        gray = img[..., 0] if img.shape[-1] == 1 else img
        axes[r, 0].imshow(gray, cmap="gray")
        axes[r, 0].set_ylabel(row_labels[r], fontsize=10)
        for c, name in enumerate(names, 1):
            m = maps[name][r]
            if name == "GradCAM":
                axes[r, c].imshow(gray, cmap="gray")
                h = np.maximum(m, 0)
                axes[r, c].imshow(h / (h.max() or 1.0), cmap="jet", alpha=0.4)
            else:
                m = np.abs(m)
                hi = np.percentile(m, 99.5) or 1.0
                axes[r, c].imshow(np.clip(m / hi, 0, 1), cmap="inferno")
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    for c, name in enumerate(["image", *names]):
        title = DISPLAY.get(name, name).replace(" ", "\n")  # narrow columns
        if name == "GradCAM":  # the only map laid over the image
            title += "\n(over the image)"
        axes[0, c].set_title(title, fontsize=10)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout(h_pad=0.3, w_pad=0.3)
    return fig


def external_cases(cases: pd.DataFrame, raw: np.ndarray, maps: np.ndarray) -> plt.Figure:
    """Grad-CAM over Br35H tumour images a model missed and found (``explain.external_cases``),
    one row per outcome, each panel titled with the class the model answered."""
    titles = [f"{o}: {p.replace('_', ' ').replace('tumor', 'tumour')}"
              for o, p in zip(cases["outcome"], cases["prediction"])]
    return heatmap_overlays(raw, maps, titles, per_row=int(cases["outcome"].value_counts().max()))


def heatmap_overlays(raw: np.ndarray, heatmaps: np.ndarray, titles: list[str],
                     suptitle: str = "", per_row: int | None = None) -> plt.Figure:
    """Heatmaps (e.g. Grad-CAM) over their images, one panel per image, ``per_row`` panels
    a row (default: all in one row)."""
    n = len(raw)
    cols = min(per_row or n, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, heat, title in zip(axes.ravel(), raw, heatmaps, titles):
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray")
        h = np.maximum(heat, 0)
        ax.imshow(h / (h.max() or 1.0), cmap="jet", alpha=0.4)
        ax.set_title(title, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def explained_model(e) -> plt.Figure:
    """Chapter 10's figure for one model (an ``explain.ModelExplanation``): every
    explainer's map of each picked image (a correct and a misclassified one per class),
    for the predicted class. One figure: Grad-CAM over the image is its last column, not
    a second figure of the same maps. Show it with :func:`show_jpeg`."""
    ex = e.examples
    labels = [f"true {t}" + ("" if t == p else f"\npred {p}")
              for t, p in zip(ex["label"], ex["prediction"])]
    return explanation_grid(e.raw, e.maps, labels, suptitle=wrap_tag(e.tag, 60))
