"""What every chapter calls first: its parameters, the run folder, figure style, and
errors shown as one message.

A chapter's ``parameters`` cell names the chapter and holds no values::

    chapter = "05_relu_cnn"
    params = {}      # the runner injects the profile's values here
    run_dir = None   # the runner's run folder; None writes to results/interactive

``setup`` fills in every parameter from ``params/base.yaml`` and lays ``params`` over
it, so a notebook opened in JupyterLab runs with the defaults, and one run by the
runner with its profile's values, while each value is written in one place only.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from brainmri.core import paths
from brainmri.core.errors import BrainMRIError, ProfileError
from brainmri.core.runfolder import RunFolder
from brainmri.report.series import profiles
from brainmri.report.show import figures


class Params(SimpleNamespace):
    """A chapter's parameters as attributes (``p.epochs``), plus ``p.run``, its RunFolder."""

    def values(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k not in ("chapter", "run")}


def _short_error(shell, etype, value, tb, tb_offset=None):
    """Show BrainMRIError as its message only: it already says what to do."""
    print(f"{etype.__name__}: {value}")
    return None


def parameters(chapter: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """``base.yaml``'s values for ``chapter`` with ``params`` laid over them (checked)."""
    defaults = profiles.chapter_defaults(chapter)
    params = dict(params or {})
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ProfileError(f"{chapter}: {unknown} not a parameter of this chapter (it takes: "
                           f"{', '.join(sorted(defaults))}).")
    return {**defaults, **params}


def local_path(value: str | os.PathLike, name: str) -> Path:
    """A path parameter as the runner injects it, as a path of this machine.

    The runner writes no absolute path into a notebook: a path is relative to the project
    root, or starts with a variable it sets for the kernel (``$BRAIN_MRI_RESULTS/quick``,
    ``$BRAIN_MRI_DATA``)."""
    text = os.path.expandvars(os.fspath(value))
    unset = re.search(r"\$\{?([A-Za-z_]\w*)", text)
    if unset:
        raise BrainMRIError(f"{name}={os.fspath(value)!r} names ${unset.group(1)}, which is not "
                            f"set: export it, or pass the folder itself.")
    path = Path(text).expanduser()
    return path if path.is_absolute() else paths.project_root() / path


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def setup(chapter: str, params: dict[str, Any] | None = None,
          run_dir: str | None = None) -> Params:
    """Call once at the top of a chapter; returns its parameters and run folder."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TensorFlow's Python logger writes to the cell's stdout, and the chapters that train
    # many small models trigger its "tf.function retracing" hint: a page is no log. A
    # filter, not a level: TensorFlow sets the level to INFO when it first logs in Jupyter.
    tf_logger = logging.getLogger("tensorflow")
    if _errors_only not in tf_logger.filters:
        tf_logger.addFilter(_errors_only)
    values = parameters(chapter, params)
    if values.get("data_dir"):
        values["data_dir"] = str(local_path(values["data_dir"], "data_dir"))
    if run_dir is not None:
        run_dir = str(local_path(run_dir, "run_dir"))
    figures.set_style()
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            shell.set_custom_exc((BrainMRIError,), _short_error)
    except ImportError:
        pass
    return Params(chapter=chapter, run=RunFolder.at(run_dir).create(), **values)
