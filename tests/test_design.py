"""The design rules the README promises, checked on the code itself:

- imports point one way, from later stages to earlier ones;
- every parameter default lives in params/base.yaml only: no notebook assigns a parameter
  a value, and no library signature repeats a default that base.yaml gives.
"""

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import nbformat
import pytest

import brainmri
from brainmri.core import paths
from brainmri.report import profiles

STAGES = {"core": 0, "data": 1, "modeling": 2, "evaluation": 3, "report": 4, "cli": 5,
          "__main__": 5}
LIB = Path(brainmri.__file__).parent


def _stage(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "brainmri" or len(parts) == 1:
        return None  # the package root holds only CLASS_NAMES and the version
    return STAGES[parts[1]]


def _module_name(path: Path) -> str:
    rel = path.relative_to(LIB.parent).with_suffix("")
    return ".".join(p for p in rel.parts if p != "__init__")


def test_imports_point_from_later_stages_to_earlier_ones():
    upward = []
    for path in sorted(LIB.rglob("*.py")):
        own = _module_name(path)
        own_stage = _stage(own)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                if target.split(".")[0] != "brainmri" or own_stage is None:
                    continue
                try:
                    stage = _stage(target)
                except KeyError:
                    continue  # "from brainmri.x import name": the module itself is checked
                if stage is not None and stage > own_stage:
                    upward.append(f"{own} imports {target}")
    assert not upward, "\n".join(upward)


def test_every_subpackage_says_what_it_holds():
    for info in pkgutil.iter_modules([str(LIB)]):
        if info.name == "__main__":
            continue
        module = importlib.import_module(f"brainmri.{info.name}")
        assert module.__doc__ and len(module.__doc__.split()) >= 8, info.name
        if info.ispkg:
            assert info.name in STAGES, f"brainmri.{info.name} is not a known stage"


def _base_values() -> dict[str, list]:
    """Every value base.yaml gives each parameter (shared groups and chapters)."""
    base = profiles.load_profile("base")
    values: dict[str, list] = {}
    for notebook in base.chapters:
        for name, value in base.declared(notebook).items():
            values.setdefault(name, []).append(value)
    return values


def _library_callables():
    for info in pkgutil.walk_packages([str(LIB)], prefix="brainmri."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{info.name}.{name}", obj
            elif inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if inspect.isfunction(member):
                        yield f"{info.name}.{name}.{attr}", member
                if hasattr(obj, "__dataclass_fields__"):
                    yield f"{info.name}.{name}", obj


def test_no_library_signature_repeats_a_default_of_base_yaml():
    values = _base_values()
    repeated = []
    for where, fn in _library_callables():
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            continue
        for name, param in signature.parameters.items():
            if name not in values or param.default is inspect.Parameter.empty:
                continue
            if param.default is not None and param.default in values[name]:
                repeated.append(f"{where}({name}={param.default!r})")
    assert not repeated, "defaults written a second time:\n" + "\n".join(repeated)


def test_notebooks_declare_names_and_assign_no_parameter_a_value():
    names = set(_base_values())
    for path in sorted(paths.notebooks_dir().glob("*.ipynb")):
        nb = nbformat.read(path, 4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assigned = {t.id for node in ast.parse(cell.source).body
                    for t in getattr(node, "targets", []) if isinstance(t, ast.Name)}
        assert assigned == {"params", "run_dir"}, path.name
        assert "params = {}" in cell.source, path.name
        for c in nb.cells:
            if c.cell_type != "code":
                continue
            for node in ast.walk(ast.parse(c.source)):
                if isinstance(node, ast.Assign):
                    for t in node.targets:
                        if isinstance(t, ast.Name) and t.id in names:
                            pytest.fail(f"{path.name} assigns the parameter {t.id!r}")


def test_every_parameter_has_a_type_and_a_range_or_choices():
    """Each parameter of base.yaml's chapters and shared groups has a rule that fixes its
    type, and a range (numbers), choices (free text) or a shape (names, paths) that
    bounds it; every value base.yaml gives passes it."""
    base = profiles.load_profile("base")
    values = _base_values()
    for group in base.shared.values():
        assert set(group) <= set(values)
    uncovered, failing = [], []
    for name, given in sorted(values.items()):
        rule = base.rule(name)
        kind = rule.type.removeprefix("list[").removesuffix("]")
        if kind in ("int", "float", "layer") and rule.bounds is None:
            uncovered.append(f"{name}: {rule.type} without a range")
        elif kind == "str" and rule.choices is None:
            uncovered.append(f"{name}: text without choices (or a name/path type)")
        elif kind not in profiles.TYPES:
            uncovered.append(f"{name}: no type ({rule.type!r})")
        failing += [f"{name}={v!r}: {p}" for v in given
                    if (p := profiles.check_value(base, name, v))]
    assert not uncovered, "\n".join(uncovered)
    assert not failing, "\n".join(failing)
    unused = set(base.rules.get("types", {})) | set(base.rules.get("ranges", {})) \
        | set(base.rules.get("choices", {}))
    assert unused <= set(values), f"rules for no parameter: {sorted(unused - set(values))}"


def test_model_name_choices_are_the_builders():
    from brainmri.modeling import builders

    base = profiles.load_profile("base")
    assert set(base.rule("model_name").choices) == set(builders.BUILDERS)
