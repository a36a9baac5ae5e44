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
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from brainmri.core.errors import BrainMRIError
from brainmri.core.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE, error
from brainmri.core.files import atomic_write_json, atomic_write_text, read_json
from brainmri.core.progress import ENV as PROGRESS_ENV
from brainmri.core.runfolder import RunFolder, name_problem
from brainmri.report.series.environment import describe_environment, git_revision
from brainmri.report.series.failures import (
    ERROR_FILE_ENV,
    PAUSING,
    SKIPPABLE,
    failure_message,
    mark_skipped,
    read_failure,
)
from brainmri.report.series.portable import (
    finish_notebook,
    portable,
    portable_data_root,
    shown,
)
from brainmri.report.series.profiles import (
    Step,
    check_overrides,
    check_values,
    from_text,
    load_profile,
    named_profiles,
    params_hash,
)

KERNEL = "python3"

#: ``brainmri run``'s exit code when a step stopped at the time budget it was given
#: (chapter 08c's ``study_minutes``): not a failure, but the run is not complete yet.
#: Here rather than in ``core.exits``: only this verb pauses, and ``core`` is part of the
#: study rows' key (``studies.study.SCIENCE_CODE``), so editing it would retrain them.
EXIT_PAUSED = 3


class RunPaused(BrainMRIError):
    """A step stopped at its time budget; what it finished is kept, and the same command
    goes on from there."""


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
        out[name] = {"path": portable_data_root(name, root),
                     "fingerprint": fingerprint(root)}
    return out


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


def _error_file(run: RunFolder, step: Step) -> Path:
    """Where a step's kernel hands over the project error that stopped it (its name and
    message), beside the step's log."""
    return run.logs / f"{step.name}.error.json"


def _execute(step: Step, params: dict[str, Any], run: RunFolder, output: Path) -> None:
    import papermill

    # Inside the executed notebooks, progress bars would be stored line by line; at a
    # terminal the runner shows papermill's per-cell bar instead.
    os.environ[PROGRESS_ENV] = "0"
    injected, env = portable(run, params)
    handed = _error_file(run, step)
    handed.unlink(missing_ok=True)
    env = {**env, ERROR_FILE_ENV: str(handed)}
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
            raise BrainMRIError(f"cannot lock {shown(folder.lock)} ({exc.strerror}): "
                                f"choose a --results-dir on a local disk.") from None
        raise BrainMRIError(
            f"run {folder.name!r} is in use by another brainmri run (pid {holder}; lock "
            f"file {shown(folder.lock)}). Wait for it to finish, or give this run another "
            f"name with --run.") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


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


def _empty(option: str, value: Any) -> str | None:
    """Why ``value`` is refused as empty: the CLI refuses ``--run ''`` before calling
    :func:`run`, and the Python API refuses it the same way instead of reading it as the
    default (``run=""`` used to run as the profile's name)."""
    if isinstance(value, str) and not value.strip():
        return (f"{option} is empty ({value!r}); give a value, or leave out {option} for "
                f"its default")
    return None


def _check_arguments(profile, name: str, only: str | None, overrides: dict[str, Any],
                     dataset: str | None) -> tuple[list[Step], dict[str, Any]]:
    """Every argument of a run, before anything is written: the run's name (it becomes a
    folder), the steps, the ``--set`` values (text is read by each parameter's type) and
    ``--dataset``. Returns the steps and the typed overrides."""
    for option, value in (("--run", name), ("--only", only), ("--dataset", dataset)):
        if (problem := _empty(option, value)):
            raise BrainMRIError(problem + ".")
    for key, value in overrides.items():
        if isinstance(value, str) and not value.strip():
            raise BrainMRIError(f"--set {key}={value}: the value is empty; give one, or leave "
                                f"out --set {key} for the default.")
    if (problem := name_problem(name)):
        raise BrainMRIError(f"--run {name!r}: {problem}.")
    steps = _select(profile.steps, only)
    overrides = {k: from_text(profile, k, v) if isinstance(v, str) else v
                 for k, v in overrides.items()}
    check_overrides(profile, steps, overrides)
    if dataset is not None:
        check_values(profile, {"dataset": dataset}, "--dataset")
    return steps, overrides


