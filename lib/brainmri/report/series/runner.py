"""Run the notebook series with papermill: ``brainmri run --profile quick``.

Each step's executed notebook goes to ``results/<run>/notebooks/``; machine-readable
results are written by the notebooks themselves into ``results/<run>/``. A step that
fails stops the run with the notebook and cell named, and its partial notebook kept.
Rerunning with the same parameters resumes after the last step that succeeded: steps
are skipped while their parameters, notebook source and library code are unchanged.

Every argument (run name, steps, ``--set`` values, datasets) is checked before anything
is written; then the runner holds a lock on the run folder, so a second runner of the
same run fails at once. The console shows one line per step; what the kernels and
libraries print besides (start-up notices, TensorFlow and absl lines, warnings) goes to
``results/<run>/logs/<step>.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import logging
import os
import re
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from brainmri.core import paths
from brainmri.core.errors import BrainMRIError
from brainmri.core.files import atomic_write_json, atomic_write_text, read_json
from brainmri.core.progress import ENV as PROGRESS_ENV
from brainmri.core.runfolder import RunFolder, name_problem
from brainmri.report.series.environment import describe_environment, git_revision
from brainmri.report.series.profiles import (
    Step,
    check_overrides,
    check_values,
    from_text,
    load_profile,
    params_hash,
)

KERNEL = "python3"
#: How an executed notebook names folders outside the project: the variables the runner
#: sets for the step's kernel (``notebook.setup`` expands them), so no absolute path of
#: the machine that ran the series is written into a notebook.
RESULTS_ENV = "BRAIN_MRI_RESULTS"
DATA_ENV = "BRAIN_MRI_DATA"
#: What the book does not show: papermill's injected-parameters cell and the chapter's
#: own parameters cell (plumbing; the values are in params.yaml and the appendix).
HIDDEN_CELLS = ("injected-parameters", "parameters")
HIDE_TAG = "remove-cell"


def library_hash() -> str:
    """Changes when any module of the package changes (a step then reruns)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha1()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _select(steps: list[Step], only: str | None) -> list[Step]:
    if not only:
        return steps
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen = [s for s in steps if any(s.name == w or s.name.startswith(w) or s.notebook == w
                                      for w in wanted)]
    if not chosen:
        raise BrainMRIError(f"--only {only!r} matches no step. Steps: "
                            + ", ".join(s.name for s in steps))
    return chosen


def _check_data(resolved: dict[str, dict]) -> dict[str, dict]:
    """Locate every dataset the steps use before starting (clear error, no traceback)."""
    from brainmri.data.sources import fingerprint, locate

    wanted: dict[str, str | None] = {}
    for params in resolved.values():
        names = list(params.get("datasets") or []) + (
            [params["dataset"]] if params.get("dataset") else [])
        for name in names:
            wanted.setdefault(name, params.get("data_dir"))
    out = {}
    for name, data_dir in sorted(wanted.items()):
        root = locate(name, data_dir)
        out[name] = {"path": _portable_data_root(name, root),
                     "fingerprint": fingerprint(root)}
    return out


def _shown(path: Path) -> str:
    """A path as the terminal shows it: relative to the project when inside it."""
    path = Path(path).resolve()
    root = paths.project_root().resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _inside_project(path: Path) -> str | None:
    """``path`` relative to the project root (posix), or None when it lies outside."""
    path, root = Path(path).expanduser().resolve(), paths.project_root().resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else None


def _portable_data_root(name: str, root: Path) -> str:
    """Where a dataset was found, as environment.json records it: project-relative,
    under ``$BRAIN_MRI_DATA``, or else only the dataset's name."""
    inside = _inside_project(root)
    if inside is not None:
        return inside
    env = os.environ.get(DATA_ENV)
    if env and Path(root).resolve().is_relative_to(Path(env).expanduser().resolve()):
        rel = Path(root).resolve().relative_to(Path(env).expanduser().resolve()).as_posix()
        return f"${DATA_ENV}" + ("" if rel == "." else f"/{rel}")
    return f"<{name}: outside the project>"


