"""The ``brainmri`` command line: ``brainmri predict PATH... [--model FILE] [--csv OUT]``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _predict(args) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .models import load_saved
    from .predict import collect, default_model, predict_files
    from .results import atomic_write_csv

    model_path = Path(args.model) if args.model else default_model()
    if not model_path.exists():
        print(f"error: model file {model_path} not found. Pass --model FILE (a .keras file "
              f"saved by the series, with its model.json beside it).", file=sys.stderr)
        return 2
    files = collect(args.paths)
    missing = [p for p in files if not p.exists()]
    if not files:
        print("error: no files found in the given paths.", file=sys.stderr)
        return 2
    model, metadata = load_saved(model_path)
    if not metadata:
        print(f"error: {model_path.with_name('model.json')} is missing; it records the input "
              f"size and normalisation the model expects.", file=sys.stderr)
        return 2
    table = predict_files(files, model, metadata, args.batch_size,
                          show_progress=not args.quiet and len(files) > 1)
    if args.csv:
        atomic_write_csv(table, args.csv)
    if not args.csv or args.print:
        with_prob = table.copy()
        prob_cols = [c for c in table.columns if c.startswith("p_")]
        with_prob[prob_cols] = with_prob[prob_cols].round(4)
        print(with_prob.to_csv(index=False), end="")
    read = int((table["error"] == "").sum())
    print(f"{read} of {len(table)} file(s) classified"
          + (f"; {len(table) - read} could not be read" if read < len(table) else "")
          + (f"; {len(missing)} path(s) do not exist" if missing else "")
          + (f"; written to {args.csv}" if args.csv else ""), file=sys.stderr)
    return 0 if read else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="brainmri", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="classify image files or folders (searched recursively)")
    p.add_argument("paths", nargs="+", help="image files and/or folders")
    p.add_argument("--model", help="a .keras file saved by the series (default: the shipped model)")
    p.add_argument("--csv", help="write the table to this CSV file")
    p.add_argument("--print", action="store_true", help="print the table even with --csv")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.command == "predict":
        return _predict(args)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
