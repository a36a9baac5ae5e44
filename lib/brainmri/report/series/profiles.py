"""Profiles: ``params/base.yaml`` holds every parameter's default; a profile
(``params/<profile>.yaml``) holds only what differs from it.

A chapter's parameters are the shared groups it lists plus its own. Resolving one step
of a run layers, weakest first: the shared groups, ``--dataset`` (which changes only the
shared default, so a chapter or step that names its dataset keeps it), the chapter's own
values, the series step's values, and finally ``--set`` from the command line. Every
name and value a profile or the command line gives is checked against ``base.yaml``
before any notebook runs: a known name, and a value its rule accepts (``rules``: a type
for every parameter, taken from its default unless ``rules.types`` names one, and a
range or choices; names that become file names and paths that are written are checked
so that none leaves its folder).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from brainmri.core import paths
from brainmri.core.errors import ProfileError
from brainmri.core.runfolder import name_problem

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
    #: base.yaml's values: {chapter: {parameter: value}} and {series step: {parameter:
    #: value}}; they give a parameter its type and the defaults error messages quote.
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    step_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)

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

    def rule_names(self) -> set[str]:
        """Every parameter base.yaml names (in a chapter or a shared group)."""
        return {name for values in self.defaults.values() for name in values}

    def default(self, step: Step, name: str) -> Any:
        """base.yaml's value of ``name`` for ``step`` (its chapter's, or its series step's)."""
        values = self.step_defaults.get(step.name) or self.defaults.get(step.notebook, {})
        return values.get(name)

    def rule(self, name: str) -> Rule:
        """What ``name`` accepts (see base.yaml's ``rules``)."""
        given = [values[name] for values in self.defaults.values() if name in values]
        choices = (self.rules.get("choices") or {}).get(name)
        bounds = (self.rules.get("ranges") or {}).get(name)
        return Rule((self.rules.get("types") or {}).get(name) or _inferred_type(given),
                    tuple(choices) if choices is not None else None,
                    tuple(bounds) if bounds is not None else None,
                    name in (self.rules.get("nullable") or []) or None in given)


def named_profiles() -> list[str]:
    """The profiles a run may name: ``params/<name>.yaml`` (``base`` included)."""
    try:
        return sorted(p.stem for p in paths.params_dir().glob("*.yaml")
                      if name_problem(p.stem) is None)
    except OSError:
        return []


def _read(name: str) -> dict:
    """A profile by its name. Only the named profiles of ``params/`` are read: a path
    (``--profile /tmp/x.yaml``, ``../x``) is refused, so a run's parameters always come
    from the project's own files."""
    available = ", ".join(named_profiles())
    if name_problem(name) is not None or name.endswith((".yaml", ".yml")):
        raise ProfileError(f"profile {name!r} is not a profile name: give one of {available} "
                           f"(params/<name>.yaml; a path is not accepted).")
    path = paths.params_dir() / f"{name}.yaml"
    if not path.exists():
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
    profile.defaults = copy.deepcopy({nb: profile.declared(nb) for nb in chapters})
    profile.step_defaults = copy.deepcopy({
        step.name: {**profile.declared(step.notebook), **step.params}
        for step in steps if step.notebook in chapters})
    where = f"params/{name}.yaml"
    if name != BASE:
        _layer(profile, raw, where)
    for step in profile.steps:
        _check_known(step.params, profile.declared(step.notebook), f"{where}, step {step.name}")
        check_values(profile, {**profile.declared(step.notebook), **step.params},
                     f"{where}, step {step.name}", step.notebook)
    return profile


