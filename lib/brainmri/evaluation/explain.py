"""Chapter 10's explanations: which models, which images, and the tables it shows.

Every model a chapter trained is explained (``models_to_explain``), never the
reduced-size study models of chapters 05b and 08c (``is_explained``). The shown maps use
the report's settings on a few images; the scores (:mod:`brainmri.evaluation.map_checks`)
use fewer integration steps and noisy samples on many more images: the time each costs
is recorded per model (``ModelExplanation.seconds``). The maps themselves come from
:mod:`brainmri.evaluation.attributions`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brainmri.core.errors import BrainMRIError
from brainmri.core.runfolder import RunFolder, is_ablation_model
from brainmri.evaluation.attributions import (  # noqa: F401 (the chapter's vocabulary)
    DISPLAY,
    EXPLAINERS,
    explain,
    gradcam,
    make_explainers,
    timed,
)
from brainmri.evaluation.map_checks import (
    brain_mask,
    contour_band,
    faithfulness,
    mass_shares,
    sanity_and_mass,
)


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


def select_examples(frame: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    """Up to ``per_class`` correctly and ``per_class`` wrongly predicted test images per
    true class (seeded), with their row index in the predictions frame."""
    frame = frame.assign(row=np.arange(len(frame)),
                         outcome=np.where(frame["label"] == frame["prediction"], "correct",
                                          "misclassified"))
    picked = [group.sample(n=min(per_class, len(group)), random_state=seed)
              for _, group in frame.groupby(["label", "outcome"], sort=True)]
    return pd.concat(picked).reset_index(drop=True) if picked else frame.head(0)


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
    with timed(seconds, "read images"):
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
