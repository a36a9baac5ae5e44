"""The duplicate detector: planted copies are found, distinct images are not matched."""

import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from brainmri.core.runfolder import RunFolder
from brainmri.data import duplicates as leakage
from brainmri.report.series.profiles import chapter_defaults

#: The rule chapter 01b applies (params/base.yaml).
RULE = {k: chapter_defaults("01b_leakage_audit")[k] for k in ("max_distance", "min_correlation")}


def distinct_images(n, size=96, seed=0):
    """Smooth random textures inside a random ellipse: no two alike."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        field = ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma=rng.uniform(2, 6))
        yy, xx = np.mgrid[0:size, 0:size] / size
        head = ((xx - rng.uniform(.4, .6)) / rng.uniform(.25, .4)) ** 2 + (
            (yy - rng.uniform(.4, .6)) / rng.uniform(.3, .45)) ** 2 <= 1
        img = np.where(head, 128 + 100 * field / (np.abs(field).max() + 1e-9), 0)
        out.append(np.clip(img, 0, 255).astype(np.uint8)[..., None])
    return out


def prints_of(images):
    fp = [leakage.fingerprint_image(i) for i in images]
    md5 = np.array([hashlib.md5(i.tobytes()).hexdigest() for i in images])
    return leakage.Fingerprints(md5, np.array([f[0] for f in fp], np.uint64),
                                np.stack([f[1] for f in fp]))


def test_distinct_images_are_never_matched():
    prints = prints_of(distinct_images(60))
    assert leakage.near_pairs(prints, prints, same_set=True, **RULE).empty


def test_planted_exact_and_resized_copies_are_found():
    originals = distinct_images(20, seed=1)
    copies = leakage.planted_copies(originals[:10], seed=42)
    exact = [o.copy() for o in originals[10:15]]
    test = prints_of(copies + exact)
    train = prints_of(originals)
    pairs = leakage.near_pairs(test, train, **RULE)
    found = dict(zip(pairs["i"], pairs["j"]))
    assert all(found.get(k) == k for k in range(10)), found  # resized copy -> its original
    assert all(found.get(10 + k) == 10 + k for k in range(5))
    assert pairs.loc[pairs["i"] >= 10, "exact"].all()
    assert len(pairs) == 15  # and nothing else


def test_hamming_distance():
    a = np.array([0b1011, 0], np.uint64)
    b = np.array([0b0001, np.uint64(2**64 - 1)], np.uint64)
    assert leakage.hamming(a, b).tolist() == [[2, 61], [1, 64]]


def test_audit_counts_on_a_tiny_dataset(tmp_path):
    images = distinct_images(8, seed=2)
    rows = []
    for k in range(6):
        rows.append({"path": f"Training/a/{k}.png", "official_split": "train", "label": "glioma"})
    rows.append({"path": "Testing/a/copy.png", "official_split": "test", "label": "glioma"})
    rows.append({"path": "Testing/a/new.png", "official_split": "test", "label": "no_tumor"})
    prints = prints_of(images[:6] + [images[0].copy(), images[7]])
    result = leakage.audit(pd.DataFrame(rows), prints, "toy", **RULE)
    assert result.counts["test_images_with_copy_in_training"] == 1
    assert result.counts["test_images_with_exact_copy_in_training"] == 1
    assert result.counts["share_of_test_with_copy_in_training"] == pytest.approx(0.5)
    assert result.per_class.loc["glioma", "with_copy_in_training"] == 1
    assert list(result.leaked["test_path"]) == ["Testing/a/copy.png"]
    summary = result.summary()
    assert summary["dataset"] == "toy" and summary["per_class"]["glioma"]["test_images"] == 1
    run = RunFolder(tmp_path / "run")
    result.write(run)
    assert pd.read_csv(run.test_with_copy("toy"))["test_path"].tolist() == ["Testing/a/copy.png"]


def test_fingerprints_are_cached(tmp_path, monkeypatch):
    """Each image is hashed once; a second call reads the cache, a changed file is hashed
    again."""
    for k, img in enumerate(distinct_images(3, seed=3)):
        Image.fromarray(img[..., 0]).save(tmp_path / f"{k}.png")
    files = [f"{k}.png" for k in range(3)]
    hashed = []
    real_one = leakage._one
    monkeypatch.setattr(leakage, "_one", lambda path: hashed.append(path) or real_one(path))
    first = leakage.fingerprints(tmp_path, files, "toy")
    again = leakage.fingerprints(tmp_path, files, "toy")
    assert len(hashed) == 3
    assert np.array_equal(first.phash, again.phash) and list(first.md5) == list(again.md5)
    Image.fromarray(distinct_images(1, seed=9)[0][..., 0]).save(tmp_path / "0.png")
    leakage.fingerprints(tmp_path, files, "toy")
    assert len(hashed) == 6


def test_overlap_between_two_datasets_names_both_sides(tmp_path):
    images = distinct_images(5, seed=4)
    a = pd.DataFrame({"path": [f"a/{k}.png" for k in range(3)], "label": ["glioma"] * 3,
                      "official_split": ["train", "test", "train"]})
    b = pd.DataFrame({"path": ["b/x.png", "b/y.png"], "label": ["glioma", "no_tumor"],
                      "official_split": ["train", "test"]})
    result = leakage.overlap(("sartaj", "nickparvar"), (a, b),
                             (prints_of(images[:3]), prints_of([images[1].copy(), images[4]])),
                             **RULE)
    assert result.pairs[["sartaj_path", "nickparvar_path"]].values.tolist() == [
        ["a/1.png", "b/x.png"]]
    assert result.pairs[["sartaj_split", "nickparvar_split"]].values.tolist() == [
        ["test", "train"]]  # which split of each side: a test image copied into training
    assert result.summary()["label_agreement"] == 1.0
    run = RunFolder(tmp_path)
    result.write(run)
    assert run.overlap("nickparvar", "sartaj") == run.overlap("sartaj", "nickparvar")
    assert run.overlap("sartaj", "nickparvar").exists()
