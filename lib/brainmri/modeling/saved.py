"""Saved models: the ``.keras`` file, its JSON sidecar, loading and shipping.

The sidecar (``model.json`` in a run, ``<name>.json`` next to a shipped model) records
how to feed the model (input size, colour mode, resampling, normalisation, class order)
and its calibration temperature: without it a saved model cannot be used correctly.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from brainmri import CLASS_NAMES, __version__
from brainmri.core import paths
from brainmri.core.files import atomic_path, atomic_write_json
from brainmri.modeling.builders import GRADCAM_LAYER


def metadata(model, model_name: str, inputs, **extra) -> dict:
    """What ``brainmri predict`` and the explainers need to use a saved model correctly."""
    spec = inputs.spec
    return {"model": model_name, "dataset": inputs.dataset.name, "class_names": CLASS_NAMES,
            "image_size": spec.image_size, "color_mode": spec.color_mode,
            "resample": spec.resample, "normalization": inputs.normalization,
            "gradcam_layer": GRADCAM_LAYER.get(model_name), "parameters": model.count_params(),
            "brainmri": __version__, "saved": datetime.now(UTC).isoformat(), **extra}


def save(model, out_dir: str | Path, metadata: dict) -> Path:
    """Save the final (best-weights) model as ``model.keras`` with a ``model.json`` sidecar
    describing how to feed it (input size, colour mode, normalisation, class order)."""
    out_dir = Path(out_dir)
    target = out_dir / "model.keras"
    tmp = out_dir / ".model.tmp.keras"
    model.save(tmp)
    tmp.replace(target)
    atomic_write_json(metadata, out_dir / "model.json")
    return target


def export(model_dir: str | Path, target: str | Path, extra: dict | None = None) -> Path:
    """Copy a saved model to ``target`` (relative paths: from the project root) with its
    metadata as ``<target stem>.json``: how ``brainmri predict`` ships a model."""
    model_dir, target = Path(model_dir), Path(target)
    if not target.is_absolute():
        target = paths.project_root() / target
    with atomic_path(target) as tmp:
        shutil.copyfile(model_dir / "model.keras", tmp)
    meta = json.loads((model_dir / "model.json").read_text())
    source = model_dir.resolve()
    if source.is_relative_to(paths.project_root()):  # no machine-specific paths in the card
        source = source.relative_to(paths.project_root())
    atomic_write_json({**meta, **(extra or {}), "exported_from": str(source)},
                      target.with_suffix(".json"))
    return target


def load_saved(folder_or_file):
    """(model, metadata) from a folder written by ``train.save`` (or its model.keras).

    Loaded with ``safe_mode=True``: no arbitrary code from the file runs. The training loss
    is not needed to predict, so the model is not compiled.
    """
    import keras

    path = Path(folder_or_file)
    model_file = path / "model.keras" if path.is_dir() else path
    meta_file = model_file.with_suffix(".json")  # brainmri_compact.keras -> .json
    if not meta_file.exists():
        meta_file = model_file.with_name("model.json")  # a run's model folder
    if not model_file.exists():
        raise FileNotFoundError(f"no saved model at {model_file}")
    metadata = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    return keras.models.load_model(model_file, compile=False, safe_mode=True), metadata
