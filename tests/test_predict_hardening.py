"""`brainmri predict` against hostile inputs: malformed images, an output path that would
overwrite a scan, models and sidecars that do not fit, odd folder entries, Ctrl-C; and
the ``warning`` column (simple image checks and the energy OOD score)."""

import io
import json
import os
import shutil
import struct
import warnings
import zipfile
import zlib
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from brainmri import CLASS_NAMES, cli
from brainmri.core.runfolder import RunFolder
from brainmri.data.images import ImageReadError, ImageWarning, probe, read_image
from brainmri.modeling import inference, ood, prefetch, saved
from synthetic import make_dataset, mri_like

# ----------------------------------------------------------------------------- helpers


def _chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk with a correct CRC, so that decoders get past the checksum."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _scan(path, size=64, seed=0, label="glioma"):
    Image.fromarray(mri_like(label, size, np.random.default_rng(seed))).save(path)
    return path


def _damaged_ihdr(path):
    """The issue's recipe: a valid 64x64 PNG with byte 11 (inside IHDR's length) set to 5."""
    data = bytearray(_scan(path).read_bytes())
    data[11] = 5
    path.write_bytes(bytes(data))
    return path


def _ztxt_bomb(path):
    """A valid PNG plus a zTXt chunk that inflates to 2 MB (Pillow's limit is 1 MB)."""
    data = _scan(path).read_bytes()
    bomb = _chunk(b"zTXt", b"comment\0\0" + zlib.compress(b"x" * 2_000_000, 9))
    path.write_bytes(data[:33] + bomb + data[33:])  # right after the IHDR chunk
    return path


def _corrupt_exif_jpeg(path):
    """A JPEG whose EXIF block announces 5 entries but holds 2 bytes: Pillow warns
    "Corrupt EXIF data" and decodes the pixels anyway."""
    exif = b"Exif\0\0II*\0" + struct.pack("<IH", 8, 5) + b"\x01\x02"
    Image.fromarray(mri_like("glioma", 64, np.random.default_rng(1))).save(path, exif=exif)
    return path


