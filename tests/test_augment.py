"""Training-time augmentations (``data.inputs.augmenter``), the sequence randomisation
among them (``data.intensity.RandomConvIntensity``, GIN) included."""

import numpy as np
import pytest

from brainmri.data.inputs import AUGMENTATIONS, augmenter, make_dataset
from brainmri.data.intensity import RandomConvIntensity
from synthetic import mri_like


def _slices(n: int, channels: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    grey = np.stack([mri_like("glioma", size, rng) for _ in range(n)]).astype("float32")
    return np.repeat(grey[..., None], channels, -1)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", [k for k in AUGMENTATIONS if k != "none"])
def test_every_augmentation_keeps_shape_and_range_and_follows_its_seed(kind, channels):
    x = _slices(4, channels)
    first = np.asarray(augmenter(kind, channels, seed=5)(x, training=True))
    again = np.asarray(augmenter(kind, channels, seed=5)(x, training=True))
    other = np.asarray(augmenter(kind, channels, seed=6)(x, training=True))
    assert first.shape == x.shape
    assert first.min() >= 0 and first.max() <= 255
    assert np.allclose(first, again, atol=1e-3)  # the seed decides
    assert not np.allclose(first, other, atol=1e-3)
    assert not np.allclose(first, x, atol=1e-3)  # it changes the images


def test_no_augmentation_and_unknown_names():
    assert augmenter("none", 3, seed=0) is None and augmenter(None, 3, seed=0) is None
    with pytest.raises(ValueError, match="augmentation must be one of"):
        augmenter("heavy", 3, seed=0)


def test_random_convolutions_remap_tissues_and_keep_brightness():
    """GIN keeps each image's mean grey level (before clipping), changes how tissues map
    to greys (the output is no longer a monotone function of the input), draws new
    weights for every batch, and does nothing outside training."""
    x = _slices(6, 1)
    layer = RandomConvIntensity(seed=1)
    assert np.array_equal(np.asarray(layer(x, training=False)), x)
    a = np.asarray(layer(x, training=True))
    b = np.asarray(layer(x, training=True))
    assert not np.allclose(a, b)  # a new network for the next batch
    assert np.allclose(a.mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)), atol=12)
    corr = [np.corrcoef(x[i].ravel(), a[i].ravel())[0, 1] for i in range(len(x))]
    assert min(corr) < 0.95  # not just a brightness or contrast change


def test_gin_runs_inside_the_training_pipeline():
    x = _slices(8, 3).astype(np.uint8)
    y = np.arange(8) % 4
    batches = list(make_dataset(x, y, batch_size=4, normalization="standardize",
                                training=True, augment="gin", seed=3))
    assert [tuple(b[0].shape) for b in batches] == [(4, 32, 32, 3)] * 2
    assert all(np.isfinite(np.asarray(b[0])).all() for b in batches)


def test_params_offer_exactly_the_augmentations_the_pipeline_knows():
    import yaml

    from brainmri.core import paths

    base = yaml.safe_load((paths.project_root() / "params" / "base.yaml").read_text())
    assert tuple(base["rules"]["choices"]["augment"]) == AUGMENTATIONS
