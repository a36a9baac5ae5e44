"""Each notebook's ``parameters`` cell, generated from ``params/base.yaml``.

A chapter's parameters cell declares every parameter the chapter takes as a top-level
variable with base.yaml's default, its type and a one-line help comment, the papermill
convention::

    subset = None  # type: int|None at most this many images per class and split (null: all)
    variance_image_size = 256  # type: int int in [8, 2048]
    run_dir = None  # type: str|None the run folder, results/<run> of brainmri run; ...

so ``papermill --help-notebook`` lists each with its type, default and help, and ``papermill
nb.ipynb out.ipynb -p subset 5`` sets it (``notebook.setup`` then checks every value as
``brainmri run --set`` does).

Why generated real defaults rather than sentinels ("from base.yaml", real value in the
comment): ``--help-notebook`` then shows each real default as a value, a notebook opened
in JupyterLab reads as what it runs with, and a reader edits a value where it appears.
The defaults still have one home: base.yaml is the source, this module writes the cells
(``make params-cells``, or ``python -m brainmri.report.series.cells``), and a test (and
``--check``) fails when a notebook's cell and base.yaml disagree.

The help of a parameter is the first line of its comment in base.yaml (the chapter's own
comment first, else its shared group's), else what its rule accepts. The cell is
written one parameter a line, with ``# fmt: off`` (ruff would wrap a long line's value
in parentheses and strand its help, which papermill reads from the definition's last
line).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from brainmri.core import paths
from brainmri.core.errors import BrainMRIError
from brainmri.report.series import profiles

#: The cell's first lines (papermill skips comments; the runner and readers see them).
HEADER = ("# Generated from params/base.yaml (make params-cells): change defaults\n"
          "# there. papermill: -p NAME VALUE sets one; --help-notebook lists them.\n"
          "# One line a parameter, its type and help in the comment, as papermill\n"
          "# reads them:\n"
          "# fmt: off")
#: The notebooks' line length (notebooks/ruff.toml): longer values go one item a line.
WIDTH = 76
RUN_DIR_HELP = "the run folder, results/<run> of brainmri run; None: results/interactive"
_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>\w[\w.-]*):(?P<rest>.*)$")


def yaml_comments(text: str) -> dict[tuple[str, ...], str]:
    """{(section, ..., key): its trailing comment} for every key line of a YAML text; a
    comment continued on the next lines (a comment alone, its '#' in the same column) is
    joined to it. base.yaml's values hold no '#'."""
    found: dict[tuple[str, ...], str] = {}
    stack: list[tuple[int, str]] = []
    last: tuple[tuple[str, ...], int] | None = None  # the key and its comment's column
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            if last is not None and line.index("#") == last[1]:
                found[last[0]] += " " + line.split("#", 1)[1].strip()
            continue
        last = None
        match = _KEY.match(line)
        if not match or line.lstrip().startswith("-"):
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        key = tuple(k for _, k in stack)
        found[key] = ""
        if "#" in match["rest"]:
            found[key] = match["rest"].split("#", 1)[1].strip()
            last = (key, line.index("#"))
    return found


#: Words for the types base.yaml's ``rules.types`` names (see its ``rules`` comment).
TYPE_WORDS = {"name": "a plain name (letters, digits, _ . -)", "path": "a file or folder",
              "keras_file": "models/<name>.keras or an absolute path",
              "layer": "a layer index or name", "chapter": "a chapter of params/base.yaml",
              "params": "{parameter: value} over another chapter's",
              "variants": "[{name, also_bn, parameter: value ...}]"}


def rule_words(rule: profiles.Rule) -> str:
    """What a rule accepts, in a few words (the help of a parameter base.yaml leaves
    uncommented)."""
    item = rule.type.removeprefix("list[").removesuffix("]")
    words = TYPE_WORDS.get(item, item or "a value")
    if item != rule.type:
        words = f"a list, each {words}"
    if rule.choices is not None:
        words = "one of " + ", ".join(map(str, rule.choices))
    elif rule.bounds is not None:
        low, high = rule.bounds
        words += (f" in [{low}, {high}]" if high is not None else f", {low} or more") \
            if low is not None else f", up to {high}"
    return words + (", or None" if rule.nullable else "")


def helps(profile: profiles.Profile, chapter: str) -> dict[str, str]:
    """One line of help per parameter of ``chapter``."""
    comments = yaml_comments((paths.params_dir() / f"{profiles.BASE}.yaml").read_text())
    groups = profile.chapters[chapter].get("shared", [])
    out = {}
    for name, value in profile.declared(chapter).items():
        # a shared group's comment only where the chapter keeps the group's value (it
        # may speak of that value: "the report's choice")
        text = comments.get(("chapters", chapter, "params", name)) or next(
            (comments.get(("shared", g, name)) for g in groups
             if name in profile.shared[g] and comments.get(("shared", g, name))
             and profile.shared[g][name] == value), "")
        # papermill reads a line with a second '=' as no parameter at all
        out[name] = (text or rule_words(profile.rule(name))).replace("=", ":")
    return out