def _layer(profile: Profile, raw: dict, where: str) -> None:
    """A profile's values over base.yaml's (names checked here, values by the caller)."""
    shared, chapters = profile.shared, profile.chapters

    def read(values: dict) -> dict:
        return {k: typed(profile, k, v) for k, v in (values or {}).items()}

    for group, values in (raw.get("shared") or {}).items():
        if group not in shared:
            raise ProfileError(f"{where}: no shared group {group!r} in base.yaml; groups: "
                               f"{', '.join(shared)}.")
        _check_known(values, shared[group], f"{where}, shared.{group}")
        shared[group].update(read(values))
    for notebook, values in (raw.get("chapters") or {}).items():
        _check_known(values, profile.declared(notebook), f"{where}, chapters.{notebook}")
        chapters[notebook].setdefault("params", {}).update(read(values))
    if "series" in raw:
        profile.steps = _steps(raw["series"])
    by_name = {s.name: s for s in profile.steps}
    for step_name, values in (raw.get("steps") or {}).items():
        if step_name not in by_name:
            raise ProfileError(f"{where}: no step {step_name!r}; steps: {', '.join(by_name)}.")
        step = by_name[step_name]
        _check_known(values, profile.declared(step.notebook), f"{where}, steps.{step_name}")
        step.params.update(read(values))


def _check_known(values: dict, declared: dict, where: str) -> None:
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ProfileError(f"{where}: {unknown} not a parameter of this chapter "
                           f"(it takes: {', '.join(sorted(declared))}).")


# --- what a parameter accepts ----------------------------------------------------------

#: The types ``rules.types`` may name (``list[<type>]`` too); see base.yaml's ``rules``.
TYPES = ("bool", "int", "float", "str", "name", "path", "keras_file", "layer", "chapter",
         "params", "variants")
#: Types whose values are text as written: ``--set data_dir=2024`` is the folder "2024".
TEXT = ("str", "name", "path", "keras_file", "chapter")
#: What YAML 1.1 leaves as text but a reader means as a number (``1e-3``).
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Rule:
    """What one parameter accepts: base.yaml's ``rules``, with the type taken from the
    parameter's defaults where ``rules.types`` names none."""
    type: str  # one of TYPES or list[<one of TYPES>]; "" when nothing says
    choices: tuple | None = None
    bounds: tuple | None = None  # (low, high), inclusive; None: that side is unbounded
    nullable: bool = False


def _inferred_type(given: list) -> str:
    """bool, int, float or str when every non-null default has that type ("" if not)."""
    kinds = {type(v).__name__ for v in given if v is not None}
    if kinds == {"int", "float"}:
        return "float"
    return kinds.pop() if len(kinds) == 1 and kinds <= {"bool", "int", "float", "str"} else ""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _keras_file_problem(value: Any) -> str | None:
    """``export_to`` writes a file: under the project's models/ (relative paths) or at an
    absolute path given on purpose; never a climb out of either with ``..``."""
    if not isinstance(value, str) or not value.endswith(".keras") or value == ".keras":
        return "expected a .keras file: models/<name>.keras or an absolute path"
    path = PurePosixPath(value)
    if ".." in path.parts:
        return "must not climb folders with '..': models/<name>.keras or an absolute path"
    if not path.is_absolute() and (len(path.parts) < 2 or path.parts[0] != "models"):
        return "a relative path must lie under models/ (models/<name>.keras)"
    return None


