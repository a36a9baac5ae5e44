"""What a reader sees of the shared figures in the book's column: titles that do not run
into each other, legends that hide no data, rate axes from 0, thumbnails and labels large
enough to read, and chapter 10's maps as one small JPEG per model."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from brainmri import CLASS_NAMES  # noqa: E402
from brainmri.report.show import explanation_figures, figures  # noqa: E402

#: Model tags as long as the reference run's.
TAGS = ["compact_cnn+crop-union-bn-nickparvar", "compact_cnn-sartaj", "relu_cnn-sartaj",
        "relu_cnn_augmented-sartaj", "sigmoid_cnn-sartaj"]


@pytest.fixture(autouse=True)
def style():
    figures.set_style()
    yield
    plt.close("all")


def _shrink(fig) -> float:
    """The factor the book applies to ``fig`` (drawn at savefig dpi, cropped tight as
    Jupyter does, then shrunk to the text column when wider)."""
    fig.canvas.draw()
    dpi = matplotlib.rcParams["savefig.dpi"]
    width_px = fig.get_tightbbox(fig.canvas.get_renderer()).width * dpi
    return min(1.0, figures.BOOK_COLUMN_PX / width_px) * dpi / fig.dpi


def _texts(fig):
    """Every visible piece of text of ``fig`` (titles, labels, ticks, legends, notes)."""
    return [t for t in fig.findobj(matplotlib.text.Text)
            if t.get_visible() and t.get_text().strip() and t.get_figure() is fig]


def _smallest_pt(fig) -> float:
    """Smallest text of ``fig`` in points as the book shows it (1 CSS px = 1/96 in)."""
    shrink = _shrink(fig)
    return min(t.get_fontsize() for t in _texts(fig)) * fig.dpi / 96 * shrink


def _boxes(artists, fig):
    renderer = fig.canvas.get_renderer()
    return [a.get_window_extent(renderer) for a in artists]


def _title_overlaps(fig) -> list[tuple[str, str]]:
    """Pairs of axes titles whose boxes overlap each other or another axes' panel."""
    fig.canvas.draw()
    titled = [ax for ax in fig.axes if ax.get_title()]
    titles = [ax.title for ax in titled]
    boxes = _boxes(titles, fig)
    found = []
    for i, a in enumerate(boxes):
        for j in range(i + 1, len(boxes)):
            if a.overlaps(boxes[j]):
                found.append((titles[i].get_text(), titles[j].get_text()))
    return found


def _history():
    return pd.DataFrame({"loss": np.linspace(2, 0.3, 6), "val_loss": np.linspace(2, 0.5, 6),
                         "accuracy": np.linspace(0.3, 0.9, 6),
                         "val_accuracy": np.linspace(0.3, 0.8, 6)})


@pytest.mark.parametrize("name", ["roc_grid", "reliability_diagrams", "curves_grid"])
def test_panel_titles_with_long_model_tags_do_not_collide(name):
    from brainmri.evaluation.metrics import roc_curves

    rng = np.random.default_rng(0)
    y, probs = rng.integers(0, 4, 200), rng.dirichlet(np.ones(4), 200)
    fig = {"roc_grid": lambda: figures.roc_grid({t: roc_curves(y, probs) for t in TAGS}),
           "reliability_diagrams": lambda: figures.reliability_diagrams(
               {t: (y, probs, probs) for t in TAGS}, 15),
           "curves_grid": lambda: figures.curves_grid({t: _history() for t in TAGS})}[name]()
    assert not _title_overlaps(fig)
    assert "compact_cnn+crop-union-bn\nnickparvar" in [ax.get_title() for ax in fig.axes]


def _external(n: int = 5) -> pd.DataFrame:
    rates = np.linspace(1.0, 0.2, n)
    return pd.DataFrame({"external sensitivity": rates, "external CI low": rates - 0.05,
                         "external CI high": np.minimum(rates + 0.05, 1),
                         "specificity": np.r_[0.0, np.linspace(0.6, 1, n - 1)],
                         "accuracy": np.linspace(0.8, 0.95, n)},
                        index=[f"compact_cnn+ablation-{k}" for k in
                               ("baseline", "crop", "union+bn", "restyle", "drop-br35h")][:n])


@pytest.mark.parametrize("home", [{"home specificity": "specificity"},
                                  {"validation accuracy": "accuracy",
                                   "test specificity": "specificity"}])
def test_external_vs_home_shows_every_rate_from_zero_and_hides_none(home):
    fig = figures.external_vs_home(_external(), home)
    left, right = fig.axes[:2]
    assert left.get_xlim()[0] == 0 and right.get_xlim()[0] == 0
    labels = [t.get_text() for t in right.texts]
    assert "0.00" in labels, "a rate of 0 must be seen: each bar carries its value"
    assert not _title_overlaps(fig)
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent(fig.canvas.get_renderer())
    assert not any(legend.overlaps(box) for box in _boxes([left, right], fig))
    # the rows are named by what differs; the shared prefix is said once
    assert [t.get_text() for t in left.get_yticklabels()][-1] == "baseline"
    assert left.get_ylabel() == "compact_cnn+ablation-…"


