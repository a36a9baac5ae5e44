"""Source-adversarial training: features that must not tell collections apart within a class.

A conditional domain-adversarial head (Ganin et al. 2016, "Domain-adversarial training of
neural networks"; conditioned on the class as in Long et al. 2018, CDAN) reads the
classifier's penultimate features and the image's true class, and is trained to name the
source collection (figshare, Sartaj, Br35H: chapter 01c's audit). A gradient reversal
layer between the features and that head makes the classifier's layers learn the
opposite: features from which the collection cannot be told *within a class*, so that a
figshare tumour and a Sartaj tumour, or a Br35H and a Sartaj healthy brain, look alike to
the classifier. Conditioning on the class matters: unconditioned, the head would also
push out the class itself where source and class are linked.

Keras has no gradient reversal layer and no multi-task training step of this form, so
both are written here; the model that is saved and shipped is the classifier alone.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from brainmri import CLASS_NAMES


@keras.saving.register_keras_serializable(package="brainmri")
class GradientReversal(keras.layers.Layer):
    """The identity forwards; backwards, the gradient times ``-weight``."""

    def __init__(self, weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.weight = float(weight)

    def call(self, x):
        @tf.custom_gradient
        def reverse(t):
            return tf.identity(t), lambda dy: -self.weight * dy

        return reverse(x)

    def get_config(self) -> dict:
        return {**super().get_config(), "weight": self.weight}


class SourceAdversarial(keras.Model):
    """Trains ``classifier`` with the adversarial source head beside it.

    Training batches carry (N, 2) labels: class and source code (``data.inputs.ModelInputs
    .train(with_sources=True)``). Validation batches carry classes only, and validation
    loss is the classifier's alone, so early stopping and the learning-rate schedule
    read the same figure as for any model. ``classifier`` is what is kept afterwards.
    """

    needs_sources = True

    def __init__(self, classifier, n_sources: int, weight: float, hidden: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.encoder = keras.Model(classifier.input,
                                   [classifier.output, classifier.get_layer("logits").input])
        self.reversal = GradientReversal(weight)
        self.hidden = keras.layers.Dense(hidden, activation="relu", name="source_hidden")
        self.source = keras.layers.Dense(n_sources, name="source_logits")
        # built now, so that the optimizer (built before the first step) knows their weights
        width = classifier.get_layer("logits").input.shape[-1] + len(CLASS_NAMES)
        self.hidden.build((None, width))
        self.source.build((None, hidden))
        self.source_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.source_tracker = keras.metrics.Mean(name="source_loss")

    def call(self, x, training=False):
        return self.classifier(x, training=training)

    def _source_logits(self, features, classes, training):
        given = tf.one_hot(classes, len(CLASS_NAMES))
        h = tf.concat([self.reversal(features), given], axis=-1)
        return self.source(self.hidden(h, training=training), training=training)

    def train_step(self, data):
        x, labels = data
        y, s = labels[:, 0], labels[:, 1]
        with tf.GradientTape() as tape:
            probs, features = self.encoder(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=probs)
            adversary = self.source_loss(s, self._source_logits(features, y, True))
            total = loss + adversary  # the reversal scales the features' share by -weight
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(total, variables), variables)
        self.source_tracker.update_state(adversary)
        return self._update_metrics(loss, y, probs)

    def test_step(self, data):
        x, y = data
        probs = self.classifier(x, training=False)
        logs = self._update_metrics(self.compute_loss(x=x, y=y, y_pred=probs), y, probs)
        return {k: v for k, v in logs.items() if k != self.source_tracker.name}

    def _update_metrics(self, loss, y, probs) -> dict:
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            elif metric is not self.source_tracker:
                metric.update_state(y, probs)
        return {m.name: m.result() for m in self.metrics}

    @property
    def metrics(self):
        return [*super().metrics, self.source_tracker]
