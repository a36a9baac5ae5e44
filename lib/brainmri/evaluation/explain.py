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

Every model a chapter trained is explained (``models_to_explain``), never the
reduced-size study models of chapters 05b and 08c (``is_explained``). The shown maps use
the report's settings on a few images; the scores use fewer integration steps and noisy
samples on many more images, and one set of MuFidelity's random pixel subsets serves all
explainers (``shared_mufidelity``): the time each costs is recorded per model
(``ModelExplanation.seconds``).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brainmri.core.errors import BrainMRIError
from brainmri.core.runfolder import RunFolder, is_ablation_model
from brainmri.modeling.builders import GRADCAM_LAYER, logits_model

EXPLAINERS = ("GuidedBackprop", "IntegratedGradients", "SmoothGrad", "GradCAM")
#: Xplique's explainers as a reader names them (tables, prose and figures).
DISPLAY = {"GradCAM": "Grad-CAM", "GuidedBackprop": "Guided Backprop",
           "IntegratedGradients": "Integrated Gradients", "SmoothGrad": "SmoothGrad"}


def one_hot(labels: np.ndarray, n_classes: int = 4) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[labels]


def is_explained(tag: str) -> bool:
    """The rule of chapter 10: every model a chapter trained (05-08b) is explained; the
    reduced-size study models (chapters 05b and 08c, seed repeats included) are not."""
    return not is_ablation_model(tag)


def _builder_of(tag: str) -> str:
    """``relu_cnn_augmented-sartaj`` -> ``relu_cnn_augmented``;
    ``compact_cnn+crop-union-bn-nickparvar`` -> ``compact_cnn`` (the sidecar's ``model``)."""
    return tag.rsplit("-", 1)[0].split("+", 1)[0]


def _is_twin(tag: str) -> bool:
    """A ``<variant>+bn`` twin: its model's batch-norm statistics re-estimated and scored
    again, never saved (``experiment.with_reestimated_batchnorm``)."""
    return tag.rsplit("-", 1)[0].endswith("+bn")


def models_to_explain(run: RunFolder, names: list[str] | None = None) -> dict[str, Path]:
    """{tag: folder} of the models chapter 10 explains (``is_explained``; only the model
    names ``names`` when given). A model with test predictions but no saved model is an
    error, not a silent gap: model folders are not committed, so a checkout or a partial
    run can hold a chapter's predictions without its model."""
    folders = {tag: folder for tag, folder in run.saved_models(names).items()
               if is_explained(tag)}
    missing = sorted(tag for tag, split in run.prediction_files()
                     if split == "test" and is_explained(tag) and tag not in folders
                     and not _is_twin(tag) and (names is None or _builder_of(tag) in names))
    if missing:
        raise BrainMRIError(
            f"{len(missing)} model(s) of run {run.name!r} have test predictions but no saved "
            f"model (models/<tag>/model.keras): {', '.join(missing)}. Model folders are not "
            f"committed; run the chapters that train them again (brainmri run --only "
            f"<chapter> --force), then this chapter.")
    return folders


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
def _timed(seconds: dict | None, key: str):
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
        with _timed(seconds, prefix + name):
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
        with _timed(seconds, metric):
            score = make(logits, x, targets, steps=steps, **common)
            for name, m in maps.items():
                rows[name][metric] = float(score(m[..., None] if m.ndim == 3 else m))
    with _timed(seconds, "mufidelity"):
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
    with _timed(seconds, "randomisation check"):
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
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage


def explain_model(tag: str, model, meta: dict, frame: pd.DataFrame, data_dir, *,
                  per_class: int, faithfulness_samples: int, ig_steps: int,
                  smoothgrad_samples: int, scored_ig_steps: int,
                  scored_smoothgrad_samples: int, deletion_steps: int,
                  mufidelity_samples: int, sanity_samples: int, mask_threshold: float,
                  randomisation_flag: float, seed: int) -> ModelExplanation:
    """Example maps (correct and misclassified images of each class, explained for the
    predicted class: what the model "saw"), with ``ig_steps`` and ``smoothgrad_samples``;
    and scores on a fixed random sample of ``faithfulness_samples`` test images (explained
    for the true class), with ``scored_ig_steps`` and ``scored_smoothgrad_samples``."""
    from brainmri import CLASS_NAMES

    seconds: dict[str, float] = {}
    layer = meta["gradcam_layer"]
    picked = select_examples(frame, per_class, seed)
    sample = frame.iloc[np.random.default_rng(seed).permutation(len(frame))
                        [:faithfulness_samples]]
    with _timed(seconds, "read images"):
        raw, x = images_for(frame.iloc[picked["row"].to_numpy()], meta, data_dir)
        raw_s, x_s = images_for(sample, meta, data_dir)
    maps = explain(make_explainers(model, layer, ig_steps, smoothgrad_samples), x,
                   picked["prediction"].map(CLASS_NAMES.index).to_numpy(), seconds,
                   prefix="shown maps: ")
    y_s = sample["label"].map(CLASS_NAMES.index).to_numpy()
    sample_maps = explain(make_explainers(model, layer, scored_ig_steps,
                                          scored_smoothgrad_samples), x_s, y_s, seconds,
                          prefix="scored maps: ")
    scores = faithfulness(model, x_s, y_s, sample_maps, deletion_steps, mufidelity_samples,
                          seed, seconds=seconds)
    scores = scores.join(sanity_and_mass(model, x_s, y_s, raw_s, sample_maps, scored_ig_steps,
                                         scored_smoothgrad_samples, seed, mask_threshold,
                                         randomisation_flag, sanity_samples, layer, seconds))
    scores = scores.assign(n_images=len(sample)).reset_index().assign(model=tag)
    return ModelExplanation(tag, picked, raw, maps, scores, seconds)