def test_external_vs_home_labels_bars_with_their_counts_when_given():
    """A specificity of 1.00 on 19 images must read 19/19, not 1.00."""
    table = _external(3).assign(tumours=[756, 756, 756], healthy=[19, 405, 19])
    fig = figures.external_vs_home(table, {"home specificity": "specificity"},
                                   counts={"external sensitivity": "tumours",
                                           "specificity": "healthy"})
    left, right = fig.axes[:2]
    # rows are drawn bottom-up: the table's last row first
    assert [t.get_text() for t in left.texts] == ["151/756", "454/756", "756/756"]
    assert [t.get_text() for t in right.texts] == ["19/19", "243/405", "0/19"]
    assert not _title_overlaps(fig)


def test_external_vs_home_keeps_rows_that_share_a_name_apart():
    table = _external(3).set_axis(["compact CNN", "compact CNN", "ReLU CNN"])
    fig = figures.external_vs_home(table, {"home specificity": "specificity"})
    left, right = fig.axes[:2]
    assert len(left.get_yticks()) == 3
    rows = sorted(round(b.get_y() + b.get_height() / 2, 3) for b in left.patches)
    assert rows == sorted(round(b.get_y() + b.get_height() / 2, 3) for b in right.patches)
    assert len(set(rows)) == 3


def test_claims_grid_legend_hides_no_interval():
    versus = pd.DataFrame(
        {"test accuracy": [0.66, 0.70, 0.67, 0.72], "test CI low": [0.61, 0.66, 0.63, 0.67],
         "test CI high": [0.71, 0.75, 0.72, 0.76], "report 000": [0.67, 0.71, 0.74, 0.74]},
        index=["grayscale, 6 epochs", "grayscale, 16 epochs", "rgb, 6 epochs",
               "rgb, 16 epochs"])
    fig = figures.claims_grid(versus)
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent(fig.canvas.get_renderer())
    assert not legend.overlaps(fig.axes[0].get_window_extent(fig.canvas.get_renderer()))


def test_image_grid_thumbnails_and_captions_are_readable_in_the_book():
    """Chapter 01c asks for 8 columns of 1.6 in; the book would show 40 px thumbnails."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 1)).astype(np.uint8) for _ in range(16)]
    fig = figures.image_grid(images, ["test glioma, no copy"] * 16, ncols=8, size=1.6)
    shrink = _shrink(fig)
    widths = [box.width for box in _boxes([ax for ax in fig.axes if ax.images], fig)]
    assert min(widths) * shrink >= 120  # CSS px in the book (40 before)
    assert _smallest_pt(fig) >= 9


def _explanation(n_rows: int = 8, size: int = 128):
    from scipy.ndimage import gaussian_filter

    from brainmri.evaluation import explain

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    head = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.4) ** 2).astype(float)
    raw = np.stack([(head * gaussian_filter(rng.random((size, size)), 2) * 255)
                    for _ in range(n_rows)]).astype(np.uint8)[..., None]
    maps = {name: rng.normal(size=(n_rows, size, size)) * head for name in explain.EXPLAINERS}
    maps["GradCAM"] = np.stack([gaussian_filter(rng.random((size, size)), 12)
                                for _ in range(n_rows)])
    labels = [c for c in CLASS_NAMES for _ in range(2)][:n_rows]
    predictions = [c if i % 2 == 0 else "glioma" for i, c in enumerate(labels)]
    examples = pd.DataFrame({"label": labels, "prediction": predictions})
    return explain.ModelExplanation("compact_cnn+crop-union-bn-nickparvar", examples, raw,
                                    maps, pd.DataFrame())


def test_explanation_grid_fits_the_column_with_readable_labels():
    fig = explanation_figures.explained_model(_explanation())
    assert _smallest_pt(fig) >= 9
    assert not _title_overlaps(fig)


def test_show_jpeg_emits_one_small_jpeg_and_closes_the_figure(monkeypatch):
    """Chapter 10's maps reach the notebook as JPEG: the reference run's five PNG grids
    weighed 1.5-1.8 MB each, the notebook 13 MB."""
    from IPython import display as ipd

    shown = []
    monkeypatch.setattr(ipd, "display", lambda obj: shown.append(obj))
    fig = explanation_figures.explained_model(_explanation())
    explanation_figures.show_jpeg(fig)
    assert len(shown) == 1 and shown[0].format == "jpeg"
    jpeg = shown[0].data
    assert jpeg[:3] == b"\xff\xd8\xff"  # a JPEG
    assert len(jpeg) < 400_000
    assert not plt.fignum_exists(fig.number)


def test_external_cases_put_each_outcome_on_its_own_row():
    cases = pd.DataFrame({"outcome": ["found"] * 3 + ["missed"] * 3,
                          "prediction": ["glioma", "pituitary", "glioma"] + ["no_tumor"] * 3})
    raw = np.zeros((6, 16, 16, 1), np.uint8)
    maps = np.random.default_rng(0).random((6, 16, 16))
    fig = explanation_figures.external_cases(cases, raw, maps)
    axes = np.array(fig.axes).reshape(2, 3)
    assert [ax.get_title() for ax in axes[1]] == ["missed: no tumour"] * 3
    assert axes[0, 1].get_title() == "found: pituitary"
