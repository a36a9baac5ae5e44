"""Study rows (issue 33): a trained model's predictions and costs, kept without weights and
restored by a later run whose key matches."""

import gzip
import json
import shutil

import pandas as pd
import pytest

from brainmri.core.files import atomic_write_csv
from brainmri.core.runfolder import RunFolder
from brainmri.report.studies import study
from conftest import file_digests

TAG, TWIN = "compact_cnn+ablation-x-nickparvar", "compact_cnn+ablation-x+bn-nickparvar"


def _run(tmp_path, name="run"):
    run = RunFolder(tmp_path / name).create()
    frame = pd.DataFrame({"path": ["Testing/glioma/a\rb.jpg", "Testing/no/NA.jpg"],
                          "label": ["glioma", "no_tumor"],
                          "p_glioma": [0.123456789012, 0.5], "z_glioma": [1 / 3, -2.0]})
    for tag in (TAG, TWIN):
        for split in ("val", "test"):
            atomic_write_csv(frame, run.predictions(tag, split))
    run.model_dir(TAG).mkdir(parents=True)
    (run.model_dir(TAG) / "model.json").write_text('{"ood": {"threshold": 1.5}}')
    return run, frame


def test_a_row_comes_back_in_a_fresh_run_with_its_twin_and_sidecar(tmp_path):
    first, frame = _run(tmp_path, "first")
    key = study.key({"epochs": 3, "seed": 7})
    study.store(first, TAG, [TWIN], key, {"cost": {"train seconds": 12.5}})
    second = RunFolder(tmp_path / "second").create()
    assert study.restore(second, TAG, key) == {"cost": {"train seconds": 12.5}}
    for tag in (TAG, TWIN):
        back = pd.read_csv(second.predictions(tag, "test"), keep_default_na=False)
        assert list(back["path"]) == list(frame["path"])  # names as written
        assert back["p_glioma"].tolist() == pytest.approx(frame["p_glioma"], rel=1e-6)
        assert back["z_glioma"].tolist() == pytest.approx(frame["z_glioma"], rel=1e-6)
    assert json.loads((second.model_dir(TAG) / "model.json").read_text())["ood"]
    # the row's bytes do not depend on when it was stored
    row = tmp_path / study.FOLDER / TAG / "predictions" / f"{TAG}_test.csv.gz"
    before = row.read_bytes()
    study.store(first, TAG, [TWIN], key, {"cost": {"train seconds": 12.5}})
    assert row.read_bytes() == before


def test_another_key_or_a_half_stored_row_is_not_reused(tmp_path):
    run, _ = _run(tmp_path)
    key = study.key({"epochs": 3, "seed": 7})
    study.store(run, TAG, [], key, {})
    assert study.restore(run, TAG, study.key({"epochs": 4, "seed": 7})) is None
    assert study.restore(run, TAG, study.key({"epochs": 3, "seed": 8})) is None
    (tmp_path / study.FOLDER / TAG / study.KEY).unlink()  # a store interrupted before its key
    assert study.restore(run, TAG, key) is None


