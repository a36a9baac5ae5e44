"""Standalone HTML pages of a run's executed notebooks, for readers without the book.

``brainmri html --run quick`` turns each ``results/<run>/notebooks/<step>.ipynb`` into
``results/<run>/html/<step>.html``: one file per notebook, figures embedded, that opens
from disk or an e-mail. It reuses nbconvert's HTMLExporter; cells tagged the way the
book hides them (Jupyter Book's ``remove-cell``, ``remove-input``, ``remove-output``)
are hidden here too, so both show the same chapter.
"""

from __future__ import annotations

from pathlib import Path

from brainmri.core.errors import BrainMRIError
from brainmri.core.files import atomic_write_text
from brainmri.core.runfolder import RunFolder

#: The book's tags for what a reader does not see (Jupyter Book 1.x, myst-nb).
REMOVE_CELL_TAGS = frozenset({"remove-cell"})
REMOVE_INPUT_TAGS = frozenset({"remove-input"})
REMOVE_OUTPUT_TAGS = frozenset({"remove-output"})


def exporter():
    """nbconvert's HTML exporter with the book's tag removal switched on."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    config = Config()
    config.TagRemovePreprocessor.enabled = True
    config.TagRemovePreprocessor.remove_cell_tags = set(REMOVE_CELL_TAGS)
    config.TagRemovePreprocessor.remove_input_tags = set(REMOVE_INPUT_TAGS)
    config.TagRemovePreprocessor.remove_all_outputs_tags = set(REMOVE_OUTPUT_TAGS)
    return HTMLExporter(config=config)


def export_notebook(notebook: Path, target: Path, html_exporter=None) -> Path:
    """Write ``notebook`` as one standalone HTML page at ``target`` (atomically)."""
    body, _ = (html_exporter or exporter()).from_filename(str(notebook))
    return atomic_write_text(body, target)


def export_run(run: str, results_root: Path | None = None) -> list[Path]:
    """Every executed notebook of ``results/<run>`` as ``results/<run>/html/*.html``."""
    folder = RunFolder.named(run, results_root)
    notebooks = sorted(folder.notebooks.glob("*.ipynb"))
    if not notebooks:
        raise BrainMRIError(f"{folder.notebooks} holds no executed notebook: run the series "
                            f"first (make run PROFILE=...) or pick another run with --run.")
    html_exporter = exporter()
    return [export_notebook(path, folder.html / f"{path.stem}.html",
                            html_exporter) for path in notebooks]
