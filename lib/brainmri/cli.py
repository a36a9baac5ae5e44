"""The ``brainmri`` command line, one verb per job:

- ``brainmri run``         run the notebook series with papermill (a profile of params/)
- ``brainmri book``        build the Jupyter Book from one run's executed notebooks
- ``brainmri html``        one standalone HTML page per executed notebook of a run
- ``brainmri predict``     classify image files or folders with a saved model
- ``brainmri data``        find (``where``) or download (``fetch``) the datasets
- ``brainmri throughput``  training throughput on real vs synthetic batches
- ``brainmri tables``      rewrite a run's numbers in the README and the model card
- ``brainmri carry``       re-key the study rows to the current code, once it reproduced
  a sample of them exactly (``report.studies.carry``)

Errors the user can act on are printed as one ``error:`` message starting on its first
line, never as a traceback. Every verb uses the same exit codes (README, "Exit codes"):

- 0: done (``predict``: at least one file classified);
- 1: the work failed or found nothing to work on: a notebook step failed, no input
  could be classified, a run holds no executed notebook, another runner holds the run
  folder, standard output could not be written (a closed pipe: one line on stderr);
- 2: refused before any work: a usage error (argparse's own, an empty value such as
  ``--csv ''``, ``--set data_dir=`` or ``--run ''``, a value its rule refuses, a profile
  that is not one of params/), or what the arguments name is unusable (a missing
  dataset; for ``predict`` the model, sidecar or output path, also when the ``--csv``
  file cannot be written at the end, e.g. on a full disk: nothing written);
- 3 (``run`` only): paused, a step stopped at the time budget it was given (``make
  study``); its finished work is kept and the same command goes on;
- 130: interrupted with Ctrl-C (one line on stderr saying what rerunning does).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from brainmri.core.exits import (  # noqa: F401 (the verbs' exit codes, named here too)
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOTHING_READ,
    EXIT_OK,
    EXIT_UNUSABLE,
    EXIT_USAGE,
    StdoutError,
)
from brainmri.core.exits import error as _err
from brainmri.core.exits import guard_stdout as _guard_stdout
from brainmri.core.exits import release_stdout as _release_stdout


def _resolved(path: Path) -> Path | None:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop cannot be an input we would overwrite
        return None


def _output_problem(raw: str, inputs: list[Path], force: bool) -> str | None:
    """Why ``--csv raw`` must not be written, checked before any classification so a
    typo cannot overwrite a scan and an unwritable path does not waste the work.
    (os.path's tests are used because they answer False instead of raising.) ``-`` is
    standard output and never a problem. Only a regular file is ever replaced: a
    symbolic link (even to a regular file, e.g. /dev/stdout), a named pipe, a socket or
    a device is refused, since the atomic rename would replace it with a plain file."""
    import stat
    import tempfile

    if raw == "-":
        return None
    target = Path(raw)
    if raw.endswith(("/", os.sep)) or os.path.isdir(target):
        return f"--csv {raw} is a folder; give a file name, e.g. {target / 'predictions.csv'}"
    resolved = _resolved(target)
    if resolved is not None and any(_resolved(p) == resolved for p in inputs):
        return (f"--csv {raw} is one of the input files; choose another output file "
                f"(--force does not override this)")
    if os.path.islink(target):
        return (f"--csv {raw} is a symbolic link; give the path of a regular file (or - for "
                f"standard output); --force does not override this")
    try:
        mode = os.stat(target).st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        kind = ("a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device or special file")
        return (f"--csv {raw} is {kind}, not a regular file; give a file name (or - for "
                f"standard output); --force does not override this")
    if os.path.lexists(target) and not force:
        return f"--csv {raw} exists; pass --force to replace it or choose another file"
    folder = target.parent
    if not os.path.isdir(folder):  # a typo in the folder must not create a new one
        return (f"cannot write --csv {raw}: {folder} is not a folder" if os.path.lexists(folder)
                else f"cannot write --csv {raw}: the folder {folder} does not exist (predict "
                     f"creates no folders); create it first or choose another location")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return f"cannot write --csv {raw} ({exc.strerror or exc}); choose a writable location"
    return None


#: How a spreadsheet recognises a formula (OWASP, "CSV Injection"): a text cell of the
#: ``--csv`` file starting with one of these gets a leading ``'``.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _spreadsheet_safe(table):
    """The table as the ``--csv`` file holds it: a text cell that a spreadsheet would run
    as a formula (a file named ``=HYPERLINK(...).png``, given as a relative path) starts
    with ``'`` instead. Numbers are left alone; standard output shows the text as is."""
    import pandas as pd

    safe = table.copy()
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):
            safe[column] = safe[column].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v)
    return safe


