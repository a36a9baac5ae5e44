"""The design rules the README promises, checked on the code itself:

- imports point one way, from later stages to earlier ones;
- every parameter default lives in params/base.yaml only: no notebook assigns a parameter
  a value (but the parameters cell, which base.yaml generates), and no library signature,
  module constant, command-line option or notebook call repeats a value that base.yaml
  gives a parameter of the same or a related name.
"""

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import nbformat
import pytest

import brainmri
from brainmri.core import paths
from brainmri.report.series import profiles

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


def _import_targets(path: Path):
    """Every name a module imports, lazy imports included: ``a.b`` for ``import a.b``,
    ``a.b`` and ``a.b.c`` for ``from a.b import c``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def test_imports_point_from_later_stages_to_earlier_ones():
    upward = []
    for path in sorted(LIB.rglob("*.py")):
        own = _module_name(path)
        own_stage = _stage(own)
        for target in _import_targets(path):
            if target.split(".")[0] != "brainmri" or own_stage is None:
                continue
            try:
                stage = _stage(target)
            except KeyError:
                continue  # "from brainmri.x import name": the module itself is checked
            if stage is not None and stage > own_stage:
                upward.append(f"{own} imports {target}")
    assert not upward, "\n".join(upward)


def _module_names() -> set[str]:
    return {_module_name(path) for path in LIB.rglob("*.py")}


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The library modules ``path`` imports, at the top or inside a function (a lazy
    import hides a cycle, it does not remove it); ``from package import module`` counts
    as importing the module."""
    own = _module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1 packages
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != own}
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan's algorithm): each is
    a set of modules that import each other, directly or through others."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


#: The report's layers, bottom first: a layer imports only from the ones below it.
REPORT_LAYERS = {"show": 0, "series": 1, "studies": 2, "publish": 3, "interactive": 3}


def test_the_report_layers_import_downward_only():
    upward = []
    for path in sorted((LIB / "report").rglob("*.py")):
        own = _module_name(path).split(".")
        if len(own) < 3:
            continue  # the package's own __init__
        for target in _import_targets(path):
            parts = target.split(".")
            if parts[:2] != ["brainmri", "report"] or len(parts) < 3:
                continue
            if REPORT_LAYERS[parts[2]] > REPORT_LAYERS[own[2]] or (
                    parts[2] != own[2] and REPORT_LAYERS[parts[2]] == REPORT_LAYERS[own[2]]):
                upward.append(f"{'.'.join(own)} imports {target}")
    assert not upward, "report layers imported upward or sideways:\n" + "\n".join(upward)


def test_no_import_cycle_anywhere_in_the_library():
    modules = _module_names()
    graph = {_module_name(path): _imports(path, modules) for path in LIB.rglob("*.py")}
    cycles = import_cycles(graph)
    assert not cycles, "modules that import each other: " + "; ".join(
        " <-> ".join(group) for group in cycles)


def test_the_cycle_rule_finds_a_cycle_through_a_lazy_import():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_every_subpackage_says_what_it_holds():
    for info in pkgutil.iter_modules([str(LIB)]):
        if info.name == "__main__":
            continue
        module = importlib.import_module(f"brainmri.{info.name}")
        assert module.__doc__ and len(module.__doc__.split()) >= 8, info.name
        if info.ispkg:
            assert info.name in STAGES, f"brainmri.{info.name} is not a known stage"
    # the subpackages inside a stage (report.series, report.show, ...) as well
    for info in pkgutil.walk_packages([str(LIB)], prefix="brainmri."):
        if info.ispkg:
            module = importlib.import_module(info.name)
            assert module.__doc__ and len(module.__doc__.split()) >= 8, info.name


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


def _words(name: str) -> set[str]:
    return {w for w in name.lower().strip("-").replace("-", "_").split("_") if w}


