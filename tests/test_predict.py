"""`brainmri predict` on folders that mix good and bad files."""

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
from PIL import Image

from brainmri import cli


def _mixed_folder(tmp_path, data_root):
    folder = tmp_path / "inbox"
    (folder / "nested").mkdir(parents=True)
    sources = sorted((data_root / "brain-tumor-classification-mri" / "Testing").rglob("*.jpg"))
    shutil.copy(sources[0], folder / "good one.jpg")
    Image.open(sources[1]).convert("L").save(folder / "nested" / "GRAY.PNG")
    Image.open(sources[2]).convert("RGBA").save(folder / "nested" / "rgba.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    data = sources[3].read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    return folder


def test_predict_folder_with_good_and_bad_files(tmp_path, trained_run, capsys):
    run_dir, model_dir, data_root = trained_run
    folder = _mixed_folder(tmp_path, data_root)
    out = tmp_path / "predictions.csv"
    code = cli.main(["predict", str(folder), "--model", str(model_dir / "model.keras"),
                     "--csv", str(out), "--quiet"])
    assert code == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns[:6]) == ["path", "prediction", "p_glioma", "p_meningioma",
                                       "p_no_tumor", "p_pituitary"]
    assert list(table.columns[6:]) == ["warning", "error"]
    assert len(table) == 6
    good = table[table["error"] == ""]
    assert {p.split("/")[-1] for p in good["path"]} == {"good one.jpg", "GRAY.PNG", "rgba.png"}
    probs = good[["p_glioma", "p_meningioma", "p_no_tumor", "p_pituitary"]].astype(float)
    assert np.allclose(probs.sum(1), 1, atol=1e-6)
    assert set(good["prediction"]) <= {"glioma", "meningioma", "no_tumor", "pituitary"}
    bad = table[table["error"] != ""].set_index(table[table["error"] != ""]["path"].map(
        lambda p: p.split("/")[-1]))
    assert "empty" in bad.loc["empty.jpg", "error"]
    assert "not a readable image" in bad.loc["notes.txt", "error"]
    assert bad.loc["truncated.jpg", "prediction"] == ""
    assert "3 of 6 file(s) classified; 3 could not be read" in capsys.readouterr().err


def test_exit_code_is_nonzero_only_when_nothing_could_be_read(tmp_path, trained_run, capsys):
    _, model_dir, _ = trained_run
    (tmp_path / "bad.jpg").write_bytes(b"")
    code = cli.main(["predict", str(tmp_path / "bad.jpg"), str(tmp_path / "missing.png"),
                     "--model", str(model_dir / "model.keras")])
    assert code == 1
    printed = capsys.readouterr().out
    assert "bad.jpg" in printed and "missing.png" in printed


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    code = cli.main(["predict", str(tmp_path), "--model", str(tmp_path / "none.keras")])
    assert code == 2 and "not found" in capsys.readouterr().err


def test_console_script_is_installed_and_prints_csv(tmp_path, trained_run):
    _, model_dir, data_root = trained_run
    image = next((data_root / "brain-tumor-classification-mri" / "Testing").rglob("*.jpg"))
    exe = shutil.which("brainmri", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe, "the brainmri console script is not installed in the environment"
    proc = subprocess.run([exe, "predict", str(image), "--model", str(model_dir / "model.keras")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("path,prediction,p_glioma")


def test_shipped_model_is_the_default_and_classifies_a_mixed_folder(tmp_path, trained_run,
                                                                    capsys):
    """The committed model: small, loadable with safe_mode, calibrated, used by default."""
    import json

    import keras

    from brainmri.modeling.inference import default_model

    _, _, data_root = trained_run
    shipped = default_model()
    assert shipped.exists(), f"{shipped} is not shipped; the reference run exports it (08b)"
    assert shipped.stat().st_size <= 25 * 2**20
    meta = json.loads(shipped.with_suffix(".json").read_text())
    assert meta["temperature"] > 0 and meta["class_names"] == ["glioma", "meningioma",
                                                               "no_tumor", "pituitary"]
    model = keras.saving.load_model(shipped, safe_mode=True, compile=False)
    assert model.output_shape == (None, 4)
    out = tmp_path / "shipped.csv"
    assert cli.main(["predict", str(_mixed_folder(tmp_path, data_root)), "--csv", str(out),
                     "--quiet"]) == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert (table["error"] == "").sum() == 3 and len(table) == 6


def test_a_split_without_images_has_no_predictions_and_no_keras_error():
    """Keras' predict fails on an empty dataset with an UnboundLocalError; a recipe whose
    split holds no image (a tiny subset, every copy set aside) gets empty results."""
    from brainmri import CLASS_NAMES
    from brainmri.evaluation import predictions

    class NoTestImages:
        arrays = {"test": (np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int32))}

    logits, probs = predictions.predict(None, NoTestImages(), "test")
    assert logits.shape == probs.shape == (0, len(CLASS_NAMES))
