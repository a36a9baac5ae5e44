"""Set-up shared by every notebook: figure style, short error messages, the run folder."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import BrainMRIError
from .results import run_dir as _run_dir


def _short_error(shell, etype, value, tb, tb_offset=None):
    """Show BrainMRIError as its message only: it already says what to do."""
    print(f"{etype.__name__}: {value}")
    return None


def setup(run_dir: str | None = None) -> Path:
    """Call once at the top of a notebook; returns the folder results are written to."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import matplotlib as mpl

    mpl.rcParams.update({
        "figure.dpi": 100, "savefig.dpi": 110, "figure.figsize": (8, 4),
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": False,
        "font.size": 10, "axes.titlesize": 11, "image.cmap": "gray",
    })
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            shell.set_custom_exc((BrainMRIError,), _short_error)
    except ImportError:
        pass
    if run_dir:
        os.environ["BRAIN_MRI_RUN_DIR"] = str(run_dir)
    return _run_dir()
