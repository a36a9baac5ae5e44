"""Flags for inputs a model should not be trusted on: out-of-distribution scores and
simple image checks, shown in ``brainmri predict``'s ``warning`` column.

A classifier always answers one of its four classes, even for a chest X-ray, a photo or
a blank frame. The energy score (Liu et al., 2020, "Energy-based out-of-distribution
detection") is computed from the logits the model already produces:

    energy(x) = -T * logsumexp(logits(x) / T)

Sign: LOWER energy means the model responds strongly to the input (typical of its
training data); HIGHER energy means weak responses to every class, i.e. more unusual.
An image is flagged when its energy is above a threshold chosen on clean validation
images so that only ``false_alarm_rate`` of them would be flagged. The threshold is
stored in the model's JSON sidecar under ``ood`` (see ``sidecar_entry``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from brainmri import LOGIT_COLUMNS

#: Share of clean validation images the default threshold flags: one false alarm in a
#: hundred clean scans keeps the column meaningful without crying wolf on every batch.
FALSE_ALARM_RATE = 0.01

#: Grey-level standard deviation (0..255 scale) below which an image is "near-constant".
#: Real slices have a black background and a bright head (std ~40-70); a blank, black or
#: saturated frame with JPEG noise stays below ~2.
NEAR_CONSTANT_STD = 2.0

#: An image whose shorter side is below this share of the model input is upsampled more
#: than 2x: the detail the model learned from is not there.
MIN_SIDE_SHARE = 0.5

#: Longer side over shorter side above which the square resize distorts anatomy badly;
#: scans in both datasets are at most ~1.5:1.
MAX_ASPECT_RATIO = 4.0



def energy(logits, temperature: float = 1.0) -> np.ndarray:
    """Energy score per row of ``logits`` (N, classes): higher means more unusual."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    z = np.asarray(logits, np.float64)
    if z.ndim != 2 or z.shape[1] == 0:
        raise ValueError(f"logits must have shape (N, classes), got {z.shape}")
    return -temperature * logsumexp(z / temperature, axis=1)


def threshold(val_logits, false_alarm_rate: float = FALSE_ALARM_RATE,
              temperature: float = 1.0) -> float:
    """The energy above which an image is flagged, so that at most ``false_alarm_rate``
    of the clean validation images ``val_logits`` would be (ties included).

    With n images, k = floor(rate * n) may be flagged: the threshold is the (k+1)-th
    highest score. Small validation sets therefore flag fewer than the rate, never more.
    """
    if not 0 < false_alarm_rate < 1:
        raise ValueError(f"false_alarm_rate must be between 0 and 1, got {false_alarm_rate}")
    scores = np.sort(energy(val_logits, temperature))
    if not np.isfinite(scores).all():
        raise ValueError("validation logits contain NaN or infinite values")
    k = int(math.floor(false_alarm_rate * len(scores)))
    return float(scores[len(scores) - 1 - k])


def sidecar_entry(val_logits, false_alarm_rate: float = FALSE_ALARM_RATE,
                  temperature: float = 1.0) -> dict:
    """The sidecar's ``ood`` value: what ``brainmri predict`` needs to flag images."""
    logits = np.asarray(val_logits, np.float64)
    return {"score": "energy", "temperature": float(temperature),
            "threshold": threshold(logits, false_alarm_rate, temperature),
            "false_alarm_rate": float(false_alarm_rate), "n_val": int(len(logits))}


def from_predictions(val_frame: pd.DataFrame | str | os.PathLike,
                     false_alarm_rate: float = FALSE_ALARM_RATE) -> dict:
    """The ``ood`` sidecar entry from a saved validation predictions file (or its frame),
    so that the sidecar of an already-trained model can be completed without retraining.
    Rows of other splits, when the file has a ``split`` column, are ignored."""
    frame = (val_frame if isinstance(val_frame, pd.DataFrame)
             else pd.read_csv(Path(val_frame)))
    if "split" in frame.columns:
        frame = frame[frame["split"] == "val"]
    missing = [c for c in LOGIT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"predictions lack the logit columns {missing}; use a predictions "
                         f"file written by the series (evaluation.predictions)")
    if frame.empty:
        raise ValueError("no validation rows: pass the model's <tag>_val.csv predictions")
    return sidecar_entry(frame[LOGIT_COLUMNS].to_numpy(np.float64), false_alarm_rate)


def check_entry(entry) -> str | None:
    """Why a sidecar ``ood`` value cannot be used, or None if it can."""
    if not isinstance(entry, dict):
        return "'ood' must be an object"
    if entry.get("score") != "energy":
        return f"'ood.score' must be \"energy\", got {entry.get('score')!r}"
    if "threshold" not in entry:
        return "'ood.threshold' is missing"
    for key, positive in (("threshold", False), ("temperature", True)):
        value = entry.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and (value > 0 or not positive)):
            kind = "a positive number" if positive else "a finite number"
            return f"'ood.{key}' must be {kind}, got {value!r}"
    return None


def flagged(logits, entry: dict) -> np.ndarray:
    """Which images (rows of ``logits``) the sidecar's threshold flags."""
    return energy(logits, entry.get("temperature", 1.0)) > entry["threshold"]


def flag(score: float, entry: dict) -> str:
    """The warning for one image's energy score ('' when it looks like training data)."""
    if score > entry["threshold"]:
        return (f"out of distribution (energy {score:.2f} > {entry['threshold']:.2f}): "
                f"unlike the training images, the prediction is unreliable")
    return ""


def image_warnings(pixels: np.ndarray, image_size: int) -> list[str]:
    """Cheap checks on decoded pixels (H, W, C) before resizing, one message each."""
    height, width = pixels.shape[:2]
    notes = []
    grey = pixels.astype(np.float32).mean(axis=-1)
    if float(grey.std()) < NEAR_CONSTANT_STD:
        notes.append(f"near-constant image (grey-level std {grey.std():.1f})")
    if min(height, width) < MIN_SIDE_SHARE * image_size:
        notes.append(f"small image ({width}x{height}) for a {image_size} px model input")
    if max(height, width) > MAX_ASPECT_RATIO * min(height, width):
        notes.append(f"extreme aspect ratio ({width}x{height}), distorted by the square "
                     f"resize")
    return notes