def _predict(capsys, *argv):
    code = cli.main(["predict", *map(str, argv), "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and err.endswith(lines[0] + "\n"), err
    return lines[0]


def _rows(csv) -> pd.DataFrame:
    table = pd.read_csv(csv, keep_default_na=False)
    return table.set_index(table["path"].map(lambda p: os.path.basename(p.rstrip("/"))))


@pytest.fixture
def model_file(trained_run):
    return trained_run[1] / "model.keras"


def _model_copy(tmp_path, trained_run, name="copy", **changes):
    """The tiny trained model in its own folder, with sidecar keys changed (None drops)."""
    folder = tmp_path / name
    shutil.copytree(trained_run[1], folder)
    meta = json.loads((folder / "model.json").read_text())
    meta.update(changes)
    meta = {k: v for k, v in meta.items() if not (k in changes and v is None)}
    (folder / "model.json").write_text(json.dumps(meta))
    return folder / "model.keras"


def _can_lock_folders(tmp_path) -> bool:
    """chmod 000 stops nothing for root (or on some file systems)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return False
    probe_dir = tmp_path / "lock-probe"
    probe_dir.mkdir()
    probe_dir.chmod(0)
    try:
        os.listdir(probe_dir)
        return False
    except PermissionError:
        return True
    finally:
        probe_dir.chmod(0o755)


# -------------------------------------------------- 1. one malformed PNG stops everything


def test_malformed_png_header_or_huge_text_chunk_gives_one_error_row(tmp_path, model_file,
                                                                     capsys):
    folder = tmp_path / "inbox"
    folder.mkdir()
    _scan(folder / "good.png")
    _damaged_ihdr(folder / "ihdr.png")
    _ztxt_bomb(folder / "ztxt.png")
    out = tmp_path / "p.csv"
    code, _, err = _predict(capsys, folder, "--model", model_file, "--csv", out)
    assert code == 0 and "Traceback" not in err
    rows = _rows(out)
    assert len(rows) == 3 and rows.loc["good.png", "error"] == ""
    assert "IHDR" in rows.loc["ihdr.png", "error"]
    assert "too large" in rows.loc["ztxt.png", "error"]
    assert (rows.loc[["ihdr.png", "ztxt.png"], "prediction"] == "").all()


@pytest.mark.parametrize("damage", [_damaged_ihdr, _ztxt_bomb])
def test_reader_raises_only_image_read_error(tmp_path, damage):
    path = damage(tmp_path / "x.png")
    with pytest.raises(ImageReadError):
        probe(path)
    with pytest.raises(ImageReadError):
        read_image(path, "rgb")


def test_dataset_inventory_lists_a_malformed_png_instead_of_failing(tmp_path):
    from brainmri.data.inventory import build_inventory, skipped

    root = make_dataset(tmp_path, "sartaj", {"Training": 2, "Testing": 1}, size=32)
    class_folder = next(root.rglob("*.jpg")).parent
    _damaged_ihdr(class_folder / "broken.png")
    _ztxt_bomb(class_folder / "bomb.png")
    table = skipped(build_inventory(root, "sartaj", use_cache=False))
    names = table.set_index(table["path"].map(os.path.basename))
    assert set(names.index) == {"broken.png", "bomb.png"}
    assert "IHDR" in names.loc["broken.png", "error"]


# ------------------------------------------------------- 2. --csv can overwrite an input


def test_csv_that_is_an_input_is_refused_even_with_force(tmp_path, model_file, capsys):
    scan = _scan(tmp_path / "scan.jpg")
    before = scan.read_bytes()
    for target, extra in ((scan, []), (scan, ["--force"]), (tmp_path / "." / "scan.jpg", [])):
        code, _, err = _predict(capsys, scan, "--model", model_file, "--csv", target, *extra)
        assert code == 2 and "one of the input files" in _one_line_error(err)
    code, _, err = _predict(capsys, tmp_path, "--model", model_file, "--csv", scan, "--force")
    assert code == 2 and "one of the input files" in _one_line_error(err)  # found in a folder
    assert scan.read_bytes() == before


def test_existing_csv_is_replaced_only_with_force(tmp_path, model_file, capsys):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _scan(inbox / "scan.png")
    out = tmp_path / "out.csv"
    out.write_text("keep me\n")
    code, _, err = _predict(capsys, inbox, "--model", model_file, "--csv", out)
    assert code == 2 and "--force" in _one_line_error(err)
    assert out.read_text() == "keep me\n"
    for flag in ("--force", "--overwrite"):
        code, _, _ = _predict(capsys, inbox, "--model", model_file, "--csv", out, flag)
        assert code == 0 and len(_rows(out)) == 1


def test_unwritable_output_fails_before_any_classification(tmp_path, model_file, capsys,
                                                           monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("classified before checking the output path")

    monkeypatch.setattr(inference, "predict_files", must_not_run)
    scan = _scan(tmp_path / "scan.png")
    (tmp_path / "existing_dir").mkdir()
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for target in (f"{tmp_path / 'existing_dir'}/", tmp_path / "existing_dir",
                   f"{tmp_path / 'new_dir'}/", blocker / "out.csv"):
        code, _, err = _predict(capsys, scan, "--model", model_file, "--csv", target)
        assert code == 2, target
        _one_line_error(err)
    assert not (tmp_path / "new_dir").exists()


# --------------------------------------------------- 3. models with the wrong outputs


def _custom_model(folder, trained_run, outputs=4, input_shape=(32, 32, 3), logits="logits",
                  with_lambda=False, logits_activation=None):
    """A model unlike the series' (wrong head, input, names or logits activation) beside
    the tiny model's own sidecar (image_size 32, rgb)."""
    import keras

    inp = keras.Input(input_shape)
    x = keras.layers.Lambda(lambda t: t * 1.0)(inp) if with_lambda else inp
    x = keras.layers.GlobalAveragePooling2D()(x)
    z = keras.layers.Dense(outputs, name=logits, activation=logits_activation)(x)
    model = keras.Model(inp, keras.layers.Softmax(name="probabilities")(z))
    folder.mkdir()
    model.save(folder / "model.keras")
    # a sidecar that does not name its model (as before issue 36): the checks of the model
    # against the sidecar's content are what is tested here
    meta = json.loads((trained_run[1] / "model.json").read_text())
    meta.pop(saved.MODEL_HASH_KEY)
    (folder / "model.json").write_text(json.dumps(meta))
    return folder / "model.keras"


@pytest.mark.parametrize("kwargs, expected", [
    ({"outputs": 3}, "3 output(s) per image"),
    ({"outputs": 1}, "1 output(s) per image"),
    ({"input_shape": (64, 64, 3)}, "takes 64x64x3 images"),
    ({"input_shape": (32, 32, 1)}, "takes 32x32x1 images"),
    ({"logits": "scores"}, "no layer named 'logits'"),
    ({"with_lambda": True}, "contains Python code"),
    ({"logits_activation": "softmax"}, "'softmax' activation; it must be linear"),
])
def test_model_that_does_not_fit_the_sidecar_is_refused(tmp_path, trained_run, capsys,
                                                        kwargs, expected):
    model = _custom_model(tmp_path / "odd", trained_run, **kwargs)
    scan = _scan(tmp_path / "scan.png")
    out = tmp_path / "out.csv"
    code, printed, err = _predict(capsys, scan, "--model", model, "--csv", out)
    line = _one_line_error(err)
    assert code == 2 and expected in line and not out.exists() and printed == ""
    assert "safe_mode" not in line


@pytest.mark.parametrize("changes, expected", [
    ({"temperature": 0}, "temperature 0"),
    ({"temperature": -1.5}, "temperature -1.5"),
    ({"temperature": float("nan")}, "temperature nan"),
    ({"temperature": "1.0"}, "temperature '1.0'"),
    ({"image_size": None, "normalization": None}, "missing image_size, normalization"),
    ({"class_names": ["glioma", "meningioma", "pituitary"]}, "lists classes"),
    ({"color_mode": "cmyk"}, "color_mode 'cmyk'"),
    ({"image_size": 64}, "its sidecar says 64x64"),
    ({"ood": {"score": "energy", "threshold": float("nan")}}, "ood.threshold"),
    ({"temperature": 1e-300}, "temperature 1e-300; the calibration temperature must be a "
                              "number from 0.05 to 50"),
    ({"temperature": 1e308}, "temperature 1e+308; the calibration temperature must be a "
                             "number from 0.05 to 50"),
    ({"image_size": 6000}, "image_size 6000; it must be a whole number of pixels from 8 to "
                           "2048"),
    ({"crop": None}, 'missing crop; add "crop": "head" if the model was trained on '
                     'head-cropped images, "crop": null if not'),  # was: crop off, silently
    ({"image_size": int("1" + "0" * 3000)}, "has image_size 1000000000"),  # a short line
])
def test_sidecar_that_would_mislead_the_model_is_refused(tmp_path, trained_run, capsys,
                                                         changes, expected):
    model = _model_copy(tmp_path, trained_run, **changes)
    code, printed, err = _predict(capsys, _scan(tmp_path / "scan.png"), "--model", model)
    assert code == 2 and expected in _one_line_error(err) and printed == ""


# ------------------------------------------------------ 4. tracebacks instead of messages


def test_unloadable_model_files_get_one_line(tmp_path, trained_run, capsys):
    scan = _scan(tmp_path / "scan.png")
    random_bytes = tmp_path / "random" / "model.keras"
    random_bytes.parent.mkdir()
    random_bytes.write_bytes(np.random.default_rng(0).bytes(4000))
    shutil.copy(trained_run[1] / "model.json", random_bytes.parent)
    no_config = tmp_path / "noconfig" / "model.keras"
    no_config.parent.mkdir()
    with zipfile.ZipFile(no_config, "w") as archive:
        archive.writestr("metadata.json", "{}")
    shutil.copy(trained_run[1] / "model.json", no_config.parent)
    bad_json = _model_copy(tmp_path, trained_run, "badjson")
    bad_json.with_name("model.json").write_text('{"image_size": 32, "color_')
    no_sidecar = _model_copy(tmp_path, trained_run, "nosidecar")
    no_sidecar.with_name("model.json").unlink()
    for model, expected in ((random_bytes, "is not a Keras model file"),
                            (no_config, "no config.json"),
                            (bad_json, "is not valid JSON"),
                            (no_sidecar, "model.json is missing"),
                            (tmp_path / "none.keras", "not found")):
        code, _, err = _predict(capsys, scan, "--model", model)
        line = _one_line_error(err)
        assert code == 2 and expected in line, line
        assert "not found" not in line or model.name == "none.keras"


def test_load_saved_gives_clear_errors_to_the_notebooks_too(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(saved.SavedModelError, match="not a Keras model file"):
        saved.load_saved(tmp_path)


def test_unreadable_folders_give_rows_and_messages(tmp_path, trained_run, model_file, capsys):
    if not _can_lock_folders(tmp_path):
        pytest.skip("chmod 000 does not stop this user (root?)")
    inbox = tmp_path / "inbox"
    locked = inbox / "locked"
    locked.mkdir(parents=True)
    _scan(inbox / "good.png")
    _scan(locked / "inside.png")
    model = _model_copy(tmp_path, trained_run, "lockedmodel")
    out = tmp_path / "out.csv"
    locked.chmod(0)
    model.parent.chmod(0)
    try:
        code, _, err = _predict(capsys, inbox, locked / "inside.png", "--model", model_file,
                                "--csv", out)
        assert code == 0 and "Traceback" not in err
        rows = pd.read_csv(out, keep_default_na=False)
        assert len(rows) == 3
        assert rows["error"].str.contains("Permission denied").sum() == 2
        code, _, err = _predict(capsys, inbox, "--model", model)
        assert code == 2 and "Permission denied" in _one_line_error(err)
    finally:
        locked.chmod(0o755)
        model.parent.chmod(0o755)


def test_ctrl_c_exits_130_with_one_line_and_no_output(tmp_path, model_file, capsys,
                                                      monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(inference, "predict_files", interrupted)
    out = tmp_path / "out.csv"
    code, _, err = _predict(capsys, _scan(tmp_path / "scan.png"), "--model", model_file,
                            "--csv", out)
    assert code == 130 and "interrupted" in _one_line_error(err) and not out.exists()


def test_interrupted_series_step_is_marked_interrupted(tmp_path, monkeypatch, capsys):

    from brainmri.report.series import runner
    from test_pipeline import make_project

    nbdir, _ = make_project(tmp_path, monkeypatch)

    def execute(step, *args):
        if step.name.startswith("02"):
            raise KeyboardInterrupt
        output = args[-1]  # as papermill would: the executed copy of the first step
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(nbdir / f"{step.name}.ipynb", output)

    monkeypatch.setattr(runner, "_execute", execute)
    code = cli.main(["run", "--profile", "test", "--results-dir", str(tmp_path / "r")])
    state = json.loads((tmp_path / "r" / "test" / "state.json").read_text())
    assert code == 130 and "interrupted" in _one_line_error(capsys.readouterr().err)
    assert [s["status"] for s in state.values()] == ["ok", "interrupted"]


# ------------------------------------------------------------------------- 8. minor


def test_truncated_jpeg_keeps_the_decoders_reason(tmp_path, model_file, capsys):
    good = tmp_path / "good.jpg"
    Image.fromarray(mri_like("glioma", 128, np.random.default_rng(0))).save(good)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:200])
    out = tmp_path / "out.csv"
    code, _, _ = _predict(capsys, cut, good, "--model", model_file, "--csv", out)
    error = _rows(out).loc["cut.jpg", "error"]
    assert code == 0 and error != "OSError" and "truncated" in error.lower()


def test_odd_folder_entries_each_get_a_row(tmp_path, model_file, capsys):
    inbox = tmp_path / "inbox"
    (inbox / "real_folder").mkdir(parents=True)
    _scan(inbox / "good.png")
    (inbox / "loop.png").symlink_to("loop.png")
    (inbox / "dangling.png").symlink_to("gone.png")
    (inbox / "linked_folder").symlink_to(inbox / "real_folder", target_is_directory=True)
    os.mkfifo(inbox / "pipe.png")
    (inbox / ".hidden.png").write_bytes(b"")  # hidden files stay out, as before
    out = tmp_path / "out.csv"
    code, _, err = _predict(capsys, inbox, "--model", model_file, "--csv", out)
    rows = _rows(out)
    assert code == 0 and "Traceback" not in err
    assert sorted(rows.index) == ["dangling.png", "good.png", "linked_folder", "loop.png",
                                  "pipe.png"]
    assert "link loop" in rows.loc["loop.png", "error"]
    assert "broken symbolic link" in rows.loc["dangling.png", "error"]
    assert "not followed" in rows.loc["linked_folder", "error"]
    assert "named pipe" in rows.loc["pipe.png", "error"]


def test_decoder_warnings_go_to_the_files_row_not_stderr(tmp_path, model_file, capsys):
    exif = _corrupt_exif_jpeg(tmp_path / "exif.jpg")
    out = tmp_path / "out.csv"
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        code, _, err = _predict(capsys, exif, "--model", model_file, "--csv", out)
    row = _rows(out).loc["exif.jpg"]
    assert code == 0 and row["error"] == "" and "Corrupt EXIF data" in row["warning"]
    assert not [w for w in shown if "EXIF" in str(w.message)] and "EXIF" not in err
    with pytest.warns(ImageWarning, match=r"exif\.jpg: Corrupt EXIF data"):
        read_image(exif, "rgb")  # the data layer names the file when it warns


# --------------------------------------------------------------- the warning column


def test_warning_column_flags_blank_tiny_and_stretched_images(tmp_path, trained_run, capsys):
    model_file = _model_copy(tmp_path, trained_run, ood=None)  # a sidecar from before OOD
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _scan(inbox / "normal.png")
    Image.new("L", (64, 64), 128).save(inbox / "blank.png")
    Image.fromarray(mri_like("glioma", 8, np.random.default_rng(0))).save(inbox / "tiny.png")
    stretched = mri_like("glioma", 200, np.random.default_rng(0))[:40]
    Image.fromarray(stretched).save(inbox / "stretched.png")
    code, printed, err = _predict(capsys, inbox, "--model", model_file)
    assert code == 0
    assert printed.splitlines()[0].endswith(",warning,error")
    rows = pd.read_csv(io.StringIO(printed), keep_default_na=False)
    rows = rows.set_index(rows["path"].map(os.path.basename))
    assert rows.loc["normal.png", "warning"] == ""
    assert "near-constant" in rows.loc["blank.png", "warning"]
    assert "small image" in rows.loc["tiny.png", "warning"]
    assert "aspect ratio" in rows.loc["stretched.png", "warning"]
    assert "3 with a warning" in err
    assert err.count("no 'ood' threshold") == 1  # said once, not per file


def test_ood_threshold_in_the_sidecar_flags_unusual_images(tmp_path, trained_run, capsys):
    run_dir, model_dir, _ = trained_run
    val = RunFolder(run_dir).predictions("compact_cnn-sartaj", "val")
    entry = ood.from_predictions(val, 0.01)
    model = _model_copy(tmp_path, trained_run, ood=entry)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _scan(inbox / "scan.png", size=32)
    out = tmp_path / "out.csv"
    code, _, err = _predict(capsys, inbox, "--model", model, "--csv", out)
    assert code == 0 and "no 'ood' threshold" not in err
    for threshold, flagged in ((-1e9, True), (1e9, False)):
        saved.update_sidecar(model, "ood", {**entry, "threshold": threshold})
        code, _, _ = _predict(capsys, inbox, "--model", model, "--csv", out, "--force")
        assert ("out of distribution" in _rows(out).loc["scan.png", "warning"]) is flagged


def test_energy_sign_and_threshold_false_alarm_rate():
    confident, flat = np.array([[9.0, 0, 0, 0]]), np.zeros((1, 4))
    assert ood.energy(confident)[0] < ood.energy(flat)[0]  # lower energy = more typical
    z = np.random.default_rng(0).normal(size=(1000, 4)) * 3
    from scipy.special import logsumexp

    assert np.allclose(ood.energy(z, 2.0), -2.0 * logsumexp(z / 2.0, axis=1))
    for rate in (0.01, 0.05, 0.2):
        flagged = (ood.energy(z) > ood.threshold(z, rate)).mean()
        assert rate - 0.002 <= flagged <= rate
    assert (ood.energy(z[:50]) > ood.threshold(z[:50], 0.01)).sum() == 0  # never above rate
    for bad in (0, 1, 1.5):
        with pytest.raises(ValueError):
            ood.threshold(z, bad)
    with pytest.raises(ValueError):
        ood.energy(z, 0.0)


def test_ood_entry_from_saved_predictions_and_sidecar_update(tmp_path, trained_run):
    from brainmri.evaluation import predictions

    assert ood.LOGIT_COLUMNS is predictions.LOGIT_COLUMNS  # one definition, in brainmri
    run_dir, _, _ = trained_run
    path = RunFolder(run_dir).predictions("compact_cnn-sartaj", "val")
    frame = pd.read_csv(path)
    entry = ood.from_predictions(path, 0.01)
    assert entry == ood.from_predictions(frame, 0.01)
    assert entry["score"] == "energy" and entry["false_alarm_rate"] == 0.01
    assert entry["n_val"] == len(frame) and np.isfinite(entry["threshold"])
    _, _, logits = predictions.arrays(frame)
    assert entry["threshold"] == ood.threshold(logits, 0.01)
    with pytest.raises(ValueError, match="no validation rows"):
        ood.from_predictions(frame.assign(split="test"), 0.01)
    model = _model_copy(tmp_path, trained_run)
    before = json.loads(model.with_name("model.json").read_text())
    saved.update_sidecar(model, "ood", entry)
    after = json.loads(model.with_name("model.json").read_text())
    assert after == {**before, "ood": entry}
    assert saved.prediction_metadata(model)["ood"] == entry
    assert list(model.parent.glob(".*tmp*")) == []  # atomic: no temporary left behind


def test_decoder_warnings_stay_with_their_file_across_threads(tmp_path):
    """The data layer decodes in thread pools: each file gets its own warnings, and the
    process-wide warning state is as it was afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    from brainmri.data.images import decode

    files = [_corrupt_exif_jpeg(tmp_path / f"exif{i}.jpg") if i % 2 else
             _scan(tmp_path / f"clean{i}.png", seed=i) for i in range(40)]
    filters, show = list(warnings.filters), warnings.showwarning
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: decode(p, "rgb").warnings, files))
    for path, notes in zip(files, results):
        assert bool(notes) == path.name.startswith("exif"), (path.name, notes)
    assert warnings.filters == filters and warnings.showwarning is show


# ------------------------------------------------- output targets that are not files


def test_csv_refuses_pipes_sockets_and_links_even_with_force(tmp_path, model_file, capsys):
    """``--force`` used to rename a plain file over them (as root, even /dev/stdout)."""
    import socket
    import stat

    scan = _scan(tmp_path / "scan.png")
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    real = tmp_path / "real.csv"
    real.write_text("keep me\n")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    stdout_like = tmp_path / "stdout"
    stdout_like.symlink_to("/proc/self/fd/1")  # what /dev/stdout is
    sock_path = tmp_path / "out.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    try:
        for target, expected in ((fifo, "is a named pipe"), (sock_path, "is a socket"),
                                 (link, "is a symbolic link"),
                                 (stdout_like, "is a symbolic link")):
            code, printed, err = _predict(capsys, scan, "--model", model_file, "--csv",
                                          target, "--force")
            assert code == 2 and expected in _one_line_error(err), (target, err)
            assert printed == ""
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
        assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
        assert link.is_symlink() and real.read_text() == "keep me\n"
    finally:
        server.close()


def test_csv_dash_writes_the_table_to_standard_output(tmp_path, model_file, capsys,
                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    scan = _scan(tmp_path / "scan.png")
    code, printed, err = _predict(capsys, scan, "--model", model_file, "--csv", "-")
    assert code == 0 and not (tmp_path / "-").exists()
    rows = pd.read_csv(io.StringIO(printed), keep_default_na=False)
    assert list(rows["path"]) == [str(scan)] and rows.loc[0, "error"] == ""
    assert "written to" not in err


# ------------------------------------------------------- hidden entries in folders


def test_hidden_entries_inside_folders_are_counted_on_stderr(tmp_path, model_file, capsys):
    inbox = tmp_path / "inbox"
    (inbox / ".cache").mkdir(parents=True)
    _scan(inbox / "good.png")
    _scan(inbox / ".hidden.png")
    _scan(inbox / ".cache" / "inside.png")  # a hidden folder counts once
    code, printed, err = _predict(capsys, inbox, "--model", model_file)
    rows = pd.read_csv(io.StringIO(printed), keep_default_na=False)
    assert code == 0 and [os.path.basename(p) for p in rows["path"]] == ["good.png"]
    assert "2 hidden entries (name starting with '.') inside the input folders skipped" in err
    code, printed, err = _predict(capsys, inbox / ".hidden.png", "--model", model_file)
    assert code == 0 and ".hidden.png" in printed and "hidden" not in err  # named directly


# ------------------------------------------------------------ the work per image


def test_a_very_tall_image_is_reduced_before_the_head_crop(tmp_path, model_file, capsys,
                                                           monkeypatch):
    """A 20,000 x 400 PNG (tens of KB) used to be padded to a 21,200 px square (1.3 GB)
    by the head crop; it is reduced to MAX_SIDE (2048 px) first, aspect ratio kept."""
    from brainmri.data.pixels import PixelSpec

    max_side = 2048

    tall = np.zeros((20_000, 400), np.uint8)
    tall[4_000:16_000, 100:300] = 120
    path = tmp_path / "tall.png"
    Image.fromarray(tall).save(path)
    assert path.stat().st_size < 200_000
    seen = []
    crop = prefetch.crop_to_head

    def recording(pixels, *args, **kwargs):
        seen.append(pixels.shape)
        assert max(pixels.shape[:2]) <= max_side, f"crop_to_head got {pixels.shape}"
        out = crop(pixels, *args, **kwargs)
        seen.append(out.shape)
        return out

    monkeypatch.setattr(prefetch, "crop_to_head", recording)
    item = prefetch.prepare(path, PixelSpec(32, "rgb", "area", "head"))
    assert item.error == "" and item.pixels.shape == (32, 32, 3)
    assert seen[0][:2] == (max_side, 41)  # 400 * 2048 / 20000, rounded
    assert max(max(shape[:2]) for shape in seen) <= 1.1 * max_side
    assert "extreme aspect ratio (400x20000)" in "; ".join(item.warnings)
    out = tmp_path / "out.csv"
    code, _, err = _predict(capsys, path, "--model", model_file, "--csv", out)
    assert code == 0 and _rows(out).loc["tall.png", "error"] == "", err


# ---------------------------------------------------------------- throughput


def test_rows_and_probabilities_do_not_depend_on_threads_or_graph_mode(tmp_path, trained_run):
    """Parallel decoding keeps the input order and one row per file; the graph-mode
    forward pass gives the eager model's probabilities bit for bit."""
    from scipy.special import softmax

    from brainmri.data.pixels import normalize
    from brainmri.modeling.builders import logits_model

    files = []
    for i in range(23):
        if i % 5 == 3:
            (tmp_path / f"bad{i:02d}.jpg").write_bytes(b"not an image")
            files.append(tmp_path / f"bad{i:02d}.jpg")
        else:
            files.append(_scan(tmp_path / f"scan{i:02d}.png", seed=i,
                               label=["glioma", "no_tumor", "pituitary"][i % 3]))
    files = files[::-1]  # not in name order
    model, meta = saved.load_for_prediction(trained_run[1])
    tables = [inference.predict_files(files, model, meta, 4, show_progress=False, workers=w)
              for w in (1, 3)]
    with prefetch.start(files, meta, 2, processes=True) as prepared:  # as the CLI does
        tables.append(inference.predict_files(files, model, meta, 4, show_progress=False,
                                              prepared=prepared))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(tables[0], tables[2])
    assert list(tables[0]["path"]) == [str(p) for p in files]
    good = tables[0][tables[0]["error"] == ""]
    pixels = np.stack([prefetch.prepare(p, saved.pixel_spec(meta)).pixels
                       for p in map(Path, good["path"])])
    eager = np.asarray(logits_model(model)(np.asarray(normalize(pixels, meta["normalization"])),
                                           training=False), np.float64)
    expected = softmax(eager / meta.get("temperature", 1.0), axis=1)
    assert np.array_equal(good[[f"p_{c}" for c in CLASS_NAMES]].to_numpy(), expected)


def _dies_in_a_worker(index: int, source) -> prefetch.Prepared:
    """Kills the worker process that prepares input 7 (as the kernel's OOM killer would)."""
    import multiprocessing

    if index == 7 and multiprocessing.parent_process() is not None:
        os._exit(1)
    return prefetch.Prepared(f"item{source}", index=index)


def test_prefetch_survives_a_dead_worker_process_and_keeps_the_order():
    with prefetch.Prefetch(range(40), _dies_in_a_worker, workers=1, ahead=64,
                            processes=True) as prepared:
        items = list(prepared)
    assert [item.index for item in items] == list(range(40))
    assert [item.path for item in items] == [f"item{i}" for i in range(40)]


# ------------------------------------- issue 36: file names, a full disk, empty values


def test_a_file_name_that_is_not_utf8_keeps_its_bytes_in_the_csv(tmp_path, model_file,
                                                                  capsys):
    """It used to lose every row: UnicodeEncodeError, exit 1, no CSV."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    odd = _scan(inbox / os.fsdecode(b"a\xff.png"))
    _scan(inbox / "good.png", seed=1)
    out = tmp_path / "out.csv"
    code, _, err = _predict(capsys, inbox, "--model", model_file, "--csv", out)
    assert code == 0 and "Traceback" not in err, err
    assert os.fsencode(odd) in out.read_bytes()  # the name's own bytes, not a substitute
    rows = pd.read_csv(out, keep_default_na=False, encoding_errors="surrogateescape")
    assert sorted(rows["path"]) == sorted([str(odd), str(inbox / "good.png")])
    assert (rows["error"] == "").all()
    assert rows.loc[rows["path"] == str(odd), "path"].map(os.path.exists).all()


def test_standard_output_keeps_a_non_utf8_name_even_when_strict(tmp_path, monkeypatch):
    """Outside the C.UTF-8 locale, standard output is strict about its encoding."""
    raw = io.BytesIO()
    strict = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")
    monkeypatch.setattr("sys.stdout", strict)
    cli._print_table("path\n" + os.fsdecode(b"a\xff.png") + "\n")
    assert raw.getvalue() == b"path\na\xff.png\n"


def test_a_carriage_return_in_a_file_name_does_not_split_its_row(tmp_path, model_file,
                                                                 capsys):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    names = ["a\rb.png", "c\r\nd.png", 'e"\rf.png', "g,h.png"]
    for seed, name in enumerate(names):
        _scan(inbox / name, seed=seed)
    out = tmp_path / "out.csv"
    code, _, err = _predict(capsys, inbox, "--model", model_file, "--csv", out)
    assert code == 0, err
    for text in (out.read_bytes().decode(), _predict(capsys, inbox, "--model", model_file)[1],
                 _predict(capsys, inbox, "--model", model_file, "--csv", "-")[1]):
        for engine in ("c", "python"):
            rows = pd.read_csv(io.StringIO(text), keep_default_na=False, engine=engine)
            assert sorted(map(os.path.basename, rows["path"])) == sorted(names), text
            assert (rows["error"] == "").all()
    assert out.read_bytes().count(b"\n") == len(names) + 2  # c\r\nd.png's own \n, quoted


def test_csv_text_is_what_pandas_writes_except_for_carriage_returns():
    from brainmri.core.files import csv_text

    frame = pd.DataFrame({"path": ["x.png", 'q"', "c\nd", "", "e,f"],
                          "p": [0.1, 1 / 3, float("nan"), 1e-20, 2.0]})
    assert csv_text(frame) == frame.to_csv(index=False)
    with_cr = pd.DataFrame({"path": ["a\rb", 'e""\r\n"f'], "p": [1.0, 2.0]})
    assert csv_text(with_cr) == 'path,p\n"a\rb",1.0\n"e""""\r\n""f",2.0\n'
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(csv_text(with_cr))), with_cr,
                                  check_dtype=False)


