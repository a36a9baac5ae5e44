"""Classify image files with a saved model: the engine behind ``brainmri predict``.

Every input path gives exactly one row: a prediction with its calibrated probabilities,
or an ``error`` saying why the file could not be used. The ``warning`` column flags
predictions not to trust (decoder complaints, near-constant or tiny images, extreme
aspect ratios, out-of-distribution scores; see ``modeling.ood``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brainmri import CLASS_NAMES, PROB_COLUMNS
from brainmri.core import paths
from brainmri.core.progress import progress
from brainmri.data.images import ImageReadError, decode
from brainmri.data.pixels import PixelSpec, crop_to_head, normalize, resize
from brainmri.modeling import ood
from brainmri.modeling.builders import logits_model
from brainmri.modeling.saved import pixel_spec

DEFAULT_MODEL = Path("models") / "brainmri_compact.keras"
COLUMNS = ["path", "prediction", *PROB_COLUMNS, "warning", "error"]


def default_model() -> Path:
    return paths.project_root() / DEFAULT_MODEL


def _walk(folder: Path) -> list[Path]:
    """Every non-hidden entry under ``folder``, including the ones that cannot be read
    (broken or looping links, pipes, links to folders, unreadable subfolders), so that
    each gets a row saying why instead of silently vanishing from the table."""
    found: list[Path] = []

    def unreadable(exc: OSError) -> None:
        if exc.filename:
            found.append(Path(exc.filename))

    for root, dirs, files in os.walk(folder, onerror=unreadable):
        base = Path(root)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [base / d for d in dirs if (base / d).is_symlink()]  # walk does not follow
        found += [base / f for f in files if not f.startswith(".")]
    return sorted(set(found))


def collect(inputs: list[str | os.PathLike]) -> list[Path]:
    """Files named directly, plus every non-hidden entry under the folders named."""
    found: list[Path] = []
    for item in map(Path, inputs):
        try:
            is_folder = item.is_dir()
        except OSError:  # e.g. inside an unreadable folder: the reader says so
            is_folder = False
        found += _walk(item) if is_folder else [item]
    return found


@dataclass
class Prepared:
    """One file ready for the model, or the reason it is not."""

    path: Path
    pixels: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)
    error: str = ""


def prepare(path: Path, spec: PixelSpec) -> Prepared:
    """Decode, check and resize one file as ``data.pixels.load_file`` does; never raises
    for a bad file (ImageReadError becomes ``error``)."""
    try:
        decoded = decode(path, spec.color_mode)
    except ImageReadError as exc:
        return Prepared(path, error=str(exc))
    pixels = decoded.pixels
    notes = [*decoded.warnings, *ood.image_warnings(pixels, spec.image_size)]
    if spec.crop == "head":
        pixels = crop_to_head(pixels)
    return Prepared(path, resize(pixels, spec), notes)


def predict_files(files: list[Path], model, metadata: dict, batch_size: int,
                  show_progress: bool = True) -> pd.DataFrame:
    """One row per file: the prediction and calibrated class probabilities, or an error.

    ``metadata`` must have passed ``saved.check_sidecar``. Without an ``ood`` entry no
    image is flagged as out of distribution (the caller says so).
    """
    from scipy.special import softmax

    spec = pixel_spec(metadata)
    temperature = float(metadata.get("temperature", 1.0))
    ood_entry = metadata.get("ood")
    logits_net = logits_model(model)
    rows: list[dict] = []
    batch: list[Prepared] = []

    def flush():
        if not batch:
            return
        x = np.asarray(normalize(np.stack([b.pixels for b in batch]),
                                 metadata["normalization"]))
        logits = np.asarray(logits_net(x, training=False), np.float64)
        probs = softmax(logits / temperature, axis=1)
        scores = (ood.energy(logits, float(ood_entry.get("temperature", 1.0)))
                  if ood_entry else [None] * len(batch))
        for item, p, score in zip(batch, probs, scores):
            notes = item.warnings + ([ood.flag(score, ood_entry)] if ood_entry else [])
            rows.append({"path": str(item.path), "prediction": CLASS_NAMES[int(p.argmax())],
                         **dict(zip(PROB_COLUMNS, map(float, p))),
                         "warning": "; ".join(n for n in notes if n), "error": ""})
        batch.clear()

    for path in progress(files, desc="predicting", unit="img",
                         disable=not show_progress or len(files) < 2):
        item = prepare(path, spec)
        if item.error:
            rows.append({"path": str(path), "prediction": "", "warning": "",
                         "error": item.error})
        else:
            batch.append(item)
        if len(batch) >= batch_size:
            flush()
    flush()
    order = {str(p): i for i, p in enumerate(files)}
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values("path", key=lambda s: s.map(order)).reset_index(drop=True)
