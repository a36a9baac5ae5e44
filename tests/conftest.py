import os
import shutil
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


def file_digests(root: Path) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


class QuickRun:
    """The quick profile run end to end through papermill, as `make report` would, started
    in the background as soon as the tests are collected (``pytest_collection_finish``):
    it overlaps the unit tests instead of adding its minutes to theirs.

    Uses the shared dataset copies when BRAIN_MRI_DATA points at them, else synthetic
    copies of the three datasets.
    """

    def __init__(self, base: Path):
        import subprocess
        import time

        self.base = base
        self.data_root = real_data_root()
        if self.data_root is None:
            self.data_root = base / "data"
            # Larger than the quick profile's subset (16 per class and split), so that a
            # chapter that ignores the subset reads other files than the predictions name.
            make_dataset(self.data_root, "sartaj", {"Training": 30, "Testing": 20}, size=64)
            make_dataset(self.data_root, "nickparvar", {"Training": 30, "Testing": 20},
                         size=64, seed=1)
            make_dataset(self.data_root, "br35h", {"Testing": 20}, size=64, seed=2)
        self.digests_before = {name: file_digests(self.data_root / name)
                               for name in DATASET_FOLDERS}
        self.env = {**os.environ, "BRAIN_MRI_DATA": str(self.data_root),
                    "BRAIN_MRI_CACHE": str(base / "cache")}
        self.log = base / "console.log"
        self.start = time.perf_counter()
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "brainmri", "run", "--profile", "quick",
                 "--results-dir", str(base / "results")],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.seconds: float | None = None

    def wait(self) -> dict:
        import time

        if self.seconds is None:
            self.proc.wait()
            self.seconds = time.perf_counter() - self.start
        output = self.log.read_text()
        assert self.proc.returncode == 0, output[-20000:]
        return {"run_dir": self.base / "results" / "quick", "data_root": self.data_root,
                "seconds": self.seconds, "digests_before": self.digests_before,
                "stdout": output, "env": self.env}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)


DATASET_FOLDERS = ("brain-tumor-classification-mri", "brain-tumor-mri-dataset",
                   "brain-tumor-detection")
_QUICK: dict[str, QuickRun] = {}


def _waits_for_quick_run(item) -> bool:
    """Whether ``item`` needs the quick run: through its fixtures, or through the book it
    shows (the browser tests pick their book at run time: ``shown_book``)."""
    names = getattr(item, "fixturenames", ())
    return "quick_run" in names or "shown_book" in names


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """The tests that wait for the quick run go last (each group keeps pytest-randomly's
    order): the unit tests run while the run goes on in the background."""
    items.sort(key=_waits_for_quick_run)


def _start_quick_run() -> None:
    import tempfile

    if "run" not in _QUICK:
        _QUICK["run"] = QuickRun(Path(tempfile.mkdtemp(prefix="brainmri-quick-")))


def pytest_collection_finish(session):
    """Start the quick run now when a selected test needs it (see QuickRun)."""
    if not session.config.option.collectonly and any(
            _waits_for_quick_run(item) for item in session.items):
        _start_quick_run()


def pytest_unconfigure(config):
    if "run" in _QUICK:
        _QUICK.pop("run").stop()


@pytest.fixture(scope="session")
def quick_run() -> dict:
    """The quick run's results, once it has finished: run folder, data root, wall
    seconds, the raw data's digests before the run, console output and environment."""
    _start_quick_run()  # already started, unless no collected test declared the need
    return _QUICK["run"].wait()


def build_book(run: str, into: Path, results_dir: Path | None = None,
               env: dict | None = None) -> Path:
    """``brainmri book`` (warnings as errors) for ``run``, copied to ``into``: returns
    ``into/html``, with the staged notebooks the book was built from in ``into/notebooks``.

    The build writes into the project (_build/html, book/notebooks); the copy keeps each
    book intact when another one is built later in the session, so each is built once.
    """
    import shutil
    import subprocess

    from brainmri.core import paths

    command = [sys.executable, "-m", "brainmri", "book", "--run", run]
    if results_dir is not None:
        command += ["--results-dir", str(results_dir)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    root = paths.project_root()
    shutil.copytree(root / "_build" / "html", into / "html")
    shutil.copytree(root / "book" / "notebooks", into / "notebooks")
    return into / "html"


@pytest.fixture(scope="session")
def built_book(quick_run, tmp_path_factory):
    """The book built (warnings as errors) from the quick run; returns its html folder."""
    return build_book("quick", tmp_path_factory.mktemp("book-quick"),
                      quick_run["run_dir"].parent, quick_run["env"])


@pytest.fixture(scope="session")
def reference_book(tmp_path_factory):
    """The book built from the committed reference run (the published book)."""
    from brainmri.core import paths

    if not (paths.project_root() / "results" / "reference" / "state.json").exists():
        pytest.skip("no committed reference run in this checkout")
    return build_book("reference", tmp_path_factory.mktemp("book-reference"))


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
    from brainmri.report.series import notebook
    from brainmri.report.studies import experiment

    base = tmp_path_factory.mktemp("trained")
    make_dataset(base / "data", "sartaj", {"Training": 30, "Testing": 10}, size=64)
    make_dataset(base / "data", "br35h", {"Testing": 10}, size=64, seed=2)
    with pytest.MonkeyPatch.context() as env:  # its own cache, whichever test asks first
        env.setenv("BRAIN_MRI_CACHE", str(base / "cache"))
        p = notebook.setup("08b_compact_cnn", {**TINY_COMPACT, "data_dir": str(base / "data")},
                           run_dir=str(base / "run"))
        result = experiment.run(p)
    before = file_digests(p.run.root)
    yield p.run.root, result.folder, base / "data"
    assert file_digests(p.run.root) == before, (
        "a test wrote into the shared trained_run folder, which makes later tests depend "
        "on the order: give that test trained_run_copy")


@pytest.fixture
def trained_run_copy(trained_run, tmp_path):
    """A private copy of ``trained_run``'s run folder, for a test that writes into it (an
    audit's list of copies, an exclusion list): the shared run stays as training left it,
    whichever tests ran before."""
    run_dir, folder, data_root = trained_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy, copy / folder.relative_to(run_dir), data_root
