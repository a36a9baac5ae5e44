"""Flags for inputs a model should not be trusted on, shown in ``brainmri predict``'s
``warning`` column.

A classifier always answers one of its four classes, even for a chest X-ray, a photo or
a blank frame. Three kinds of evidence say "this is not like the training images":

1. Cheap checks on the decoded pixels (``image_warnings``): near-constant, tiny or
   stretched images. Fixed limits, no calibration.
2. Statistics of the whole frame that tell brain MRI slices from other pictures
   (``image_statistics``): colour saturation (MRI slices are grey), corner brightness
   (a black background; catches inverted scans and photos), a noise level, the
   hollowness of the brightest region (a head is a filled region; an outline, a
   drawing or an edge map is not) and the grey-level entropy of the foreground
   (drawings, masks and phantoms have few grey levels).
3. Two scores from the model's own forward pass: the energy score of the logits (Liu
   et al., 2020, "Energy-based out-of-distribution detection")

       energy(x) = -T * logsumexp(logits(x) / T)

   (LOWER means the model responds strongly, as to its training data; HIGHER means
   weak responses to every class), and the Mahalanobis distance of the penultimate
   layer's embedding (the input of the ``logits`` layer) to the nearest training class
   mean under one shared covariance (Lee et al., 2018, "A simple unified framework for
   detecting out-of-distribution samples").

Why all of them: the energy score alone cannot tell pure noise (energy -3.1) or a
drawing (-5.2) from a real scan (-2.4 to -3.1) with the shipped model, since the network
answers confidently on both; grey statistics and the feature distance do.

The training run stores an energy threshold alone in the model's JSON sidecar under
``ood`` (``sidecar_entry``: the share ``ood_false_alarm_rate`` of params/base.yaml, 1 %,
of the clean validation images above it; the benchmark's "flagged as unusual" column
uses it). ``modeling.calibration.calibrate`` adds ``ood.checks``: limits for 2
and 3, the energy included, chosen together on clean validation images so that at most
``CHECKS_FALSE_ALARM_RATE`` of them get any warning; ``brainmri predict`` then uses
those. ``python -m brainmri.modeling.calibration --calibrate MODEL --data-dir DIR`` computes
them for a saved model from its dataset's own split and records, under
``ood.checks.measured``, how often they fire on the home test set and on non-MRI images
(``data.nonmri``). A sidecar without ``ood.checks`` still works: only the training
run's energy threshold is used then.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import reduce
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from brainmri import CLASS_NAMES, LOGIT_COLUMNS
from brainmri.modeling.collection_check import Collection
from brainmri.modeling.embedding_distance import (
    decode_array,
    mahalanobis,
)

#: Share of clean validation images that ``calibration.calibrate`` lets ALL checks flag.
#: Half of the training run's energy-only rate (``ood_false_alarm_rate`` in
#: params/base.yaml, 0.01: one false alarm in a hundred clean scans): test images sit a
#: little further from the training images than validation images do (the shipped
#: model's feature distance: 99th percentile 16.3 on validation, 17.6 on test), and the
#: aim is at most 1 % warned at home. With seven checks and 1,140 validation images this
#: leaves every limit at the most extreme validation value (one flag more per check would
#: already exceed 5 images).
CHECKS_FALSE_ALARM_RATE = 0.005

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

#: Side of the square thumbnail (area-averaged, whole frame) that ``image_statistics``
#: describes, so that the statistics do not depend on the file's resolution.
STATS_SIZE = 128

#: Grey level (0..255) below which a pixel is background when the foreground's grey-level
#: entropy is measured.
DARK_LEVEL = 16

#: statistic -> (side, what a flagged value means). ``max``: flagged above the limit;
#: ``min``: flagged below it.
IMAGE_CHECKS: dict[str, tuple[str, str]] = {
    "saturation": ("max", "colour image (saturation {value:.2f} > {limit:.2f})"),
    "corner_brightness": ("max", "bright corners ({value:.0f} > {limit:.0f} of 255: "
                                 "inverted, or not a scan?)"),
    "noise": ("max", "noisy (noise level {value:.2f} > {limit:.2f})"),
    "hollowness": ("max", "an outline, not a filled head (hollowness {value:.2f} > "
                          "{limit:.2f})"),
    "entropy": ("min", "few grey levels (entropy {value:.2f} < {limit:.2f} bits)"),
}
EMBEDDING_NOTE = ("far from the training images in the model's features (Mahalanobis "
                  "distance {value:.1f} > {limit:.1f})")

NO_TUMOUR_INDEX = CLASS_NAMES.index("no_tumor")

#: Version of the ``ood.checks`` layout this code reads and writes.
CHECKS_VERSION = 1

_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


# --------------------------------------------------------------------- energy score


def energy(logits, temperature: float = 1.0) -> np.ndarray:
    """Energy score per row of ``logits`` (N, classes): higher means more unusual."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    z = np.asarray(logits, np.float64)
    if z.ndim != 2 or z.shape[1] == 0:
        raise ValueError(f"logits must have shape (N, classes), got {z.shape}")
    return -temperature * logsumexp(z / temperature, axis=1)


