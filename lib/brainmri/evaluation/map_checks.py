"""Whether attribution maps mean anything: faithfulness, and the checks the report only
stated.

Faithfulness uses Xplique's Deletion, Insertion and MuFidelity (scored on softmax
probabilities, with the black background as the baseline); one set of MuFidelity's
random pixel subsets serves all explainers (``shared_mufidelity``). Two checks are ours:

- a weight-randomisation sanity check (Adebayo et al. 2018): explanations of the
  trained model against those of a copy with re-initialised weights; an explainer
  whose maps barely change does not explain what the model learned;
- the share of attribution mass inside a simple brain mask (an intensity threshold),
  and in a thin band along the brain's outline, next to the area those regions cover:
  the report's "contours dominate" hypothesis, measured.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainmri.evaluation.attributions import explain, make_explainers, one_hot, timed
from brainmri.modeling.builders import GRADCAM_LAYER, logits_model


def background_baseline(inputs) -> np.ndarray:
    """Each image's darkest value (its background) everywhere: "removing" a pixel makes it
    look like the black around the head, not like mid-grey tissue."""
    import tensorflow as tf  # Xplique calls this inside tf.function graphs too

    x = tf.cast(inputs, tf.float32)
    low = tf.reduce_min(x, axis=list(range(1, len(x.shape))), keepdims=True)
    out = tf.ones_like(x) * low
    return out.numpy() if isinstance(inputs, np.ndarray) else out


def subset_masks(rng: np.random.Generator, n: int, grid: int, size: tuple[int, int],
                 subset_percent: float) -> np.ndarray:
    """(n, H, W, 1) masks, 1 keeping a pixel and 0 removing it: each of the ``grid`` x
    ``grid`` cells is removed with probability ``subset_percent`` and the cells are
    stretched to ``size`` by nearest neighbour, as Xplique's MuFidelity draws them."""
    import tensorflow as tf

    cells = (rng.random((n, grid, grid, 1)) > subset_percent).astype(np.float32)
    return tf.image.resize(cells, size, method="nearest").numpy()


def shared_mufidelity(metric, maps: dict[str, np.ndarray], seed: int) -> dict[str, float]:
    """Xplique's MuFidelity (``metric``, an ``xplique.metrics.MuFidelity``) of every
    explainer's maps, on one set of random pixel subsets.

    Xplique draws new subsets, and runs the model on them, for each explanation it scores;
    the model's outputs on the perturbed images do not depend on the explanation, so one
    draw serves all explainers: the same score (the mean over images of the Spearman
    correlation between the drop in the target's probability and the attribution removed),
    at a quarter of the cost for four explainers, and explainers compared on the same
    subsets. The subsets come from a generator seeded with ``seed`` rather than from
    Xplique's private ``_perturb_samples``, whose unseeded ``tf.random`` draws repeat
    themselves under a global seed (a new graph per batch size replays the first batch).
    """
    import warnings

    import tensorflow as tf
    from scipy.stats import spearmanr

    rng = np.random.default_rng(seed)
    phis = {name: (m.mean(-1) if m.ndim == 4 else m).reshape(len(m), -1).astype(np.float32)
            for name, m in maps.items()}
    scores = {name: [] for name in maps}
    inputs = np.asarray(metric.inputs, np.float32)
    n, size = metric.nb_samples, inputs.shape[1:3]
    for i in range(len(inputs)):
        masks = subset_masks(rng, n, metric.grid_size, size, metric.subset_percent)
        image = np.repeat(inputs[i:i + 1], n, 0)
        baseline = (metric.baseline_mode(image) if callable(metric.baseline_mode)
                    else metric.baseline_mode)
        degraded = image * masks + (1.0 - masks) * baseline
        predicted = metric.batch_inference_function(
            metric.model, tf.constant(degraded), tf.repeat(metric.targets[i:i + 1], n, 0),
            metric.batch_size)
        drop = (metric.base_predictions[i, 0] - tf.reshape(predicted, (-1,))).numpy()
        removed = 1.0 - masks.reshape(n, -1)  # (subsets, pixels)
        for name, phi in phis.items():
            with warnings.catch_warnings():  # a constant map has no ranking: counted as 0
                warnings.simplefilter("ignore")
                rho = spearmanr(drop, removed @ phi[i]).statistic
            scores[name].append(0.0 if np.isnan(rho) else float(rho))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def faithfulness(model, images: np.ndarray, labels: np.ndarray, maps: dict[str, np.ndarray],
                 steps: int, mufidelity_samples: int, seed: int, xplique_batch: int = 32,
                 seconds: dict | None = None) -> pd.DataFrame:
    """Deletion (lower is better), Insertion and MuFidelity (higher is better, on pixel
    subsets drawn with ``seed``) per explainer; each metric's wall time is added to
    ``seconds[metric]`` when given."""
    from xplique.metrics import Deletion, Insertion, MuFidelity

    logits = logits_model(model)
    x, targets = images.astype(np.float32), one_hot(labels)
    common = {"batch_size": xplique_batch, "baseline_mode": background_baseline,
              "activation": "softmax"}
    rows = {name: {} for name in maps}
    for metric, make in (("deletion", Deletion), ("insertion", Insertion)):
        with timed(seconds, metric):
            score = make(logits, x, targets, steps=steps, **common)
            for name, m in maps.items():
                rows[name][metric] = float(score(m[..., None] if m.ndim == 3 else m))
    with timed(seconds, "mufidelity"):
        grid = 8 if min(x.shape[1:3]) >= 8 else 1
        mufidelity = MuFidelity(logits, x, targets, grid_size=grid,
                                nb_samples=mufidelity_samples, **common)
        for name, value in shared_mufidelity(mufidelity, maps, seed).items():
            rows[name]["mufidelity"] = value
    return pd.DataFrame.from_dict(rows, orient="index")[
        ["deletion", "insertion", "mufidelity"]].rename_axis("explainer")