def _related(name: str, parameter: str) -> bool:
    """``name`` is ``parameter``, or names a part of it: each of its words of three
    letters or more is a word of the parameter (``n_bins`` and ``ece_bins``, ``steps``
    and ``ig_steps``, ``FALSE_ALARM_RATE`` and ``ood_false_alarm_rate``)."""
    if name.lower() == parameter:
        return True
    words = {w for w in _words(name) if len(w) >= 3}
    return bool(words) and words <= _words(parameter)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _repeats(name: str, value, values: dict[str, list]) -> str | None:
    """The base.yaml parameter whose value ``value`` (under ``name``) writes a second
    time, if any. A number counts under a related name; text and flags (True/False)
    only under the same name, since a model's or a file's own name and every on/off
    switch share values with some parameter by nature."""
    if value is None or isinstance(value, (list, tuple, dict, set)):
        return None
    for parameter, given in values.items():
        if _number(value):
            if _related(name, parameter) and any(_number(v) and v == value for v in given):
                return parameter
        elif name.lower().strip("-").replace("-", "_") == parameter and any(
                type(v) is type(value) and v == value for v in given):
            return parameter
    return None


#: Defaults the value rule matches that are not a parameter's default, and why.
NOT_A_PARAMETER = {
    "brainmri.data.nonmri.synthetic(size)": "the side of the synthetic non-MRI pictures "
                                            "the OOD checks are measured on, not a model input",
    "brainmri.data.nonmri.framed(size)": "the side of the black square the framed photos "
                                         "sit on, as for the synthetic ones",
}


def test_no_library_signature_repeats_a_default_of_base_yaml():
    values = _base_values()
    repeated = []
    for where, fn in _library_callables():
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            continue
        for name, param in signature.parameters.items():
            if param.default is inspect.Parameter.empty:
                continue
            if f"{where}({name})" in NOT_A_PARAMETER:
                continue
            if parameter := _repeats(name, param.default, values):
                repeated.append(f"{where}({name}={param.default!r}): base.yaml's {parameter}")
    assert not repeated, "defaults written a second time:\n" + "\n".join(repeated)


def test_no_module_constant_repeats_a_value_of_base_yaml():
    """A named constant (UPPER_CASE) is a default in disguise when base.yaml gives a
    parameter of that name the same value (``ood.FALSE_ALARM_RATE = 0.01`` beside
    ``ood_false_alarm_rate: 0.01``)."""
    values = _base_values()
    repeated = []
    for info in pkgutil.walk_packages([str(LIB)], prefix="brainmri."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if name.isupper() and (parameter := _repeats(name, value, values)):
                repeated.append(f"{info.name}.{name} = {value!r}: base.yaml's {parameter}")
    assert not repeated, "values written a second time:\n" + "\n".join(repeated)


def _option_defaults(source: str):
    """(option, default) of every ``add_argument("--option", default=<literal>)``."""
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_argument" and node.args
                and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).startswith("--")):
            for keyword in node.keywords:
                if keyword.arg == "default" and isinstance(keyword.value, ast.Constant):
                    yield node.args[0].value, keyword.value.value


def test_no_command_line_option_repeats_a_default_of_base_yaml():
    """``brainmri predict --batch-size`` and the like read their default from base.yaml
    (or from the model's sidecar) instead of writing it again."""
    values = _base_values()
    repeated = [f"{path.relative_to(LIB)}: {option} default={default!r}: base.yaml's {p}"
                for path in sorted(LIB.rglob("*.py"))
                for option, default in _option_defaults(path.read_text())
                if (p := _repeats(option, default, values))]
    assert not repeated, "\n".join(repeated)


def test_design_rules_catch_the_leaks_they_were_written_for():
    """The value rules on examples of the leaks issue 20 closed."""
    values = {"ece_bins": [15], "ig_steps": [80], "mask_threshold": [0.1],
              "target_sensitivity": [0.99], "ood_false_alarm_rate": [0.01],
              "batch_size": [32, 16], "balance": [False], "n_examples": [4]}
    assert _repeats("n_bins", 15, values) == "ece_bins"
    assert _repeats("steps", 80, values) == "ig_steps"
    assert _repeats("threshold", 0.1, values) == "mask_threshold"
    assert _repeats("target", 0.99, values) == "target_sensitivity"
    assert _repeats("FALSE_ALARM_RATE", 0.01, values) == "ood_false_alarm_rate"
    assert _repeats("--batch-size", 32, values) == "batch_size"
    assert _repeats("n_bins", 10, values) is None  # another value: not the same default
    assert _repeats("augment_balance", False, values) is None  # flags: same name only
    assert _repeats("balance", False, values) == "balance"
    assert _repeats("n", 4, values) is None  # words under three letters say nothing
    assert list(_option_defaults('p.add_argument("--batch-size", type=int, default=32)')) \
        == [("--batch-size", 32)]


