import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from synthetic import make_dataset  # noqa: E402

SHARED = Path(os.environ.get("BRAIN_MRI_DATA", "")) if os.environ.get("BRAIN_MRI_DATA") else None


def real_data_root() -> Path | None:
    """The shared dataset copies, when BRAIN_MRI_DATA points at them."""
    if SHARED and (SHARED / "brain-tumor-classification-mri" / "Training").is_dir():
        return SHARED
    return None


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own derived-data cache (never the project's data/cache)."""
    monkeypatch.setenv("BRAIN_MRI_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def synthetic_root(tmp_path) -> Path:
    """A folder holding small synthetic copies of both datasets."""
    make_dataset(tmp_path, "sartaj")
    make_dataset(tmp_path, "nickparvar", seed=1)
    make_dataset(tmp_path, "br35h", seed=2)
    return tmp_path


def _digest(root: Path) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """The quick profile run end to end through papermill, as `make report` would.

    Uses the shared dataset copies when BRAIN_MRI_DATA points at them, else synthetic
    copies of both datasets. Returns (run folder, data root, wall seconds, raw digests).
    """
    import subprocess
    import time

    base = tmp_path_factory.mktemp("quick")
    data_root = real_data_root()
    if data_root is None:
        data_root = base / "data"
        # Larger than the quick profile's subset (16 per class and split), so that a
        # chapter that ignores the subset reads other files than the predictions name.
        make_dataset(data_root, "sartaj", {"Training": 30, "Testing": 20}, size=64)
        make_dataset(data_root, "nickparvar", {"Training": 30, "Testing": 20}, size=64, seed=1)
        make_dataset(data_root, "br35h", {"Testing": 20}, size=64, seed=2)
    before = {name: _digest(data_root / name) for name in
              ("brain-tumor-classification-mri", "brain-tumor-mri-dataset",
               "brain-tumor-detection")}
    env = {**os.environ, "BRAIN_MRI_DATA": str(data_root),
           "BRAIN_MRI_CACHE": str(base / "cache")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "brainmri", "run", "--profile", "quick",
                           "--results-dir", str(base / "results")], env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"run_dir": base / "results" / "quick", "data_root": data_root, "seconds": seconds,
            "digests_before": before, "stdout": proc.stdout, "env": env}


def build_book(run: str, results_dir: Path | None = None, env: dict | None = None) -> Path:
    """``brainmri book`` (warnings as errors) for ``run``; returns _build/html."""
    import subprocess

    from brainmri.core import paths

    command = [sys.executable, "-m", "brainmri", "book", "--run", run]
    if results_dir is not None:
        command += ["--results-dir", str(results_dir)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return paths.project_root() / "_build" / "html"


@pytest.fixture(scope="session")
def built_book(quick_run):
    """The book built (warnings as errors) from the quick run; returns _build/html."""
    return build_book("quick", quick_run["run_dir"].parent, quick_run["env"])


#: A compact CNN small enough to train in seconds, through the model chapters' own call.
TINY_COMPACT = {"seed": 0, "image_size": 32, "widths": [8, 16, 16, 32], "epochs": 6,
                "learning_rate": 3e-3, "patience": 6, "batch_size": 16, "warmup_epochs": 0,
                "schedule": "plateau", "augment": "none", "external_dataset": None,
                "label_smoothing": 0.0, "weight_decay": 0.0}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A tiny compact CNN trained on synthetic data with ``experiment.run``, as chapter 08b
    does. Returns (run folder, model folder, data root); shared by the predict, explain
    and benchmark tests."""
    from brainmri.report import experiment, notebook

    base = tmp_path_factory.mktemp("trained")
    os.environ["BRAIN_MRI_CACHE"] = str(base / "cache")
    make_dataset(base / "data", "sartaj", {"Training": 30, "Testing": 10}, size=64)
    make_dataset(base / "data", "br35h", {"Testing": 10}, size=64, seed=2)
    p = notebook.setup("08b_compact_cnn", {**TINY_COMPACT, "data_dir": str(base / "data")},
                       run_dir=str(base / "run"))
    result = experiment.run(p)
    return p.run.root, result.folder, base / "data"