def _portable(run: RunFolder, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The values injected into a step's notebook, and the environment its kernel needs.

    Paths are written relative to the project root (``notebook.setup`` resolves them from
    there). A run folder outside the project becomes ``$BRAIN_MRI_RESULTS/<run>`` and an
    explicit ``data_dir`` outside it ``$BRAIN_MRI_DATA``, with the variable set for the
    kernel to the location as given: the notebook records the name, not the machine's path.
    """
    env: dict[str, str] = {}
    run_dir = _inside_project(run.root)
    if run_dir is None:
        run_dir = f"${RESULTS_ENV}/{run.root.name}"
        env[RESULTS_ENV] = str(run.root.parent)
    params = dict(params)
    if params.get("data_dir"):
        data_dir = Path(params["data_dir"]).expanduser().absolute()
        inside = _inside_project(data_dir)
        if inside is None:
            env[DATA_ENV] = str(data_dir)
            params["data_dir"] = f"${DATA_ENV}"
        else:
            params["data_dir"] = inside
    # papermill's own way: one variable per parameter of the chapter, as its parameters
    # cell declares them (``papermill -p NAME VALUE`` gives the same cell)
    return {**params, "run_dir": run_dir}, env


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    """Set environment variables for one step's kernel (it inherits the runner's)."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _kernel_manager(log):
    """A kernel manager class whose kernels write their own stdout and stderr to ``log``:
    the kernel's start-up notices ("[IPKernelApp] WARNING | Kernel is running over TCP
    ...") and whatever it prints outside a cell's output reach the log, not the console."""
    from jupyter_client.manager import AsyncKernelManager

    class StepKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            kw.setdefault("stdout", log)
            kw.setdefault("stderr", log)
            return await super().start_kernel(**kw)

    return StepKernelManager


def _execute(step: Step, params: dict[str, Any], run: RunFolder, output: Path) -> None:
    import papermill

    # Inside the executed notebooks, progress bars would be stored line by line; at a
    # terminal the runner shows papermill's per-cell bar instead.
    os.environ[PROGRESS_ENV] = "0"
    injected, env = _portable(run, params)
    with _environ(env), open(run.step_log(step.name), "ab") as log:
        papermill.execute_notebook(
            str(step.source), str(output), parameters=injected, kernel_name=KERNEL,
            progress_bar=({"desc": f"  {step.name}", "leave": False} if sys.stderr.isatty()
                          else False),
            log_output=False, cwd=str(step.source.parent), request_save_on_cell_execute=True,
            kernel_manager_class=_kernel_manager(log),
        )


# --- what the console does not show ------------------------------------------------------

_LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


class _RunLog(logging.FileHandler):
    """The runner's log file handler (one at a time: a step's log replaces run.log)."""