def test_a_full_disk_at_the_end_gives_one_line_and_no_file(tmp_path, model_file, capsys,
                                                           monkeypatch):
    """The table is written after all the work; ENOSPC used to be a traceback."""
    from contextlib import contextmanager

    from brainmri.core import files

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    atomic_path = files.atomic_path

    @contextmanager
    def full_disk(target):  # the temporary file is a link to /dev/full: writes get ENOSPC
        with atomic_path(target) as tmp:
            tmp.unlink()
            tmp.symlink_to("/dev/full")
            yield tmp

    monkeypatch.setattr(files, "atomic_path", full_disk)
    out = tmp_path / "out.csv"
    code, printed, err = _predict(capsys, _scan(tmp_path / "scan.png"), "--model",
                                  model_file, "--csv", out)
    line = _one_line_error(err)
    assert code == 2 and "No space left on device" in line and f"--csv {out}" in line
    assert printed == "" and sorted(p.name for p in tmp_path.iterdir()) == ["scan.png"]


@pytest.mark.parametrize("argv, expected", [
    (["predict", "{scan}", "--csv", ""], "--csv is empty"),
    (["predict", "{scan}", "--model", ""], "--model is empty"),
    (["predict", "", "--csv", "{out}"], "an input path is empty"),
    (["run", "--run", ""], "--run is empty"),
    (["run", "--set", "data_dir="], "--set data_dir=: the value is empty"),
    (["run", "--set", "epochs= "], "--set epochs= : the value is empty"),
    (["run", "--only", ""], "--only is empty"),
    (["run", "--results-dir", ""], "--results-dir is empty"),
])
def test_empty_values_are_refused_not_replaced_by_defaults(tmp_path, capsys, monkeypatch,
                                                           argv, expected):
    """``--csv ''`` printed to standard output, ``--run ''`` ran as "quick",
    ``--set data_dir=`` used $BRAIN_MRI_DATA."""
    from brainmri.report.series import runner

    def must_not_run(*args, **kwargs):
        raise AssertionError("ran with an empty value")

    monkeypatch.setattr(inference, "predict_files", must_not_run)
    monkeypatch.setattr(runner, "run", must_not_run)
    scan = _scan(tmp_path / "scan.png")
    argv = [a.format(scan=scan, out=tmp_path / "out.csv") for a in argv]
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == cli.EXIT_USAGE  # refused before any work, for every verb
    assert expected in _one_line_error(captured.err) and captured.out == ""
    assert not (tmp_path / "out.csv").exists()