@dataclass
class Plan:
    """A run whose every argument was accepted and whose datasets were found: nothing is
    written until :func:`execute` runs it."""
    profile: Any
    folder: RunFolder
    steps: list[Step]
    resolved: dict[str, dict]
    overrides: dict[str, Any]
    data: dict


def prepare(profile_name: str, run: str | None = None, only: str | None = None,
            overrides: dict[str, Any] | None = None, results_root: Path | None = None,
            dataset: str | None = None) -> Plan:
    """Check every argument and locate the datasets, writing nothing: a
    :class:`BrainMRIError` here means that the command line (or what it names) is
    unusable. ``run=None`` names the run after the profile; ``run=""`` is refused."""
    profile = load_profile(profile_name)
    name = profile_name if run is None else run
    steps, overrides = _check_arguments(profile, name, only, dict(overrides or {}), dataset)
    resolved = {step.name: profile.resolve(step, dataset, overrides) for step in steps}
    data = _check_data(resolved)
    return Plan(profile, RunFolder.named(name, results_root), steps, resolved, overrides, data)


def execute(plan: Plan, force: bool = False) -> Path:
    """Run a prepared plan into its run folder (see :func:`run`)."""
    logging.captureWarnings(True)  # library warnings become log records: the logs get them
    try:
        with _locked(plan.folder), _logging_to(plan.folder.logs / "run.log"):
            return _run_steps(plan.profile, plan.folder, plan.steps, plan.resolved,
                              plan.overrides, plan.data, force)
    finally:
        logging.captureWarnings(False)


def run(profile_name: str, run: str | None = None, only: str | None = None,
        overrides: dict[str, Any] | None = None, force: bool = False,
        results_root: Path | None = None, dataset: str | None = None) -> Path:
    """Run the profile's steps (``only``: some of them) into ``results/<run>``.

    ``overrides`` are ``--set`` values; a string is read as command-line text (by the
    parameter's type: ``"1e-3"`` is a float, ``"2024"`` for a path stays text). An empty
    ``run``, ``only``, ``dataset`` or override text is refused, as on the command line."""
    return execute(prepare(profile_name, run, only, overrides, results_root, dataset), force)