def explain_run(run: RunFolder, data_dir, models: list[str] | None = None, **options):
    """Explain every model of ``models_to_explain(run, models)``, one at a time (yields
    each ``ModelExplanation`` as soon as it is ready; ``options``: ``explain_model``'s)."""
    from brainmri.modeling import saved

    for tag, folder in models_to_explain(run, models).items():
        start = time.perf_counter()
        model, meta = saved.load_saved(folder)
        frame = pd.read_csv(run.predictions(tag, "test"))
        out = explain_model(tag, model, meta, frame, data_dir, **options)
        out.seconds["total"] = time.perf_counter() - start
        yield out


def external_cases(run: RunFolder, tag: str, data_dir, per_outcome: int, seed: int
                   ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray] | None:
    """Grad-CAM of the predicted class on Br35H's new tumour images (no copy in any
    training folder) that model ``tag`` missed and found, ``per_outcome`` of each drawn
    with ``seed``: what the model looks at when it calls a tumour "no tumour".

    Returns (the picked rows with an ``outcome`` column, their raw pixels, the maps);
    None when the model has no Br35H predictions or none of them is a new tumour."""
    from brainmri import CLASS_NAMES
    from brainmri.evaluation.predictions import DETECTION_SPLIT
    from brainmri.modeling import saved

    path = run.predictions(tag, DETECTION_SPLIT)
    if not path.exists():
        return None
    frame = pd.read_csv(path)
    excluded = run.external_exclusions(DETECTION_SPLIT)
    seen = set(pd.read_csv(excluded)["path"]) if excluded.exists() else set()
    new = frame[(frame["label"] == "tumour") & ~frame["path"].isin(seen)]
    if new.empty:
        return None
    new = new.assign(outcome=np.where(new["prediction"] == "no_tumor", "missed", "found"))
    picked = pd.concat([g.sample(min(per_outcome, len(g)), random_state=seed)
                        for _, g in new.groupby("outcome", sort=True)])
    model, meta = saved.load_saved(run.model_dir(tag))
    raw, x = images_for(picked, meta, data_dir)
    target = picked["prediction"].map(CLASS_NAMES.index).to_numpy()
    maps = explain({"GradCAM": gradcam(model, meta["gradcam_layer"])}, x, target)["GradCAM"]
    return picked.reset_index(drop=True), raw, maps


def mass_by_outcome(cases: pd.DataFrame, raw: np.ndarray, maps: np.ndarray,
                    mask_threshold: float) -> pd.DataFrame:
    """Where the positive Grad-CAM evidence lies on missed and found images
    (``external_cases``): shares of its mass on the head and on the head's outline, beside
    their areas; one row per outcome, with its number of images."""
    masks = brain_mask(raw, mask_threshold)
    band = contour_band(masks)
    heat = np.maximum(maps, 0)
    rows = {}
    for outcome in dict.fromkeys(cases["outcome"]):
        pick = (cases["outcome"] == outcome).to_numpy()
        rows[outcome] = {"images": int(pick.sum()),
                         **mass_shares(heat[pick], masks[pick], band[pick])}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("outcome")


SCORE_COLUMNS = ["model", "explainer", "deletion", "insertion", "mufidelity",
                 "randomisation_similarity", "flag_insensitive_to_weights", "mass_in_brain",
                 "area_in_brain", "mass_on_contour", "area_on_contour", "n_images", "n_sanity"]


def scores_table(explained) -> pd.DataFrame:
    """One row per (model, explainer): the scores of every ``ModelExplanation``."""
    frames = [e.scores for e in explained]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return table.reindex(columns=SCORE_COLUMNS)


def timing_table(explained) -> pd.DataFrame:
    """Seconds per model (rows) and stage (columns), in the order the stages ran."""
    return pd.DataFrame({e.tag: e.seconds for e in explained}).T.rename_axis("model")


#: How each faithfulness score picks the most faithful explainer.
BEST = {"insertion": "idxmax", "deletion": "idxmin", "mufidelity": "idxmax"}


def ranking(xai: pd.DataFrame, degenerate=()) -> pd.DataFrame:
    """The most faithful explainer per model and score (``scores_table``), one row per
    model; empty cells and ``ranked`` False for a degenerate model (``degenerate``: tags,
    e.g. ``benchmark.degenerate_models(run)``): its output never moves, so every
    explainer scores the same and a "winner" is chance."""
    rows = {}
    for model in dict.fromkeys(xai["model"]):
        scores = xai[xai["model"] == model].set_index("explainer")
        ranked = model not in set(degenerate)
        rows[model] = {"ranked": ranked, **{
            f"by_{metric}": getattr(scores[metric], pick)() if ranked else None
            for metric, pick in BEST.items()}}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")