def _print_table(text: str) -> None:
    """The CSV text on standard output. A file name that is not UTF-8 (Python keeps its
    bytes as surrogates) goes out as its own bytes, as in the ``--csv`` file, also where
    standard output is strict about its encoding (a UTF-8 locale other than C.UTF-8)."""
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:  # raised before anything was written
        encoding = sys.stdout.encoding or "utf-8"
        try:
            data = text.encode(encoding, "surrogateescape")
        except UnicodeEncodeError:  # a character the encoding lacks (not a UTF-8 locale)
            data = text.encode(encoding, "backslashreplace")
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def _predict(args) -> int:
    from brainmri.core.files import atomic_write_csv, csv_text
    from brainmri.modeling import inference, prefetch, saved
    from brainmri.modeling.saved import SavedModelError, load_for_prediction, prediction_metadata

    model_path = Path(args.model) if args.model else inference.default_model()
    batch_size = _series_batch_size() if args.batch_size is None else args.batch_size
    if batch_size < 1:
        _err("--batch-size must be at least 1.")
        return EXIT_UNUSABLE
    if args.workers is not None and not 1 <= args.workers <= prefetch.MAX_WORKERS:
        _err(f"--workers {args.workers}: give a number from 1 to {prefetch.MAX_WORKERS} "
             f"(memory, not the thread count, bounds the images decoded at once).")
        return EXIT_UNUSABLE
    to_stdout = args.csv == "-"
    try:  # cheap checks first: the model file and its sidecar, the inputs, the output
        metadata = prediction_metadata(model_path)
        found = inference.scan(args.paths)
        files = found.files
        if not files:
            _err("no files found in the given paths"
                 + (f" ({found.hidden} hidden entries skipped)." if found.hidden else "."))
            return EXIT_UNUSABLE
        if args.csv and (problem := _output_problem(args.csv, files, args.force)):
            _err(problem)
            return EXIT_UNUSABLE
        # Decoding starts now, in the background, while TensorFlow and the model load
        # (in worker processes for many files: the import would starve threads).
        many = len(files) >= prefetch.PROCESS_MIN_FILES
        with prefetch.start(files, metadata, args.workers, processes=many) as prepared:
            model, metadata = load_for_prediction(model_path)
            table = inference.predict_files(files, model, metadata, batch_size,
                                            show_progress=not args.quiet and len(files) > 1,
                                            prepared=prepared)
    except SavedModelError as exc:
        _err(str(exc))
        return EXIT_UNUSABLE
    if found.repeated:
        print(f"note: {len(found.repeated)} input(s) named more than once (directly or through "
              f"a folder), e.g. {found.repeated[0]}, classified once: one row each.",
              file=sys.stderr)
    if found.hidden:
        print(f"note: {found.hidden} hidden entr{'y' if found.hidden == 1 else 'ies'} "
              f"(name starting with '.') inside the input folders skipped; name a hidden "
              f"file directly to classify it.", file=sys.stderr)
    if (unchecked := saved.identity_note(metadata, model_path)):
        print(f"note: {unchecked}", file=sys.stderr)
    if "ood" not in metadata:
        print(f"note: {model_path.name}'s sidecar has no 'ood' threshold, so no image is "
              f"flagged as out of distribution (see brainmri.modeling.ood.from_predictions).",
              file=sys.stderr)
    elif "checks" not in metadata["ood"]:
        print(f"note: {model_path.name}'s sidecar has no 'ood.checks', so only the energy "
              f"score flags unusual images (noise, photos or inverted scans may pass); add "
              f"them with: python -m brainmri.modeling.calibration --calibrate {model_path} "
              f"--data-dir DATA", file=sys.stderr)
    if args.csv and not to_stdout:
        try:  # names that are not UTF-8 are written as their own bytes (lossless)
            atomic_write_csv(_spreadsheet_safe(table), args.csv, errors="surrogateescape")
        except OSError as exc:  # a full disk, a quota, a folder gone: no partial file left
            _err(f"cannot write --csv {args.csv} ({exc.strerror or exc}); nothing was "
                 f"written: free some space or choose another location, and rerun.")
            return EXIT_UNUSABLE
    if not args.csv or args.print or to_stdout:
        shown = table.copy()
        if not to_stdout:  # the file keeps full precision; the screen gets 4 decimals
            prob_cols = [c for c in table.columns if c.startswith("p_")]
            shown[prob_cols] = shown[prob_cols].round(4)
        _print_table(csv_text(shown))
    collection = table.attrs.get("collection")
    if collection and collection["new"]:
        from brainmri.modeling import ood

        print(ood.checks_of(metadata).collection.message(collection), file=sys.stderr)
    read = int((table["error"] == "").sum())
    flagged = int((table["warning"] != "").sum())
    print(f"{read} of {len(table)} file(s) classified"
          + (f"; {len(table) - read} could not be read" if read < len(table) else "")
          + (f"; {flagged} with a warning" if flagged else "")
          + (f"; written to {args.csv}" if args.csv and not to_stdout else ""),
          file=sys.stderr)
    return EXIT_OK if read else EXIT_NOTHING_READ


