"""The one evaluation path: predictions for validation and test, saved per model.

``results/<run>/predictions/<tag>_<split>.csv`` holds one row per image with the true
label, the prediction, the four class probabilities (``p_<class>``, canonical order) and
the logits (``z_<class>``, used for temperature scaling). Every benchmark number is
computed from these files, so no notebook needs to retrain a model to compare it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import CLASS_NAMES
from .metrics import global_metrics, per_class
from .results import atomic_write_csv

PROB_COLUMNS = [f"p_{c}" for c in CLASS_NAMES]
LOGIT_COLUMNS = [f"z_{c}" for c in CLASS_NAMES]


def predict(model, inputs, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(logits, probabilities) for every image of ``split``, in file order."""
    import keras

    both = keras.Model(model.input, [model.get_layer("logits").output, model.outputs[0]])
    logits, probs = both.predict(inputs.eval(split, with_labels=False), verbose=0)
    return np.asarray(logits, np.float64), np.asarray(probs, np.float64)


def predictions_frame(files: pd.DataFrame, labels: np.ndarray, logits: np.ndarray,
                      probs: np.ndarray, model: str, dataset: str, split: str,
                      seed: int | None = None, eval_dataset: str | None = None) -> pd.DataFrame:
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


def prediction_file(run_dir: str | Path, tag: str, split: str) -> Path:
    return Path(run_dir) / "predictions" / f"{tag}_{split}.csv"


def evaluate(model, inputs, run_dir: str | Path, model_name: str,
             splits: tuple[str, ...] = ("val", "test")) -> dict[str, pd.DataFrame]:
    """Predict ``splits``, save one CSV per split, return the frames."""
    tag = model_tag(model_name, inputs.dataset.name)
    out = {}
    for split in splits:
        logits, probs = predict(model, inputs, split)
        frame = predictions_frame(inputs.files(split), inputs.arrays[split][1], logits, probs,
                                  model_name, inputs.dataset.name, split, seed=inputs.seed)
        atomic_write_csv(frame, prediction_file(run_dir, tag, split))
        out[split] = frame
    return out


def evaluate_external(model, inputs, other, run_dir: str | Path, model_name: str
                      ) -> pd.DataFrame:
    """Predict the test set of another dataset (``other``, a data.Dataset) with the same
    preprocessing, saved as split ``external``. The benchmark removes the images the two
    datasets share before scoring."""
    from .tfdata import ModelInputs

    external = ModelInputs(other, inputs.spec, inputs.normalization, inputs.batch_size,
                           seed=inputs.seed, splits=("test",))
    logits, probs = predict(model, external, "test")
    frame = predictions_frame(external.files("test"), external.arrays["test"][1], logits, probs,
                              model_name, inputs.dataset.name, "external", seed=inputs.seed,
                              eval_dataset=other.name)
    atomic_write_csv(frame, prediction_file(run_dir, model_tag(model_name, inputs.dataset.name),
                                            "external"))
    return frame


def model_tag(model_name: str, dataset: str) -> str:
    return f"{model_name}-{dataset}"


def arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(integer labels, probabilities, logits) from a predictions frame."""
    y = frame["label"].map(CLASS_NAMES.index).to_numpy()
    return y, frame[PROB_COLUMNS].to_numpy(), frame[LOGIT_COLUMNS].to_numpy()


def summarize(frame: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """(global metrics, per-class table) of a predictions frame."""
    y, probs, _ = arrays(frame)
    return global_metrics(y, probs), per_class(y, probs)


def load_predictions(run_dir: str | Path) -> dict[tuple[str, str], pd.DataFrame]:
    """Every saved predictions file of a run, keyed by (tag, split)."""
    out = {}
    for path in sorted((Path(run_dir) / "predictions").glob("*_*.csv")):
        tag, split = path.stem.rsplit("_", 1)
        out[(tag, split)] = pd.read_csv(path)
    return out
