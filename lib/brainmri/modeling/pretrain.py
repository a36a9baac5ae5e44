"""Self-supervised pretraining of a classifier's layers on unlabelled training images.

SimCLR (Chen et al. 2020, "A simple framework for contrastive learning of visual
representations"), at small scale: two random augmentations of each image go through the
classifier's layers up to its penultimate features and a small projection head, and the
NT-Xent loss pulls the two views of one image together and pushes the other images of the
batch away. No label is read, so the features are shaped by what tells images apart
(anatomy, lesions) rather than by the four classes alone; the supervised training that
follows starts from them. Keras ships no contrastive trainer, hence this module.

Only training images are used: with a collection held out, never its images (they
would no longer be new to the model), and never an evaluation-only collection.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from brainmri.data.inputs import augmenter
from brainmri.data.pixels import normalize


def nt_xent(a, b, temperature: float):
    """NT-Xent loss of two batches of projections (N, D), view ``a[i]`` paired with
    ``b[i]``: cross-entropy of each view's cosine similarities (over the 2N - 1 others)
    against its pair."""
    z = tf.math.l2_normalize(tf.concat([a, b], axis=0), axis=1)
    n = tf.shape(a)[0]
    logits = tf.matmul(z, z, transpose_b=True) / temperature
    logits -= 1e9 * tf.eye(2 * n)  # a view is not its own pair
    pairs = tf.concat([tf.range(n, 2 * n), tf.range(0, n)], axis=0)
    return tf.reduce_mean(
        tf.keras.losses.sparse_categorical_crossentropy(pairs, logits, from_logits=True))


class Contrastive(keras.Model):
    """The encoder (input to penultimate features) with a projection head, trained on
    pairs of views by NT-Xent."""

    def __init__(self, encoder, projection: int, temperature: float, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.temperature = encoder, temperature
        width = encoder.output.shape[-1]
        self.head = keras.Sequential([keras.layers.Dense(width, activation="relu"),
                                      keras.layers.Dense(projection)], name="projection")
        self.head.build((None, width))
        self.tracker = keras.metrics.Mean(name="loss")

    def call(self, x, training=False):
        return self.head(self.encoder(x, training=training), training=training)

    def train_step(self, views):
        a, b = views
        with tf.GradientTape() as tape:
            loss = nt_xent(self(a, training=True), self(b, training=True), self.temperature)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        self.tracker.update_state(loss)
        return {"loss": self.tracker.result()}

    @property
    def metrics(self):
        return [self.tracker]


def pretrain(model, images: np.ndarray, *, epochs: int, batch_size: int, learning_rate: float,
             augment: str, normalization: str, temperature: float, seed: int,
             projection: int = 64) -> list[float]:
    """Pretrain ``model``'s layers up to its penultimate features (the input of its
    ``logits`` layer) on ``images`` (uint8, no labels) by SimCLR; returns the loss per
    epoch. The weights change in place; the classification layer is left as built."""
    encoder = keras.Model(model.input, model.get_layer("logits").input)
    first, second = (augmenter(augment, images.shape[-1], seed + k) for k in (0, 1))

    def views(x):
        x = tf.cast(x, tf.float32)
        return (normalize(first(x, training=True), normalization),
                normalize(second(x, training=True), normalization))

    ds = (tf.data.Dataset.from_tensor_slices(images)
          .shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
          .batch(batch_size, drop_remainder=True)
          .map(views, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
    trainer = Contrastive(encoder, projection, temperature)
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate))
    history = trainer.fit(ds, epochs=epochs, verbose=0, shuffle=False)  # tf.data shuffles
    return [float(v) for v in history.history["loss"]]