def _scalar_problem(profile: Profile, kind: str, value: Any) -> str | None:
    if kind == "bool":
        return None if isinstance(value, bool) else "expected bool (true or false)"
    if kind == "int":
        return None if _number(value) and isinstance(value, int) else "expected int"
    if kind == "float":
        if not _number(value):
            return "expected float"
        return None if math.isfinite(value) else "not a finite number"
    if kind == "str":
        return None if isinstance(value, str) else "expected str"
    if kind == "name":
        return name_problem(value)
    if kind == "path":
        return None if isinstance(value, str) and value.strip() and "\0" not in value \
            else "expected a path (text)"
    if kind == "keras_file":
        return _keras_file_problem(value)
    if kind == "layer":
        if (_number(value) and isinstance(value, int)) or (isinstance(value, str) and value):
            return None
        return "expected a layer index (int) or a layer name"
    if kind == "chapter":
        return None if value in profile.defaults else (
            f"not a chapter of params/{BASE}.yaml ({', '.join(profile.defaults)})")
    if kind == "params":
        if not isinstance(value, dict):
            return "expected a mapping {parameter: value}"
        return _mapping_problem(profile, value)
    if kind == "variants":
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            return "expected a list of mappings {name: ..., parameter: value}"
        for variant in value:
            if (problem := name_problem(variant.get("name"))):
                return f"variant name {variant.get('name')!r}: {problem}"
            if not isinstance(variant.get("also_bn", False), bool):
                return f"variant {variant['name']}: also_bn must be true or false"
            changes = {k: v for k, v in variant.items() if k not in ("name", "also_bn")}
            if (problem := _mapping_problem(profile, changes)):
                return f"variant {variant['name']}: {problem}"
        names = [v["name"] for v in value]
        return None if len(set(names)) == len(names) else f"variant names repeat: {names}"
    return f"no rule in params/{BASE}.yaml says what it accepts"


def _mapping_problem(profile: Profile, values: dict) -> str | None:
    """Parameter values inside a parameter (a chapter's ``settings``, a variant)."""
    for key, item in values.items():
        if key not in profile.rule_names():
            return f"{key!r} is not a parameter"
        if (problem := check_value(profile, key, item)):
            return problem
    return None


def _problem(profile: Profile, rule: Rule, value: Any) -> str | None:
    if value is None:
        return None if rule.nullable else "null is not accepted here: give a value"
    if rule.type.startswith("list["):
        if not isinstance(value, list):
            return f"expected a list ({rule.type})"
        item_rule = replace(rule, type=rule.type[5:-1], nullable=False)
        for item in value:
            if (problem := _problem(profile, item_rule, item)):
                return f"item {item!r}: {problem}"
        return None
    if (problem := _scalar_problem(profile, rule.type, value)):
        return problem
    if rule.choices is not None and value not in rule.choices:
        return f"allowed values are {', '.join(map(str, rule.choices))}"
    if rule.bounds is not None and _number(value):
        low, high = rule.bounds
        if (low is not None and value < low) or (high is not None and value > high):
            return (f"must lie in [{low if low is not None else '-inf'}, "
                    f"{high if high is not None else 'inf'}]")
    return None


