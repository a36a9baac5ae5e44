"""Throughput of ``brainmri predict``, start-up included: the command is run as a user
runs it (a fresh process: Python, TensorFlow and the model load every time) on a folder,
and images per second are printed. Not a test: the numbers depend on the machine and on
whatever else it is doing, so the load average is printed with them.

    .venv/bin/python benchmarks/predict_throughput.py [FOLDER] [--repeat 3] [--workers N]

FOLDER defaults to Nickparvar's Testing folder under $BRAIN_MRI_DATA (1,311 images).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _default_folder() -> Path | None:
    data = os.environ.get("BRAIN_MRI_DATA")
    folder = Path(data) / "brain-tumor-mri-dataset" / "Testing" if data else None
    return folder if folder and folder.is_dir() else None


def run_once(folder: Path, extra: list[str]) -> tuple[int, float]:
    """(images classified or not, seconds) of one ``brainmri predict`` run."""
    exe = Path(sys.executable).with_name("brainmri")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "predictions.csv"
        start = time.perf_counter()
        proc = subprocess.run([str(exe), "predict", str(folder), "--csv", str(out), "--quiet",
                               *extra], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"brainmri predict failed ({proc.returncode}): {proc.stderr}")
        rows = len(out.read_text().splitlines()) - 1
    return rows, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=_default_folder())
    parser.add_argument("--repeat", type=int, default=3, help="runs (the best and the "
                                                               "median are printed)")
    parser.add_argument("--workers", type=int, default=None, help="passed to predict")
    parser.add_argument("--model", default=None, help="passed to predict")
    args = parser.parse_args(argv)
    if args.folder is None:
        parser.error("give a folder of images, or set BRAIN_MRI_DATA to the datasets' folder")
    extra = [*(["--workers", str(args.workers)] if args.workers else []),
             *(["--model", args.model] if args.model else [])]
    rates = []
    for i in range(args.repeat):
        n, seconds = run_once(args.folder, extra)
        rates.append(n / seconds)
        print(f"run {i + 1}: {n} images in {seconds:.2f} s = {n / seconds:.1f} images/s "
              f"(1-min load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)",
              flush=True)
    print(f"brainmri predict: best {max(rates):.1f} images/s, median "
          f"{statistics.median(rates):.1f} images/s, start-up included")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
