"""Why a network does (not) learn: gradient norms and activation saturation per layer.

Used by the Sigmoid CNN chapter to measure the vanishing-gradient explanation the
report gives for its collapse, instead of only stating it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def gradient_norms(model, images: np.ndarray, labels: np.ndarray) -> pd.Series:
    """L2 norm of the loss gradient with respect to each layer's kernel, on one batch."""
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    kernels = [(layer.name, layer.kernel) for layer in model.layers
               if getattr(layer, "kernel", None) is not None]
    with tf.GradientTape() as tape:
        loss = loss_fn(labels, model(images, training=False))
    grads = tape.gradient(loss, [k for _, k in kernels])
    return pd.Series({name: float(tf.norm(g)) if g is not None else 0.0
                      for (name, _), g in zip(kernels, grads)}, name="gradient_norm")


def activation_stats(model, images: np.ndarray, layers: list[str]) -> pd.DataFrame:
    """Per layer: mean and spread of the activations, and for sigmoid layers the mean
    local derivative s(1-s) (at most 0.25; small values mean saturated units)."""
    import keras

    probe = keras.Model(model.input, [model.get_layer(n).output for n in layers])
    outputs = probe(images, training=False)
    rows = []
    for name, out in zip(layers, outputs):
        a = np.asarray(out)
        activation = getattr(model.get_layer(name), "activation", None)
        is_sigmoid = getattr(activation, "__name__", "") == "sigmoid"
        rows.append({"layer": name, "mean": float(a.mean()), "std": float(a.std()),
                     "std_across_images": float(a.reshape(len(a), -1).mean(1).std()),
                     "mean_derivative": float((a * (1 - a)).mean()) if is_sigmoid else None,
                     "share_zero": float((a == 0).mean())})
    return pd.DataFrame(rows).set_index("layer")


def networks_to_compare(trained_sigmoid, input_shape, seed: int, trained_relu_file=None
                        ) -> dict:
    """The four networks chapter 07 compares: ReLU and Sigmoid CNNs freshly initialised
    with the same seed, the trained Sigmoid CNN, and the trained ReLU CNN when the run
    saved one at ``trained_relu_file``."""
    import keras

    from brainmri.modeling import builders, devices

    networks = {}
    for name, model_name in (("relu, initial", "relu_cnn"), ("sigmoid, initial", "sigmoid_cnn")):
        devices.seed_everything(seed)
        networks[name] = builders.build(model_name, input_shape)
    networks["sigmoid, trained"] = trained_sigmoid
    if trained_relu_file is not None and trained_relu_file.exists():
        networks["relu, trained"] = keras.models.load_model(trained_relu_file, compile=False,
                                                            safe_mode=True)
    return networks