def check_value(profile: Profile, name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``name`` (None when it is)."""
    problem = _problem(profile, profile.rule(name), value)
    return None if problem is None else f"{name}={value!r}: {problem}"


def _cross_problems(values: dict[str, Any], profile: Profile) -> list[str]:
    """Checks that need two parameters of one step."""
    problems = []
    variants, repeat = values.get("variants"), values.get("repeat")
    if isinstance(repeat, list) and isinstance(variants, list):
        names = [v.get("name") for v in variants if isinstance(v, dict)]
        unknown = [r for r in repeat if r not in names]
        if unknown:
            problems.append(f"repeat={repeat!r}: {unknown} not the name of a variant "
                            f"({names})")
    chapter, settings = values.get("base_chapter"), values.get("settings")
    if chapter in profile.defaults and isinstance(settings, dict):
        unknown = sorted(set(settings) - set(profile.defaults[chapter]))
        if unknown:
            problems.append(f"settings: {unknown} not parameters of {chapter}")
    return problems


def check_values(profile: Profile, values: dict[str, Any], where: str,
                 notebook: str | None = None) -> None:
    """Every value against its rule; one error lists every problem (with base.yaml's
    default for ``notebook``, when given)."""
    defaults = profile.defaults.get(notebook, {}) if notebook else {}
    problems = [p + (f" (default {defaults[name]!r})" if name in defaults else "")
                for name, value in values.items() if (p := check_value(profile, name, value))]
    problems += _cross_problems(values, profile)
    if problems:
        raise ProfileError(f"{where}: " + "; ".join(problems) + ".")


def typed(profile: Profile, name: str, value: Any) -> Any:
    """``value`` with the numbers YAML leaves as text (``1e-3``) made numbers where the
    rule wants a float, also inside lists, ``settings`` and variants."""
    kind = profile.rule(name).type if name in profile.rule_names() else ""
    if kind in ("float", "list[float]") and isinstance(value, str) \
            and NUMBER.fullmatch(value.strip()):
        return float(value)
    if kind == "list[float]" and isinstance(value, list):
        return [typed(profile, name, item) for item in value]
    if kind == "params" and isinstance(value, dict):
        return {k: typed(profile, k, v) for k, v in value.items()}
    if kind == "variants" and isinstance(value, list):
        return [{k: typed(profile, k, v) for k, v in item.items()}
                if isinstance(item, dict) else item for item in value]
    return value


def from_text(profile: Profile, name: str, text: str) -> Any:
    """A ``--set`` value as its parameter reads it: YAML (``3`` an int, ``[8, 16]`` a
    list, ``null``), except that a text parameter keeps the text as written (a folder
    named ``2024`` is "2024", not a number) and ``1e-3`` is a float."""
    kind = profile.rule(name).type if name in profile.rule_names() else ""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        if kind in TEXT:
            return text
        raise ProfileError(f"--set {name}={text}: the value is not valid YAML") from None
    if kind in TEXT:
        return loaded if loaded is None or isinstance(loaded, str) else text.strip()
    return typed(profile, name, loaded)


def from_papermill(profile: Profile, name: str, value: Any) -> Any:
    """A value papermill set (``-p``, ``-r``, ``-y``, ``-f``) as its parameter reads it, so
    that it meets the checks of a ``--set`` value. ``-p`` makes "3" an int and keeps other
    text as text: text given for a number, a list or a mapping is read as ``--set`` reads
    it (``-p datasets "[sartaj, br35h]"``, ``-p subset null``), and a whole number given for
    a text parameter is its digits (``-p data_dir 2024`` is the folder "2024")."""
    kind = profile.rule(name).type if name in profile.rule_names() else ""
    if isinstance(value, str):
        try:
            return from_text(profile, name, value)
        except ProfileError:  # not YAML: left as text, for the rule to refuse by its type
            return value
    if kind in TEXT and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return typed(profile, name, value)


def check_overrides(profile: Profile, steps: list[Step], overrides: dict[str, Any]) -> None:
    """``--set`` values: each must name a parameter of at least one step that runs, with an
    acceptable value. One error lists every problem, before any notebook runs, each with
    the default of the steps that take the parameter."""
    known = {name for step in steps for name in profile.declared(step.notebook)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ProfileError(f"--set {', '.join(unknown)}: no step of this run takes "
                           f"{'this parameter' if len(unknown) == 1 else 'these parameters'}"
                           f". Parameters: {', '.join(sorted(known))}.")
    problems = []
    for name, value in overrides.items():
        if not (problem := check_value(profile, name, value)):
            continue
        by_default: dict[str, list[str]] = {}
        for step in steps:
            if name in profile.declared(step.notebook):
                default = repr(profile.default(step, name))
                by_default.setdefault(default, []).append(step.name)
        problems.append(problem + " (default: " + "; ".join(
            f"{default} in {', '.join(names)}" for default, names in by_default.items()) + ")")
    if not problems:
        for step in steps:
            problems += [f"{p} (step {step.name})" for p in
                         _cross_problems(profile.resolve(step, None, overrides), profile)]
    if problems:
        raise ProfileError("--set " + "; ".join(dict.fromkeys(problems)) + ".")


def chapter_defaults(notebook: str) -> dict[str, Any]:
    """A chapter's parameters as ``base.yaml`` sets them (a notebook opened by hand)."""
    return load_profile(BASE).declared(notebook)


def params_hash(params: dict[str, Any], notebook: Path) -> str:
    """Changes when the parameters or the notebook's source change (used to resume)."""
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode())
    digest.update(notebook.read_bytes())
    return digest.hexdigest()[:16]
