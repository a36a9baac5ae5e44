"""Inventory of a dataset folder with bad files, the split rule, and read-only raw data."""


import numpy as np
import pytest
from PIL import Image

from brainmri.data import dataset as data
from brainmri.data import inventory as inventory_module
from brainmri.data.inventory import build_inventory
from brainmri.data.splits import assign_splits, split_counts, subsample
from conftest import file_digests, real_data_root


@pytest.fixture
def messy_root(synthetic_root):
    """The synthetic Sartaj copy plus one file of every bad kind."""
    root = synthetic_root / "brain-tumor-classification-mri"
    glioma = root / "Training" / "glioma_tumor"
    (glioma / "empty.jpg").write_bytes(b"")
    (glioma / "readme.txt").write_text("not an image")
    (glioma / "fake.JPG").write_text("text pretending to be a JPEG")
    good = (glioma / "img 000.jpg").read_bytes()
    (glioma / "truncated.jpg").write_bytes(good[: len(good) // 3])
    Image.new("1", (8000, 8000)).save(glioma / "bomb.png")
    Image.fromarray(np.full((20, 30), 7, np.uint8)).save(glioma / "UPPER CASE.PNG")
    return root


def test_inventory_lists_and_explains_bad_files(messy_root):
    inv = build_inventory(messy_root, "sartaj")
    bad = inv[~inv["ok"]].set_index(inv[~inv["ok"]]["path"].str.split("/").str[-1])
    assert set(bad.index) == {"empty.jpg", "readme.txt", "fake.JPG", "truncated.jpg",
                              "bomb.png"}
    assert "empty" in bad.loc["empty.jpg", "error"]
    assert "not an image file name" in bad.loc["readme.txt", "error"]
    assert "decompression-bomb" in bad.loc["bomb.png", "error"]
    assert "truncated" in bad.loc["truncated.jpg", "error"] or "corrupt" in bad.loc[
        "truncated.jpg", "error"]
    good = inv[inv["ok"]]
    assert len(good) == 4 * 14 + 1  # synthetic files + the upper-case PNG
    assert set(good["label"]) == {"glioma", "meningioma", "pituitary", "no_tumor"}


def test_inventory_is_cached_and_invalidated(messy_root, monkeypatch):
    """Decoding happens once per file: a second build decodes nothing, and a changed
    folder is decoded again."""
    decoded = []
    real_probe = inventory_module.probe
    monkeypatch.setattr(inventory_module, "probe",
                        lambda path: decoded.append(path) or real_probe(path))
    first = build_inventory(messy_root, "sartaj")
    n_files = len(decoded)
    assert n_files > 50
    again = build_inventory(messy_root, "sartaj")
    assert first.equals(again) and len(decoded) == n_files
    (messy_root / "Testing" / "no_tumor" / "img 000.jpg").unlink()
    assert len(build_inventory(messy_root, "sartaj")) == len(first) - 1
    assert len(decoded) > n_files


def test_raw_folder_is_never_written(messy_root):
    before = file_digests(messy_root)
    ds = data.load("sartaj", messy_root.parent, 0.2, 42)
    from brainmri.data.pixels import PixelSpec

    ds.arrays("train", PixelSpec(16, "rgb", "area"))
    assert file_digests(messy_root) == before


def test_split_rule_is_floor_of_fraction_per_class_and_seeded(synthetic_root):
    inv = build_inventory(synthetic_root / "brain-tumor-classification-mri", "sartaj")
    a = assign_splits(inv, 0.2, seed=1)
    counts = split_counts(a, "sartaj").set_index(["split", "class"])["n"]
    assert counts[("val", "glioma")] == 2 and counts[("train", "glioma")] == 8
    assert counts[("test", "glioma")] == 4
    assert a.equals(assign_splits(inv, 0.2, seed=1))
    assert not a["split"].equals(assign_splits(inv, 0.2, seed=2)["split"])
    small = subsample(a, 3, seed=0)
    assert small.groupby(["split", "label"]).size().max() == 3


def test_nickparvar_folder_names_map_to_canonical_classes(synthetic_root):
    ds = data.load("nickparvar", synthetic_root, 0.2, 42)
    assert set(ds.files["label"]) == {"glioma", "meningioma", "pituitary", "no_tumor"}
    assert (ds.labels("test") >= 0).all()


@pytest.mark.realdata
def test_sartaj_split_counts_are_the_reports():
    root = real_data_root()
    if root is None:
        pytest.skip("BRAIN_MRI_DATA does not point at the shared dataset copies")
    ds = data.load("sartaj", root, 0.2, 42)
    table = ds.counts().pivot(index="split", columns="class", values="n")
    order = ["glioma", "meningioma", "pituitary", "no_tumor"]
    assert table.loc["train", order].tolist() == [661, 658, 662, 316]
    assert table.loc["val", order].tolist() == [165, 164, 165, 79]
    assert table.loc["test", order].tolist() == [100, 115, 74, 105]
    assert len(ds.skipped()) == 0
