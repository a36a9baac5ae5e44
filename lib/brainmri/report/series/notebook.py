"""What every chapter calls first: its parameters, the run folder, figure style, and
errors shown as one message.

A chapter's ``parameters`` cell declares every parameter of the chapter as a variable
with ``params/base.yaml``'s default and a one-line help (papermill's convention; the cell
is generated from base.yaml, see ``cells``), and ``run_dir``, the run folder::

    subset = None  # type: int|None at most this many images per class and split (null: all)
    ...
    run_dir = None  # type: str|None the run folder, results/<run> of brainmri run; ...

papermill (``-p subset 5``, or ``brainmri run``, which injects the same way) adds a cell
after it that assigns the given values. The next cell reads them back as the ``params``
dict and ``run_dir`` the chapter passes to ``setup`` (``from_globals``: it refuses a name
papermill injected that the chapter does not take, and checks every value as ``brainmri
run --set`` does, before any work, with one message); the rest of the chapter is as it
was. A notebook opened in JupyterLab runs with the defaults.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from brainmri.core import paths
from brainmri.core.errors import BrainMRIError, ProfileError
from brainmri.core.runfolder import RunFolder
from brainmri.report.series import profiles
from brainmri.report.series.failures import ERROR_FILE_ENV
from brainmri.report.show import figures


class Params(SimpleNamespace):
    """A chapter's parameters as attributes (``p.epochs``), plus ``p.run``, its RunFolder."""

    def values(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k not in ("chapter", "run")}


def _short_error(shell, etype, value, tb, tb_offset=None):
    """Show BrainMRIError as its message only: it already says what to do. A refused
    parameter (ProfileError) is the cell's error output, a one-line traceback, so that
    papermill's command line prints it too; other errors stay printed text. Under the
    runner, the name and message are handed over in ``$BRAINMRI_ERROR_FILE`` too."""
    if issubclass(etype, ProfileError):
        shell._showtraceback(etype, value, [f"{etype.__name__}: {value}"])
    else:
        print(f"{etype.__name__}: {value}")
    if os.environ.get(ERROR_FILE_ENV):
        from brainmri.core.files import atomic_write_json

        atomic_write_json({"ename": etype.__name__, "evalue": str(value)},
                          Path(os.environ[ERROR_FILE_ENV]))
    return None


