"""Attributions with Xplique, their faithfulness, and the checks the report only stated.

All explainers run on the *logits* model (softmax saturation flattens gradients):
GuidedBackprop, IntegratedGradients, SmoothGrad and GradCAM on an explicit layer.
Faithfulness uses Xplique's Deletion, Insertion and MuFidelity (scored on softmax
probabilities, with the black background as the baseline). Two checks are ours:

- a weight-randomisation sanity check (Adebayo et al. 2018): explanations of the
  trained model against those of a copy with re-initialised weights; an explainer
  whose maps barely change does not explain what the model learned;
- the share of attribution mass inside a simple brain mask (an intensity threshold),
  and in a thin band along the brain's outline, next to the area those regions cover:
  the report's "contours dominate" hypothesis, measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from brainmri.modeling.builders import GRADCAM_LAYER, logits_model

EXPLAINERS = ("GuidedBackprop", "IntegratedGradients", "SmoothGrad", "GradCAM")
#: An explainer whose maps keep this Spearman correlation after weight randomisation is
#: flagged: it mostly reflects the input (edges), not the trained weights.
RANDOMISATION_FLAG = 0.5


def one_hot(labels: np.ndarray, n_classes: int = 4) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[labels]


def make_explainers(model, gradcam_layer: str | None = None, steps: int = 80,
                    samples: int = 80, batch_size: int = 16) -> dict:
    """The four explainers of the report (its listing 8.1) on ``model``'s logits."""
    import tensorflow as tf
    from xplique.attributions import GradCAM, GuidedBackprop, IntegratedGradients, SmoothGrad

    # Each explainer wraps its own tf.function, so explaining several models re-traces
    # them; TF then logs a "retracing" warning per call that would flood the book pages.
    tf.get_logger().setLevel("ERROR")
    logits = logits_model(model)
    layer = gradcam_layer or GRADCAM_LAYER.get(model.name, "last_conv")
    return {
        "GuidedBackprop": GuidedBackprop(logits, batch_size=batch_size),
        "IntegratedGradients": IntegratedGradients(logits, steps=steps, batch_size=batch_size),
        "SmoothGrad": SmoothGrad(logits, nb_samples=samples, batch_size=batch_size),
        "GradCAM": GradCAM(logits, conv_layer=layer, batch_size=batch_size),
    }


