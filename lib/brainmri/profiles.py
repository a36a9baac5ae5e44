"""Profiles: ``params/<profile>.yaml``, the one home of every parameter.

A profile has ``defaults`` (offered to every notebook that declares them in its
``parameters`` cell) and a ``series``: the ordered notebook steps, each with optional
``params`` overrides and an optional ``name`` (to run one notebook twice, e.g. on both
datasets). Parameters a notebook does not declare are not passed to it; a step
override that the notebook does not declare is an error, so typos cannot go unnoticed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import paths
from .errors import ProfileError


@dataclass
class Step:
    notebook: str  # file stem under notebooks/
    name: str  # output stem under results/<run>/notebooks/
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> Path:
        return paths.notebooks_dir() / f"{self.notebook}.ipynb"


@dataclass
class Profile:
    name: str
    description: str
    defaults: dict[str, Any]
    steps: list[Step]

    def datasets(self) -> list[str]:
        names = {self.defaults.get("dataset", "sartaj")}
        names |= {s.params["dataset"] for s in self.steps if "dataset" in s.params}
        for step in self.steps:  # notebooks that read several datasets declare a list
            names |= set(step.params.get("datasets", []) or [])
        names |= set(self.defaults.get("datasets", []) or [])
        return sorted(names)


def load_profile(name: str, overrides: dict[str, Any] | None = None) -> Profile:
    path = paths.params_dir() / f"{name}.yaml"
    if not path.exists():
        available = ", ".join(sorted(p.stem for p in paths.params_dir().glob("*.yaml")))
        raise ProfileError(f"No profile {name!r} ({path} missing). Available: {available}.")
    raw = yaml.safe_load(path.read_text()) or {}
    defaults = dict(raw.get("defaults") or {})
    defaults.update(overrides or {})
    series = raw.get("series")
    if series is None:
        series = [{"notebook": p.stem} for p in sorted(paths.notebooks_dir().glob("[0-9]*.ipynb"))]
    steps = []
    for entry in series:
        if isinstance(entry, str):
            entry = {"notebook": entry}
        notebook = entry["notebook"]
        steps.append(Step(notebook, entry.get("name", notebook), dict(entry.get("params") or {})))
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ProfileError(f"Profile {name!r}: step names must be unique, got {names}.")
    return Profile(name, raw.get("description", ""), defaults, steps)


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """Names and defaults of the notebook's ``parameters`` cell (via papermill)."""
    import papermill

    return {k: v["default"] for k, v in papermill.inspect_notebook(str(notebook)).items()}


def resolve(profile: Profile, step: Step, declared: dict[str, Any],
            cli_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parameters papermill injects into ``step``: defaults, then step, then CLI."""
    unknown = set(step.params) - set(declared)
    if unknown:
        raise ProfileError(
            f"Profile {profile.name!r}, step {step.name!r}: {sorted(unknown)} not declared in "
            f"the parameters cell of {step.source.name} (declared: {sorted(declared)}).")
    merged = {k: v for k, v in profile.defaults.items() if k in declared}
    merged.update(step.params)
    merged.update({k: v for k, v in (cli_overrides or {}).items() if k in declared})
    return merged


def params_hash(params: dict[str, Any], notebook: Path) -> str:
    """Changes when the parameters or the notebook's source change (used to resume)."""
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode())
    digest.update(notebook.read_bytes())
    return digest.hexdigest()[:16]