@contextlib.contextmanager
def _logging_to(path: Path):
    """Log records and warnings of this process go to ``path`` (appended) meanwhile, not
    to the console (a record that finds a handler is not printed by logging's last
    resort)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _RunLog(path, mode="a", encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    root = logging.getLogger()
    outer = [h for h in root.handlers if isinstance(h, _RunLog)]
    for h in outer:
        root.removeHandler(h)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        for h in outer:
            root.addHandler(h)


@contextlib.contextmanager
def _locked(folder: RunFolder):
    """Hold ``folder`` for this runner (an exclusive flock on its lock file, which holds
    our pid): a second runner of the same run fails at once instead of writing the same
    files. The lock goes with the process, even when it is killed."""
    import fcntl

    folder.create()
    fd = os.open(folder.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise BrainMRIError(f"cannot lock {_shown(folder.lock)} ({exc.strerror}): "
                                f"choose a --results-dir on a local disk.") from None
        raise BrainMRIError(
            f"run {folder.name!r} is in use by another brainmri run (pid {holder}; lock "
            f"file {_shown(folder.lock)}). Wait for it to finish, or give this run another "
            f"name with --run.") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


# --- the executed notebook as the book shows it ----------------------------------------

def _machine_paths(env: dict[str, str]) -> dict[str, str]:
    """{absolute path of this machine: how a notebook shows it}. ``""`` stands for the
    project root (its paths become project-relative)."""
    shown: dict[str, str] = {}

    def add(path: str | os.PathLike | None, label: str) -> None:
        if not path:
            return
        for form in (Path(path).expanduser().absolute(), Path(path).expanduser().resolve()):
            text = form.as_posix().rstrip("/")
            if text and text != "/" and text not in shown:
                shown[text] = label

    add(paths.project_root(), "")
    python = sysconfig.get_paths()
    # paths inside the project are shown relative to it: only the others get a name
    outside = [*((value, f"${name}") for name, value in env.items()),
               (os.environ.get(RESULTS_ENV), f"${RESULTS_ENV}"),
               (os.environ.get(DATA_ENV), f"${DATA_ENV}"),
               (os.environ.get("BRAIN_MRI_CACHE"), "$BRAIN_MRI_CACHE"),
               (os.environ.get("BRAIN_MRI_PARAMS"), "$BRAIN_MRI_PARAMS"),
               (paths.notebooks_dir(), "notebooks"),
               (python.get("purelib"), "<site-packages>"),
               (python.get("platlib"), "<site-packages>"),
               (python.get("stdlib"), "<python>"), (sys.prefix, "<python>"),
               (sys.base_prefix, "<python>"), (Path.home(), "~"),
               (tempfile.gettempdir(), "$TMPDIR")]
    for path, label in outside:
        if path and _inside_project(Path(path)) is None:
            add(path, label)
    return shown


def _scrubber(env: dict[str, str]):
    """A function that rewrites every absolute path of this machine in a text."""
    shown = _machine_paths(env)
    alternatives = "|".join(re.escape(p) for p in sorted(shown, key=len, reverse=True))
    pattern = re.compile(rf"(?P<path>{alternatives})(?P<sep>/|(?![\w.-]))")
    # IPython files a cell's code under a temporary name ("/tmp/ipykernel_12/345.py:6:
    # SomeWarning ..."): shown as <cell>.
    temp = {Path(tempfile.gettempdir()).absolute().as_posix(),
            Path(tempfile.gettempdir()).resolve().as_posix()}
    cell_file = re.compile("(?:" + "|".join(map(re.escape, temp)) + r")/ipykernel_\d+/\d+\.py")

    def replace(match: re.Match) -> str:
        label, sep = shown[match["path"]], match["sep"]
        if label == "":
            return "" if sep else "."
        return label + sep

    def scrub(text: str) -> str:
        return pattern.sub(replace, cell_file.sub("<cell>", text))
    return scrub


def _scrub_tree(node: Any, scrub) -> Any:
    """Rewrite the strings of a notebook's JSON: metadata and outputs. Cell sources are
    left as they ran (the injected values are portable already) and binary images
    (base64) are not text."""
    if isinstance(node, str):
        return scrub(node)
    if isinstance(node, list):
        return [_scrub_tree(v, scrub) for v in node]
    if isinstance(node, dict):
        return {k: v if k == "source" or (k.startswith("image/") and k != "image/svg+xml")
                else _scrub_tree(v, scrub) for k, v in node.items()}
    return node


def finish_notebook(output: Path, params: dict[str, Any] | None = None,
                    run: RunFolder | None = None) -> None:
    """The executed notebook as a page: plumbing cells tagged ``remove-cell`` and no
    absolute path of this machine (papermill's input and output paths, warnings that
    name a file, printed locations) left in its metadata or outputs.

    Done here rather than when the book stages the notebooks, so that every reader of
    ``results/<run>/notebooks/`` (the book, ``brainmri html``, JupyterLab, a reviewer of
    the committed reference run) sees the same chapter and the same portable paths.
    """
    import nbformat

    env = _portable(run, params or {})[1] if run is not None else {}
    nb = nbformat.read(output, 4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if any(t in tags for t in HIDDEN_CELLS) and HIDE_TAG not in tags:
            cell.metadata["tags"] = [*tags, HIDE_TAG]
    nb = nbformat.from_dict(_scrub_tree(nb, _scrubber(env)))
    nbformat.write(nb, output)


def _record(run: RunFolder, step: Step, params: dict[str, Any], profile: str,
            entry: dict) -> None:
    """Provenance accumulates per step: a partial run (``--only``) updates its own steps'
    parameters and status and keeps every other step's record."""
    recorded = (yaml.safe_load(run.params.read_text()) if run.params.exists() else None) or {}
    steps = recorded.get("steps") or {}
    steps[step.name] = params
    atomic_write_text(yaml.safe_dump({"profile": profile, "steps": steps}, sort_keys=False),
                      run.params)
    state = read_json(run.state, {}) or {}
    state[step.name] = entry
    atomic_write_json(state, run.state)