def randomized_copy(model, seed: int):
    """Same architecture, freshly initialised weights (the "model randomisation" test)."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.models.clone_model(model)  # new layers, built with their initialisers


def rank_similarity(maps_a: np.ndarray, maps_b: np.ndarray) -> float:
    """Mean Spearman correlation of |attributions| between paired maps."""
    import warnings

    from scipy.stats import spearmanr

    scores = []
    for a, b in zip(maps_a, maps_b):
        with warnings.catch_warnings():  # a constant map has no ranking: counted as 0
            warnings.simplefilter("ignore")
            rho = spearmanr(np.abs(a).ravel(), np.abs(b).ravel()).statistic
        scores.append(0.0 if np.isnan(rho) else rho)
    return float(np.mean(scores))


def brain_mask(raw: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean (N, H, W) head mask: pixels brighter than ``threshold`` of the image's
    maximum, holes filled, only the largest connected region kept."""
    from scipy import ndimage

    gray = raw.astype(np.float32).mean(-1) if raw.ndim == 4 else raw.astype(np.float32)
    masks = np.zeros(gray.shape, bool)
    for k, img in enumerate(gray):
        mask = ndimage.binary_fill_holes(img > threshold * max(float(img.max()), 1.0))
        labelled, n = ndimage.label(mask)
        if n:
            sizes = ndimage.sum(mask, labelled, range(1, n + 1))
            mask = labelled == (1 + int(np.argmax(sizes)))
        masks[k] = mask
    return masks


def contour_band(masks: np.ndarray, width: int = 2) -> np.ndarray:
    """A band of ``width`` pixels on each side of the mask's outline."""
    from scipy import ndimage

    return np.stack([ndimage.binary_dilation(m, iterations=width)
                     & ~ndimage.binary_erosion(m, iterations=width) for m in masks])


def mass_shares(maps: np.ndarray, masks: np.ndarray, band: np.ndarray) -> dict:
    """Share of |attribution| inside the mask and on its outline, with their area shares."""
    mass = np.abs(maps)
    total = mass.sum(axis=(1, 2)) + 1e-12
    return {"mass_in_brain": float(np.mean((mass * masks).sum(axis=(1, 2)) / total)),
            "area_in_brain": float(masks.mean()),
            "mass_on_contour": float(np.mean((mass * band).sum(axis=(1, 2)) / total)),
            "area_on_contour": float(band.mean())}


def sanity_and_mass(model, images: np.ndarray, labels: np.ndarray, raw: np.ndarray,
                    maps: dict[str, np.ndarray], steps: int, samples: int, seed: int,
                    mask_threshold: float, randomisation_flag: float,
                    sanity_samples: int | None = None,
                    gradcam_layer: str | None = None,
                    seconds: dict | None = None) -> pd.DataFrame:
    """Per explainer: similarity to a randomised model's maps (on the first
    ``sanity_samples`` images, all when None, with the same ``steps`` and ``samples`` as
    ``maps``), flagged from ``randomisation_flag`` (Spearman: a map that keeps that much
    after weight randomisation mostly reflects the input, edges, not the trained weights),
    and attribution mass shares (on all images)."""
    n = len(images) if sanity_samples is None else min(sanity_samples, len(images))
    with timed(seconds, "randomisation check"):
        layer = gradcam_layer or GRADCAM_LAYER.get(model.name)
        random_maps = explain(make_explainers(randomized_copy(model, seed), layer, steps,
                                              samples), images[:n], labels[:n])
    masks = brain_mask(raw, mask_threshold)
    band = contour_band(masks)
    rows = []
    for name, m in maps.items():
        similarity = rank_similarity(m[:n], random_maps[name])
        rows.append({"explainer": name, "randomisation_similarity": similarity,
                     "flag_insensitive_to_weights": similarity >= randomisation_flag,
                     **mass_shares(m, masks, band)})
    return pd.DataFrame(rows).set_index("explainer").assign(n_sanity=n)
