"""Self-supervised pretraining (``modeling.pretrain``, SimCLR): the contrastive loss and
its training loop on unlabelled images."""

import numpy as np
import tensorflow as tf

from brainmri.modeling.pretrain import nt_xent, pretrain
from synthetic import mri_like


def test_nt_xent_is_low_when_each_view_finds_its_pair():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(8, 16)).astype("float32")
    matched = float(nt_xent(a, a + 0.01 * rng.normal(size=a.shape).astype("float32"), 0.1))
    shuffled = float(nt_xent(a, a[::-1].copy(), 0.1))
    chance = np.log(2 * 8 - 1)  # every other view equally likely
    assert matched < 0.1 < chance < shuffled


def test_nt_xent_matches_a_hand_count_on_two_images():
    a = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    # views identical: each view's similarities are 1 to its pair, 0 to the two others
    expected = -np.log(np.exp(1 / 0.5) / (np.exp(1 / 0.5) + 2 * np.exp(0.0)))
    assert np.isclose(float(nt_xent(a, a, 0.5)), expected, atol=1e-5)


def test_pretraining_moves_the_features_and_leaves_the_class_layer():
    import keras

    from brainmri.modeling.builders import build

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    images = np.stack([mri_like(c, 32, rng) for c in ["glioma", "no_tumor"] * 8])
    images = np.repeat(images[..., None], 1, -1).astype(np.uint8)
    model = build("compact_cnn", (32, 32, 1), widths=[4, 4, 8, 8], dropout=0.0)
    logits_before = model.get_layer("logits").get_weights()[0].copy()
    conv_before = model.layers[1].get_weights()[0].copy()
    losses = pretrain(model, images, epochs=2, batch_size=8, learning_rate=1e-2,
                      augment="strong", normalization="standardize", temperature=0.5, seed=0)
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert not np.allclose(model.layers[1].get_weights()[0], conv_before)
    assert np.array_equal(model.get_layer("logits").get_weights()[0], logits_before)
