"""The run folder, ``results/<run>/``: every file a run writes is named here, once.

Notebooks write into it, the benchmark and the book read from it, and tests check it;
they all go through :class:`RunFolder` instead of agreeing on string literals.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from brainmri.core import paths

#: Where a notebook opened by hand (not by the runner) writes.
INTERACTIVE = "interactive"


#: Variant names of the reduced-size study models (chapters 05b, 08c) start with this,
#: so that they never share a file with a chapter's model trained with the same recipe.
ABLATION_PREFIX = "ablation-"


#: A name that becomes one component of a file or folder name (a run, a model, a recipe
#: variant): it cannot climb out of its folder (``..``, ``/``) or hide (a leading dot).
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def name_problem(value: object) -> str | None:
    """Why ``value`` cannot name a file or folder (None when it can)."""
    if isinstance(value, str) and PLAIN_NAME.fullmatch(value):
        return None
    return ("not a plain name (letters, digits, '_', '.' and '-', starting with a letter "
            "or digit; it becomes a file name)")


def is_ablation_model(model: str) -> bool:
    """A study model, compared in its own chapter only: the benchmark and the
    explanations leave it out."""
    return f"+{ABLATION_PREFIX}" in model


def model_tag(model_name: str, dataset: str) -> str:
    """How one trained model is named in file names: ``<model>-<training dataset>``."""
    return f"{model_name}-{dataset}"


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @classmethod
    def named(cls, run: str = INTERACTIVE, results_root: Path | None = None) -> RunFolder:
        return cls((results_root or paths.results_root()) / run)

    @classmethod
    def at(cls, run_dir: str | Path | None) -> RunFolder:
        """The runner's folder when it passes one, else ``results/interactive``. Relative
        paths are taken from the project root, so executed notebooks never carry an
        absolute path of the machine that ran them."""
        if run_dir is None:
            return cls.named(INTERACTIVE)
        path = Path(run_dir)
        return cls(path if path.is_absolute() else paths.project_root() / path)

    def create(self) -> RunFolder:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def name(self) -> str:
        return self.root.name

    # --- provenance, written by the runner ---------------------------------------
    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def html(self) -> Path:
        """Standalone HTML pages of the executed notebooks (``brainmri html``)."""
        return self.root / "html"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def environment(self) -> Path:
        return self.root / "environment.json"

    @property
    def lock(self) -> Path:
        """Held (flock) by the runner writing this folder, holding its pid."""
        return self.root / ".lock"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def step_log(self, step: str) -> Path:
        """What the console does not show of one step: its kernel's own output (start-up
        notices, TensorFlow and absl lines) and the runner's warnings while it ran."""
        return self.logs / f"{step}.log"

    # --- data chapters -------------------------------------------------------------
    @property
    def split_counts(self) -> Path:
        return self.root / "split_counts.csv"

    @property
    def skipped(self) -> Path:
        return self.root / "skipped.csv"

    @property
    def variance(self) -> Path:
        return self.root / "variance.json"

    @property
    def leakage(self) -> Path:
        return self.root / "leakage.json"

    @property
    def sources(self) -> Path:
        """Chapter 01c's findings: source collections, external set, shortcut checks."""
        return self.root / "sources.json"

    def test_with_copy(self, dataset: str) -> Path:
        """Test images of ``dataset`` with a copy in its own Training folder."""
        return self.root / "duplicates" / f"{dataset}_test_with_copy.csv"

    def overlap(self, a: str, b: str) -> Path:
        """Image pairs shared by datasets ``a`` and ``b`` (columns ``<a>_path``, ``<b>_path``)."""
        first, second = sorted((a, b))
        return self.root / "duplicates" / f"{first}_{second}_overlap.csv"

    def external_exclusions(self, dataset: str) -> Path:
        """Images of the evaluation-only ``dataset`` with a copy in a training folder:
        never scored as external (column ``path``)."""
        return self.root / "duplicates" / f"{dataset}_in_training.csv"

    # --- models and their predictions -------------------------------------------------
    def model_dir(self, tag: str) -> Path:
        return self.root / "models" / tag

    def collection_check(self, tag: str) -> Path:
        """How often the collection check would fire for model ``tag`` on batches of its
        home test images and of a collection it did not train on (written at training)."""
        return self.model_dir(tag) / "collection_check.json"

    def predictions(self, tag: str, split: str) -> Path:
        return self.root / "predictions" / f"{tag}_{split}.csv"

    def prediction_files(self) -> dict[tuple[str, str], Path]:
        """{(tag, split): file} of every predictions file of the run."""
        out = {}
        for path in sorted((self.root / "predictions").glob("*_*.csv")):
            tag, split = path.stem.rsplit("_", 1)
            out[(tag, split)] = path
        return out

    def saved_models(self, names: list[str] | None = None) -> dict[str, Path]:
        """{tag: folder} of the models the run saved (optionally only these model names)."""
        out = {}
        for meta in sorted((self.root / "models").glob("*/model.json")):
            if names is None or json.loads(meta.read_text()).get("model") in names:
                out[meta.parent.name] = meta.parent
        return out

    # --- evaluation chapters -----------------------------------------------------------
    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def ablation(self) -> Path:
        """Chapter 08c's table: one row per training recipe."""
        return self.root / "ablation.csv"

    @property
    def levers(self) -> Path:
        """Chapter 08c's generalisation levers: one row per model (lever x seed, ensembles),
        read on the held-out collection, the home deduplicated test and Br35H."""
        return self.root / "levers.csv"

    @property
    def adabn(self) -> Path:
        """Chapter 08c's AdaBN deployment mode: each lever model's Br35H readings before
        and after adapting its batch-norm statistics to that collection."""
        return self.root / "levers_adabn.csv"

    @property
    def claims(self) -> Path:
        """Chapter 05b's grid (colour mode x epochs) and seed repeats."""
        return self.root / "claims.csv"

    @property
    def xai(self) -> Path:
        return self.root / "xai_faithfulness.csv"
