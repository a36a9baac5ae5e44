"""Re-estimating batch-norm statistics on clean images after training.

Batch normalisation keeps running averages of each channel's mean and variance, updated
during training on *augmented* batches. Strong augmentation (flips, zooms, brightness and
contrast jitter) shifts those statistics away from those of real, un-augmented scans, and
the network is evaluated with the shifted ones. Recomputing them exactly, as plain
averages over one pass of clean training images ("precise BN"), removes the mismatch
without changing a single learned weight.
"""

from __future__ import annotations


def batchnorm_layers(model) -> list:
    import keras

    return [layer for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)]


def reestimate_batchnorm(model, batches) -> int:
    """Replace every batch-norm layer's moving mean and variance by their average over
    ``batches`` (an iterable of input tensors, un-augmented); returns the batch count.

    Keras updates moving statistics as ``m * old + (1 - m) * batch``; with momentum
    ``k / (k + 1)`` at the k-th batch (counting from 0) the result is the exact running
    average. Dropout runs in training mode during the pass but does not feed any
    batch-norm layer here (it sits after global pooling in our models).
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    saved = [layer.momentum for layer in layers]
    count = 0
    try:
        for k, x in enumerate(batches):
            if isinstance(x, (tuple, list)):  # tf.data yields (images,) without labels
                x = x[0]
            for layer in layers:
                layer.momentum = k / (k + 1)
            model(x, training=True)
            count += 1
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum
    return count
