"""Attribution maps with Xplique: the four explainers of report 000 (its listing 8.1).

All explainers run on the *logits* model (softmax saturation flattens gradients):
GuidedBackprop, IntegratedGradients, SmoothGrad and GradCAM on an explicit layer. What
the maps are worth is measured in :mod:`brainmri.evaluation.map_checks`; which models
chapter 10 explains, and how, in :mod:`brainmri.evaluation.explain`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np

from brainmri.modeling.builders import GRADCAM_LAYER, logits_model

EXPLAINERS = ("GuidedBackprop", "IntegratedGradients", "SmoothGrad", "GradCAM")
#: Xplique's explainers as a reader names them (tables, prose and figures).
DISPLAY = {"GradCAM": "Grad-CAM", "GuidedBackprop": "Guided Backprop",
           "IntegratedGradients": "Integrated Gradients", "SmoothGrad": "SmoothGrad"}


def one_hot(labels: np.ndarray, n_classes: int = 4) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[labels]


def gradcam(model, gradcam_layer: str | None, xplique_batch: int = 16):
    """Xplique's Grad-CAM on ``model``'s logits, at ``gradcam_layer`` (None: the
    builder's layer for this architecture). It has no steps or samples to set, which is
    why the try-the-model chapter can use it alone."""
    import tensorflow as tf
    from xplique.attributions import GradCAM

    # Each explainer wraps its own tf.function, so explaining several models re-traces
    # them; TF then logs a "retracing" warning per call that would flood the book pages.
    tf.get_logger().setLevel("ERROR")
    layer = gradcam_layer or GRADCAM_LAYER.get(model.name, "last_conv")
    return GradCAM(logits_model(model), conv_layer=layer, batch_size=xplique_batch)


def make_explainers(model, gradcam_layer: str | None, steps: int, samples: int,
                    xplique_batch: int = 16) -> dict:
    """The four explainers of the report (its listing 8.1) on ``model``'s logits, with
    ``steps`` Integrated Gradients steps and ``samples`` SmoothGrad samples (chapter 10's
    parameters)."""
    from xplique.attributions import GuidedBackprop, IntegratedGradients, SmoothGrad

    logits = logits_model(model)
    return {
        "GuidedBackprop": GuidedBackprop(logits, batch_size=xplique_batch),
        "IntegratedGradients": IntegratedGradients(logits, steps=steps,
                                                   batch_size=xplique_batch),
        "SmoothGrad": SmoothGrad(logits, nb_samples=samples, batch_size=xplique_batch),
        "GradCAM": gradcam(model, gradcam_layer, xplique_batch),
    }


@contextmanager
def timed(seconds: dict | None, key: str):
    """Add the block's wall time to ``seconds[key]`` (nothing when ``seconds`` is None)."""
    start = time.perf_counter()
    yield
    if seconds is not None:
        seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - start


def explain(explainers: dict, images: np.ndarray, labels: np.ndarray,
            seconds: dict | None = None, prefix: str = "") -> dict[str, np.ndarray]:
    """Attribution maps (N, H, W) per explainer, for the class given by ``labels``; each
    explainer's wall time is added to ``seconds[prefix + name]`` when given."""
    targets = one_hot(labels)
    maps = {}
    for name, explainer in explainers.items():
        with timed(seconds, prefix + name):
            a = np.asarray(explainer(images.astype(np.float32), targets))
        maps[name] = a.mean(-1) if a.ndim == 4 else a
    return maps
