"""An ensemble of models of one recipe (its seed repeats), from their predictions files:
no model is loaded again (issue 21: "an ensemble of the three seeds").

The members' probabilities are averaged (each member's softmax at temperature 1, as saved)
and the ensemble's logits are the log of that average, so that the benchmark's
temperature scaling and calibration read an ensemble like any model. The members must
have predicted the same images of the same split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from brainmri import CLASS_NAMES, LOGIT_COLUMNS, PROB_COLUMNS
from brainmri.core.files import atomic_write_csv
from brainmri.core.runfolder import RunFolder, model_tag


def average(frames: Sequence[pd.DataFrame], model: str) -> pd.DataFrame:
    """One predictions frame: the mean of ``frames``' probabilities, image by image,
    named ``model``; its ``seed`` is -1 (several)."""
    if len(frames) < 2:
        raise ValueError(f"an ensemble needs at least two members, got {len(frames)}")
    first = frames[0]
    for other in frames[1:]:
        if not (len(other) == len(first) and (other["path"].to_numpy()
                                              == first["path"].to_numpy()).all()):
            raise ValueError("ensemble members predicted different images or orders")
        if not (other["split"] == first["split"]).all():
            raise ValueError("ensemble members predicted different splits")
    probs = np.mean([f[PROB_COLUMNS].to_numpy(np.float64) for f in frames], axis=0)
    out = first.drop(columns=[*PROB_COLUMNS, *LOGIT_COLUMNS]).assign(
        model=model, seed=-1, prediction=[CLASS_NAMES[i] for i in probs.argmax(1)])
    out[PROB_COLUMNS] = probs
    out[LOGIT_COLUMNS] = np.log(np.clip(probs, 1e-12, None))
    return out


def disagreement(frames: Sequence[pd.DataFrame]) -> np.ndarray:
    """Per image, how much the members disagree: the variance of their probabilities
    across members, summed over the classes (0 when they all answer alike). A per-image
    warning score for images unlike the training ones (issue 21)."""
    average(frames, "check")  # the same images in the same order, or a clear error
    probs = np.stack([f[PROB_COLUMNS].to_numpy(np.float64) for f in frames])
    return probs.var(axis=0).sum(axis=1)


def save(run: RunFolder, members: Sequence[str], dataset: str, model: str) -> list[str]:
    """Average the saved predictions of ``members`` (model names trained on ``dataset``)
    for every split they all have, save them under ``model``; returns the splits."""
    files = run.prediction_files()
    tags = [model_tag(m, dataset) for m in members]
    splits = sorted(set.intersection(*({s for t, s in files if t == tag} for tag in tags)))
    for split in splits:
        frame = average([pd.read_csv(files[(tag, split)]) for tag in tags], model)
        atomic_write_csv(frame, run.predictions(model_tag(model, dataset), split))
    return splits
