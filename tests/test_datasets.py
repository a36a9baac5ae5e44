"""Where datasets are looked for, and what the user is told when they are missing."""

import pytest

from brainmri.core import paths
from brainmri.core.errors import DatasetNotFoundError
from brainmri.data import sources as datasets
from synthetic import make_dataset


@pytest.fixture
def no_project_raw(tmp_path, monkeypatch):
    """Point the project's data/ folder at an empty temporary folder."""
    monkeypatch.setattr(paths, "data_dir", lambda: tmp_path / "project-data")
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)


def test_lookup_order_explicit_then_env_then_raw(tmp_path, monkeypatch, no_project_raw):
    explicit = make_dataset(tmp_path / "explicit", "sartaj")
    env = make_dataset(tmp_path / "env", "sartaj")
    raw = make_dataset(tmp_path / "project-data" / "raw", "sartaj")
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "env"))
    assert datasets.locate("sartaj", tmp_path / "explicit") == explicit.resolve()
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        datasets.locate("sartaj", tmp_path / "nonexistent")  # never silently the env copy
    assert datasets.locate("sartaj", explicit) == explicit.resolve()  # dataset folder itself
    assert datasets.locate("sartaj") == env.resolve()
    monkeypatch.delenv(datasets.ENV_VAR)
    assert datasets.locate("sartaj") == raw.resolve()


def test_wrong_explicit_folder_names_what_is_expected(tmp_path, no_project_raw):
    with pytest.raises(DatasetNotFoundError, match="brain-tumor-classification-mri"):
        datasets.locate("sartaj", tmp_path)


def test_offline_download_fails_with_one_actionable_message(no_project_raw, monkeypatch):
    import kagglehub
    import keras

    def offline(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(DatasetNotFoundError) as info:
        datasets.locate("sartaj")
    message = str(info.value)
    assert "BRAIN_MRI_DATA" in message
    assert "kaggle.com/datasets/sartajbhuvaji/brain-tumor-classification-mri" in message
    assert "SartajBhuvaji/Brain-Tumor-Classification-DataSet" in message
    assert "ConnectionError" in message and "Traceback" not in message


def test_download_is_linked_into_data_raw(tmp_path, no_project_raw, monkeypatch):
    import kagglehub

    download = make_dataset(tmp_path / "kaggle-cache" / "versions" / "1", "nickparvar")
    monkeypatch.setattr(kagglehub, "dataset_download", lambda handle: str(download.parent))
    found = datasets.locate("nickparvar")
    assert found == download.resolve()
    link = tmp_path / "project-data" / "raw" / "brain-tumor-mri-dataset"
    assert link.is_symlink()
    assert datasets.locate("nickparvar", download=False) == download.resolve()


def test_cli_prints_error_without_traceback(no_project_raw, capsys):
    from brainmri import cli

    assert cli.main(["data", "where", "--dataset", "sartaj"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Dataset 'sartaj' was not found")
    assert "Traceback" not in err


def test_unknown_dataset():
    with pytest.raises(DatasetNotFoundError, match="Choose one of: sartaj, nickparvar"):
        datasets.get_spec("brats")


def test_fingerprint_ignores_mtime_but_not_content(tmp_path):
    root = make_dataset(tmp_path, "sartaj")
    target = root / "Testing" / "no_tumor" / "img 000.jpg"
    before = datasets.fingerprint(root)
    target.touch()
    assert datasets.fingerprint(root) == before
    data = bytearray(target.read_bytes())
    data[-10] ^= 0xFF  # same size, other bytes
    target.write_bytes(bytes(data))
    assert datasets.fingerprint(root) != before


def test_an_env_location_that_does_not_exist_is_an_error(tmp_path, monkeypatch,
                                                          no_project_raw):
    """$BRAIN_MRI_DATA is explicit: never silently replaced by data/raw or a download."""
    make_dataset(tmp_path / "project-data" / "raw", "sartaj")
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "nonexistent"))
    with pytest.raises(DatasetNotFoundError) as info:
        datasets.locate("sartaj")
    message = str(info.value)
    assert f"$BRAIN_MRI_DATA={tmp_path / 'nonexistent'}" in message
    assert "does not exist" in message and "unset BRAIN_MRI_DATA" in message


def test_an_env_location_without_the_dataset_names_the_missing_folder(
        tmp_path, monkeypatch, no_project_raw):
    make_dataset(tmp_path / "env", "nickparvar")
    make_dataset(tmp_path / "project-data" / "raw", "sartaj")
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as info:
        datasets.locate("sartaj", download=True)
    message = str(info.value)
    assert "brain-tumor-classification-mri" in message and str(tmp_path / "env") in message
    assert "Downloading" not in message


@pytest.mark.parametrize("explicit", ["env", "data_dir"])
def test_a_copy_without_its_testing_folder_is_incomplete(tmp_path, monkeypatch,
                                                         no_project_raw, explicit):
    import shutil

    copy = make_dataset(tmp_path / "copy", "sartaj", {"Training": 2, "Testing": 2})
    shutil.rmtree(copy / "Testing")
    make_dataset(tmp_path / "project-data" / "raw", "sartaj")
    if explicit == "env":
        monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "copy"))
    with pytest.raises(DatasetNotFoundError) as info:
        datasets.locate("sartaj", tmp_path / "copy" if explicit == "data_dir" else None)
    message = str(info.value)
    assert "is incomplete" in message and f"{copy / 'Testing'} is missing" in message
    assert message.count("is missing") == 1  # the split folder, not its four classes