def explain(explainers: dict, images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Attribution maps (N, H, W) per explainer, for the class given by ``labels``."""
    targets = one_hot(labels)
    maps = {}
    for name, explainer in explainers.items():
        a = np.asarray(explainer(images.astype(np.float32), targets))
        maps[name] = a.mean(-1) if a.ndim == 4 else a
    return maps


def background_baseline(inputs) -> np.ndarray:
    """Each image's darkest value (its background) everywhere: "removing" a pixel makes it
    look like the black around the head, not like mid-grey tissue."""
    import tensorflow as tf  # Xplique calls this inside tf.function graphs too

    x = tf.cast(inputs, tf.float32)
    low = tf.reduce_min(x, axis=list(range(1, len(x.shape))), keepdims=True)
    out = tf.ones_like(x) * low
    return out.numpy() if isinstance(inputs, np.ndarray) else out


def faithfulness(model, images: np.ndarray, labels: np.ndarray, maps: dict[str, np.ndarray],
                 steps: int, mufidelity_samples: int, xplique_batch: int = 32) -> pd.DataFrame:
    """Deletion (lower is better), Insertion and MuFidelity (higher is better) per explainer."""
    from xplique.metrics import Deletion, Insertion, MuFidelity

    logits = logits_model(model)
    x, targets = images.astype(np.float32), one_hot(labels)
    common = {"batch_size": xplique_batch, "baseline_mode": background_baseline,
              "activation": "softmax"}
    deletion = Deletion(logits, x, targets, steps=steps, **common)
    insertion = Insertion(logits, x, targets, steps=steps, **common)
    grid = 8 if min(x.shape[1:3]) >= 8 else 1
    mufidelity = MuFidelity(logits, x, targets, grid_size=grid, nb_samples=mufidelity_samples,
                            **common)
    rows = []
    for name, m in maps.items():
        expl = m[..., None] if m.ndim == 3 else m
        rows.append({"explainer": name, "deletion": float(deletion(expl)),
                     "insertion": float(insertion(expl)),
                     "mufidelity": float(mufidelity(expl))})
    return pd.DataFrame(rows).set_index("explainer")


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


def brain_mask(raw: np.ndarray, threshold: float = 0.1) -> np.ndarray:
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


def select_examples(frame: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    """Up to ``per_class`` correctly and ``per_class`` wrongly predicted test images per
    true class (seeded), with their row index in the predictions frame."""
    frame = frame.assign(row=np.arange(len(frame)),
                         outcome=np.where(frame["label"] == frame["prediction"], "correct",
                                          "misclassified"))
    picked = [group.sample(n=min(per_class, len(group)), random_state=seed)
              for _, group in frame.groupby(["label", "outcome"], sort=True)]
    return pd.concat(picked).reset_index(drop=True) if picked else frame.head(0)


def sanity_and_mass(model, images: np.ndarray, labels: np.ndarray, raw: np.ndarray,
                    maps: dict[str, np.ndarray], steps: int, samples: int, seed: int,
                    mask_threshold: float) -> pd.DataFrame:
    """Per explainer: similarity to a randomised model's maps, and attribution mass shares."""
    random_maps = explain(make_explainers(randomized_copy(model, seed),
                                          GRADCAM_LAYER.get(model.name), steps, samples),
                          images, labels)
    masks = brain_mask(raw, mask_threshold)
    band = contour_band(masks)
    rows = []
    for name, m in maps.items():
        similarity = rank_similarity(m, random_maps[name])
        rows.append({"explainer": name, "randomisation_similarity": similarity,
                     "flag_insensitive_to_weights": similarity >= RANDOMISATION_FLAG,
                     **mass_shares(m, masks, band)})
    return pd.DataFrame(rows).set_index("explainer")


def images_for(frame: pd.DataFrame, meta: dict, data_dir) -> tuple[np.ndarray, np.ndarray]:
    """(raw uint8 pixels, model-ready inputs) of the images of a predictions frame, in its
    row order: read by the frame's ``path`` column, so row *i* of the maps always belongs
    to row *i* of the predictions, whatever subset the model was evaluated on."""
    from brainmri.data.pixels import load_pixels, normalize
    from brainmri.data.sources import locate
    from brainmri.modeling.saved import pixel_spec

    root = locate(frame["eval_dataset"].iloc[0], data_dir)
    spec = pixel_spec(meta)
    raw = load_pixels(root, frame["path"].tolist(), spec, desc="explained images")
    return raw, np.asarray(normalize(raw, meta["normalization"]))


@dataclass
class ModelExplanation:
    """What chapter 10 shows for one model."""

    tag: str
    examples: pd.DataFrame  # the picked test images (label, prediction, outcome)
    raw: np.ndarray  # their pixels, for display
    maps: dict[str, np.ndarray]  # explainer -> (N, H, W) maps for the predicted class
    scores: pd.DataFrame  # faithfulness, sanity and mass shares per explainer


def explain_model(tag: str, model, meta: dict, frame: pd.DataFrame, data_dir, *,
                  per_class: int, faithfulness_samples: int, ig_steps: int,
                  smoothgrad_samples: int, deletion_steps: int, mufidelity_samples: int,
                  mask_threshold: float, seed: int) -> ModelExplanation:
    """Example maps (correct and misclassified images of each class, explained for the
    predicted class: what the model "saw") and scores on a fixed random test sample
    (explained for the true class)."""
    from brainmri import CLASS_NAMES

    explainers = make_explainers(model, meta["gradcam_layer"], ig_steps, smoothgrad_samples)
    picked = select_examples(frame, per_class, seed)
    raw, x = images_for(frame.iloc[picked["row"].to_numpy()], meta, data_dir)
    maps = explain(explainers, x, picked["prediction"].map(CLASS_NAMES.index).to_numpy())
    sample = frame.iloc[np.random.default_rng(seed).permutation(len(frame))
                        [:faithfulness_samples]]
    raw_s, x_s = images_for(sample, meta, data_dir)
    y_s = sample["label"].map(CLASS_NAMES.index).to_numpy()
    sample_maps = explain(explainers, x_s, y_s)
    scores = faithfulness(model, x_s, y_s, sample_maps, deletion_steps, mufidelity_samples)
    scores = scores.join(sanity_and_mass(model, x_s, y_s, raw_s, sample_maps, ig_steps,
                                         smoothgrad_samples, seed, mask_threshold))
    return ModelExplanation(tag, picked, raw, maps, scores.reset_index().assign(model=tag))