def literal(value: Any) -> str:
    """A YAML value as Python source (ruff's double quotes)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    raise BrainMRIError(f"no Python literal for {value!r}")


#: A rule's type as papermill's ``--help-notebook`` shows it (its ``# type:`` comment).
PYTHON_TYPES = {"bool": "bool", "int": "int", "float": "float", "str": "str", "name": "str",
                "path": "str", "keras_file": "str", "chapter": "str", "layer": "int|str",
                "params": "dict", "variants": "list[dict]"}


def type_name(rule: profiles.Rule) -> str:
    """``int``, ``list[str]``, ``str|None``: a type comment without spaces (papermill reads
    the comment's type up to the first space); "" when the rule names none."""
    kind = rule.type
    if kind.startswith("list[") and kind.endswith("]"):
        inner = PYTHON_TYPES.get(kind[5:-1], "")
        shown = f"list[{inner}]" if inner else "list"
    else:
        shown = PYTHON_TYPES.get(kind, "")
    return f"{shown}|None" if shown and rule.nullable else shown


def _assignment(name: str, value: Any, help_text: str, kind: str = "") -> str:
    """``name = value  # type: T help`` on one line, or a long list or mapping one item a
    line with the comment after its closing bracket (papermill takes the type and the
    help from the last line of a definition). A type comment, not an annotation: the cell
    runs as written, and an annotation would be evaluated."""
    comment = f"# type: {kind} {help_text}" if kind else f"# {help_text}"
    text = literal(value)
    if len(f"{name} = {text}") <= WIDTH or not isinstance(value, (list, dict)) or not value:
        return f"{name} = {text}  {comment}"
    items = ([f"{literal(k)}: {literal(v)}" for k, v in value.items()]
             if isinstance(value, dict) else [literal(v) for v in value])
    opening, closing = "{}" if isinstance(value, dict) else "[]"
    return "\n".join([f"{name} = {opening}", *(f"    {item}," for item in items),
                      f"{closing}  {comment}"])


def cell_source(chapter: str, profile: profiles.Profile | None = None) -> str:
    """The ``parameters`` cell of ``chapter``: base.yaml's groups, then its own values."""
    profile = profile or profiles.load_profile(profiles.BASE)
    declared, info = profile.declared(chapter), helps(profile, chapter)
    own = profile.chapters[chapter].get("params") or {}
    sections = [(f"shared.{group}", [n for n in profile.shared[group] if n not in own])
                for group in profile.chapters[chapter].get("shared", [])]
    sections.append((f"chapters.{chapter}", list(own)))
    lines = [HEADER]
    for title, names in sections:
        if names:
            lines += ["", f"# {title}"]
            lines += [_assignment(n, declared[n], info[n], type_name(profile.rule(n)))
                      for n in names]
    lines += ["", f"run_dir = None  # type: str|None {RUN_DIR_HELP}"]
    return "\n".join(lines)


#: The cell after the parameters (and papermill's injected) cell: the chapter's values
#: back as the ``params`` dict and ``run_dir`` that its setup takes, checked.
READ_BACK = ("from brainmri.report.series import notebook\n\n"
             'params, run_dir = notebook.from_globals("{chapter}", globals())')
READ_BACK_TAGS = ["remove-cell"]  # plumbing, as the parameters cell: not on the page


def parameters_cell(nb) -> Any:
    """The notebook's cell tagged ``parameters``."""
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise BrainMRIError(f"expected one cell tagged 'parameters', found {len(tagged)}")
    return tagged[0]


def _read_back(nb) -> Any | None:
    """The read-back cell right after the parameters cell, if there is one."""
    index = nb.cells.index(parameters_cell(nb))
    after = nb.cells[index + 1] if index + 1 < len(nb.cells) else None
    if after is not None and after.cell_type == "code" \
            and "notebook.from_globals(" in after.source:
        return after
    return None


def _differs(nb, chapter: str, profile: profiles.Profile) -> bool:
    after = _read_back(nb)
    return (parameters_cell(nb).source != cell_source(chapter, profile) or after is None
            or after.source != READ_BACK.format(chapter=chapter)
            or after.metadata.get("tags") != READ_BACK_TAGS)


def stale(notebooks: list[Path] | None = None) -> list[str]:
    """The notebooks whose parameters cell (or the read-back cell after it) differs from
    what base.yaml generates."""
    import nbformat

    profile = profiles.load_profile(profiles.BASE)
    return [path.name for path in notebooks or _chapter_notebooks(profile)
            if _differs(nbformat.read(path, 4), path.stem, profile)]


def write(notebooks: list[Path] | None = None) -> list[str]:
    """Rewrite the parameters cells (and read-back cells) that differ from base.yaml,
    every other cell and every cell id kept; returns the names of the notebooks
    written."""
    import nbformat

    profile = profiles.load_profile(profiles.BASE)
    written = []
    for path in notebooks or _chapter_notebooks(profile):
        nb = nbformat.read(path, 4)
        if not _differs(nb, path.stem, profile):
            continue
        cell = parameters_cell(nb)
        cell.source = cell_source(path.stem, profile)
        after = _read_back(nb)
        if after is None:
            after = nbformat.v4.new_code_cell()
            nb.cells.insert(nb.cells.index(cell) + 1, after)
        after.source = READ_BACK.format(chapter=path.stem)
        after.metadata["tags"] = list(READ_BACK_TAGS)
        nbformat.write(nb, path)
        written.append(path.name)
    return written


def _chapter_notebooks(profile: profiles.Profile) -> list[Path]:
    return [p for p in sorted(paths.notebooks_dir().glob("*.ipynb"))
            if p.stem in profile.chapters]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m brainmri.report.series.cells",
        description="Write each notebook's parameters cell from params/base.yaml.")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a cell differs from base.yaml")
    args = parser.parse_args(argv)
    try:
        if args.check:
            differ = stale()
            for name in differ:
                print(f"{name}: parameters cell differs from params/base.yaml "
                      f"(run make params-cells)")
            return 1 if differ else 0
        for name in write():
            print(f"wrote the parameters cell of {name}")
    except BrainMRIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
