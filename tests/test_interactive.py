"""What a reader gets outside the papermill series: a chapter opened and run by hand (as
in JupyterLab, ``make lab``), ``make lab`` itself, the standalone HTML export
(``brainmri html``) and the chapters' figures at the size the book shows them."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient

from brainmri import CLASS_NAMES
from brainmri.core import paths
from brainmri.core.runfolder import INTERACTIVE
from synthetic import make_dataset

ROOT = paths.project_root()


def _execute(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    """Run every cell in the notebook's own kernel, as JupyterLab's "Run All" would; the
    first failing cell raises CellExecutionError with its traceback."""
    NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def test_a_chapter_runs_by_hand_with_its_defaults(tmp_path, monkeypatch):
    """01_data_exploration without papermill: no injected parameters, so ``run_dir`` is
    None and the chapter writes to the interactive run folder of BRAIN_MRI_RESULTS."""
    data = tmp_path / "data"
    make_dataset(data, "sartaj", {"Training": 8, "Testing": 3}, size=32)
    make_dataset(data, "nickparvar", {"Training": 8, "Testing": 3}, size=32, seed=1)
    make_dataset(data, "br35h", {"Testing": 8}, size=32, seed=2)
    monkeypatch.setenv("BRAIN_MRI_DATA", str(data))
    monkeypatch.setenv("BRAIN_MRI_RESULTS", str(tmp_path / "results"))
    source = paths.notebooks_dir() / "01_data_exploration.ipynb"

    nb = _execute(nbformat.read(source, 4), cwd=paths.notebooks_dir())

    interactive = tmp_path / "results" / INTERACTIVE
    counts = pd.read_csv(interactive / "split_counts.csv")
    assert set(counts["dataset"]) == {"sartaj", "nickparvar", "br35h"}  # base.yaml's datasets
    assert (interactive / "skipped.csv").is_file()
    figures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert figures >= 6  # class balance, examples and sizes for each dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_lab_serves_the_notebooks_with_the_project_kernel(tmp_path):
    """``make lab`` opens notebooks/ from the project root with "Python 3 (brainmri)"."""
    port, token = _free_port(), "brainmri-test"
    extra = f"--no-browser --port={port} --ServerApp.token={token}"
    log = tmp_path / "lab.log"
    with log.open("w") as out:  # -o: use the environment as built, never reinstall it here
        lab = subprocess.Popen(["make", "-s", "-o", ".venv/.installed", "lab",
                                f"LAB_ARGS={extra}"], cwd=ROOT, stdout=out, stderr=out,
                               start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def get(path: str):
        with urllib.request.urlopen(f"{base}{path}?token={token}") as response:
            return response.url, json.loads(response.read() or "null")

    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                _, specs = get("/api/kernelspecs")
                break
            except OSError:
                if lab.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"make lab did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.5)
        default = specs["kernelspecs"][specs["default"]]["spec"]
        assert default["display_name"] == "Python 3 (brainmri)"
        assert Path(default["argv"][0]).parent == Path(sys.executable).parent
        _, root = get("/api/contents")
        assert {"notebooks", "params", "lib"} <= {item["name"] for item in root["content"]}
        with urllib.request.urlopen(f"{base}/?token={token}") as response:  # redirects
            assert response.url.split("?")[0] == f"{base}/lab/tree/notebooks"
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(timeout=30)


def _tagged_notebook() -> nbformat.NotebookNode:
    cell = nbformat.v4
    nb = cell.new_notebook(cells=[
        cell.new_markdown_cell("# Export check\n\nText every reader should see."),
        cell.new_code_cell("print('hidden-cell-source-marker')",
                           metadata={"tags": ["remove-cell"]}),
        cell.new_code_cell("print('shown' + '-output-' + 'marker')  # hidden-input-marker",
                           metadata={"tags": ["remove-input"]}),
        cell.new_code_cell("print('hidden' + '-output-' + 'marker')",
                           metadata={"tags": ["remove-output"]}),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (brainmri)",
                                 "language": "python"}
    return nb


def test_brainmri_html_exports_each_notebook_hiding_what_the_book_hides(tmp_path):
    run = tmp_path / "results" / "demo"
    (run / "notebooks").mkdir(parents=True)
    nb = _execute(_tagged_notebook(), cwd=tmp_path)
    assert "hidden-cell-source-marker" in str(nb.cells[1].outputs)  # it did run
    nbformat.write(nb, run / "notebooks" / "00_demo.ipynb")

    proc = subprocess.run([sys.executable, "-m", "brainmri", "html", "--run", "demo",
                           "--results-dir", str(tmp_path / "results")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

    html = (run / "html" / "00_demo.html").read_text()
    assert "Text every reader should see." in html
    assert "shown-output-marker" in html
    for hidden in ("hidden-cell-source-marker", "hidden-input-marker", "hidden-output-marker"):
        assert hidden not in html, hidden


def test_brainmri_html_says_what_to_do_without_executed_notebooks(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "brainmri", "html", "--run", "nothing",
                           "--results-dir", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "run the series first" in proc.stderr


def _smallest_label_pt_in_book(fig) -> float:
    """Smallest tick or legend label, in points, once the book shrinks the figure (drawn
    at its dpi, cropped tight as Jupyter does) to its text column."""
    from brainmri.report.show import figures

    fig.canvas.draw()
    width_px = fig.get_tightbbox(fig.canvas.get_renderer()).width * fig.dpi
    shrink = min(1.0, figures.BOOK_COLUMN_PX / width_px)
    texts = [t for ax in fig.axes if ax.axison
             for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    texts += [t for legend in legends for t in legend.get_texts()]
    # An image pixel is a CSS pixel (1/96 in); a point is 1/72 in.
    return min(t.get_fontsize() for t in texts) * fig.dpi / 96 * shrink


def test_chart_labels_stay_readable_in_the_book():
    """Tick and legend labels of every chart are at least 9 pt as the book shows them."""
    import matplotlib
    import matplotlib.pyplot as plt

    from brainmri.evaluation.metrics import roc_curves
    from brainmri.report.show import figures

    matplotlib.use("Agg")
    figures.set_style()
    assert matplotlib.rcParams["image.cmap"] == "gray"
    rng = np.random.default_rng(0)
    counts = pd.DataFrame([{"split": s, "class": c, "n": int(rng.integers(50, 900))}
                           for s in ("train", "val", "test") for c in CLASS_NAMES])
    pixels = {c: rng.integers(0, 256, (8, 32, 32, 1)) for c in CLASS_NAMES}
    y = rng.integers(0, 4, 300)
    probs = rng.dirichlet(np.ones(4), 300)
    history = pd.DataFrame({"loss": np.linspace(2, 0.3, 6), "val_loss": np.linspace(2, 0.5, 6),
                            "accuracy": np.linspace(0.3, 0.9, 6),
                            "val_accuracy": np.linspace(0.3, 0.8, 6)})
    models = [f"model_{i}_cnn-nickparvar" for i in range(7)]
    table = pd.DataFrame(rng.random((7, 6)), index=models,
                         columns=["accuracy", "precision_w", "recall_w", "f1_w", "f1_macro",
                                  "auc_w"])
    inventory = pd.DataFrame({"ok": True, "label": rng.choice(CLASS_NAMES, 100),
                              "width": rng.integers(200, 600, 100),
                              "height": rng.integers(200, 600, 100),
                              "mode": rng.choice(["RGB", "L"], 100)})
    external = pd.DataFrame({"external sensitivity": [0.5, 0.7], "external CI low": [0.4, 0.6],
                             "external CI high": [0.6, 0.8], "acc": [0.9, 0.95]},
                            index=["a", "b"])
    charts = {
        "class_balance": figures.class_balance(counts),
        "histogram_by_class": figures.histogram_by_class(pixels, "pixel value", "Raw pixels"),
        "confusion_matrices": figures.confusion_matrices(y, probs.argmax(1), "a model"),
        "grouped_bars": figures.grouped_bars(table, "Test metrics by model"),
        "curves_grid": figures.curves_grid({m: history for m in models}),
        "training_curves": figures.training_curves(history),
        "reliability_diagrams": figures.reliability_diagrams(
            {m: (y, probs, probs) for m in models[:5]}, 15),
        "roc_grid": figures.roc_grid({m: roc_curves(y, probs) for m in models[:5]}),
        "size_and_mode": figures.size_and_mode(inventory),
        "compare_bars": figures.compare_bars({"a": 1, "b": 2}, {"a": 1.5, "b": 2.5}, "t"),
        "external_vs_home": figures.external_vs_home(external, {"accuracy": "acc"}),
    }
    small = {}
    for name, fig in charts.items():
        assert isinstance(fig, plt.Figure), name
        if (pt := _smallest_label_pt_in_book(fig)) < 9:
            small[name] = round(pt, 1)
        plt.close(fig)
    assert not small, f"labels under 9 pt in the book: {small}"


# --- chapter 11: try the model ----------------------------------------------------------

def _glioma_png(folder: Path, size: int = 96) -> Path:
    from PIL import Image

    from synthetic import mri_like

    path = folder / "example.png"
    Image.fromarray(mri_like("glioma", size, np.random.default_rng(3))).save(path)
    return path


def test_explain_file_matches_predict_and_draws_grad_cam(trained_run, tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt
    from PIL import Image

    from brainmri.modeling import inference, saved
    from brainmri.report.interactive import tryout

    matplotlib.use("Agg")
    _, model_dir, _ = trained_run
    image = _glioma_png(tmp_path)

    result = tryout.explain_file(image, model_dir)

    model, meta = saved.load_for_prediction(model_dir)
    row = inference.predict_files([image], model, meta, batch_size=1, show_progress=False)
    assert list(result.probabilities.index) == list(CLASS_NAMES)
    assert np.allclose(result.probabilities.to_numpy(),
                       row[[f"p_{c}" for c in CLASS_NAMES]].to_numpy()[0], atol=1e-6)
    assert result.prediction == row["prediction"][0] == result.probabilities.idxmax()
    assert result.warning == row["warning"][0]
    size = meta["image_size"]
    assert result.gradcam.shape == (size, size) and np.isfinite(result.gradcam).all()
    assert result.gradcam.max() > result.gradcam.min()  # a map, not a blank
    assert isinstance(result.bars, plt.Figure) and isinstance(result.overlay, plt.Figure)
    plt.close("all")

    blank = tmp_path / "blank.png"  # near-constant and small: the warning column says so
    Image.fromarray(np.full((12, 12), 7, np.uint8)).save(blank)
    warning = tryout.explain_file(blank, model_dir).warning
    assert "near-constant" in warning and "small image" in warning

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(tryout.TryoutError, match="broken.jpg: ") as caught:
        tryout.explain_file(broken, model_dir)
    assert "\n" not in str(caught.value)
    plt.close("all")


def test_example_file_is_looked_for_in_nickparvar_and_missing_says_so_in_one_line(tmp_path):
    from brainmri.report.interactive import tryout
    from synthetic import make_dataset

    make_dataset(tmp_path / "data", "nickparvar", {"Training": 1, "Testing": 1}, size=16)
    found = tryout.example_file("Testing/glioma/img 000.jpg", tmp_path / "data")
    assert found.is_file() and found.parent.name == "glioma"
    absolute = _glioma_png(tmp_path)
    assert tryout.example_file(str(absolute), None) == absolute  # no dataset needed
    for name, data_dir, why in (("Testing/glioma/x.jpg", tmp_path / "data", "not found"),
                                ("Testing/glioma/x.jpg", tmp_path / "nowhere", "Nickparvar")):
        with pytest.raises(tryout.TryoutError, match=why) as caught:
            tryout.example_file(name, data_dir)
        assert "\n" not in str(caught.value)


def test_try_the_model_notebook_runs_headless_with_a_given_model_and_image(trained_run,
                                                                           tmp_path):
    """Chapter 11 as the series runs it: its parameters injected in place of the
    ``parameters`` cell (as papermill does), a tiny model and a synthetic image."""
    from brainmri.report.interactive import tryout

    _, model_dir, _ = trained_run
    image = _glioma_png(tmp_path)
    nb = nbformat.read(paths.notebooks_dir() / "11_try_the_model.ipynb", 4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = (f"model_path = {str(model_dir)!r}\nexample_image = {str(image)!r}\n"
                   f"run_dir = {str(tmp_path / 'run')!r}")

    nb = _execute(nb, cwd=paths.notebooks_dir())

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    texts = [o.get("text") or o.get("data", {}).get("text/plain", "") for o in outputs]
    table = next(t for t in texts if t.lstrip().startswith(CLASS_NAMES[0])).splitlines()
    assert table[0].split() == list(CLASS_NAMES)
    shown = np.array([float(v) for v in table[1].split()[1:]])
    expected = tryout.explain_file(image, model_dir)
    assert np.allclose(shown, expected.probabilities.to_numpy(), atol=1e-4)
    assert any(t.startswith(f"example.png: {expected.prediction}; warning: ") for t in texts)
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # bars and Grad-CAM
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
               for o in outputs)  # the upload widgets, inert without a live kernel
