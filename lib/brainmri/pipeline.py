"""Run the notebook series with papermill: ``python -m brainmri.pipeline --profile quick``.

Each step's executed notebook goes to ``results/<run>/notebooks/``; machine-readable
results are written by the notebooks themselves into ``results/<run>/``. A step that
fails stops the run with the notebook and cell named, and its partial notebook kept.
Rerunning with the same parameters resumes after the last step that succeeded: steps
are skipped while their parameters, notebook source and library code are unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from . import paths
from .environment import describe_environment
from .errors import BrainMRIError
from .progress import ENV as PROGRESS_ENV
from .profiles import Step, declared_parameters, load_profile, params_hash, resolve
from .results import atomic_write_text, read_json, update_json

KERNEL = "python3"


def _library_hash() -> str:
    digest = hashlib.sha1()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


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


def _check_data(resolved: dict[str, dict], default_dir: str | None) -> dict[str, dict]:
    """Locate every dataset the steps use before starting (clear error, no traceback)."""
    from .datasets import fingerprint, locate

    wanted: dict[str, str | None] = {}
    for params in resolved.values():
        names = list(params.get("datasets") or []) + (
            [params["dataset"]] if params.get("dataset") else [])
        for name in names:
            wanted.setdefault(name, params.get("data_dir", default_dir))
    out = {}
    for name, data_dir in sorted(wanted.items()):
        root = locate(name, data_dir)
        out[name] = {"path": str(root), "fingerprint": fingerprint(root)}
    return out


def _execute(step: Step, params: dict[str, Any], output: Path) -> None:
    import papermill

    # Inside the executed notebooks, progress bars would be stored line by line; at a
    # terminal the runner shows papermill's per-cell bar instead.
    os.environ[PROGRESS_ENV] = "0"
    papermill.execute_notebook(
        str(step.source), str(output), parameters=params, kernel_name=KERNEL,
        progress_bar={"desc": f"  {step.name}", "leave": False} if sys.stderr.isatty() else False,
        log_output=False, cwd=str(step.source.parent), request_save_on_cell_execute=True,
    )


def run(profile_name: str, run: str | None = None, only: str | None = None,
        overrides: dict[str, Any] | None = None, force: bool = False,
        results_root: Path | None = None) -> Path:
    overrides = dict(overrides or {})
    profile = load_profile(profile_name)
    run = run or profile_name
    run_dir = (results_root or paths.results_root()) / run
    (run_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    state_file = run_dir / "state.json"
    state = {} if force else (read_json(state_file, {}) or {})
    steps = _select(profile.steps, only)
    resolved_all: dict[str, dict] = {}
    for step in steps:
        declared = declared_parameters(step.source)
        params = resolve(profile, step, declared, overrides)
        if "run_dir" in declared:
            params["run_dir"] = str(run_dir.resolve())
        resolved_all[step.name] = params
    data = _check_data(resolved_all, profile.defaults.get("data_dir"))
    lib_hash = _library_hash()

    env_file = run_dir / "environment.json"
    update_json(env_file, {**describe_environment(), "profile": profile.name, "run": run,
                           "datasets": data, "cli_overrides": overrides})
    print(f"run {run!r}: profile {profile.name!r}, {len(steps)} notebooks -> {run_dir}",
          flush=True)
    started_fresh = False
    total_start = time.perf_counter()
    for i, step in enumerate(steps, 1):
        params = resolved_all[step.name]
        key = params_hash({k: v for k, v in params.items() if k != "run_dir"}, step.source)
        key = f"{key}-{lib_hash}"
        output = run_dir / "notebooks" / f"{step.name}.ipynb"
        previous = state.get(step.name, {})
        prefix = f"[{i}/{len(steps)}] {step.name}"
        if (not started_fresh and previous.get("status") in ("ok", "skipped")
                and previous.get("key") == key and output.exists()):
            print(f"{prefix}: unchanged since last run, skipped", flush=True)
            continue
        started_fresh = True
        start = time.perf_counter()
        state[step.name] = {"status": "running", "key": key, "started": time.time()}
        update_json(state_file, state)
        try:
            _execute(step, params, output)
        except Exception as exc:  # noqa: BLE001 - reported, then re-raised as a clean error
            seconds = time.perf_counter() - start
            failure = _failure(output, exc)
            if failure["ename"] in SKIPPABLE:
                _mark_skipped(output, failure)
                state[step.name] = {"status": "skipped", "key": key, "seconds": round(seconds, 1),
                                    "reason": failure["evalue"].splitlines()[0]}
                update_json(state_file, state)
                print(f"{prefix}: skipped ({failure['evalue'].splitlines()[0][:100]})",
                      flush=True)
                continue
            state[step.name] = {"status": "failed", "key": key, "seconds": round(seconds, 1)}
            update_json(state_file, state)
            print(f"{prefix}: FAILED ({seconds:.1f} s)", flush=True)
            raise BrainMRIError(_failure_message(step, output, failure)) from None
        seconds = time.perf_counter() - start
        state[step.name] = {"status": "ok", "key": key, "seconds": round(seconds, 1)}
        update_json(state_file, state)
        print(f"{prefix}: ok ({seconds:.1f} s)", flush=True)
    atomic_write_text(yaml.safe_dump({"profile": profile.name, "steps": resolved_all},
                                     sort_keys=False), run_dir / "params.yaml")
    update_json(env_file, {"wall_time_s": {k: v.get("seconds") for k, v in state.items()}})
    print(f"done in {time.perf_counter() - total_start:.0f} s: {run_dir}", flush=True)
    return run_dir


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


def _failure_message(step: Step, output: Path, failure: dict) -> str:
    return (f"notebook {step.notebook}.ipynb (step {step.name!r}) failed in "
            f"{failure['where']}:\n  {failure['ename']}: {failure['evalue']}\n"
            f"The partial executed notebook is kept at {output}.\n"
            f"Fix the cause and rerun the same command: finished steps are skipped.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m brainmri.pipeline",
                                     description="Run the notebook series with papermill.")
    parser.add_argument("--profile", default="quick", help="params/<profile>.yaml")
    parser.add_argument("--dataset", default=None, help="sartaj or nickparvar (default: profile)")
    parser.add_argument("--only", default=None, help="comma-separated step names or prefixes")
    parser.add_argument("--run", default=None, help="results/<run> (default: the profile name)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter for every notebook that declares it")
    parser.add_argument("--force", action="store_true", help="rerun steps that succeeded")
    parser.add_argument("--results-dir", default=None, help="parent of run folders")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    for item in args.set:
        if "=" not in item:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = _parse_value(value)
    if args.dataset:
        overrides["dataset"] = args.dataset
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        run(args.profile, args.run, args.only, overrides, args.force,
            Path(args.results_dir) if args.results_dir else None)
    except BrainMRIError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
