"""Progress bars that help at a terminal or in JupyterLab and stay out of executed notebooks.

The pipeline sets ``BRAIN_MRI_PROGRESS=0`` for the notebooks it runs: a bar redrawn a
hundred times would be stored as a hundred stderr lines in the executed notebook (and
in the book). The runner shows its own per-cell progress instead.
"""

from __future__ import annotations

import os

ENV = "BRAIN_MRI_PROGRESS"


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0"


def progress(iterable=None, **kwargs):
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", not enabled())
    return tqdm(iterable, **kwargs)
