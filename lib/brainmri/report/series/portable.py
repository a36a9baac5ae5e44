"""What an executed notebook shows of the machine that ran it: nothing absolute.

The values a step's notebook gets are written relative to the project root, or as
``$BRAIN_MRI_RESULTS`` / ``$BRAIN_MRI_DATA`` with the variable set for its kernel
(:func:`portable`); after the run, :func:`finish_notebook` rewrites any absolute path
left in its metadata and outputs, and tags the plumbing cells the book hides.
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from brainmri.core import paths
from brainmri.core.runfolder import RunFolder

#: How an executed notebook names folders outside the project: the variables the runner
#: sets for the step's kernel (``notebook.setup`` expands them), so no absolute path of
#: the machine that ran the series is written into a notebook.
RESULTS_ENV = "BRAIN_MRI_RESULTS"
DATA_ENV = "BRAIN_MRI_DATA"
#: What the book does not show: papermill's injected-parameters cell and the chapter's
#: own parameters cell (plumbing; the values are in params.yaml and the appendix).
HIDDEN_CELLS = ("injected-parameters", "parameters")
HIDE_TAG = "remove-cell"


def shown(path: Path) -> str:
    """A path as the terminal shows it: relative to the project when inside it."""
    path = Path(path).resolve()
    root = paths.project_root().resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def inside_project(path: Path) -> str | None:
    """``path`` relative to the project root (posix), or None when it lies outside."""
    path, root = Path(path).expanduser().resolve(), paths.project_root().resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else None


def portable_data_root(name: str, root: Path) -> str:
    """Where a dataset was found, as environment.json records it: project-relative,
    under ``$BRAIN_MRI_DATA``, or else only the dataset's name."""
    inside = inside_project(root)
    if inside is not None:
        return inside
    env = os.environ.get(DATA_ENV)
    if env and Path(root).resolve().is_relative_to(Path(env).expanduser().resolve()):
        rel = Path(root).resolve().relative_to(Path(env).expanduser().resolve()).as_posix()
        return f"${DATA_ENV}" + ("" if rel == "." else f"/{rel}")
    return f"<{name}: outside the project>"


def portable(run: RunFolder, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The values injected into a step's notebook, and the environment its kernel needs.

    Paths are written relative to the project root (``notebook.setup`` resolves them from
    there). A run folder outside the project becomes ``$BRAIN_MRI_RESULTS/<run>`` and an
    explicit ``data_dir`` outside it ``$BRAIN_MRI_DATA``, with the variable set for the
    kernel to the location as given: the notebook records the name, not the machine's path.
    """
    env: dict[str, str] = {}
    run_dir = inside_project(run.root)
    if run_dir is None:
        run_dir = f"${RESULTS_ENV}/{run.root.name}"
        env[RESULTS_ENV] = str(run.root.parent)
    params = dict(params)
    if params.get("data_dir"):
        data_dir = Path(params["data_dir"]).expanduser().absolute()
        inside = inside_project(data_dir)
        if inside is None:
            env[DATA_ENV] = str(data_dir)
            params["data_dir"] = f"${DATA_ENV}"
        else:
            params["data_dir"] = inside
    # papermill's own way: one variable per parameter of the chapter, as its parameters
    # cell declares them (``papermill -p NAME VALUE`` gives the same cell)
    return {**params, "run_dir": run_dir}, env


def machine_paths(env: dict[str, str]) -> dict[str, str]:
    """{absolute path of this machine: how a notebook shows it}. ``""`` stands for the
    project root (its paths become project-relative)."""
    shown: dict[str, str] = {}

    def add(path: str | os.PathLike | None, label: str) -> None:
        if not path:
            return
        for form in (Path(path).expanduser().absolute(), Path(path).expanduser().resolve()):
            text = form.as_posix().rstrip("/")
            if text and text != "/" and text not in shown:
                shown[text] = label

    add(paths.project_root(), "")
    python = sysconfig.get_paths()
    # paths inside the project are shown relative to it: only the others get a name
    outside = [*((value, f"${name}") for name, value in env.items()),
               (os.environ.get(RESULTS_ENV), f"${RESULTS_ENV}"),
               (os.environ.get(DATA_ENV), f"${DATA_ENV}"),
               (os.environ.get("BRAIN_MRI_CACHE"), "$BRAIN_MRI_CACHE"),
               (os.environ.get("BRAIN_MRI_PARAMS"), "$BRAIN_MRI_PARAMS"),
               (paths.notebooks_dir(), "notebooks"),
               (python.get("purelib"), "<site-packages>"),
               (python.get("platlib"), "<site-packages>"),
               (python.get("stdlib"), "<python>"), (sys.prefix, "<python>"),
               (sys.base_prefix, "<python>"), (Path.home(), "~"),
               (tempfile.gettempdir(), "$TMPDIR")]
    for path, label in outside:
        if path and inside_project(Path(path)) is None:
            add(path, label)
    return shown


def scrubber(env: dict[str, str]):
    """A function that rewrites every absolute path of this machine in a text."""
    shown = machine_paths(env)
    alternatives = "|".join(re.escape(p) for p in sorted(shown, key=len, reverse=True))
    pattern = re.compile(rf"(?P<path>{alternatives})(?P<sep>/|(?![\w.-]))")
    # IPython files a cell's code under a temporary name ("/tmp/ipykernel_12/345.py:6:
    # SomeWarning ..."): shown as <cell>.
    temp = {Path(tempfile.gettempdir()).absolute().as_posix(),
            Path(tempfile.gettempdir()).resolve().as_posix()}
    cell_file = re.compile("(?:" + "|".join(map(re.escape, temp)) + r")/ipykernel_\d+/\d+\.py")

    def replace(match: re.Match) -> str:
        label, sep = shown[match["path"]], match["sep"]
        if label == "":
            return "" if sep else "."
        return label + sep

    def scrub(text: str) -> str:
        return pattern.sub(replace, cell_file.sub("<cell>", text))
    return scrub


def scrub_tree(node: Any, scrub) -> Any:
    """Rewrite the strings of a notebook's JSON: metadata and outputs. Cell sources are
    left as they ran (the injected values are portable already) and binary images
    (base64) are not text."""
    if isinstance(node, str):
        return scrub(node)
    if isinstance(node, list):
        return [scrub_tree(v, scrub) for v in node]
    if isinstance(node, dict):
        return {k: v if k == "source" or (k.startswith("image/") and k != "image/svg+xml")
                else scrub_tree(v, scrub) for k, v in node.items()}
    return node


def finish_notebook(output: Path, params: dict[str, Any] | None = None,
                    run: RunFolder | None = None) -> None:
    """The executed notebook as a page: plumbing cells tagged ``remove-cell`` and no
    absolute path of this machine (papermill's input and output paths, warnings that
    name a file, printed locations) left in its metadata or outputs.

    Done here rather than when the book stages the notebooks, so that every reader of
    ``results/<run>/notebooks/`` (the book, ``brainmri html``, JupyterLab, a reviewer of
    the committed reference run) sees the same chapter and the same portable paths.
    """
    import nbformat

    env = portable(run, params or {})[1] if run is not None else {}
    nb = nbformat.read(output, 4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if any(t in tags for t in HIDDEN_CELLS) and HIDE_TAG not in tags:
            cell.metadata["tags"] = [*tags, HIDE_TAG]
    nb = nbformat.from_dict(scrub_tree(nb, scrubber(env)))
    nbformat.write(nb, output)