def threshold(val_logits, false_alarm_rate: float, temperature: float = 1.0) -> float:
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


def sidecar_entry(val_logits, false_alarm_rate: float, temperature: float = 1.0) -> dict:
    """The sidecar's ``ood`` value: what ``brainmri predict`` needs to flag images."""
    logits = np.asarray(val_logits, np.float64)
    return {"score": "energy", "temperature": float(temperature),
            "threshold": threshold(logits, false_alarm_rate, temperature),
            "false_alarm_rate": float(false_alarm_rate), "n_val": int(len(logits))}


def from_predictions(val_frame: pd.DataFrame | str | os.PathLike,
                     false_alarm_rate: float) -> dict:
    """The ``ood`` sidecar entry from a saved validation predictions file (or its frame),
    so that the sidecar of an already-trained model can be completed without retraining
    (``false_alarm_rate``: the training chapters' ``ood_false_alarm_rate``).
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


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


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
        if not _is_number(value) or (positive and value <= 0):
            kind = "a positive number" if positive else "a finite number"
            return f"'ood.{key}' must be {kind}, got {value!r}"
    if "checks" in entry:
        try:
            Checks(entry["checks"])
        except (ValueError, TypeError, KeyError) as exc:
            return f"'ood.checks' is unusable ({exc})"
    return None


def flagged(logits, entry: dict) -> np.ndarray:
    """Which images (rows of ``logits``) the sidecar's energy threshold flags."""
    return energy(logits, entry.get("temperature", 1.0)) > entry["threshold"]


def flag(score: float, entry: dict) -> str:
    """The warning for one image's energy score ('' when it looks like training data)."""
    if score > entry["threshold"]:
        return (f"out of distribution (energy {score:.2f} > {entry['threshold']:.2f}): "
                f"unlike the training images, the prediction is unreliable")
    return ""


# ------------------------------------------------------------- cheap pixel checks


def image_warnings(pixels: np.ndarray, image_size: int, shape: Sequence[int] | None = None,
                   grey: np.ndarray | None = None) -> list[str]:
    """Cheap checks on decoded pixels (H, W, C) before resizing, one message each.
    ``shape``: the file's own (height, width) when ``pixels`` were already reduced;
    ``grey``: their channel mean as float32, when the caller has it already."""
    height, width = (shape or pixels.shape)[:2]
    notes = []
    if grey is None:
        grey = pixels.astype(np.float32).mean(axis=-1)
    if float(grey.std()) < NEAR_CONSTANT_STD:
        notes.append(f"near-constant image (grey-level std {grey.std():.1f})")
    if min(height, width) < MIN_SIDE_SHARE * image_size:
        notes.append(f"small image ({width}x{height}) for a {image_size} px model input")
    if max(height, width) > MAX_ASPECT_RATIO * min(height, width):
        notes.append(f"extreme aspect ratio ({width}x{height}), distorted by the square "
                     f"resize")
    return notes


# ------------------------------------------------------------- image statistics


