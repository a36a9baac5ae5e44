"""A step that stopped: where and why (read from papermill's error and the partial
notebook), the message the runner prints, and the clean "skipped" chapter a step that
cannot run on this machine (no ImageNet weights) leaves instead of a stack trace."""

from __future__ import annotations

import json
import re
from pathlib import Path

from brainmri.report.series.profiles import Step

#: Exceptions that mean "this step cannot run here" rather than "something is broken":
#: the step is recorded as skipped, its notebook shows why, and the series goes on.
SKIPPABLE = {"WeightsUnavailableError"}

#: Exceptions that mean "this step stopped at the time budget it was given" (``make
#: study``): what it finished is kept, the series stops there, and the same command goes on.
PAUSING = {"StudyBudgetSpent"}

#: Set by the runner for each step's kernel: the file where the notebooks' short-message
#: handler also writes a project error's class name and message (JSON), so that the
#: runner reads them as data, not from the printed text, where a message's own line
#: ("Fix: ...") may look like a name.
ERROR_FILE_ENV = "BRAINMRI_ERROR_FILE"

#: A name that reads as an exception class (``WeightsUnavailableError``, ``KeyError``).
_EXCEPTION = re.compile(r"[A-Z][A-Za-z0-9]*(?:Error|Exception|Interrupt|Exit)")


def read_failure(output: Path, exc: Exception, handed: Path | None = None) -> dict:
    """Where and why a step failed, read from papermill's error and the partial notebook.

    Errors shown by our short-message handler (BrainMRIError subclasses) reach papermill
    as a bare CellExecutionError. Under the runner the handler hands their name and
    message over in the file ``handed`` (``ERROR_FILE_ENV``); without it (a notebook
    run by papermill alone) they are read from the cell's printed output.
    """
    from papermill.exceptions import PapermillExecutionError

    if not isinstance(exc, PapermillExecutionError):
        return {"where": "before any cell ran", "ename": type(exc).__name__,
                "evalue": str(exc)}
    info = {"where": f"cell {exc.cell_index} (execution count {exc.exec_count})",
            "ename": exc.ename, "evalue": exc.evalue}
    if exc.ename == "CellExecutionError" and handed is not None and handed.exists():
        try:
            error = json.loads(handed.read_text())
            return {**info, "ename": str(error["ename"]), "evalue": str(error["evalue"])}
        except (ValueError, KeyError, TypeError):
            pass  # an unreadable file: the printed text below
    if exc.ename == "CellExecutionError" and output.exists():
        import nbformat

        for cell in nbformat.read(output, 4).cells:
            if cell.get("metadata", {}).get("papermill", {}).get("exception"):
                text = "".join(o.get("text", "") for o in cell.get("outputs", [])
                               if o.get("output_type") == "stream")
                # The cell may print before it fails (Keras: "Downloading data from ..."),
                # so take the last line that starts like "SomeError: message"; a message's
                # own later lines may look alike ("Fix: copy the file"), so a name that
                # reads as an exception class, or one the runner acts on, comes first.
                found = list(re.finditer(r"^([A-Z][A-Za-z0-9]*): ", text, re.M))
                named = [m for m in found if _EXCEPTION.fullmatch(m.group(1))
                         or m.group(1) in SKIPPABLE | PAUSING]
                if found:
                    last = (named or found)[-1]
                    info.update(ename=last.group(1), evalue=text[last.end():].strip())
    return info


def mark_skipped(output: Path, failure: dict) -> None:
    """Turn a partial notebook into a clean "skipped" chapter: drop papermill's error
    banners and the cells that never ran, and end with a note saying why."""
    import nbformat

    nb = nbformat.read(output, 4)
    cells = []
    for cell in nb.cells:
        if "papermill-error-cell-tag" in cell.get("metadata", {}).get("tags", []):
            continue
        cells.append(cell)
        if cell.get("metadata", {}).get("papermill", {}).get("exception"):
            break
    note = failure["evalue"].replace("\n", "\n> ")
    cells.append(nbformat.v4.new_markdown_cell(
        f"> **Skipped.** This chapter stopped here: {note}"))
    nb.cells = cells
    nbformat.write(nb, output)


def failure_message(step: Step, output: Path, failure: dict, log: Path) -> str:
    return (f"notebook {step.notebook}.ipynb (step {step.name!r}) failed in "
            f"{failure['where']}:\n  {failure['ename']}: {failure['evalue']}\n"
            f"The partial executed notebook is kept at {output}; the kernel's own output "
            f"is in {log}.\n"
            f"Fix the cause and rerun the same command: finished steps are skipped.")