def _run(args) -> int:
    from brainmri.report.series import runner

    return runner.main(args)


def _book(args) -> int:
    from brainmri.report.publish.book import build

    build(args.run, Path(args.results_dir) if args.results_dir else None,
          strict=not args.no_strict)
    return 0


def _html(args) -> int:
    from brainmri.report.publish.export import export_run

    pages = export_run(args.run, Path(args.results_dir) if args.results_dir else None)
    print(f"{len(pages)} page(s) written to {pages[0].parent}")
    return 0


def _data(args) -> int:
    from brainmri.core.errors import DatasetNotFoundError
    from brainmri.data.sources import DATASETS, locate

    status = 0
    for name in list(DATASETS) if args.dataset == "all" else [args.dataset]:
        try:
            print(f"{name}: {locate(name, args.data_dir, download=args.action == 'fetch')}")
        except DatasetNotFoundError as exc:
            _err(str(exc))
            status = 2
    return status


def _throughput(args) -> int:
    from brainmri.modeling import throughput
    from brainmri.report.series.profiles import BASE, chapter_defaults, check_values, load_profile

    if args.steps < 1 or args.warmup < 0:
        _err(f"--steps {args.steps} --warmup {args.warmup}: give at least 1 timed step and "
             f"0 or more warm-up steps.")
        return EXIT_USAGE
    settings = chapter_defaults(throughput.CHAPTER)
    given = {k: v for k, v in (("dataset", args.dataset), ("data_dir", args.data_dir),
                               ("image_size", args.image_size), ("batch_size", args.batch_size),
                               ("augment", args.augment)) if v is not None}
    # the rules of params/base.yaml, as for `brainmri run --set` (a ProfileError: exit 2)
    check_values(load_profile(BASE), given, "throughput", throughput.CHAPTER)
    settings.update(given)
    result = throughput.run(settings, args.steps, args.warmup)
    print(json.dumps(result, indent=2))
    print(f"real data: {result['real_img_per_s']} img/s, synthetic: "
          f"{result['synthetic_img_per_s']} img/s, ratio {result['ratio_real_over_synthetic']}")
    return 0


def _tables(args) -> int:
    from brainmri.core import paths
    from brainmri.report.publish.blocks import update_all

    for path in update_all(args.run):
        print(f"{path.relative_to(paths.project_root())} updated from results/{args.run}/")
    return 0


