"""Try the model on one image: what chapter 11's widgets show (the successor of a student
report's Streamlit app).

:func:`explain_file` classifies one file as ``brainmri predict`` does (same checks, same
calibrated probabilities, same ``warning`` column) and explains the predicted class with
Grad-CAM, as chapter 10 does; :func:`app` wraps it in ipywidgets (an upload button and a
path box) for a live kernel. Research and teaching only: not a diagnostic tool.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from brainmri import CLASS_NAMES, PROB_COLUMNS
from brainmri.core.errors import BrainMRIError
from brainmri.data.pixels import normalize
from brainmri.data.sources import locate
from brainmri.evaluation import attributions
from brainmri.modeling import inference, prefetch, saved
from brainmri.report.series.notebook import local_path
from brainmri.report.show import explanation_figures, figures


class TryoutError(BrainMRIError):
    """A file that cannot be tried; the message (one line) says why."""


@dataclass
class Tryout:
    """One file, classified and explained."""

    path: Path
    prediction: str
    probabilities: pd.Series  # calibrated, one per class, in CLASS_NAMES order
    warning: str  # `brainmri predict`'s warning column; "" when nothing is flagged
    gradcam: np.ndarray  # (H, W) Grad-CAM map of the predicted class, at the model's input
    bars: plt.Figure  # the class probabilities
    overlay: plt.Figure  # Grad-CAM over the image as the model sees it


@lru_cache(maxsize=1)
def _loaded(model_file: str, modified_ns: int):
    """(model, metadata, Grad-CAM explainer), kept while the same file is tried again."""
    model, meta = saved.load_for_prediction(model_file)
    gradcam = attributions.gradcam(model, meta.get("gradcam_layer"), xplique_batch=1)
    return model, meta, gradcam


def load(model_path=None):
    """The model (``None``: the shipped one) with its checked sidecar and its Grad-CAM."""
    model_file = local_path(model_path, "model_path") if model_path else inference.default_model()
    try:
        modified = model_file.stat().st_mtime_ns
    except OSError:
        modified = 0  # load_for_prediction says what is wrong with it
    return _loaded(str(model_file), modified)


def probability_bars(probabilities: pd.Series, title: str = "") -> plt.Figure:
    """Horizontal bars, one per class, labelled with the probability in percent."""
    fig, ax = plt.subplots(figsize=(6, 2.6))
    bars = ax.barh(list(probabilities.index), probabilities.to_numpy(),
                   color=[figures.CLASS_COLORS[c] for c in probabilities.index])
    ax.bar_label(bars, labels=[f"{100 * v:.1f} %" for v in probabilities], padding=3)
    ax.set(xlim=(0, 1.15), xlabel="calibrated probability")
    ax.invert_yaxis()
    ax.set_title(title or "Class probabilities")
    fig.tight_layout()
    return fig


def explain_file(path, model_path=None) -> Tryout:
    """Classify one image file and explain the predicted class with Grad-CAM.

    ``model_path``: a ``.keras`` file saved by the series (with its sidecar) or a run's
    model folder; ``None``: the shipped model. Relative paths start at the project root.
    TryoutError for a file that cannot be read.
    """
    path = local_path(path, "path")
    model, meta, gradcam = load(model_path)
    row = inference.predict_files([path], model, meta, batch_size=1,
                                  show_progress=False).iloc[0]
    if row["error"]:
        raise TryoutError(f"{path.name}: {row['error']}")
    probabilities = pd.Series(row[PROB_COLUMNS].to_numpy(float), index=list(CLASS_NAMES),
                              name="probability")
    spec = saved.pixel_spec(meta)
    pixels = prefetch.prepare(path, spec).pixels[None]  # what the model was given
    x = np.asarray(normalize(pixels, meta["normalization"]))
    target = np.array([CLASS_NAMES.index(row["prediction"])])
    heat = attributions.explain({"GradCAM": gradcam}, x, target)["GradCAM"][0]
    title = f"{path.name}: {row['prediction']} ({100 * probabilities.max():.1f} %)"
    return Tryout(path, row["prediction"], probabilities, row["warning"], heat,
                  probability_bars(probabilities, title),
                  explanation_figures.heatmap_overlays(pixels, heat[None],
                                           [f"Grad-CAM for {row['prediction']}"]))


def example_file(example_image: str, data_dir=None) -> Path:
    """The worked example's file: ``example_image`` itself when absolute, else that path
    inside the Nickparvar dataset (never downloaded for this). TryoutError, one line,
    when it cannot be found."""
    image = Path(example_image).expanduser()
    where = str(image)
    if not image.is_absolute():
        try:
            image = locate("nickparvar", data_dir, download=False) / image
        except BrainMRIError:
            raise TryoutError("No worked example: the Nickparvar dataset was not found (set "
                              "data_dir or $BRAIN_MRI_DATA; see the README's Data section)."
                              ) from None
        where = f"{example_image} in the Nickparvar dataset"  # no machine-specific path
    if not image.is_file():
        raise TryoutError(f"No worked example: {where} not found.")
    return image


def show(result: Tryout) -> None:
    """Display one result: the prediction and warning, the probabilities, the figures."""
    from IPython.display import display

    print(f"{result.path.name}: {result.prediction}; warning: {result.warning or 'none'}")
    display(result.probabilities.to_frame().T.round(4))
    for fig in (result.bars, result.overlay):
        display(fig)
        plt.close(fig)  # shown once, not again by the inline backend


def app(model_path=None, start: str | Path | None = None):
    """Widgets for a live kernel: upload a file, or type a path and press "Classify"."""
    import ipywidgets as w

    upload = w.FileUpload(accept="image/*", multiple=False, description="Upload")
    path_box = w.Text(value=str(start or ""), placeholder="path/to/image.jpg",
                      description="or a path", layout=w.Layout(width="60%"))
    button = w.Button(description="Classify", button_style="primary")
    out = w.Output()

    def classify(path: Path) -> None:
        out.clear_output()
        with out:
            try:
                show(explain_file(path, model_path))
            except BrainMRIError as exc:
                print(f"{type(exc).__name__}: {exc}")

    def uploaded(change) -> None:
        if change["new"]:  # an upload is kept in memory: write it where the reader can go
            item = change["new"][0]
            target = Path(tempfile.mkdtemp(prefix="brainmri-tryout-")) / Path(item["name"]).name
            target.write_bytes(bytes(item["content"]))
            classify(target)

    def typed(_) -> None:
        if path_box.value.strip():
            classify(local_path(path_box.value.strip(), "path"))

    upload.observe(uploaded, names="value")
    button.on_click(typed)
    return w.VBox([w.HBox([upload, path_box, button]), out])


def filed_under(path: Path) -> str | None:
    """The class a file's folder names in any known dataset (None when it names none)."""
    from brainmri.data.sources import DATASETS

    for spec in DATASETS.values():
        if path.parent.name in spec.class_folders:
            return spec.class_folders[path.parent.name]
    return None
