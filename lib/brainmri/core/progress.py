"""Progress bars that help at a terminal or in JupyterLab and stay out of executed notebooks.

The pipeline sets ``BRAIN_MRI_PROGRESS=0`` for the notebooks it runs: a bar redrawn a
hundred times would be stored as a hundred stderr lines in the executed notebook (and
in the book). The runner shows its own per-cell progress instead.
"""

from __future__ import annotations

import os
import sys
import warnings

ENV = "BRAIN_MRI_PROGRESS"


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0"


def progress(iterable=None, **kwargs):
    from tqdm import TqdmExperimentalWarning

    with warnings.catch_warnings():
        # tqdm.auto picks the notebook bar in Jupyter and warns, once per kernel, that the
        # choice is experimental: it is ours to make, and the warning would be stored in
        # every executed notebook whose first bar is drawn (disabled bars included)
        warnings.simplefilter("ignore", TqdmExperimentalWarning)
        from tqdm.auto import tqdm

    kwargs.setdefault("disable", not enabled())
    return tqdm(iterable, **kwargs)


def note(message: str) -> None:
    """One line on long work (what is being fitted or measured, on how many images) for
    someone at a terminal or in JupyterLab; left out of executed notebooks, as the bars."""
    if enabled():
        print(message, file=sys.stderr, flush=True)