def _hollowness(grey: np.ndarray) -> float:
    """1 - area / filled area of the largest bright region (the head, as ``crop_to_head``
    finds it): about 0 for a filled head, large for an outline or an edge map. Holes are
    filled as ``scipy.ndimage.binary_fill_holes`` fills them (background 4-connected to
    the frame's edge stays background), by a flood fill from a one-pixel margin."""
    import cv2

    mask = (grey > max(10.0, 0.1 * float(grey.max()))).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    if n < 2:
        return 0.0
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    outside = np.pad((labels != biggest).astype(np.uint8), 1, constant_values=1)
    cv2.floodFill(outside, None, (0, 0), 2, flags=4)
    holes = int(np.count_nonzero(outside == 1))
    area = int(stats[biggest, cv2.CC_STAT_AREA])
    return float(holes / (area + holes))


def image_statistics(pixels: np.ndarray) -> dict[str, float]:
    """The statistics ``IMAGE_CHECKS`` compares with the validation range, measured on a
    ``STATS_SIZE`` square thumbnail of the whole frame (H, W, C uint8; before any crop).

    - ``saturation``: mean channel spread (max - min) over mean grey (+8, so that JPEG
      colour noise in dark frames stays small); 0 for a grey image.
    - ``corner_brightness``: mean grey of the four corner squares (1/8 of the side).
    - ``noise``: Immerkaer's (1996) noise estimate over the grey-level std: pixel-scale
      noise relative to the contrast.
    - ``hollowness``: see ``_hollowness``.
    - ``entropy``: entropy (bits) of the 64-bin grey histogram of the foreground
      (grey >= DARK_LEVEL; the whole frame when the foreground is tiny).
    """
    import cv2

    thumb = cv2.resize(pixels, (STATS_SIZE, STATS_SIZE), interpolation=cv2.INTER_AREA)
    channels = list(thumb.reshape(STATS_SIZE, STATS_SIZE, -1).astype(np.float32)
                    .transpose(2, 0, 1))
    grey = sum(channels[1:], channels[0]) / np.float32(len(channels))
    chroma = reduce(np.maximum, channels) - reduce(np.minimum, channels)
    spread = float(grey.std())
    c = STATS_SIZE // 8
    corners = (grey[:c, :c], grey[:c, -c:], grey[-c:, :c], grey[-c:, -c:])
    residual = cv2.filter2D(grey, cv2.CV_32F, _IMMERKAER)[1:-1, 1:-1]
    foreground = grey[grey >= DARK_LEVEL]
    if foreground.size < 64:
        foreground = grey.ravel()
    counts = np.histogram(foreground, 64, (0, 256))[0]
    shares = counts[counts > 0] / counts.sum()
    return {
        "saturation": float(chroma.mean() / (grey.mean() + 8.0)),
        "corner_brightness": float(np.mean([q.mean() for q in corners])),
        "noise": float(math.sqrt(math.pi / 2) / 6 * np.abs(residual).mean() / (spread + 1e-3)),
        "hollowness": _hollowness(grey),
        "entropy": float(-(shares * np.log2(shares)).sum()),
    }


# ------------------------------------------------------------- calibrated checks


