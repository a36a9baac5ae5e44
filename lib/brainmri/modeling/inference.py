"""Classify image files with a saved model: the engine behind ``brainmri predict``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from brainmri import CLASS_NAMES
from brainmri.core import paths
from brainmri.core.progress import progress
from brainmri.data.images import ImageReadError
from brainmri.data.pixels import PixelSpec, load_file, normalize
from brainmri.modeling.builders import logits_model

DEFAULT_MODEL = Path("models") / "brainmri_compact.keras"
COLUMNS = ["path", "prediction", *[f"p_{c}" for c in CLASS_NAMES], "error"]


def default_model() -> Path:
    return paths.project_root() / DEFAULT_MODEL


def collect(inputs: list[str | os.PathLike]) -> list[Path]:
    """Files named directly, plus every non-hidden file under the folders named."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.is_file()
                            and not any(part.startswith(".") for part in p.relative_to(item).parts))
        else:
            found.append(item)
    return found


def predict_files(files: list[Path], model, metadata: dict, batch_size: int,
                  show_progress: bool = True) -> pd.DataFrame:
    """One row per file: the prediction and calibrated class probabilities, or an error."""
    from scipy.special import softmax

    spec = PixelSpec(metadata["image_size"], metadata["color_mode"],
                     metadata.get("resample", "area"))
    temperature = float(metadata.get("temperature", 1.0))
    logits_net = logits_model(model)
    rows: list[dict] = []
    batch: list[tuple[Path, np.ndarray]] = []

    def flush():
        if not batch:
            return
        x = np.asarray(normalize(np.stack([b[1] for b in batch]), metadata["normalization"]))
        probs = softmax(np.asarray(logits_net(x, training=False), np.float64) / temperature,
                        axis=1)
        for (path, _), p in zip(batch, probs):
            rows.append({"path": str(path), "prediction": CLASS_NAMES[int(p.argmax())],
                         **{f"p_{c}": float(v) for c, v in zip(CLASS_NAMES, p)}, "error": ""})
        batch.clear()

    for path in progress(files, desc="predicting", unit="img",
                         disable=not show_progress or len(files) < 2):
        try:
            batch.append((path, load_file(path, spec)))
        except (ImageReadError, OSError) as exc:
            reason = str(exc) if isinstance(exc, ImageReadError) else (
                exc.strerror or type(exc).__name__)
            rows.append({"path": str(path), "prediction": "", "error": reason})
        if len(batch) >= batch_size:
            flush()
    flush()
    order = {str(p): i for i, p in enumerate(files)}
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values("path", key=lambda s: s.map(order)).reset_index(drop=True)