def _check_arguments(profile, name: str, only: str | None, overrides: dict[str, Any],
                     dataset: str | None) -> tuple[list[Step], dict[str, Any]]:
    """Every argument of a run, before anything is written: the run's name (it becomes a
    folder), the steps, the ``--set`` values (text is read by each parameter's type) and
    ``--dataset``. Returns the steps and the typed overrides."""
    if (problem := name_problem(name)):
        raise BrainMRIError(f"--run {name!r}: {problem}.")
    steps = _select(profile.steps, only)
    overrides = {k: from_text(profile, k, v) if isinstance(v, str) else v
                 for k, v in overrides.items()}
    check_overrides(profile, steps, overrides)
    if dataset is not None:
        check_values(profile, {"dataset": dataset}, "--dataset")
    return steps, overrides


def run(profile_name: str, run: str | None = None, only: str | None = None,
        overrides: dict[str, Any] | None = None, force: bool = False,
        results_root: Path | None = None, dataset: str | None = None) -> Path:
    """Run the profile's steps (``only``: some of them) into ``results/<run>``.

    ``overrides`` are ``--set`` values; a string is read as command-line text (by the
    parameter's type: ``"1e-3"`` is a float, ``"2024"`` for a path stays text)."""
    profile = load_profile(profile_name)
    steps, overrides = _check_arguments(profile, run or profile_name, only,
                                        dict(overrides or {}), dataset)
    resolved = {step.name: profile.resolve(step, dataset, overrides) for step in steps}
    data = _check_data(resolved)
    folder = RunFolder.named(run or profile_name, results_root)
    logging.captureWarnings(True)  # library warnings become log records: the logs get them
    try:
        with _locked(folder), _logging_to(folder.logs / "run.log"):
            return _run_steps(profile, folder, steps, resolved, overrides, data, force)
    finally:
        logging.captureWarnings(False)