class Checks:
    """The calibrated limits of a sidecar's ``ood.checks``, ready to apply; ValueError
    (or TypeError, KeyError) for a malformed entry."""

    def __init__(self, entry: dict):
        if not isinstance(entry, dict):
            raise ValueError("it must be an object")
        if entry.get("version") != CHECKS_VERSION:
            raise ValueError(f"version must be {CHECKS_VERSION}, got {entry.get('version')!r}")
        if entry.get("stats_size") != STATS_SIZE:
            raise ValueError(f"stats_size must be {STATS_SIZE}, got {entry.get('stats_size')!r}")
        image = entry.get("image", {})
        if not isinstance(image, dict):
            raise ValueError("'image' must be an object")
        self.limits: dict[str, tuple[str, float]] = {}
        for name, limit in image.items():
            if name not in IMAGE_CHECKS:
                raise ValueError(f"unknown image check {name!r}; known: {list(IMAGE_CHECKS)}")
            side = IMAGE_CHECKS[name][0]
            if not (isinstance(limit, dict) and set(limit) == {side}
                    and _is_number(limit[side])):
                raise ValueError(f"image.{name} must be {{\"{side}\": a finite number}}")
            self.limits[name] = (side, float(limit[side]))
        self.energy_limit = None
        if "energy" in entry:
            energy_limit = entry["energy"]
            if not (isinstance(energy_limit, dict) and set(energy_limit) == {"max"}
                    and _is_number(energy_limit["max"])):
                raise ValueError("energy must be {\"max\": a finite number}")
            self.energy_limit = float(energy_limit["max"])
        self.means = self.precision = None
        self.embedding_limit = math.inf
        embedding = entry.get("embedding")
        if embedding is not None:
            if not isinstance(embedding, dict) or not _is_number(embedding.get("max")):
                raise ValueError("embedding.max must be a finite number")
            self.means = decode_array(embedding.get("means"))
            self.precision = decode_array(embedding.get("precision"))
            dim = self.precision.shape[0]
            if (self.means.ndim != 2 or self.precision.shape != (dim, dim)
                    or self.means.shape[1] != dim):
                raise ValueError(f"embedding means {self.means.shape} and precision "
                                 f"{self.precision.shape} do not fit together")
            self.embedding_limit = float(embedding["max"])
        self.collection = None
        if entry.get("collection") is not None:
            if self.precision is None:
                raise ValueError("collection needs the embedding entry")
            self.collection = Collection(entry["collection"])

    @property
    def embedding_dim(self) -> int | None:
        return None if self.precision is None else int(self.precision.shape[0])

    def distances(self, embeddings) -> np.ndarray | None:
        if self.precision is None:
            return None
        return mahalanobis(embeddings, self.means, self.precision)

    def failed(self, stats: dict | None, distance: float | None) -> list[str]:
        """What is out of range for one image, one phrase each."""
        parts = []
        for name, (side, limit) in self.limits.items():
            value = (stats or {}).get(name)
            if value is not None and (value > limit if side == "max" else value < limit):
                parts.append(IMAGE_CHECKS[name][1].format(value=value, limit=limit))
        if distance is not None and distance > self.embedding_limit:
            parts.append(EMBEDDING_NOTE.format(value=distance, limit=self.embedding_limit))
        return parts

    def note(self, stats: dict | None, distance: float | None) -> str:
        """The warning for one image ('' when every check passes)."""
        parts = self.failed(stats, distance)
        if not parts:
            return ""
        return (f"out of distribution: {', '.join(parts)}: unlike the training images, "
                f"the prediction is unreliable")


def energy_threshold(entry: dict, checks: Checks | None) -> float:
    """The energy limit ``brainmri predict`` applies: the calibrated checks' when they
    have one, else the training run's ``ood.threshold``."""
    if checks is not None and checks.energy_limit is not None:
        return checks.energy_limit
    return float(entry["threshold"])


def checks_of(metadata: dict) -> Checks | None:
    """The sidecar's calibrated checks, None when it has none (an older sidecar)."""
    entry = (metadata.get("ood") or {}).get("checks")
    return None if entry is None else Checks(entry)


def joint_limits(scores: pd.DataFrame, false_alarm_rate: float) -> tuple[pd.Series, int]:
    """One limit per column of ``scores`` (validation images x checks, oriented so that
    higher is more unusual): the (k+1)-th highest value of each column, for the largest
    k at which all columns together flag at most ``false_alarm_rate`` of the rows (a
    value flags when it is above its limit; k = 0 gives the maximum, which flags none).
    Returns (limits, rows flagged)."""
    if not 0 < false_alarm_rate < 1:
        raise ValueError(f"false_alarm_rate must be between 0 and 1, got {false_alarm_rate}")
    values = scores.to_numpy(np.float64)
    if len(values) == 0 or not np.isfinite(values).all():
        raise ValueError("validation scores must be finite and not empty")
    allowed = int(math.floor(false_alarm_rate * len(values)))
    ordered = -np.sort(-values, axis=0)
    best, best_flagged = 0, 0
    for k in range(1, len(values)):
        n_flagged = int((values > ordered[k]).any(axis=1).sum())
        if n_flagged > allowed:
            break
        best, best_flagged = k, n_flagged
    return pd.Series(ordered[best], index=scores.columns), best_flagged


if __name__ == "__main__":  # the command's old home: say where it went
    raise SystemExit("error: calibration moved: python -m brainmri.modeling.calibration "
                     "--calibrate MODEL --data-dir DATA")