def _run_steps(profile, folder: RunFolder, steps: list[Step], resolved: dict[str, dict],
               overrides: dict[str, Any], data: dict, force: bool) -> Path:
    folder.notebooks.mkdir(exist_ok=True)
    state = {} if force else (read_json(folder.state, {}) or {})
    lib_hash, revision = library_hash(), git_revision()

    environment = read_json(folder.environment, {}) or {}
    environment.update({**describe_environment(), "profile": profile.name, "run": folder.name})
    environment["datasets"] = {**(environment.get("datasets") or {}), **data}
    # each command that worked on this run folder (a long run resumed after a stop is one
    # run in several sittings: the record says so, and at which revision each ran); a
    # forced run starts its state afresh, so earlier sittings no longer describe it
    earlier = [] if force else (environment.get("invocations") or [])
    environment["invocations"] = [*earlier,
                                  {"started": time.strftime("%Y-%m-%d %H:%M:%S"),
                                   "revision": revision, "library": lib_hash,
                                   "cpu": environment["cpu"]}]
    atomic_write_json(environment, folder.environment)
    print(f"run {folder.name!r}: profile {profile.name!r}, {len(steps)} notebooks -> "
          f"{shown(folder.root)} (logs in {shown(folder.logs)})", flush=True)
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
            _interrupted(folder, step, params, profile.name, base_entry,
                         round(earlier + time.perf_counter() - start, 1), prefix)
            raise
        except Exception as exc:  # noqa: BLE001 - reported, then re-raised as a clean error
            seconds = round(earlier + time.perf_counter() - start, 1)
            failure = read_failure(output, exc, _error_file(folder, step))
            if failure["ename"] == "KeyboardInterrupt":  # Ctrl-C reached the kernel first
                _interrupted(folder, step, params, profile.name, base_entry, seconds, prefix)
                raise KeyboardInterrupt from None
            with _logging_to(log):
                if output.exists():
                    finish_notebook(output, params, folder)
                if failure["ename"] in SKIPPABLE:
                    mark_skipped(output, failure)
            if failure["ename"] in SKIPPABLE:
                reason = failure["evalue"].splitlines()[0]
                _record(folder, step, params, profile.name,
                        {**base_entry, "status": "skipped", "seconds": seconds,
                         "reason": reason})
                print(f"{prefix}: skipped ({reason[:100]})", flush=True)
                continue
            if failure["ename"] in PAUSING:
                _record(folder, step, params, profile.name,
                        {**base_entry, "status": "paused", "seconds": seconds})
                print(f"{prefix}: paused at its time budget ({seconds:.1f} s)", flush=True)
                raise RunPaused(failure["evalue"]) from None
            _record(folder, step, params, profile.name,
                    {**base_entry, "status": "failed", "seconds": seconds})
            print(f"{prefix}: FAILED ({seconds:.1f} s)", flush=True)
            raise BrainMRIError(failure_message(step, output, failure, log)) from None
        with _logging_to(log):
            finish_notebook(output, params, folder)
        seconds = round(earlier + time.perf_counter() - start, 1)
        _record(folder, step, params, profile.name, {**base_entry, "status": "ok",
                                                     "seconds": seconds})
        print(f"{prefix}: ok ({seconds:.1f} s)", flush=True)
    state = read_json(folder.state, {}) or {}
    environment["wall_time_s"] = {k: v.get("seconds") for k, v in state.items()}
    atomic_write_json(environment, folder.environment)
    print(f"done in {time.perf_counter() - total_start:.0f} s: {shown(folder.root)}",
          flush=True)
    return folder.root


def _interrupted(folder: RunFolder, step: Step, params: dict[str, Any], profile: str,
                 base_entry: dict, seconds: float, prefix: str) -> None:
    """Record a step stopped by Ctrl-C and show its status line. What to do next is said
    once, on stderr, by the command line (finished steps are kept; the same command
    resumes)."""
    _record(folder, step, params, profile, {**base_entry, "status": "interrupted",
                                            "seconds": seconds})
    print(f"{prefix}: interrupted ({seconds:.1f} s)", flush=True)


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
                                                                    "failed", "paused"):
        return 0.0, 1
    spent = previous.get("seconds")
    if spent is None:  # killed while running: seconds include nothing yet
        started = previous.get("started", time.time())
        files = [f for t in traces for f in ([t] if t.is_file() else t.rglob("*"))]
        last = max([started, *(m for f in files if f.is_file()
                               and (m := f.stat().st_mtime) < until)])
        spent = previous.get("earlier_s", 0.0) + max(0.0, last - started)
    return float(spent), int(previous.get("attempts", 1)) + 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="quick", metavar="NAME",
                        help="a named profile, params/<NAME>.yaml: "
                             + (", ".join(named_profiles()) or "none found")
                             + " (default: quick). A path is refused: only the profiles "
                               "in params/ can run")
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
    """``brainmri run``: the command line's exit codes (``core.exits``): 2 when an
    argument, or what it names, is unusable (nothing written), 1 when a step failed."""

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        plan = prepare(args.profile, args.run, args.only, parse_sets(args.set),
                       Path(args.results_dir) if args.results_dir else None, args.dataset)
    except BrainMRIError as exc:
        error(str(exc))
        return EXIT_USAGE
    try:
        execute(plan, args.force)
    except RunPaused as exc:
        with contextlib.suppress(OSError, ValueError):
            print(f"paused: {exc}", file=sys.stderr, flush=True)
        return EXIT_PAUSED
    except BrainMRIError as exc:
        error(str(exc))
        return EXIT_FAILED
    return EXIT_OK