def _carry(args) -> int:
    from brainmri.core import paths
    from brainmri.report.series import runner
    from brainmri.report.studies import carry, study

    rows = paths.results_root() / study.FOLDER
    sample = [tag.strip() for tag in args.sample.split(",") if tag.strip()]
    entry = carry.carry(rows, sample, lambda root: runner.run(
        args.profile, run="carry", only="01_,01b,01c,08c", results_root=root))
    if not entry["rows"]:
        print(f"every row of {rows} already has the current code's key ({entry['to']})")
    else:
        print(f"{entry['rows']} rows re-keyed to code {entry['to']}: the current code "
              f"reproduced {', '.join(entry['reproduced'])} byte for byte "
              f"(logged in {rows.name}/{carry.LOG})")
    return 0


def _series_batch_size() -> int:
    """``predict``'s default batch size: the one the model chapters predict with
    (params/base.yaml's ``training`` group), so that the value has one home."""
    from brainmri.report.series.profiles import load_profile

    return load_profile("base").shared["training"]["batch_size"]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="brainmri", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the notebook series with papermill")
    from brainmri.report.series.runner import add_arguments

    add_arguments(p)
    p.set_defaults(func=_run)

    p = sub.add_parser("book", help="build the book from a run's executed notebooks")
    p.add_argument("--run", default="quick", help="results/<run> to show")
    p.add_argument("--results-dir", default=None, help="parent of run folders")
    p.add_argument("--no-strict", action="store_true", help="do not fail on warnings")
    p.set_defaults(func=_book)

    p = sub.add_parser("html", help="export a run's executed notebooks to standalone HTML")
    p.add_argument("--run", default="quick", help="results/<run> to export")
    p.add_argument("--results-dir", default=None, help="parent of run folders")
    p.set_defaults(func=_html)

    p = sub.add_parser("predict", help="classify image files or folders (searched recursively)",
                       description="Classify image files; folders are searched recursively. "
                                   "One row per file (an error row for an unreadable one); "
                                   "hidden entries (names starting with '.') inside folders "
                                   "are skipped, and their number is printed on stderr.")
    p.add_argument("paths", nargs="+", help="image files and/or folders")
    p.add_argument("--model", help="a .keras file saved by the series (default: the shipped model)")
    p.add_argument("--csv", help="write the table to this CSV file, with full precision "
                                 "(- : standard output). Only a new or regular file is "
                                 "written, in an existing folder: a symbolic link, pipe "
                                 "or device is refused. "
                                 "In the file, a text cell starting with = + - @, a tab or a "
                                 "carriage return gets a leading ' (no spreadsheet formulas), "
                                 "and a file name that is not UTF-8 keeps its own bytes")
    p.add_argument("--force", "--overwrite", dest="force", action="store_true",
                   help="replace an existing regular --csv file")
    p.add_argument("--print", action="store_true", help="print the table even with --csv")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per forward pass (default: params/base.yaml's batch_size)")
    p.add_argument("--workers", type=int, default=None,
                   help="threads decoding images ahead of the model, processes from 256 "
                        "files on (default: one per CPU core, at most 8; one fewer for "
                        "processes). At most 32 (8 processes); whatever the number, the "
                        "full-size images decoded at once take at most 1 GB")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_predict)

    p = sub.add_parser("data", help="find or download the datasets")
    p.add_argument("action", choices=["fetch", "where"])
    p.add_argument("--dataset", default="all", help="sartaj, nickparvar, br35h or all")
    p.add_argument("--data-dir", default=None, help="a folder holding the dataset folders")
    p.set_defaults(func=_data)

    p = sub.add_parser("throughput", help="training throughput, real vs synthetic batches "
                                          "(defaults: the ReLU CNN chapter's settings)")
    p.add_argument("--dataset", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--augment", default=None, help="none or basic (the 06 pipeline)")
    p.add_argument("--steps", type=int, default=30, help="timed training steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (tracing)")
    p.set_defaults(func=_throughput)

    p = sub.add_parser("carry", help="re-key the study rows to the current code after it "
                                     "reproduced a sample of them exactly")
    p.add_argument("--sample", required=True,
                   help="comma-separated row names (folders of results/study-rows/): one per "
                        "code path the edit touches")
    p.add_argument("--profile", default="reference", help="the profile whose study the rows are")
    p.set_defaults(func=_carry)

    p = sub.add_parser("tables", help="rewrite a run's numbers in the README and the model "
                                      "card (the book pastes its own from the chapters)")
    p.add_argument("--run", default="reference")
    p.set_defaults(func=_tables)
    return top


#: What an empty value of an option should be instead (the generic hint otherwise).
_EMPTY_HINTS = {"csv": "a file name, or - for standard output",
                "model": "a .keras file, or leave out --model for the shipped model",
                "run": "a plain name, or leave out --run for its default"}


def _empty_value(args: argparse.Namespace) -> str | None:
    """Why the arguments hold an empty value, or None. Each of them used to fall back
    silently: ``--csv ''`` printed to standard output, ``--run ''`` ran as the profile's
    name, ``--set data_dir=`` used $BRAIN_MRI_DATA, ``predict ''`` read the current
    folder."""
    for dest, value in vars(args).items():
        option = "--" + dest.replace("_", "-")
        if dest == "paths" and "" in value:
            return "an input path is empty (''); give image files or folders"
        if dest == "set":
            for item in value:
                key, equals, text = item.partition("=")
                if equals and not text.strip():
                    return (f"--set {item}: the value is empty; give one, or leave out "
                            f"--set {key.strip()} for the default")
        elif value == "":
            hint = _EMPTY_HINTS.get(dest, f"a value, or leave out {option} for the default")
            return f"{option} is empty (''); give {hint}"
    return None


#: What Ctrl-C leaves behind, by verb: a run keeps its finished steps and resumes.
_AFTER_CTRL_C = {"run": "the finished steps are kept: rerun the same command to resume"}


def _verb(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _checked(args: argparse.Namespace) -> int:
    """Refuse what no verb can use, then run the verb (exit codes: the module docstring)."""
    from brainmri.core.errors import BrainMRIError, DatasetNotFoundError, ProfileError
    from brainmri.core.runfolder import name_problem

    if (problem := _empty_value(args)):
        _err(problem)
        return EXIT_USAGE
    if args.command in ("book", "html", "tables") and (problem := name_problem(args.run)):
        _err(f"--run {args.run!r}: {problem}.")
        return EXIT_USAGE
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # A relative $BRAIN_MRI_DATA means "from where I typed the command"; the notebooks'
    # kernels run in notebooks/, so it is made absolute here, once.
    if os.environ.get("BRAIN_MRI_DATA"):
        os.environ["BRAIN_MRI_DATA"] = os.path.abspath(os.environ["BRAIN_MRI_DATA"])
    try:
        return args.func(args)
    except (ProfileError, DatasetNotFoundError) as exc:  # an argument, or what it names
        _err(str(exc))
        return EXIT_USAGE
    except BrainMRIError as exc:
        _err(str(exc))
        return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    stdout = _guard_stdout()
    args = None
    try:
        # Everything inside the try, the parser too: building it imports the runner (most
        # of a second), and Ctrl-C there must not print a traceback either.
        try:
            args = parser().parse_args(argv)
            code = _checked(args)
        except KeyboardInterrupt:
            _err("interrupted (Ctrl-C); "
                 + _AFTER_CTRL_C.get(_verb(argv), "rerun the same command to start again") + ".")
            code = EXIT_INTERRUPTED
        except SystemExit:  # argparse: --help (0) or a usage error (2), once printed
            stdout.flush()
            if stdout.failed is None:
                raise
            raise stdout.failed from None
        stdout.flush()
        if stdout.failed is not None:  # a write error that a library swallowed
            raise stdout.failed
        return code
    except StdoutError as exc:
        what = _AFTER_CTRL_C.get(args.command) if args is not None else None
        _err(f"cannot write to standard output ({exc.strerror}); stopped"
             + (f": {what}." if what else "."))
        return EXIT_FAILED
    finally:
        _release_stdout(stdout)


if __name__ == "__main__":
    raise SystemExit(main())
