"""A study's trained models kept as rows that later runs reuse (issue 33).

A lever study trains many (recipe, seed) models, more than one sitting on two CPU cores
holds. Each model, once scored, leaves a row under ``study-rows/<tag>/`` beside the run
folders (``results/study-rows/`` for the committed runs), shared by every run there: its
predictions on every evaluation set (and its test-time-augmented twin's), its sidecar,
what training cost, and the readings that needed the weights (AdaBN). No weights: the
row is small enough to commit. The row carries the key of what determined it: the
recipe's parameters and seed, the fingerprints of the datasets it read, and the source
of the code that trains and scores a model. A later run (the same study continued, or a
reference run) restores a row whose key matches instead of training again, and retrains
one whose key does not: a stale row is never reused. Within a time budget (``limit``), a
chapter stops cleanly before training a model once the budget is spent, its rows kept:
the same command, run again, goes on where it stopped.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import time
from pathlib import Path

import pandas as pd

from brainmri.core.errors import BrainMRIError
from brainmri.core.files import atomic_path, atomic_write_json, csv_text
from brainmri.core.runfolder import RunFolder, model_tag

#: The folder of study rows, beside the run folders.
FOLDER = "study-rows"
#: Parameters that say where things are, not what is trained.
NOT_KEYED = ("data_dir", "export_to")
#: Parameters naming a dataset a model reads (trains on, holds out, or is scored on).
DATASET_PARAMETERS = ("dataset", "extra_training", "hold_out_source", "external_dataset",
                      "external_binary", "drop_source")
#: The code whose change can change a trained model's predictions: everything below
#: ``report`` (data, modeling, evaluation, core), and the study modules that train and
#: score (the book's words and tables are left out: editing them keeps every row).
_LIB = Path(__file__).resolve().parents[2]
SCIENCE_CODE = ("core", "data", "modeling", "evaluation", "report/studies/experiment.py",
                "report/studies/grids.py", "report/studies/levers.py",
                "report/studies/study.py")
KEY, ROW = "key.json", "row.json"


def science_hash() -> str:
    """A short hash of :data:`SCIENCE_CODE`'s files (paths and bytes)."""
    digest = hashlib.sha1()
    for part in SCIENCE_CODE:
        path = _LIB / part
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(_LIB).as_posix().encode() + b"\0"
                          + file.read_bytes())
    return digest.hexdigest()[:16]


def key(values: dict, extra: dict | None = None) -> dict:
    """What determines a study model: its parameters ``values`` (locations left out),
    ``extra`` settings of the study that shape the row (the AdaBN collection), the
    fingerprint of every dataset it reads, and :func:`science_hash`."""
    from brainmri.data.sources import fingerprint, locate

    params = {k: v for k, v in values.items() if k not in NOT_KEYED}
    names = sorted({values[k] for k in DATASET_PARAMETERS if values.get(k)}
                   | {v for v in (extra or {}).values() if isinstance(v, str)})
    data = {name: fingerprint(locate(name, values.get("data_dir"))) for name in names}
    return json.loads(json.dumps({"params": params, "extra": extra or {}, "data": data,
                                  "code": science_hash()}, sort_keys=True, default=str))


def _folder(run: RunFolder, tag: str) -> Path:
    return run.root.parent / FOLDER / tag


class StudyBudgetSpent(BrainMRIError):
    """The study's time budget ran out before every model was trained (rows kept)."""


#: When the current budget ends (``time.monotonic()``), and its size; None: no budget.
_budget: dict = {"ends": None, "minutes": None, "trained": 0}


def limit(minutes: float | None) -> None:
    """Train models that are not rows yet only for ``minutes`` from now (None: no limit):
    after that, ``reuse_or_train`` raises :class:`StudyBudgetSpent` instead of training."""
    _budget.update(ends=None if minutes is None else time.monotonic() + 60 * minutes,
                   minutes=minutes, trained=0)


def store(run: RunFolder, tag: str, twins: list[str], row_key: dict, row: dict) -> None:
    """Keep model ``tag``'s row: the predictions of it and of its ``twins`` (tags scored
    from the same weights, such as test-time augmentation), its sidecar and collection
    check, and ``row`` (costs, readings). The key is written last, so an interrupted
    store leaves a row that is never reused."""
    folder = _folder(run, tag)
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "predictions").mkdir(parents=True)
    for (owner, split), path in run.prediction_files().items():
        if owner in (tag, *twins):
            with atomic_path(folder / "predictions" / f"{owner}_{split}.csv.gz") as tmp:
                # mtime 0: the same predictions give the same bytes (rows are committed)
                tmp.write_bytes(gzip.compress(_rounded(path), compresslevel=9, mtime=0))
    for name in ("model.json", "collection_check.json"):
        if (run.model_dir(tag) / name).exists():
            shutil.copyfile(run.model_dir(tag) / name, folder / name)
    atomic_write_json(row, folder / ROW)
    atomic_write_json(row_key, folder / KEY)


def _rounded(path: Path) -> bytes:
    """A predictions file's bytes with its numbers at 7 significant digits (a float32
    logit's precision; half the size of the full text), file names kept as written."""
    frame = pd.read_csv(path, keep_default_na=False, encoding_errors="surrogateescape")
    for column in frame.select_dtypes("float").columns:
        frame[column] = frame[column].map(lambda x: float(f"{x:.7g}"))
    return csv_text(frame).encode("utf-8", "surrogateescape")


def restore(run: RunFolder, tag: str, row_key: dict) -> dict | None:
    """Put model ``tag``'s stored predictions (and its twins') back into ``run`` and
    return its row, when a row with the same key is stored; None otherwise (the model
    is then trained)."""
    folder = _folder(run, tag)
    try:
        if json.loads((folder / KEY).read_text()) != row_key:
            return None
        row = json.loads((folder / ROW).read_text())
    except (OSError, ValueError):
        return None
    for stored in sorted((folder / "predictions").glob("*.csv.gz")):
        owner, split = stored.name.removesuffix(".csv.gz").rsplit("_", 1)
        target = run.predictions(owner, split)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            tmp.write_bytes(gzip.decompress(stored.read_bytes()))
    for name in ("model.json", "collection_check.json"):
        if (folder / name).exists():
            run.model_dir(tag).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / name, run.model_dir(tag) / name)
    return row


def reuse_or_train(p, twins: list[str], train, extra: dict | None = None) -> dict:
    """Model ``p``'s row: restored when the run holds one with the same key (``key`` of
    ``p``'s parameters and ``extra``), else made by ``train()`` (which trains, scores the
    model and its ``twins``, model names scored from the same weights, and returns what
    the row keeps besides predictions) and stored."""
    from brainmri.report.studies.experiment import display_name

    tag = model_tag(display_name(p), p.dataset)
    row_key = key(p.values(), extra)
    row = restore(p.run, tag, row_key)
    if row is None:
        if _budget["ends"] is not None and time.monotonic() > _budget["ends"]:
            raise StudyBudgetSpent(
                f"the study's budget of {_budget['minutes']} minutes is spent: "
                f"{_budget['trained']} models trained in it, their rows kept in "
                f"{p.run.root.parent / FOLDER}; run the same command again to go on")
        row = train()
        store(p.run, tag, [model_tag(t, p.dataset) for t in twins], row_key, row)
        _budget["trained"] += 1
    return row