def test_formula_prefixes_are_neutralised_in_the_csv_file_only(tmp_path, model_file,
                                                                capsys, monkeypatch):
    """OWASP's advice for CSV files: a cell starting with = + - @ tab or CR gets a
    leading ' so that a spreadsheet shows it instead of running it."""
    monkeypatch.chdir(tmp_path)
    link = '=HYPERLINK("evil.example","click").png'
    _scan(tmp_path / link)
    _scan(tmp_path / "plain.png", seed=1)
    (tmp_path / "@sum.png").write_bytes(b"not an image")
    out = tmp_path / "out.csv"
    code, _, err = _predict(capsys, link, "@sum.png", "plain.png", "--model", model_file,
                            "--csv", out)
    assert code == 0, err
    rows = pd.read_csv(out, keep_default_na=False)
    assert list(rows["path"]) == ["'" + link, "'@sum.png", "plain.png"]
    assert rows.loc[0, "error"] == "" and rows.loc[1, "error"] != ""
    assert not rows[["prediction", "warning", "error"]].map(
        lambda v: v.startswith(cli.FORMULA_START)).any().any()
    code, printed, _ = _predict(capsys, link, "--model", model_file, "--csv", "-")
    assert pd.read_csv(io.StringIO(printed), keep_default_na=False)["path"].tolist() == [link]