def test_the_key_follows_the_code_that_trains_not_the_books_words(tmp_path, monkeypatch):
    """Editing a module of the science code changes the key; the book's words do not."""
    before = study.science_hash()
    lib = tmp_path / "lib"
    for part in study.SCIENCE_CODE + ("report/studies/findings.py",):
        source = study._LIB / part
        target = lib / part
        if source.is_dir():
            for file in source.rglob("*.py"):
                (target / file.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
                (target / file.relative_to(source)).write_bytes(file.read_bytes())
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    monkeypatch.setattr(study, "_LIB", lib)
    assert study.science_hash() == before
    (lib / "report/studies/findings.py").write_text("# reworded\n")
    assert study.science_hash() == before
    (lib / "modeling" / "training.py").write_text("# another training loop\n")
    assert study.science_hash() != before


def test_rerunning_the_quick_study_trains_nothing(quick_run, tmp_path):
    """Issue 33 at the chapter's scale: the quick profile's chapter 08c, run again beside
    the rows its first run kept, restores every ablation and lever model and trains none
    (a trained model would leave its weights again); its tables and rows stay the same."""
    import shutil
    import subprocess
    import sys

    results = tmp_path / "results"
    shutil.copytree(quick_run["run_dir"].parent, results)
    run, rows = results / "quick", results / study.FOLDER
    # 08c's ablation and lever models (chapter 05b's grid shares the prefix, not the rows)
    models = sorted(d for d in (run / "models").iterdir()
                    if d.name.startswith("compact_cnn+ablation-"))
    assert models and {d.name for d in models} == {p.name for p in rows.iterdir()}
    for folder in models:
        for weights in folder.glob("*.keras"):
            weights.unlink()
    tables = ("ablation.csv", "levers.csv", "levers_adabn.csv")
    before = {name: pd.read_csv(run / name) for name in tables}
    stored = file_digests(rows)

    proc = subprocess.run([sys.executable, "-m", "brainmri", "run", "--profile", "quick",
                           "--only", "08c", "--force", "--results-dir", str(results)],
                          env=quick_run["env"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "08c_shortcut_ablation: ok" in proc.stdout
    retrained = [d.name for d in models if any(d.glob("*.keras"))]
    assert not retrained, f"trained again although their rows were kept: {retrained}"
    assert file_digests(rows) == stored
    for name, frame in before.items():
        # restored predictions carry 7 significant digits, the first run's all of them
        pd.testing.assert_frame_equal(pd.read_csv(run / name), frame, rtol=1e-5, obj=name)


def _rows_with_old_code(tmp_path, tags=("a-nickparvar", "b-nickparvar", "c-nickparvar")):
    """Three rows keyed to code that is not the current one."""
    run, _ = _run(tmp_path)
    for tag in tags:
        run.model_dir(tag).mkdir(parents=True, exist_ok=True)
        (run.model_dir(tag) / "model.json").write_text('{"ood": 1.5, "saved": "then"}')
        atomic_write_csv(pd.DataFrame({"p": [0.25, float(len(tag))]}), run.predictions(tag, "test"))
        study.store(run, tag, [], {**study.key({"seed": 1, "name": tag}), "code": "old"}, {})
    return tmp_path / study.FOLDER


def _retrain_as(rows, changed: str | None = None):
    """A stand-in for the scratch study run: it trains the sample (the rows not staged)
    again, giving the same predictions, or other ones for row ``changed``."""
    def retrain(root):
        scratch = root / study.FOLDER
        for row in rows.iterdir():
            if row.is_dir() and not (scratch / row.name).exists():
                shutil.copytree(row, scratch / row.name)
                sidecar = scratch / row.name / "model.json"  # another training's time
                if sidecar.exists():
                    saved = {**json.loads(sidecar.read_text()), "saved": "later"}
                    sidecar.write_text(json.dumps(saved))
                if row.name == changed:
                    path = next((scratch / row.name / "predictions").glob("*.gz"))
                    path.write_bytes(gzip.compress(b"p\n0.26\n"))
        retrain.staged = sorted(p.name for p in scratch.iterdir())
    return retrain


def test_rows_are_carried_to_new_code_only_after_it_reproduced_the_sample(tmp_path):
    from brainmri.report.studies import carry

    rows = _rows_with_old_code(tmp_path)
    retrain = _retrain_as(rows)
    entry = carry.carry(rows, ["a-nickparvar"], retrain)
    assert retrain.staged == ["a-nickparvar", "b-nickparvar", "c-nickparvar"]
    code = study.science_hash()
    assert entry["rows"] == 3 and entry["from"] == ["old"] and entry["to"] == code
    assert set(carry.row_codes(rows).values()) == {code}
    assert json.loads((rows / carry.LOG).read_text())[-1]["reproduced"] == ["a-nickparvar"]
    assert not (tmp_path / carry.SCRATCH).exists()
    # carried rows are restored by a run of the current code
    fresh = RunFolder(tmp_path / "fresh").create()
    key = study.key({"seed": 1, "name": "b-nickparvar"})
    assert study.restore(fresh, "b-nickparvar", key) == {}
    assert carry.carry(rows, ["a-nickparvar"], retrain)["rows"] == 0  # nothing stale now


def test_a_row_the_new_code_does_not_reproduce_refuses_the_carry(tmp_path):
    from brainmri.report.studies import carry

    rows = _rows_with_old_code(tmp_path)
    before = file_digests(rows)
    with pytest.raises(carry.CarryRefused, match=r"1 of 2 sampled rows \(b-nickparvar: "
                                                 r"predictions/b-nickparvar_test.csv.gz; "
                                                 r"retrained copies"):
        carry.carry(rows, ["a-nickparvar", "b-nickparvar"], _retrain_as(rows, "b-nickparvar"))
    assert file_digests(rows) == before  # nothing re-keyed, nothing logged
    assert not (rows / carry.LOG).exists()
    assert (tmp_path / carry.SCRATCH / study.FOLDER / "b-nickparvar").is_dir()  # to compare
    with pytest.raises(carry.CarryRefused, match="no row z-nickparvar"):
        carry.carry(rows, ["z-nickparvar"], _retrain_as(rows))
    with pytest.raises(carry.CarryRefused, match="the sample is empty"):
        carry.carry(rows, [], _retrain_as(rows))
