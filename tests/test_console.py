"""What `brainmri run` and `brainmri book` print: one line per step, the book's location
and real errors. Kernel notices, TensorFlow/absl start-up lines, library warnings and
the book builder's chatter go to log files."""

import os
import subprocess
import sys

import yaml

from brainmri.core import paths
from brainmri.report.publish import book
from synthetic import make_dataset

NOISE = ("IPKernelApp", "absl", "DeprecationWarning", "Running Sphinx")


def test_a_step_prints_one_line_and_logs_the_kernel_notices(tmp_path):
    data = tmp_path / "data"
    for i, name in enumerate(("sartaj", "nickparvar", "br35h")):
        make_dataset(data, name, {"Training": 4, "Testing": 3}, size=32, seed=i)
    # Relative, as a user types it: it means "from where I ran the command", not from
    # notebooks/ where the kernels run.
    env = {**os.environ, "BRAIN_MRI_DATA": "data", "BRAIN_MRI_CACHE": str(tmp_path / "c"),
           "PYTHONPATH": str(paths.project_root() / "lib")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the runner sets it, not the caller
    proc = subprocess.run([sys.executable, "-m", "brainmri", "run", "--profile", "quick",
                           "--only", "01_data_exploration", "--run", "console",
                           "--results-dir", str(tmp_path / "results")],
                          env=env, capture_output=True, text=True, cwd=tmp_path)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console
    for noise in NOISE:
        assert noise not in console, console
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and lines[1].startswith("[1/1] 01_data_exploration: ok ("), lines
    assert proc.stderr == "", proc.stderr
    log = tmp_path / "results" / "console" / "logs" / "01_data_exploration.log"
    assert "IPKernelApp" in log.read_text()


def test_the_book_build_prints_its_location_and_warnings_only(tmp_path, monkeypatch, capsys):
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump({"root": "index", "parts": []}))
    (tmp_path / "_config.yml").write_text(yaml.safe_dump({"title": "t"}))
    (tmp_path / "results" / "quick" / "notebooks").mkdir(parents=True)
    monkeypatch.setattr(paths, "project_root", lambda: tmp_path)
    monkeypatch.setattr(book, "stage_mathjax", lambda root=None: None)
    chatter = ["Running Sphinx v7.4.7", "reading sources... [100%] index",
               "/x/site-packages/y.py:3: DeprecationWarning: z is deprecated",
               "book/intro.md:4: WARNING: undefined label: 'nowhere'"]

    def fake_build(cmd, **kwargs):
        print("\n".join(chatter), file=kwargs["stdout"], flush=True)
        (tmp_path / "_build" / "html").mkdir(parents=True)
        (tmp_path / "_build" / "html" / "index.html").write_text("<html></html>")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(book.subprocess, "run", fake_build)
    book.build("quick", tmp_path / "results", strict=False)
    out, err = capsys.readouterr()
    assert "WARNING: undefined label" in err
    assert "_build/html/index.html" in out
    for noise in NOISE + ("reading sources",):
        assert noise not in out + err, out + err
    log = (tmp_path / "_build" / "book.log").read_text()
    assert all(line in log for line in chatter)


def test_a_build_never_reads_the_previous_builds_glue_cache(tmp_path, monkeypatch):
    """A chapter of this run that lacks a key must fail the build, not show the value a
    previous run's build left in myst-nb's glue cache."""
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump({"root": "index", "parts": []}))
    (tmp_path / "_config.yml").write_text(yaml.safe_dump({"title": "t"}))
    (tmp_path / "results" / "reference" / "notebooks").mkdir(parents=True)
    stale = tmp_path / "_build" / "jupyter_execute" / "book" / "notebooks" / "09.glue.json"
    stale.parent.mkdir(parents=True)
    stale.write_text('{"br35h_range": {"data": {"text/plain": "from another run"}}}')
    monkeypatch.setattr(paths, "project_root", lambda: tmp_path)
    monkeypatch.setattr(book, "stage_mathjax", lambda root=None: None)
    seen = {}

    def fake_build(cmd, **kwargs):
        seen["stale cache"] = stale.exists()
        (tmp_path / "_build" / "html").mkdir(parents=True)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(book.subprocess, "run", fake_build)
    book.build("reference", tmp_path / "results", strict=False)
    assert seen == {"stale cache": False}