# ------------------------------------------- issue 36, item 3: a sidecar names its model


def _resaved(source: Path, target: Path) -> Path:
    """Another valid .keras file with the same layers and weights (its metadata.json says
    another save date): a different model file, as a second training's would be."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            data = old.read(item)
            if item.filename == "metadata.json":
                data = json.dumps({**json.loads(data), "date_saved": "2000-01-01@00:00:00"}
                                  ).encode()
            new.writestr(item, data)
    return target


def test_no_fallback_to_another_files_sidecar(tmp_path, trained_run, capsys):
    """``best.keras`` used to take the ``model.json`` beside it, silently."""
    model = _model_copy(tmp_path, trained_run, temperature=40.0)
    best = model.rename(model.with_name("best.keras"))
    code, printed, err = _predict(capsys, _scan(tmp_path / "scan.png"), "--model", best)
    line = _one_line_error(err)
    assert code == 2 and printed == "" and "best.json is missing" in line
    assert "model.json" not in line
    assert saved.sidecar_path(best).name == "best.json"


def test_a_sidecar_written_for_another_model_is_refused(tmp_path, trained_run, capsys):
    folder = _model_copy(tmp_path, trained_run).parent
    other = _resaved(folder / "model.keras", folder / "other.keras")
    shutil.copy(folder / "model.json", folder / "other.json")
    code, printed, err = _predict(capsys, _scan(tmp_path / "scan.png"), "--model", other)
    line = _one_line_error(err)
    assert code == 2 and printed == "" and "other.json belongs to another model" in line
    with pytest.raises(saved.SavedModelError, match="belongs to another model"):
        saved.load_saved(other)  # the notebooks' loader checks it too
    with pytest.raises(saved.SavedModelError, match="belongs to another model"):
        saved.export(_resaved(folder / "other.keras", folder / "model.keras").parent,
                     tmp_path / "shipped" / "x.keras")
    assert not (tmp_path / "shipped" / "x.keras").exists()


def test_sidecars_record_their_model_when_written_and_exported(tmp_path, trained_run,
                                                                monkeypatch):
    model_file = trained_run[1] / "model.keras"
    meta = saved.read_sidecar(model_file)
    assert meta[saved.MODEL_HASH_KEY] == saved.model_digest(model_file)
    shipped = saved.export(trained_run[1], tmp_path / "ship" / "mine.keras")
    assert saved.read_sidecar(shipped)[saved.MODEL_HASH_KEY] == saved.model_digest(shipped)
    assert saved.check_identity(saved.read_sidecar(shipped), shipped)


def test_the_shipped_sidecar_names_the_shipped_model():
    model = inference.default_model()
    assert saved.check_identity(saved.read_sidecar(model), model) is True


def test_an_older_sidecar_without_the_model_hash_is_used_with_a_note(tmp_path, trained_run,
                                                                     capsys):
    model = _model_copy(tmp_path, trained_run, **{saved.MODEL_HASH_KEY: None})
    code, _, err = _predict(capsys, _scan(tmp_path / "scan.png"), "--model", model)
    assert code == 0 and "note: model.json does not record which model file" in err
    code, _, err = _predict(capsys, _scan(tmp_path / "scan.png"), "--model",
                            trained_run[1] / "model.keras")
    assert code == 0 and "does not record" not in err


# ------------------------------------ issue 36, item 4: bounded reads of the sidecar


@pytest.fixture
def no_hang():
    """Fails a test that blocks (a named pipe opened for reading) instead of hanging."""
    import signal

    def expired(*_):
        raise AssertionError("blocked for 30 s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _sidecar_fifo(sidecar):
    sidecar.unlink()
    os.mkfifo(sidecar)


def _sidecar_dev_zero(sidecar):
    sidecar.unlink()
    sidecar.symlink_to("/dev/zero")


def _sidecar_huge(sidecar):
    sidecar.write_text('{"pad": "' + "x" * (saved.MAX_SIDECAR_BYTES + 10) + '"}')


def _sidecar_long_integer(sidecar):
    sidecar.write_text('{"image_size": 1' + "0" * 5000 + "}")


def _sidecar_nested(sidecar):
    sidecar.write_text('{"ood": ' + "[" * 100_000 + "]" * 100_000 + "}")


@pytest.mark.parametrize("damage, expected", [
    (_sidecar_fifo, "is a named pipe, not a regular file"),
    (_sidecar_dev_zero, "is a device or special file, not a regular file"),
    (_sidecar_huge, "is larger than 8 MB"),
    (_sidecar_long_integer, "holds a value that cannot be read"),
    (_sidecar_nested, "nests JSON more than 32 levels deep"),
])
def test_a_hostile_sidecar_gets_one_line(tmp_path, trained_run, capsys, no_hang, damage,
                                         expected):
    model = _model_copy(tmp_path, trained_run)
    damage(model.with_name("model.json"))
    code, printed, err = _predict(capsys, _scan(tmp_path / "scan.png"), "--model", model)
    assert code == 2 and printed == "" and expected in _one_line_error(err)


def test_a_model_that_is_a_named_pipe_is_refused(tmp_path, trained_run, capsys, no_hang):
    model = _model_copy(tmp_path, trained_run)
    model.unlink()
    os.mkfifo(model)
    code, printed, err = _predict(capsys, _scan(tmp_path / "scan.png"), "--model", model)
    assert code == 2 and "is a named pipe, not a regular file" in _one_line_error(err)


# ------------------------------------------------ issue 36, item 9: the predict side


def test_a_file_named_twice_or_also_through_its_folder_gets_one_row(tmp_path, model_file,
                                                                    capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _scan(inbox / "a.png")
    _scan(inbox / "b.png", seed=1)
    (tmp_path / "link.png").symlink_to(inbox / "a.png")
    out = tmp_path / "out.csv"
    code, _, err = _predict(capsys, "inbox/a.png", "inbox", "./inbox/a.png", "inbox/b.png",
                            "link.png", "--model", model_file, "--csv", out)
    assert code == 0, err
    rows = pd.read_csv(out, keep_default_na=False)
    assert list(rows["path"]) == ["inbox/a.png", "inbox/b.png"]
    assert ("note: 4 input(s) named more than once (directly or through a folder), e.g. "
            "inbox/a.png, classified once: one row each.") in err
    code, _, err = _predict(capsys, "inbox", "--model", model_file)
    assert code == 0 and "more than once" not in err


def _forged_jpeg(path, side=7000):
    """A 224x224 JPEG whose header (SOF0) announces side x side pixels."""
    buffer = io.BytesIO()
    Image.fromarray(mri_like("glioma", 224, np.random.default_rng(0))).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    struct.pack_into(">HH", data, data.index(b"\xff\xc0") + 5, side, side)
    path.write_bytes(bytes(data))
    return path


def test_a_jpeg_header_announcing_far_more_pixels_than_its_data_gets_a_warning(tmp_path):
    from brainmri.data.images import decode

    assert "far too small for the 3000x3000 pixels" in " ".join(
        decode(_forged_jpeg(tmp_path / "forged.jpg", 3000), "rgb").warnings)
    honest = tmp_path / "black.jpg"
    Image.new("L", (3000, 3000)).save(honest, quality=5, optimize=True)  # the least data
    assert decode(honest, "rgb").warnings == ()


def test_csv_in_a_folder_that_does_not_exist_is_refused(tmp_path, model_file, capsys,
                                                        monkeypatch):
    """``--csv nodir/x.csv`` used to create the folder."""
    monkeypatch.chdir(tmp_path)
    scan = _scan(tmp_path / "scan.png")
    code, printed, err = _predict(capsys, scan, "--model", model_file, "--csv", "nodir/x.csv")
    line = _one_line_error(err)
    assert code == 2 and printed == "" and "the folder nodir does not exist" in line
    assert not (tmp_path / "nodir").exists()


# ----------------------------------------- issue 36, item 5: memory bounded, not workers


def test_workers_above_the_limit_are_refused(tmp_path, model_file, capsys):
    scan = _scan(tmp_path / "scan.png")
    for workers in (1000, prefetch.MAX_WORKERS + 1, 0):
        code, printed, err = _predict(capsys, scan, "--model", model_file, "--workers", workers)
        line = _one_line_error(err)
        assert code == 2 and printed == "" and f"--workers {workers}: give a number from 1 to " \
            f"{prefetch.MAX_WORKERS}" in line


def test_full_size_images_decoded_at_once_stay_within_the_budget(tmp_path, monkeypatch):
    """16 threads used to decode 16 49-megapixel JPEGs at once (6.7 GB); an image now
    waits for its share of ``DECODE_BUDGET`` (here: room for two) before it is decoded."""
    import threading
    import time

    from brainmri.data.images import Decoded
    from brainmri.data.pixels import PixelSpec

    per_image = 49_000_000
    monkeypatch.setattr(prefetch, "_budget", prefetch._Budget.for_threads(
        2 * per_image * prefetch.BYTES_PER_PIXEL))
    monkeypatch.setattr(prefetch, "header_pixels", lambda path: per_image)
    lock, now, peak = threading.Lock(), [0], [0]

    def decoding(path, color_mode):
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.05)
        with lock:
            now[0] -= 1
        return Decoded(np.zeros((64, 64, 3), np.uint8))

    monkeypatch.setattr(prefetch, "decode", decoding)
    work = partial(prefetch._prepare_source, spec=PixelSpec(32, "rgb", "area", None),
                   statistics=False)
    with prefetch.Prefetch([tmp_path / f"{i}.jpg" for i in range(12)], work,
                            workers=16) as prepared:
        items = list(prepared)
    assert len(items) == 12 and all(item.error == "" for item in items)
    assert peak[0] == 2, peak
    # a single image larger than the whole budget still gets decoded, alone
    monkeypatch.setattr(prefetch, "header_pixels", lambda path: 10 * per_image)
    peak[0] = 0
    with prefetch.Prefetch([tmp_path / f"{i}.jpg" for i in range(4)], work,
                            workers=4) as prepared:
        assert len(list(prepared)) == 4
    assert peak[0] == 1
