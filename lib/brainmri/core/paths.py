"""Project-relative locations, so that notebooks, tests and the CLI agree on folders."""

from __future__ import annotations

import os
from pathlib import Path

#: The shipped model, relative to the project root: ``brainmri predict``'s default, the
#: reference profile's ``export_to``; its sidecar has the same name with ``.json``.
SHIPPED_MODEL = Path("models") / "brainmri_compact.keras"


def project_root() -> Path:
    """The checkout this package belongs to (the folder holding ``pyproject.toml``).

    Falls back to the current directory when the package is installed elsewhere,
    so that an installed ``brainmri`` still works from a project folder.
    """
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "lib" / "brainmri").is_dir():
            return parent
    return Path.cwd()


def data_dir() -> Path:
    return project_root() / "data"


def cache_dir() -> Path:
    """Derived data. ``BRAIN_MRI_CACHE`` moves it (tests point it at a temporary folder)."""
    env = os.environ.get("BRAIN_MRI_CACHE")
    path = Path(env) if env else data_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_root() -> Path:
    env = os.environ.get("BRAIN_MRI_RESULTS")
    return Path(env) if env else project_root() / "results"


def params_dir() -> Path:
    """The profiles. ``BRAIN_MRI_PARAMS`` moves them (tests use a project of their own)."""
    env = os.environ.get("BRAIN_MRI_PARAMS")
    return Path(env) if env else project_root() / "params"


def notebooks_dir() -> Path:
    return project_root() / "notebooks"
