"""Saved models: the ``.keras`` file, its JSON sidecar, loading and shipping.

The sidecar (``<stem>.json`` beside ``<stem>.keras``: ``model.json`` in a run,
``brainmri_compact.json`` next to the shipped model) records how to feed the model (input
size, colour mode, resampling, normalisation, head crop, class order) and its calibration
temperature: without it a saved model cannot be used correctly. It also records the
SHA-256 of the ``.keras`` file it was written for (``model_sha256``), so that a sidecar
is never used with another model; there is no fallback to another file's sidecar.

Sidecars are read as data from possibly hostile users: only a regular file, at most
``MAX_SIDECAR_BYTES``, and JSON nested at most ``MAX_SIDECAR_DEPTH`` deep.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import stat
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from brainmri import CLASS_NAMES, __version__
from brainmri.core import paths
from brainmri.core.errors import BrainMRIError
from brainmri.core.files import atomic_path, atomic_write_json
from brainmri.data.images import COLOR_MODES
from brainmri.data.pixels import CROPS, NORMALIZATIONS, RESAMPLE, PixelSpec
from brainmri.modeling import ood
from brainmri.modeling.builders import GRADCAM_LAYER

#: Sidecar keys without which a model cannot be fed correctly (the rest have defaults).
#: ``crop`` has no default: a missing key used to turn the head crop off silently
#: (p(glioma) 0.997 -> 0.504 on a model trained on cropped images); ``"crop": null``
#: says "no crop" explicitly.
REQUIRED_KEYS = ("class_names", "image_size", "color_mode", "normalization", "crop")

#: The sidecar key holding the SHA-256 of the ``.keras`` file the sidecar was written for.
MODEL_HASH_KEY = "model_sha256"

#: Largest sidecar read (the shipped one, with its OOD checks, is about 100 KB).
MAX_SIDECAR_BYTES = 8 * 2**20

#: Deepest JSON nesting accepted in a sidecar (the series writes 4 levels).
MAX_SIDECAR_DEPTH = 32

#: Calibration temperatures a sidecar may hold: the search range of
#: ``evaluation.metrics.fit_temperature``. Outside it the probabilities are degenerate:
#: 1e-300 makes them exactly 0 and 1, 1e308 makes them all 0.25 (a tie "won" by the
#: first class).
TEMPERATURE_RANGE = (0.05, 50.0)

#: Model input sides a sidecar may hold, as the series' own bound on ``image_size``
#: (params/base.yaml, ``rules.ranges``).
IMAGE_SIZE_RANGE = (8, 2048)


class SavedModelError(BrainMRIError):
    """A model file or its sidecar cannot be used as is; the message says what to fix."""


def metadata(model, model_name: str, inputs, **extra) -> dict:
    """What ``brainmri predict`` and the explainers need to use a saved model correctly."""
    spec = inputs.spec
    return {"model": model_name, "dataset": inputs.dataset.name, "class_names": CLASS_NAMES,
            "image_size": spec.image_size, "color_mode": spec.color_mode,
            "resample": spec.resample, "crop": spec.crop, "normalization": inputs.normalization,
            "gradcam_layer": GRADCAM_LAYER.get(model_name), "parameters": model.count_params(),
            "brainmri": __version__, "saved": datetime.now(UTC).isoformat(), **extra}


def pixel_spec(meta: dict):
    """How a saved model's inputs were made (the sidecar's half of ``metadata``)."""
    return PixelSpec(meta["image_size"], meta["color_mode"], meta.get("resample", "area"),
                     meta.get("crop"))


def model_digest(model_file: str | Path) -> str:
    """The SHA-256 (hex) of a model file's bytes: the identity a sidecar records."""
    digest = hashlib.sha256()
    with open(_regular_file(Path(model_file), "model file"), "rb") as fh:
        for block in iter(lambda: fh.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def save(model, out_dir: str | Path, metadata: dict) -> Path:
    """Save the final (best-weights) model as ``model.keras`` with a ``model.json`` sidecar
    describing how to feed it (input size, colour mode, normalisation, class order) and
    naming the model file it belongs to (its SHA-256)."""
    out_dir = Path(out_dir)
    target = out_dir / "model.keras"
    tmp = out_dir / ".model.tmp.keras"
    model.save(tmp)
    tmp.replace(target)
    atomic_write_json({**metadata, MODEL_HASH_KEY: model_digest(target)},
                      out_dir / "model.json")
    return target


def export(model_dir: str | Path, target: str | Path, extra: dict | None = None) -> Path:
    """Copy a saved model to ``target`` (relative paths: from the project root) with its
    metadata as ``<target stem>.json``: how ``brainmri predict`` ships a model."""
    model_dir, target = Path(model_dir), Path(target)
    if not target.is_absolute():
        target = paths.project_root() / target
    meta = read_sidecar(model_dir / "model.keras")
    check_identity(meta, model_dir / "model.keras")  # never ship another model's sidecar
    with atomic_path(target) as tmp:
        shutil.copyfile(model_dir / "model.keras", tmp)
    source = model_dir.resolve()
    if source.is_relative_to(paths.project_root()):  # no machine-specific paths in the card
        source = source.relative_to(paths.project_root())
    atomic_write_json({**meta, **(extra or {}), "exported_from": str(source),
                       MODEL_HASH_KEY: model_digest(target)}, target.with_suffix(".json"))
    return target


def _model_file(folder_or_file) -> Path:
    path = Path(folder_or_file)
    try:
        return path / "model.keras" if path.is_dir() else path
    except OSError:  # an unreadable parent folder: _check_archive says so
        return path


def sidecar_path(model_file: str | Path) -> Path:
    """``<stem>.json`` beside ``<stem>.keras`` (a run folder's ``model.keras`` ->
    ``model.json``). Never another file's sidecar: a ``model.json`` beside
    ``best.keras`` used to be taken silently, with another model's calibration."""
    return Path(model_file).with_suffix(".json")


def _kind(mode: int) -> str:
    return ("a folder" if stat.S_ISDIR(mode) else "a named pipe" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device or special file")


def _regular_file(path: Path, what: str) -> Path:
    """``path`` when it is (or links to) a regular file; SavedModelError otherwise, before
    anything opens it (a named pipe would block forever, /dev/zero never ends)."""
    mode = os.stat(path).st_mode  # FileNotFoundError / OSError: the caller says so
    if not stat.S_ISREG(mode):
        raise SavedModelError(f"{what} {path} is {_kind(mode)}, not a regular file; pass the "
                              f"file saved by the series")
    return path


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def _depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in JSON text (strings left out): checked
    before parsing, since 100,000 nested brackets exhaust the parser's recursion."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def read_sidecar(model_file: str | Path) -> dict:
    """The sidecar's content, ``{}`` when there is none; SavedModelError, one line, if it
    is not a regular file, larger than ``MAX_SIDECAR_BYTES``, nested deeper than
    ``MAX_SIDECAR_DEPTH``, or not a JSON object."""
    meta_file = sidecar_path(model_file)
    hint = "restore it from the run's model folder or re-export the model"
    try:
        _regular_file(meta_file, "sidecar")
        # O_NONBLOCK: a file swapped for a named pipe after the check does not block
        fd = os.open(meta_file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise SavedModelError(f"sidecar {meta_file} is not a regular file; {hint}")
            data = fh.read(MAX_SIDECAR_BYTES + 1)
        text = data.decode("utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise SavedModelError(f"cannot read {meta_file} ({getattr(exc, 'strerror', None) or exc})"
                              f"; check its permissions or re-export the model") from None
    if len(data) > MAX_SIDECAR_BYTES:
        raise SavedModelError(f"{meta_file} is larger than {MAX_SIDECAR_BYTES // 2**20} MB, "
                              f"far more than a sidecar holds; {hint}")
    if _depth(text) > MAX_SIDECAR_DEPTH:
        raise SavedModelError(f"{meta_file} nests JSON more than {MAX_SIDECAR_DEPTH} levels "
                              f"deep, which no sidecar does; {hint}")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SavedModelError(f"{meta_file} is not valid JSON ({exc.msg}, line {exc.lineno}); "
                              f"{hint}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of 5,000 digits
        raise SavedModelError(f"{meta_file} holds a value that cannot be read "
                              f"({_short(str(exc))}); {hint}") from None
    if not isinstance(meta, dict):
        raise SavedModelError(f"{meta_file} must hold a JSON object; {hint}")
    return meta


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_identity(meta: dict, model_file: str | Path) -> bool:
    """Refuse a sidecar that records another model file's SHA-256. True when the sidecar
    names this model; False when it names none (a sidecar written before brainmri 0.2.1
    recorded it): such a sidecar is used, and ``brainmri predict`` says that it could
    not be checked."""
    recorded = meta.get(MODEL_HASH_KEY)
    if recorded is None:
        return False
    model_file = _model_file(model_file)
    actual = model_digest(model_file)
    if recorded != actual:
        raise SavedModelError(
            f"{sidecar_path(model_file)} belongs to another model ({MODEL_HASH_KEY} "
            f"{_short(repr(recorded), 20)}, but {model_file.name} has {actual[:16]}...); "
            f"pair the model with the sidecar saved with it, or re-export the model")
    return True


def update_sidecar(model_file: str | Path, key: str, value: Any) -> Path:
    """Add or replace one sidecar entry (e.g. ``ood`` for an already-trained model),
    written atomically so a crash never leaves a half-written sidecar."""
    meta_file = sidecar_path(_model_file(model_file))
    if not meta_file.exists():
        raise SavedModelError(f"{meta_file} not found: only a model with its sidecar can be "
                              f"updated")
    meta = read_sidecar(_model_file(model_file))
    meta[key] = value
    atomic_write_json(meta, meta_file)
    return meta_file


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value)


def identity_note(meta: dict, folder_or_file) -> str | None:
    """What ``brainmri predict`` says about a sidecar that names no model file (written
    before the series recorded ``model_sha256``): used, but not checked. None otherwise."""
    if MODEL_HASH_KEY in meta:
        return None
    model_file = _model_file(folder_or_file)
    return (f"{sidecar_path(model_file).name} does not record which model file it was "
            f"written for (saved before brainmri recorded {MODEL_HASH_KEY}), so it could not "
            f"be checked against {model_file.name}; it was used as is. Re-export the model "
            f"to record it.")


def _sidecar_problem(meta: dict) -> str | None:
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        crop = ("; add \"crop\": \"head\" if the model was trained on head-cropped images, "
                "\"crop\": null if not" if "crop" in missing else "")
        return f"is incomplete (missing {', '.join(missing)}{crop})"
    if not isinstance(meta["class_names"], list) or meta["class_names"] != list(CLASS_NAMES):
        return (f"lists classes {_short(repr(meta['class_names']))}, but this version predicts "
                f"{list(CLASS_NAMES)}")
    size = meta["image_size"]
    low, high = IMAGE_SIZE_RANGE
    if not (isinstance(size, int) and not isinstance(size, bool) and low <= size <= high):
        return (f"has image_size {_short(repr(size))}; it must be a whole number of pixels "
                f"from {low} to {high} (the side of the square the model was trained on)")
    for key, allowed in (("color_mode", COLOR_MODES), ("normalization", NORMALIZATIONS),
                         ("resample", tuple(RESAMPLE)), ("crop", CROPS)):
        if key in meta and not (isinstance(meta[key], (str, type(None)))
                                and meta[key] in allowed):
            return f"has {key} {_short(repr(meta[key]))}; expected one of {list(allowed)}"
    temperature = meta.get("temperature", 1.0)
    low, high = TEMPERATURE_RANGE
    if not (_is_number(temperature) and low <= temperature <= high):
        return (f"has temperature {_short(repr(temperature))}; the calibration temperature "
                f"must be a number from {low} to {high} (refit it on validation predictions with "
                f"brainmri.evaluation.metrics.fit_temperature, or remove it to use 1)")
    if "ood" in meta and (problem := ood.check_entry(meta["ood"])):
        return f"has an unusable ood entry: {problem}"
    return None


def check_sidecar(meta: dict, model_file: str | Path) -> None:
    """Refuse a sidecar that would feed the model wrongly or produce NaN probabilities."""
    problem = _sidecar_problem(meta)
    if problem:
        raise SavedModelError(f"{sidecar_path(model_file)} {problem}; fix it or re-export the "
                              f"model with the series")


def check_model(model, meta: dict, model_file: str | Path) -> None:
    """Refuse a model whose inputs or outputs do not match the sidecar and the class list
    (a 3- or 1-output model would otherwise give confident wrong answers)."""
    n = len(CLASS_NAMES)
    channels = 1 if meta["color_mode"] == "grayscale" else 3
    size = meta["image_size"]
    where = f"{model_file}"
    if len(model.inputs) != 1:
        raise SavedModelError(f"{where} takes {len(model.inputs)} inputs; predict feeds one "
                              f"image batch. Use a model saved by the series")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4:
        raise SavedModelError(f"{where} takes inputs of shape {shape}, not image batches "
                              f"(None, height, width, channels). Use a model saved by the series")
    if any(side not in (None, size) for side in shape[1:3]) or shape[3] != channels:
        raise SavedModelError(
            f"{where} takes {shape[1]}x{shape[2]}x{shape[3]} images but its sidecar says "
            f"{size}x{size} {meta['color_mode']} ({channels} channel(s)); pair the model with "
            f"the sidecar saved with it")
    if len(model.outputs) != 1 or model.outputs[0].shape[-1] != n:
        widths = [o.shape[-1] for o in model.outputs]
        raise SavedModelError(
            f"{where} gives {' + '.join(map(str, widths))} output(s) per image, but predict "
            f"needs {n}, one per class ({', '.join(CLASS_NAMES)}); use a model trained by "
            f"the series for these classes")
    try:
        logits = model.get_layer("logits")
    except ValueError:
        raise SavedModelError(f"{where} has no layer named 'logits' (calibration and the OOD "
                              f"score need it); use a model built by brainmri") from None
    if logits.output.shape[-1] != n:
        raise SavedModelError(f"{where}'s 'logits' layer has {logits.output.shape[-1]} units, "
                              f"not {n}; use a model trained by the series for these classes")
    activation = logits.get_config().get("activation", "linear")
    if activation not in ("linear", None):
        raise SavedModelError(
            f"{where}'s 'logits' layer has a {activation!r} activation; it must be linear "
            f"(raw logits), since the temperature and the OOD scores are computed from "
            f"logits. Use a model built by brainmri (its softmax is a separate layer)")
    checks = ood.checks_of(meta)
    if checks is not None and checks.embedding_dim not in (None, logits.input.shape[-1]):
        raise SavedModelError(
            f"{sidecar_path(model_file)}'s ood.checks were fitted to {checks.embedding_dim}-"
            f"dimensional features, but {where}'s 'logits' layer takes "
            f"{logits.input.shape[-1]}; pair the model with its own sidecar or recompute them "
            f"(python -m brainmri.modeling.calibration --calibrate {model_file})")


def _unreadable(model_file: Path, exc: OSError) -> SavedModelError:
    return SavedModelError(f"cannot read {model_file} ({exc.strerror or exc}); check the "
                           f"permissions of the file and its folders")


def _check_archive(model_file: Path) -> None:
    """Clear reasons for files Keras would report confusingly ("File not found" for a
    file that exists but is not a zip, a KeyError for a zip without config.json)."""
    try:
        mode = model_file.stat().st_mode
    except FileNotFoundError:
        raise SavedModelError(f"model file {model_file} not found; pass a .keras file saved "
                              f"by the series, with its JSON sidecar beside it") from None
    except OSError as exc:
        raise _unreadable(model_file, exc) from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a named pipe would block forever
        raise SavedModelError(f"model file {model_file} is {_kind(mode)}, not a regular file; "
                              f"pass a .keras file saved by the series")
    try:
        with zipfile.ZipFile(model_file) as archive:
            names = set(archive.namelist())
    except IsADirectoryError:
        raise SavedModelError(f"{model_file} is a folder without model.keras; pass the .keras "
                              f"file or a run's model folder") from None
    except PermissionError as exc:
        raise _unreadable(model_file, exc) from None
    except (zipfile.BadZipFile, OSError, ValueError):
        raise SavedModelError(f"{model_file} is not a Keras model file (a .keras file is a zip "
                              f"archive); pass a .keras file saved by the series") from None
    if "config.json" not in names:
        raise SavedModelError(f"{model_file} is an incomplete Keras archive (no config.json "
                              f"inside); re-save or re-export the model")


def _load_keras(model_file: Path):
    """Load with ``safe_mode=True``: no code stored in the file runs. Uncompiled: the
    training loss is not needed to predict."""
    import keras

    _check_archive(model_file)
    try:
        return keras.models.load_model(model_file, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types; all mean "unusable"
        text = " ".join(str(exc).split())
        if "safe_mode" in text or "arbitrary code" in text:
            raise SavedModelError(f"{model_file} contains Python code (e.g. a Lambda layer) "
                                  f"and will not be loaded, since loading would run it; use a "
                                  f"model saved by the series") from None
        raise SavedModelError(f"cannot load {model_file} ({type(exc).__name__}: {text[:200]}); "
                              f"re-save it with the series or pass another model") from None


def load_saved(folder_or_file):
    """(model, metadata) from a folder written by ``train.save`` (or its model.keras);
    metadata is ``{}`` without a sidecar. Loaded with ``safe_mode=True``: no arbitrary
    code from the file runs. SavedModelError, one line, for anything unusable."""
    model_file = _model_file(folder_or_file)
    _check_archive(model_file)
    metadata = read_sidecar(model_file)
    check_identity(metadata, model_file)
    return _load_keras(model_file), metadata


def prediction_metadata(folder_or_file) -> dict:
    """The checked sidecar of a model file that looks loadable: the cheap checks, which
    ``brainmri predict`` runs before anything slow."""
    model_file = _model_file(folder_or_file)
    _check_archive(model_file)
    metadata = read_sidecar(model_file)
    if not metadata:
        raise SavedModelError(f"{sidecar_path(model_file)} is missing; it records the input "
                              f"size and normalisation the model expects. Copy it from the "
                              f"run's model folder or re-export the model")
    check_identity(metadata, model_file)
    check_sidecar(metadata, model_file)
    return metadata


def load_for_prediction(folder_or_file):
    """(model, metadata) checked against each other and the class list: the sidecar
    first (cheap), the model after loading. What ``brainmri predict`` uses."""
    metadata = prediction_metadata(folder_or_file)
    model_file = _model_file(folder_or_file)
    model = _load_keras(model_file)
    check_model(model, metadata, model_file)
    return model, metadata
