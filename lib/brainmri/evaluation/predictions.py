"""The predictions files: what a model said about every validation and test image.

``RunFolder.predictions(tag, split)`` holds one row per image with the true label, the
prediction, the four class probabilities (``p_<class>``, canonical order) and the logits
(``z_<class>``, used for temperature scaling). Every benchmark number is computed from
these files, so no chapter needs to retrain a model to compare it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import softmax

from brainmri import CLASS_NAMES, LOGIT_COLUMNS, PROB_COLUMNS
from brainmri.core.files import atomic_write_csv
from brainmri.core.runfolder import RunFolder, model_tag
from brainmri.evaluation.metrics import global_metrics, per_class
from brainmri.modeling.builders import logits_model

#: The columns every predictions file starts with, in this order.
ID_COLUMNS = ["model", "dataset", "split", "eval_dataset", "seed", "path", "label",
              "prediction"]


def predict(model, inputs, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(logits, probabilities) for every image of ``split``, in file order."""
    if len(inputs.arrays[split][0]) == 0:  # Keras' predict fails on an empty dataset
        empty = np.zeros((0, len(CLASS_NAMES)))  # (UnboundLocalError: batch_outputs)
        return empty, empty.copy()
    logits = np.asarray(logits_model(model).predict(inputs.eval(split, with_labels=False),
                                                    verbose=0), np.float64)
    return logits, softmax(logits, axis=1)


def predictions_frame(files: pd.DataFrame, logits: np.ndarray, probs: np.ndarray, model: str,
                      dataset: str, split: str, seed: int, eval_dataset: str | None = None
                      ) -> pd.DataFrame:
    """One row per image. ``dataset`` is the training dataset; ``eval_dataset`` the one
    the images come from (they differ for external evaluation). ``label`` is the file's
    label in its own dataset: one of CLASS_NAMES, or ``tumour`` for a binary dataset."""
    frame = pd.DataFrame({"model": model, "dataset": dataset, "split": split,
                          "eval_dataset": eval_dataset or dataset, "seed": seed,
                          "path": files["path"].to_numpy(),
                          "label": files["label"].to_numpy(),
                          "prediction": [CLASS_NAMES[i] for i in probs.argmax(1)]})
    frame[PROB_COLUMNS] = probs
    frame[LOGIT_COLUMNS] = logits
    return frame


def evaluate(model, inputs, run: RunFolder, model_name: str,
             splits: tuple[str, ...] = ("val", "test")) -> dict[str, pd.DataFrame]:
    """Predict ``splits``, save one file per split, return the frames."""
    tag = model_tag(model_name, inputs.dataset.name)
    out = {}
    for split in splits:
        logits, probs = predict(model, inputs, split)
        frame = predictions_frame(inputs.files(split), logits, probs, model_name,
                                  inputs.dataset.name, split, seed=inputs.seed)
        atomic_write_csv(frame, run.predictions(tag, split))
        out[split] = frame
    return out


#: The split name under which predictions on an evaluation-only dataset are saved.
DETECTION_SPLIT = "br35h"
#: A collection the recipe held out of training and validation, predicted whole.
HELD_OUT_SPLIT = "heldout"  # no "_": files are <tag>_<split>.csv


def evaluate_external(model, inputs, other, run: RunFolder, model_name: str,
                      split: str | None = None) -> pd.DataFrame:
    """Predict the test set of another dataset (``other``, a data.dataset.Dataset) with
    the same preprocessing. A four-class dataset is saved as split ``external``; the binary
    Br35H as split ``br35h``; ``split`` names it otherwise (``heldout``: a collection the
    recipe kept away from training and validation). The benchmark removes the images that
    also lie in the model's training data before scoring."""
    from brainmri.data.inputs import ModelInputs

    external = ModelInputs(other, inputs.spec, normalization=inputs.normalization,
                           batch_size=inputs.batch_size, seed=inputs.seed, splits=("test",))
    logits, probs = predict(model, external, "test")
    split = split or (DETECTION_SPLIT if other.spec.evaluation_only else "external")
    frame = predictions_frame(external.files("test"), logits, probs, model_name,
                              inputs.dataset.name, split, seed=inputs.seed,
                              eval_dataset=other.name)
    atomic_write_csv(frame, run.predictions(model_tag(model_name, inputs.dataset.name), split))
    return frame


#: Integer label of a tumour of unknown type (Br35H's "yes"): never a correct four-class
#: answer, but a tumour for the clinical reading (anything but ``no_tumor``).
TUMOUR_UNKNOWN = -1


def arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(integer labels, probabilities, logits) from a predictions frame."""
    codes = {name: i for i, name in enumerate(CLASS_NAMES)} | {"tumour": TUMOUR_UNKNOWN}
    y = frame["label"].map(codes).to_numpy()
    return y, frame[PROB_COLUMNS].to_numpy(), frame[LOGIT_COLUMNS].to_numpy()


def summarize(frame: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """(global metrics, per-class table) of a predictions frame."""
    y, probs, _ = arrays(frame)
    return global_metrics(y, probs), per_class(y, probs)


def load_predictions(run: RunFolder) -> dict[tuple[str, str], pd.DataFrame]:
    """Every saved predictions file of a run, keyed by (tag, split)."""
    return {key: pd.read_csv(path) for key, path in run.prediction_files().items()}
