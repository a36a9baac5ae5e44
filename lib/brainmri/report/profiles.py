"""Profiles: ``params/base.yaml`` holds every parameter's default; a profile
(``params/<profile>.yaml``) holds only what differs from it.

A chapter's parameters are the shared groups it lists plus its own. Resolving one step
of a run layers, weakest first: the shared groups, ``--dataset`` (which changes only the
shared default, so a chapter or step that names its dataset keeps it), the chapter's own
values, the series step's values, and finally ``--set`` from the command line. Every
name and value a profile or the command line gives is checked against ``base.yaml``
(known name, same type, allowed choice or range) before any notebook runs.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from brainmri.core import paths
from brainmri.core.errors import ProfileError

BASE = "base"


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
    shared: dict[str, dict[str, Any]]  # group -> {parameter: value}
    chapters: dict[str, dict[str, Any]]  # notebook -> {"shared": [...], "params": {...}}
    steps: list[Step]
    rules: dict[str, dict]

    def declared(self, notebook: str) -> dict[str, Any]:
        """The parameters ``notebook`` takes, with this profile's values."""
        if notebook not in self.chapters:
            raise ProfileError(f"params/{BASE}.yaml has no chapter {notebook!r}; chapters: "
                               f"{', '.join(self.chapters)}.")
        chapter = self.chapters[notebook]
        values: dict[str, Any] = {}
        for group in chapter.get("shared", []):
            values.update(self.shared[group])
        values.update(chapter.get("params") or {})
        return values

    def resolve(self, step: Step, dataset: str | None = None,
                overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The parameters papermill injects into ``step`` (see the module docstring)."""
        declared = self.declared(step.notebook)
        values: dict[str, Any] = {}
        chapter = self.chapters[step.notebook]
        for group in chapter.get("shared", []):
            values.update(self.shared[group])
        if dataset is not None and "dataset" in values:
            values["dataset"] = dataset
        values.update(chapter.get("params") or {})
        values.update(step.params)
        values.update({k: v for k, v in (overrides or {}).items() if k in declared})
        return values

    def names(self) -> set[str]:
        return {name for step in self.steps for name in self.declared(step.notebook)}


def _read(name: str) -> dict:
    path = paths.params_dir() / f"{name}.yaml"
    if not path.exists():
        available = ", ".join(sorted(p.stem for p in paths.params_dir().glob("*.yaml")))
        raise ProfileError(f"No profile {name!r} ({path} missing). Available: {available}.")
    return yaml.safe_load(path.read_text()) or {}


def _steps(series: list) -> list[Step]:
    steps = []
    for entry in series:
        if isinstance(entry, str):
            entry = {"notebook": entry}
        steps.append(Step(entry["notebook"], entry.get("name", entry["notebook"]),
                          dict(entry.get("params") or {})))
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ProfileError(f"step names must be unique, got {names}.")
    return steps


def load_profile(name: str) -> Profile:
    """``base.yaml`` with the profile ``name`` layered on top (``base`` alone for "base")."""
    base = _read(BASE)
    shared = copy.deepcopy(base.get("shared") or {})
    chapters = copy.deepcopy(base.get("chapters") or {})
    steps = _steps(base.get("series") or [])
    rules = base.get("rules") or {}
    raw = base if name == BASE else _read(name)
    profile = Profile(name, raw.get("description", ""), shared, chapters, steps, rules)
    if name == BASE:
        return profile
    where = f"params/{name}.yaml"
    for group, values in (raw.get("shared") or {}).items():
        if group not in shared:
            raise ProfileError(f"{where}: no shared group {group!r} in base.yaml; groups: "
                               f"{', '.join(shared)}.")
        _check_known(values, shared[group], f"{where}, shared.{group}")
        shared[group].update(values)
    for notebook, values in (raw.get("chapters") or {}).items():
        _check_known(values, profile.declared(notebook), f"{where}, chapters.{notebook}")
        chapters[notebook].setdefault("params", {}).update(values)
    if "series" in raw:
        profile.steps = _steps(raw["series"])
    by_name = {s.name: s for s in profile.steps}
    for step_name, values in (raw.get("steps") or {}).items():
        if step_name not in by_name:
            raise ProfileError(f"{where}: no step {step_name!r}; steps: {', '.join(by_name)}.")
        step = by_name[step_name]
        _check_known(values, profile.declared(step.notebook), f"{where}, steps.{step_name}")
        step.params.update(values)
    for step in profile.steps:
        _check_known(step.params, profile.declared(step.notebook), f"{where}, step {step.name}")
        check_values(profile, {**profile.declared(step.notebook), **step.params},
                     f"{where}, step {step.name}")
    return profile


def _check_known(values: dict, declared: dict, where: str) -> None:
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ProfileError(f"{where}: {unknown} not a parameter of this chapter "
                           f"(it takes: {', '.join(sorted(declared))}).")


def _type_ok(value: Any, default: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        # a transfer chapter's `unfreeze_from` is a layer name or index
        return isinstance(value, str)
    return isinstance(value, type(default))


def check_value(profile: Profile, name: str, value: Any, default: Any) -> str | None:
    """Why ``value`` is not acceptable for ``name`` (None when it is)."""
    base_default = default
    if not _type_ok(value, base_default) and not (name == "unfreeze_from"
                                                  and isinstance(value, (int, str))):
        return (f"{name}={value!r}: expected {type(base_default).__name__} "
                f"(default {base_default!r})")
    choices = (profile.rules.get("choices") or {}).get(name)
    if choices is not None and value is not None and value not in choices:
        return f"{name}={value!r}: allowed values are {', '.join(map(str, choices))}"
    bounds = (profile.rules.get("ranges") or {}).get(name)
    if bounds is not None and value is not None:
        low, high = bounds
        if (low is not None and value < low) or (high is not None and value > high):
            span = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
            return f"{name}={value!r}: must lie in {span}"
    return None


def check_values(profile: Profile, values: dict[str, Any], where: str) -> None:
    base = load_profile(BASE) if profile.name != BASE else profile
    defaults: dict[str, Any] = {}
    for notebook in base.chapters:
        defaults.update(base.declared(notebook))
    problems = [p for name, value in values.items()
                if (p := check_value(profile, name, value, defaults.get(name)))]
    if problems:
        raise ProfileError(f"{where}: " + "; ".join(problems) + ".")


def check_overrides(profile: Profile, steps: list[Step], overrides: dict[str, Any]) -> None:
    """``--set`` values: each must name a parameter of at least one step that runs, with an
    acceptable value. One error lists every problem, before any notebook runs."""
    known = {name for step in steps for name in profile.declared(step.notebook)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ProfileError(f"--set {', '.join(unknown)}: no step of this run takes "
                           f"{'this parameter' if len(unknown) == 1 else 'these parameters'}"
                           f". Parameters: {', '.join(sorted(known))}.")
    check_values(profile, overrides, "--set")


def chapter_defaults(notebook: str) -> dict[str, Any]:
    """A chapter's parameters as ``base.yaml`` sets them (a notebook opened by hand)."""
    return load_profile(BASE).declared(notebook)


def params_hash(params: dict[str, Any], notebook: Path) -> str:
    """Changes when the parameters or the notebook's source change (used to resume)."""
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode())
    digest.update(notebook.read_bytes())
    return digest.hexdigest()[:16]