def test_book_pages_leave_out_stderr_streams(tmp_path):
    """TensorFlow's C++ log lines and library warnings printed in a cell stay in the run's
    notebook, not on the book's page; stdout and displayed results stay."""
    import nbformat

    from brainmri.report.publish.book import stage_notebook

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print('x')")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="E node_def_util.cc\n"),
                    nbformat.v4.new_output("stream", name="stdout", text="x\n"),
                    nbformat.v4.new_output("execute_result", data={"text/plain": "1"},
                                           execution_count=1)]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), cell]
    nbformat.write(nb, tmp_path / "run.ipynb")
    assert stage_notebook(tmp_path / "run.ipynb", tmp_path / "book.ipynb") == 1
    shown = nbformat.read(tmp_path / "book.ipynb", 4).cells[1].outputs
    assert [o.get("name", o["output_type"]) for o in shown] == ["stdout", "execute_result"]
    assert len(nbformat.read(tmp_path / "run.ipynb", 4).cells[1].outputs) == 3  # untouched


def test_a_page_takes_its_title_from_the_table_of_contents(tmp_path):
    """One source notebook run on two datasets (08b) gives two pages; each shows the
    title the table of contents gives it, not the notebook's shared heading."""
    import nbformat

    from brainmri.report.publish.book import stage_notebook

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("Intro.\n\n# The compact CNN\n\nText."),
                nbformat.v4.new_markdown_cell("# Later heading")]
    nbformat.write(nb, tmp_path / "run.ipynb")
    stage_notebook(tmp_path / "run.ipynb", tmp_path / "a.ipynb", "Compact CNN on Nickparvar")
    stage_notebook(tmp_path / "run.ipynb", tmp_path / "b.ipynb")
    staged = nbformat.read(tmp_path / "a.ipynb", 4).cells
    assert staged[0].source == "Intro.\n\n# Compact CNN on Nickparvar\n\nText."
    assert staged[1].source == "# Later heading"
    assert nbformat.read(tmp_path / "b.ipynb", 4).cells[0].source.startswith("Intro.\n\n# The")


def test_a_weights_download_is_not_announced_in_the_chapter(capsys):
    """Keras prints "Downloading data from URL" on stdout when it fetches weights: the
    backbone builder keeps it out of the chapter's output (and restores Keras' logging)."""
    import keras

    from brainmri.modeling import builders

    def constructor(**kwargs):  # prints as keras.utils.get_file does before downloading
        from keras.src.utils import io_utils

        io_utils.print_msg("Downloading data from https://example.invalid/w.h5")
        return "model"

    assert builders._backbone(constructor, "inception_v3", "none") == "model"
    assert "Downloading" not in capsys.readouterr().out
    assert keras.config.is_interactive_logging_enabled()


def test_progress_notes_reach_a_person_and_stay_out_of_executed_notebooks(
        monkeypatch, capsys):
    """``progress.note`` follows the bars: shown at a terminal or in JupyterLab, silent
    where the runner executes notebooks (BRAIN_MRI_PROGRESS=0), so a batch run's pages
    and stored outputs carry no stderr progress lines."""
    from brainmri.core import progress

    monkeypatch.setenv(progress.ENV, "1")
    progress.note("fitting on 12 training images")
    assert capsys.readouterr().err == "fitting on 12 training images\n"
    monkeypatch.setenv(progress.ENV, "0")
    progress.note("fitting on 12 training images")
    assert capsys.readouterr() == ("", "")


def test_a_progress_bar_raises_no_experimental_warning_in_a_notebook_kernel(monkeypatch):
    """tqdm.auto warns, on import inside a Jupyter kernel, that its notebook bar is
    experimental; executed notebooks stored that warning as a stderr output."""
    import warnings

    import tqdm

    from brainmri.core import progress

    monkeypatch.setenv(progress.ENV, "0")

    def imported_in_a_kernel(name):  # tqdm.auto's module code warns as it is imported
        warnings.warn("Using `tqdm.autonotebook.tqdm` in notebook mode",
                      tqdm.TqdmExperimentalWarning, stacklevel=2)
        return tqdm.std.tqdm

    fake = type(sys)("tqdm.auto")
    fake.__getattr__ = imported_in_a_kernel
    monkeypatch.setitem(sys.modules, "tqdm.auto", fake)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(progress.progress([])) == []