def test_notebooks_declare_names_and_assign_no_parameter_a_value():
    """The parameters cell declares the chapter's parameters with base.yaml's values, as
    base.yaml generates it (issue 37: papermill's convention; tests/test_papermill_cli.py
    compares the values); no other cell assigns a parameter."""
    from brainmri.report.series import cells

    base = profiles.load_profile("base")
    names = set(_base_values())
    for path in sorted(paths.notebooks_dir().glob("*.ipynb")):
        nb = nbformat.read(path, 4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assigned = {t.id for node in ast.parse(cell.source).body
                    for t in getattr(node, "targets", []) if isinstance(t, ast.Name)}
        assert assigned == {*base.declared(path.stem), "run_dir"}, path.name
        assert cell.source == cells.cell_source(path.stem, base), path.name
        for c in nb.cells:
            if c.cell_type != "code" or c is cell:
                continue
            for node in ast.walk(ast.parse(c.source)):
                if isinstance(node, ast.Assign):
                    for t in node.targets:
                        if isinstance(t, ast.Name) and t.id in names:
                            pytest.fail(f"{path.name} assigns the parameter {t.id!r}")


def test_notebook_calls_pass_parameters_not_their_values():
    """A chapter passes ``p.batch_size``, never ``batch_size=16``: a literal keyword
    argument equal to one of the chapter's base.yaml values under a related name (see
    ``_repeats``) is a default written a second time. The parameters cell itself holds
    base.yaml's values as base.yaml generates it (the test above)."""
    base = profiles.load_profile("base")
    repeated = []
    for path in sorted(paths.notebooks_dir().glob("*.ipynb")):
        if path.stem not in base.chapters:
            continue
        values = {name: [value] for name, value in base.declared(path.stem).items()}
        for c in nbformat.read(path, 4).cells:
            if c.cell_type != "code":
                continue
            for node in ast.walk(ast.parse(c.source)):
                for keyword in getattr(node, "keywords", []) if isinstance(node, ast.Call) \
                        else []:
                    if keyword.arg and isinstance(keyword.value, ast.Constant) and (
                            parameter := _repeats(keyword.arg, keyword.value.value, values)):
                        repeated.append(f"{path.name}: {keyword.arg}="
                                        f"{keyword.value.value!r} is {parameter}'s value")
    assert not repeated, "\n".join(repeated)


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


def test_dataset_choices_and_display_names_come_from_the_registries():
    """Dataset and model names are listed once (data.sources, modeling.builders); the
    rules of base.yaml, which YAML cannot import, are checked against them."""
    from brainmri.data import sources
    from brainmri.evaluation import published
    from brainmri.modeling import builders

    base = profiles.load_profile("base")
    home = set(sources.HOME_DATASETS)
    assert set(base.rule("dataset").choices) == home
    assert set(base.rule("extra_training").choices) == home
    assert set(base.rule("external_dataset").choices) == home | {"auto"}
    assert set(base.rule("datasets").choices) == set(sources.DATASETS)
    assert set(base.rule("drop_source").choices) <= set(sources.DATASETS)
    assert {n for n in base.rule("external_binary").choices
            if n is not None} <= set(sources.DATASETS) - home
    assert set(sources.DISPLAY) == set(sources.DATASETS)
    assert set(builders.DISPLAY) == set(builders.BUILDERS)
    assert set(published.REPORT_000) | set(published.REPORT_001) <= set(published.DISPLAY)
    assert {published.REPORT_000_DATASET, published.REPORT_001_DATASET} == home


# --- the book's words live in its Markdown (issue 29) ----------------------------------

#: Calls whose strings label rather than narrate: errors, logs, figure and table labels.
_LABEL_CALLS = {"error", "warning", "warn", "info", "debug", "print", "note", "echo", "fail",
                "set_title", "set_xlabel", "set_ylabel", "suptitle", "legend",
                "annotate", "set", "table", "title", "xlabel", "ylabel", "set_xticklabels",
                "set_yticklabels", "bar_label", "rate_column", "rename", "assign", "agg"}
_WORD = re.compile(r"(?<![\w-])[A-Za-z][a-z'-]+(?![\w-])")
#: Most lines of functions in the book's layers (``studies``, ``show``, ``publish``) that
#: build sentences: 428 before the last sentences moved into the chapters' Markdown
#: (issue 29), 120 after, all of it page furniture.
SENTENCE_CODE_BUDGET = 150


def _literal(node: ast.AST) -> str:
    if isinstance(node, ast.Constant):
        return node.value
    return "".join(v.value if isinstance(v, ast.Constant) else " {} " for v in node.values)


def sentence_builders(source: str) -> dict[str, int]:
    """Functions of ``source`` holding a string of four words or more that is not an error,
    a log line, a label, a dict key, a column name or a comparison: ``{name: lines}``."""
    found = {}
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef):
            continue
        body = fn.body[1:] if ast.get_docstring(fn) else fn.body
        skip = set()
        for node in (n for stmt in body for n in ast.walk(stmt)):
            if isinstance(node, ast.Raise):
                skip |= {id(x) for x in ast.walk(node)}
            elif isinstance(node, ast.Call):
                func = getattr(node.func, "attr", getattr(node.func, "id", ""))
                labels = [kw.value for kw in node.keywords
                          if kw.arg in {"caption", "title", "label", "help"}]
                for part in ([node] if func in _LABEL_CALLS else labels):
                    skip |= {id(x) for x in ast.walk(part)}
            elif isinstance(node, ast.Subscript):
                skip |= {id(x) for x in ast.walk(node.slice)}
            elif isinstance(node, (ast.Compare, ast.Tuple, ast.List)):
                skip |= {id(x) for x in ast.walk(node) if not isinstance(x, ast.JoinedStr)}
            elif isinstance(node, ast.Dict):
                skip |= {id(x) for k in node.keys if k is not None for x in ast.walk(k)}
        if any(id(n) not in skip and len(_WORD.findall(_literal(n))) >= 4
               for stmt in body for n in ast.walk(stmt)
               if isinstance(n, ast.JoinedStr)
               or (isinstance(n, ast.Constant) and isinstance(n.value, str))):
            found[fn.name] = fn.end_lineno - fn.lineno + 1
    return found


def test_sentences_are_written_in_markdown_not_built_in_python():
    """A chapter's sentences live in its Markdown, with numbers and rule words glued
    (CONTRIBUTING.md, "Where the words live"); the book's library layers keep only page
    furniture (a skipped page's notice, a footnote on few cases) and short rule words as
    named constants."""
    lines = {f"{path.relative_to(LIB)}:{name}": n
             for layer in ("studies", "show", "publish")
             for path in sorted((LIB / "report" / layer).glob("*.py"))
             for name, n in sentence_builders(path.read_text()).items()}
    assert sum(lines.values()) <= SENTENCE_CODE_BUDGET, lines


def test_the_sentence_count_finds_a_sentence_and_not_a_label():
    builds = '''
def words(x):
    """Docstrings are not counted."""
    return {"seeds": f"{x} to {x} over {x} seeds, against one model's interval"}
'''
    labels = '''
def table(frame, x):
    if frame["held-out correct tumour images"] is None:
        raise ValueError(f"no column named {x} in this frame at all")
    return frames.table(frame, {"found": "Br35H tumours found at threshold"},
                        caption="Images classified right, by evaluation set")
'''
    assert sentence_builders(builds) == {"words": 3}
    assert sentence_builders(labels) == {}
