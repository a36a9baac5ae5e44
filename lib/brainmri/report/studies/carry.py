"""Study rows carried over to new code, once the new code has reproduced a sample of them.

A row's key holds a hash of all the science code (``study.science_hash``), so any edit
there makes every row stale, and retraining the reference study's rows takes 3 h 24 min
on two CPU cores. An edit that leaves the study's models as they were (an option that is
off for them, a renamed variable) need not cost that. :func:`carry` retrains a sample of
rows with the current code, in a scratch folder where every other row is restored, and
re-keys the rows to the current code only when each retrained row's predictions, sidecar
and collection check come out byte for byte the same (training is deterministic: the
same seed on the same kind of CPU gives the same numbers). Anything else refuses, with
the files that differ: then the rows are retrained (``make study``). The caller picks the
sample: one row per code path the edit touches. Each carry is logged in ``carried.json``
in the rows folder.

Not part of ``study.SCIENCE_CODE``: this module decides which rows are reused, not what a
model computes.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from brainmri.core.errors import BrainMRIError
from brainmri.core.files import atomic_write_json
from brainmri.report.studies import study

#: The log of carries, in the rows folder.
LOG = "carried.json"
#: The scratch results folder (beside the rows) where the sample is retrained.
SCRATCH = ".carry"
#: What a row holds that the new code must reproduce exactly (row.json is left out: it
#: records wall-clock costs, which differ between any two trainings).
COMPARED = ("model.json", "collection_check.json")
#: Sidecar fields that record one training, not what the model computes: when it was
#: saved, and the hash of its ``.keras`` archive (whose metadata holds that time too).
VOLATILE = ("saved", "model_sha256")


class CarryRefused(BrainMRIError):
    """The current code did not reproduce a sampled row: the rows must be retrained."""


def row_codes(rows: Path) -> dict[str, str]:
    """Each row's code hash, by tag (rows without a key are left out: never reused)."""
    codes = {}
    for key in sorted(rows.glob(f"*/{study.KEY}")):
        codes[key.parent.name] = json.loads(key.read_text())["code"]
    return codes


def _rekey(folder: Path, code: str) -> None:
    """Point row ``folder``'s key at ``code``, leaving the rest of the key as it was."""
    key = json.loads((folder / study.KEY).read_text())
    atomic_write_json({**key, "code": code}, folder / study.KEY)


def stage(rows: Path, scratch_rows: Path, sample: Sequence[str], code: str) -> None:
    """Copy every row but the ``sample`` into ``scratch_rows``, keyed to ``code``: a run
    there restores them and trains only the sample."""
    for tag in row_codes(rows):
        if tag not in sample:
            shutil.copytree(rows / tag, scratch_rows / tag)
            _rekey(scratch_rows / tag, code)


def _contents(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.name == "model.json":
        sidecar = {k: v for k, v in json.loads(data).items() if k not in VOLATILE}
        return json.dumps(sidecar, sort_keys=True).encode()
    return data


def differences(kept: Path, retrained: Path) -> list[str]:
    """The files of row folder ``kept`` that ``retrained`` lacks or holds otherwise."""
    names = [p.relative_to(kept).as_posix() for p in sorted(kept.glob("predictions/*.gz"))]
    names += [name for name in COMPARED if (kept / name).exists()]
    return [name for name in names if not (retrained / name).exists()
            or _contents(kept / name) != _contents(retrained / name)]


def carry(rows: Path, sample: Sequence[str], retrain: Callable[[Path], object]) -> dict:
    """Re-key the stale rows of ``rows`` to the current code if ``retrain(results_root)``
    (which runs the study with its rows at ``results_root / study.FOLDER``) reproduces
    every row of ``sample`` exactly; returns the log entry. Raises :class:`CarryRefused`
    when one differs, and changes nothing then."""
    code = study.science_hash()
    codes = row_codes(rows)
    stale = sorted(tag for tag, c in codes.items() if c != code)
    unknown = sorted(set(sample) - set(codes))
    if unknown:
        raise CarryRefused(f"no row {', '.join(unknown)} in {rows}; the sample must be rows "
                           f"that exist (one of {', '.join(sorted(codes)[:3])}, ...)")
    if not sample:
        raise CarryRefused("the sample is empty: name one row per code path the edit touches")
    if not stale:
        return {"to": code, "rows": 0}
    scratch = rows.parent / SCRATCH
    shutil.rmtree(scratch, ignore_errors=True)
    stage(rows, scratch / study.FOLDER, sample, code)
    retrain(scratch)
    found = {tag: differences(rows / tag, scratch / study.FOLDER / tag) for tag in sample}
    differ = {tag: names for tag, names in found.items() if names}
    if differ:  # the scratch folder stays, to compare: the next carry starts afresh
        lines = "; ".join(f"{tag}: {', '.join(names)}" for tag, names in differ.items())
        raise CarryRefused(f"the current code does not reproduce {len(differ)} of "
                           f"{len(sample)} sampled rows ({lines}; retrained copies in "
                           f"{scratch / study.FOLDER}); the rows are kept as they were: "
                           "retrain them with `make study`")
    shutil.rmtree(scratch, ignore_errors=True)
    for tag in stale:
        _rekey(rows / tag, code)
    entry = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
             "from": sorted({codes[tag] for tag in stale}), "to": code, "rows": len(stale),
             "reproduced": sorted(sample)}
    log = rows / LOG
    history = json.loads(log.read_text()) if log.exists() else []
    atomic_write_json([*history, entry], log)
    return entry