def _run_steps(profile, folder: RunFolder, steps: list[Step], resolved: dict[str, dict],
               overrides: dict[str, Any], data: dict, force: bool) -> Path:
    folder.notebooks.mkdir(exist_ok=True)
    state = {} if force else (read_json(folder.state, {}) or {})
    lib_hash, revision = library_hash(), git_revision()

    environment = read_json(folder.environment, {}) or {}
    environment.update({**describe_environment(), "profile": profile.name, "run": folder.name})
    environment["datasets"] = {**(environment.get("datasets") or {}), **data}
    # each command that worked on this run folder (a long run resumed after a stop is one
    # run in several sittings: the record says so, and at which revision each ran)
    environment["invocations"] = [*(environment.get("invocations") or []),
                                  {"started": time.strftime("%Y-%m-%d %H:%M:%S"),
                                   "revision": revision, "library": lib_hash,
                                   "cpu": environment["cpu"]}]
    atomic_write_json(environment, folder.environment)
    print(f"run {folder.name!r}: profile {profile.name!r}, {len(steps)} notebooks -> "
          f"{_shown(folder.root)} (logs in {_shown(folder.logs)})", flush=True)
    started_fresh = False
    total_start, sitting_start = time.perf_counter(), time.time()
    for i, step in enumerate(steps, 1):
        params = resolved[step.name]
        key = f"{params_hash(params, step.source)}-{lib_hash}"
        output = folder.notebooks / f"{step.name}.ipynb"
        previous = state.get(step.name, {})
        prefix = f"[{i}/{len(steps)}] {step.name}"
        if (not started_fresh and previous.get("status") in ("ok", "skipped")
                and previous.get("key") == key and output.exists()):
            print(f"{prefix}: unchanged since last run, skipped", flush=True)
            continue
        started_fresh = True
        log = folder.step_log(step.name)
        earlier, attempt = _earlier_attempts(previous, key, [output, log, folder.root / "models"],
                                             until=sitting_start)
        start = time.perf_counter()
        base_entry = {"key": key, "library": lib_hash, "revision": revision,
                      "cli_overrides": {k: v for k, v in overrides.items() if k in params},
                      "attempts": attempt, "cpu": environment["cpu"]}
        _record(folder, step, params, profile.name,
                {**base_entry, "status": "running", "started": time.time(),
                 "earlier_s": earlier})
        log.write_text(f"# step {step.name} of run {folder.name}, started "
                       f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        try:
            with _logging_to(log):
                _execute(step, params, folder, output)
        except KeyboardInterrupt:  # Ctrl-C: record it, or state.json says "running" forever
            seconds = round(earlier + time.perf_counter() - start, 1)
            _record(folder, step, params, profile.name,
                    {**base_entry, "status": "interrupted", "seconds": seconds})
            print(f"{prefix}: interrupted ({seconds:.1f} s); rerun the same command to "
                  f"resume", flush=True)
            raise
        except Exception as exc:  # noqa: BLE001 - reported, then re-raised as a clean error
            seconds = round(earlier + time.perf_counter() - start, 1)
            failure = _failure(output, exc)
            with _logging_to(log):
                if output.exists():
                    finish_notebook(output, params, folder)
                if failure["ename"] in SKIPPABLE:
                    _mark_skipped(output, failure)
            if failure["ename"] in SKIPPABLE:
                reason = failure["evalue"].splitlines()[0]
                _record(folder, step, params, profile.name,
                        {**base_entry, "status": "skipped", "seconds": seconds,
                         "reason": reason})
                print(f"{prefix}: skipped ({reason[:100]})", flush=True)
                continue
            _record(folder, step, params, profile.name,
                    {**base_entry, "status": "failed", "seconds": seconds})
            print(f"{prefix}: FAILED ({seconds:.1f} s)", flush=True)
            raise BrainMRIError(_failure_message(step, output, failure, log)) from None
        with _logging_to(log):
            finish_notebook(output, params, folder)
        seconds = round(earlier + time.perf_counter() - start, 1)
        _record(folder, step, params, profile.name, {**base_entry, "status": "ok",
                                                     "seconds": seconds})
        print(f"{prefix}: ok ({seconds:.1f} s)", flush=True)
    state = read_json(folder.state, {}) or {}
    environment["wall_time_s"] = {k: v.get("seconds") for k, v in state.items()}
    atomic_write_json(environment, folder.environment)
    print(f"done in {time.perf_counter() - total_start:.0f} s: {_shown(folder.root)}",
          flush=True)
    return folder.root


def _earlier_attempts(previous: dict, key: str, traces: list[Path],
                      until: float) -> tuple[float, int]:
    """Seconds already spent on this step by unfinished attempts with the same code and
    parameters, and the number of this attempt. A resumed study step reuses the models its
    stopped attempt trained, so its last attempt alone would understate what it cost. A
    process killed outright (a machine's restart) records no time: its attempt lasted until
    the last file it wrote among ``traces`` (files, or folders searched through: training
    writes each model's history every epoch; the notebook is saved only between outputs)
    before ``until``, when this sitting began (later files are this sitting's own)."""
    if previous.get("key") != key or previous.get("status") not in ("running", "interrupted",
                                                                    "failed"):
        return 0.0, 1
    spent = previous.get("seconds")
    if spent is None:  # killed while running: seconds include nothing yet
        started = previous.get("started", time.time())
        files = [f for t in traces for f in ([t] if t.is_file() else t.rglob("*"))]
        last = max([started, *(m for f in files if f.is_file()
                               and (m := f.stat().st_mtime) < until)])
        spent = previous.get("earlier_s", 0.0) + max(0.0, last - started)
    return float(spent), int(previous.get("attempts", 1)) + 1


#: Exceptions that mean "this step cannot run here" rather than "something is broken":
#: the step is recorded as skipped, its notebook shows why, and the series goes on.
SKIPPABLE = {"WeightsUnavailableError"}


def _failure(output: Path, exc: Exception) -> dict:
    """Where and why a step failed, read from papermill's error and the partial notebook.

    Errors shown by our short-message handler (BrainMRIError subclasses) reach papermill
    as a bare CellExecutionError; their name and message are in the cell's output.
    """
    from papermill.exceptions import PapermillExecutionError

    if not isinstance(exc, PapermillExecutionError):
        return {"where": "before any cell ran", "ename": type(exc).__name__,
                "evalue": str(exc)}
    info = {"where": f"cell {exc.cell_index} (execution count {exc.exec_count})",
            "ename": exc.ename, "evalue": exc.evalue}
    if exc.ename == "CellExecutionError" and output.exists():
        import nbformat

        for cell in nbformat.read(output, 4).cells:
            if cell.get("metadata", {}).get("papermill", {}).get("exception"):
                text = "".join(o.get("text", "") for o in cell.get("outputs", [])
                               if o.get("output_type") == "stream")
                # The cell may print before it fails (Keras: "Downloading data from ..."),
                # so take the last line that starts like "SomeError: message".
                found = list(re.finditer(r"^(\w+(?:Error|Exception)): ", text, re.M))
                if found:
                    info.update(ename=found[-1].group(1),
                                evalue=text[found[-1].end():].strip())
    return info


def _mark_skipped(output: Path, failure: dict) -> None:
    """Turn a partial notebook into a clean "skipped" chapter: drop papermill's error
    banners and the cells that never ran, and end with a note saying why."""
    import nbformat

    nb = nbformat.read(output, 4)
    cells = []
    for cell in nb.cells:
        if "papermill-error-cell-tag" in cell.get("metadata", {}).get("tags", []):
            continue
        cells.append(cell)
        if cell.get("metadata", {}).get("papermill", {}).get("exception"):
            break
    note = failure["evalue"].replace("\n", "\n> ")
    cells.append(nbformat.v4.new_markdown_cell(
        f"> **Skipped.** This chapter stopped here: {note}"))
    nb.cells = cells
    nbformat.write(nb, output)


def _failure_message(step: Step, output: Path, failure: dict, log: Path) -> str:
    return (f"notebook {step.notebook}.ipynb (step {step.name!r}) failed in "
            f"{failure['where']}:\n  {failure['ename']}: {failure['evalue']}\n"
            f"The partial executed notebook is kept at {output}; the kernel's own output "
            f"is in {log}.\n"
            f"Fix the cause and rerun the same command: finished steps are skipped.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="quick", help="params/<profile>.yaml")
    parser.add_argument("--dataset", default=None,
                        help="default dataset of the chapters that do not name one")
    parser.add_argument("--only", default=None, help="comma-separated step names or prefixes")
    parser.add_argument("--run", default=None, help="results/<run> (default: the profile name)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter for every step that takes it")
    parser.add_argument("--force", action="store_true", help="rerun steps that succeeded")
    parser.add_argument("--results-dir", default=None, help="parent of run folders")


def parse_sets(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs, values as written: ``run`` reads each by its parameter's type
    (YAML for numbers and lists, the text itself for names and paths)."""
    overrides: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise BrainMRIError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = value
    return overrides


def main(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        run(args.profile, args.run, args.only, parse_sets(args.set), args.force,
            Path(args.results_dir) if args.results_dir else None, args.dataset)
    except BrainMRIError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    return 0
