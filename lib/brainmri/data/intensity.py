"""Random intensity transforms that change local texture and the mapping between tissues,
not only the global grey curve: what a model must survive to read scans from another
sequence or scanner (issue 21, contrast/sequence randomisation).

``RandomConvIntensity`` is GIN, the global intensity non-linear augmentation of Ouyang et
al. (2022, "Causality-inspired single-source domain generalization for medical image
segmentation"): a shallow network of random convolutions with leaky ReLUs, new weights
for every batch, whose output is rescaled to the input's mean and spread and blended
with it by a random weight per image. Keras has no such layer; RandConv (Xu et al., 2021)
is the one-layer case.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class RandomConvIntensity(keras.layers.Layer):
    """GIN on 0..255 images (N, H, W, C); the identity outside training.

    ``hidden`` channels in ``depth`` random convolutions of ``kernel`` x ``kernel`` (the
    last one 1 x 1), weights drawn from a standard normal for each batch (``seed``)."""

    def __init__(self, seed: int, hidden: int = 2, depth: int = 4, kernel: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.depth, self.kernel, self.seed = hidden, depth, kernel, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=True):
        if not training:
            return x
        x = tf.cast(x, tf.float32)
        channels = x.shape[-1]
        widths = [channels] + [self.hidden] * (self.depth - 1) + [channels]
        h = x / 255.0
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            size = self.kernel if i < self.depth - 1 else 1
            w = keras.random.normal((size, size, n_in, n_out), seed=self.seed_generator)
            h = tf.nn.conv2d(h, w, 1, "SAME")
            if i < self.depth - 1:
                h = tf.nn.leaky_relu(h, 0.2)
        # the input's own brightness and contrast, a new mapping between its tissues
        mean, var = tf.nn.moments(x, axes=[1, 2, 3], keepdims=True)
        h_mean, h_var = tf.nn.moments(h, axes=[1, 2, 3], keepdims=True)
        h = (h - h_mean) * tf.sqrt((var + 1e-6) / (h_var + 1e-6)) + mean
        alpha = keras.random.uniform((tf.shape(x)[0], 1, 1, 1), seed=self.seed_generator)
        return tf.clip_by_value(alpha * h + (1 - alpha) * x, 0.0, 255.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "seed": self.seed, "hidden": self.hidden,
                "depth": self.depth, "kernel": self.kernel}