def parameters(chapter: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """``base.yaml``'s values for ``chapter`` with ``params`` laid over them (checked)."""
    defaults = profiles.chapter_defaults(chapter)
    params = dict(params or {})
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ProfileError(f"{chapter}: {unknown} not a parameter of this chapter (it takes: "
                           f"{', '.join(sorted(defaults))}).")
    return {**defaults, **params}


#: papermill's injected cell starts with this comment (``parameterize_notebook``).
INJECTED_HEADER = "# Parameters"
#: What papermill itself may inject (``--inject-paths``): not a chapter's parameters.
PAPERMILL_NAMES = ("PAPERMILL_INPUT_PATH", "PAPERMILL_OUTPUT_PATH")


def injected_names(namespace: dict[str, Any]) -> list[str]:
    """The names papermill's injected-parameters cell assigned, read from IPython's input
    history (``In``): the cells run just before the current one that start with
    papermill's header. Outside IPython, or with no injected cell run, none.

    Why the history rather than comparing ``globals()`` before and after: the cell says
    exactly which names papermill was given, also one that shadows an existing variable,
    and the read-back cell rerun by hand in JupyterLab after later cells defined
    variables does not take those for injected names."""
    inputs = namespace.get("In")
    if not isinstance(inputs, list):
        return []
    names: list[str] = []
    for source in reversed(inputs[:-1]):  # the last input is the cell now running
        if not isinstance(source, str) or not source.lstrip().startswith(INJECTED_HEADER):
            break
        try:
            body = ast.parse(source).body
        except SyntaxError:
            continue
        names += [t.id for node in body if isinstance(node, ast.Assign)
                  for t in node.targets if isinstance(t, ast.Name)]
    return list(dict.fromkeys(names))


def from_globals(chapter: str, namespace: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """``params`` and ``run_dir`` for ``setup``, from the variables the chapter's
    parameters cell and papermill's injected cell set in ``namespace`` (the notebook's
    ``globals()``), checked as ``brainmri run --set`` values are, before any work: a name
    papermill injected that the chapter does not take, or a value its rule refuses,
    raises one ProfileError that lists every problem (shown as that message alone)."""
    _short_errors()
    profile = profiles.load_profile(profiles.BASE)
    defaults = profile.declared(chapter)
    unknown = [n for n in injected_names(namespace)
               if n not in defaults and n != "run_dir" and n not in PAPERMILL_NAMES]
    shadowed = sorted(n for n in [*defaults, "run_dir"]
                      if isinstance(namespace.get(n), types.ModuleType))
    if shadowed:
        raise ProfileError(f"{chapter}: {', '.join(shadowed)} now names a module a later "
                           f"cell imported: run the parameters cell again first.")
    problems = []
    if unknown:
        problems.append(f"{', '.join(unknown)}: not "
                        f"{'a parameter' if len(unknown) == 1 else 'parameters'} of this "
                        f"chapter (papermill --help-notebook lists them; it takes: "
                        f"{', '.join(sorted(defaults))}, run_dir)")
    values = {name: profiles.from_papermill(profile, name, namespace.get(name, default))
              for name, default in defaults.items()}
    try:
        profiles.check_values(profile, values, chapter, chapter)
    except ProfileError as exc:
        problems.append(str(exc).removeprefix(f"{chapter}: ").removesuffix("."))
    if problems:
        raise ProfileError(f"{chapter}: " + "; ".join(problems) + ".")
    run_dir = namespace.get("run_dir")
    if isinstance(run_dir, int) and not isinstance(run_dir, bool):
        run_dir = str(run_dir)  # -p run_dir 2024: the folder "2024"
    if run_dir is not None and not (isinstance(run_dir, (str, os.PathLike))
                                    and os.fspath(run_dir).strip()):
        raise ProfileError(f"{chapter}: run_dir={run_dir!r}: expected a folder (text) or "
                           f"None (default None).")
    return values, run_dir


def local_path(value: str | os.PathLike, name: str) -> Path:
    """A path parameter as the runner injects it, as a path of this machine.

    The runner writes no absolute path into a notebook: a path is relative to the project
    root, or starts with a variable it sets for the kernel (``$BRAIN_MRI_RESULTS/quick``,
    ``$BRAIN_MRI_DATA``)."""
    text = os.path.expandvars(os.fspath(value))
    unset = re.search(r"\$\{?([A-Za-z_]\w*)", text)
    if unset:
        raise BrainMRIError(f"{name}={os.fspath(value)!r} names ${unset.group(1)}, which is not "
                            f"set: export it, or pass the folder itself.")
    path = Path(text).expanduser()
    return path if path.is_absolute() else paths.project_root() / path


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def _short_errors() -> None:
    """In IPython, show BrainMRIError as its message alone (``_short_error``)."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            shell.set_custom_exc((BrainMRIError,), _short_error)
    except ImportError:
        pass


def setup(chapter: str, params: dict[str, Any] | None = None,
          run_dir: str | None = None) -> Params:
    """Call once at the top of a chapter; returns its parameters and run folder."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TensorFlow's Python logger writes to the cell's stdout, and the chapters that train
    # many small models trigger its "tf.function retracing" hint: a page is no log. A
    # filter, not a level: TensorFlow sets the level to INFO when it first logs in Jupyter.
    tf_logger = logging.getLogger("tensorflow")
    if _errors_only not in tf_logger.filters:
        tf_logger.addFilter(_errors_only)
    values = parameters(chapter, params)
    if values.get("data_dir"):
        values["data_dir"] = str(local_path(values["data_dir"], "data_dir"))
    if run_dir is not None:
        run_dir = str(local_path(run_dir, "run_dir"))
    figures.set_style()
    _short_errors()
    return Params(chapter=chapter, run=RunFolder.at(run_dir).create(), **values)
