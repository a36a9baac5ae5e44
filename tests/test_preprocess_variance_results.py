"""Resizing and normalisation, the variance decomposition, and atomic results files."""

import numpy as np
import pandas as pd
import pytest

from brainmri.core import files as results
from brainmri.data.pixels import PixelSpec, load_pixels, normalize
from brainmri.evaluation import variance


def test_normalisations():
    rng = np.random.default_rng(0)
    x = rng.integers(10, 200, (3, 16, 16, 1)).astype(np.uint8)
    std = np.asarray(normalize(x, "standardize"))
    assert np.allclose(std.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    assert np.allclose(std.std(axis=(1, 2, 3)), 1, atol=1e-3)
    unit = np.asarray(normalize(x, "unit"))
    assert np.allclose(unit.min(axis=(1, 2, 3)), 0) and np.allclose(unit.max(axis=(1, 2, 3)), 1)
    # min-max then standardise == standardise: the report's two steps are one.
    assert np.allclose(np.asarray(normalize(unit * 255, "standardize")), std, atol=1e-4)
    rgb = np.full((1, 2, 2, 3), 255, np.uint8)
    expected = (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert np.allclose(np.asarray(normalize(rgb, "imagenet"))[0, 0, 0], expected, atol=1e-5)
    assert np.allclose(np.asarray(normalize(rgb, "inception")), 1.0)
    with pytest.raises(ValueError, match="normalization"):
        normalize(x, "zscore")


def test_pixels_are_cached_and_keyed_by_settings(synthetic_root, monkeypatch):
    """Files are decoded once per setting: the second call decodes nothing."""
    from brainmri.data import pixels

    decoded = []
    real_load = pixels.load_file
    monkeypatch.setattr(pixels, "load_file",
                        lambda path, spec: decoded.append(path) or real_load(path, spec))
    root = synthetic_root / "brain-tumor-classification-mri"
    files = [p.relative_to(root).as_posix() for p in sorted(root.rglob("*.jpg"))][:5]
    a = load_pixels(root, files, PixelSpec(24, "grayscale", "area"))
    assert a.shape == (5, 24, 24, 1) and a.dtype == np.uint8 and len(decoded) == 5
    b = load_pixels(root, files, PixelSpec(24, "grayscale", "area"))
    assert np.array_equal(a, b) and len(decoded) == 5
    c = load_pixels(root, files, PixelSpec(24, "rgb", "area"))
    assert c.shape == (5, 24, 24, 3) and len(decoded) == 10
    assert np.allclose(c.mean(-1), a[..., 0], atol=2)  # grey images: channels agree


def test_variance_matches_hand_computation():
    # Two classes of 1-pixel "images": {0, 2} and {10, 14}.
    x = np.array([[0.0], [2.0], [10.0], [14.0]])
    y = np.array([0, 0, 1, 1])
    out = variance.class_variances(x, y, class_names=("a", "b"))
    assert out["intra"] == {"a": 1.0, "b": 4.0}  # (1+1)/2 and (4+4)/2
    # grand mean 6.5; B = 2*(1-6.5)^2 + 2*(12-6.5)^2 = 121
    assert out["inter"] == pytest.approx(121.0)
    assert out["R_report"] == pytest.approx(121.0 / 5.0)
    assert out["within_total"] == pytest.approx(10.0)  # 2*1 + 2*4
    total = ((x - x.mean()) ** 2).sum()
    assert out["inter"] + out["within_total"] == pytest.approx(total)
    assert out["explained_share"] == pytest.approx(121 / 131)


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "metrics.csv"
    results.atomic_write_csv(pd.DataFrame({"a": [1]}), target)
    with pytest.raises(RuntimeError), results.atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("killed")
    assert pd.read_csv(target)["a"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_replace_rows_keeps_other_rows(tmp_path):
    target = tmp_path / "t.csv"
    results.replace_rows(pd.DataFrame({"model": ["a", "b"], "dataset": ["s", "s"], "v": [1, 2]}),
                         target, match={"model": "a"})
    results.replace_rows(pd.DataFrame({"model": ["a"], "dataset": ["s"], "v": [9]}),
                         target, match={"model": "a", "dataset": "s"})
    table = pd.read_csv(target).sort_values("model")
    assert table["v"].tolist() == [9, 2]
    results.replace_rows(pd.DataFrame(columns=["model", "dataset", "v"]), target,
                         match={"model": "b"})
    assert pd.read_csv(target)["model"].tolist() == ["a"]
