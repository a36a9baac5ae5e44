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

from brainmri import CLASS_NAMES
from brainmri.core.files import atomic_write_csv
from brainmri.core.runfolder import RunFolder, model_tag
from brainmri.evaluation.metrics import global_metrics, per_class
from brainmri.modeling.builders import logits_model

PROB_COLUMNS = [f"p_{c}" for c in CLASS_NAMES]
LOGIT_COLUMNS = [f"z_{c}" for c in CLASS_NAMES]
#: The columns every predictions file starts with, in this order.
ID_COLUMNS = ["model", "dataset", "split", "eval_dataset", "seed", "path", "label",
              "prediction"]


def predict(model, inputs, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(logits, probabilities) for every image of ``split``, in file order."""
    logits = np.asarray(logits_model(model).predict(inputs.eval(split, with_labels=False),
                                                    verbose=0), np.float64)
    return logits, softmax(logits, axis=1)


def predictions_frame(files: pd.DataFrame, labels: np.ndarray, logits: np.ndarray,
                      probs: np.ndarray, model: str, dataset: str, split: str, seed: int,
                      eval_dataset: str | None = None) -> pd.DataFrame:
    """One row per image. ``dataset`` is the training dataset; ``eval_dataset`` the one
    the images come from (they differ for external evaluation)."""
    frame = pd.DataFrame({"model": model, "dataset": dataset, "split": split,
                          "eval_dataset": eval_dataset or dataset, "seed": seed,
                          "path": files["path"].to_numpy(),
                          "label": [CLASS_NAMES[i] for i in labels],
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
        frame = predictions_frame(inputs.files(split), inputs.arrays[split][1], logits, probs,
                                  model_name, inputs.dataset.name, split, seed=inputs.seed)
        atomic_write_csv(frame, run.predictions(tag, split))
        out[split] = frame
    return out


def evaluate_external(model, inputs, other, run: RunFolder, model_name: str) -> pd.DataFrame:
    """Predict the test set of another dataset (``other``, a data.dataset.Dataset) with
    the same preprocessing, saved as split ``external``. The benchmark removes the images
    the two datasets share before scoring."""
    from brainmri.data.inputs import ModelInputs

    external = ModelInputs(other, inputs.spec, normalization=inputs.normalization,
                           batch_size=inputs.batch_size, seed=inputs.seed, splits=("test",))
    logits, probs = predict(model, external, "test")
    frame = predictions_frame(external.files("test"), external.arrays["test"][1], logits, probs,
                              model_name, inputs.dataset.name, "external", seed=inputs.seed,
                              eval_dataset=other.name)
    atomic_write_csv(frame, run.predictions(model_tag(model_name, inputs.dataset.name),
                                            "external"))
    return frame


def arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(integer labels, probabilities, logits) from a predictions frame."""
    y = frame["label"].map(CLASS_NAMES.index).to_numpy()
    return y, frame[PROB_COLUMNS].to_numpy(), frame[LOGIT_COLUMNS].to_numpy()


def summarize(frame: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """(global metrics, per-class table) of a predictions frame."""
    y, probs, _ = arrays(frame)
    return global_metrics(y, probs), per_class(y, probs)


def load_predictions(run: RunFolder) -> dict[tuple[str, str], pd.DataFrame]:
    """Every saved predictions file of a run, keyed by (tag, split)."""
    return {key: pd.read_csv(path) for key, path in run.prediction_files().items()}
