"""Grey-level style transfer between training images, so that style carries no label.

When each class comes mostly from one collection (chapter 01c), the scanner's grey-level
style (contrast, brightness, how dark the tissue is) identifies the class. Matching an
image's grey-level histogram to that of a random other training image, of any class,
keeps the anatomy and gives every class the same mixture of styles. We use
scikit-image's ``match_histograms``; this module only chooses which images and partners.
"""

from __future__ import annotations

import numpy as np
from skimage.exposure import match_histograms


def match_styles(images: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A copy of ``images`` (N, H, W, C) uint8 in which a random ``share`` of the images
    take the grey-level histogram of another random image of the set."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must lie in [0, 1], got {share}")
    rng = np.random.default_rng(seed)
    out = images.copy()
    chosen = np.flatnonzero(rng.random(len(images)) < share)
    partners = rng.integers(0, len(images), size=len(chosen))
    for i, j in zip(chosen, partners):
        matched = match_histograms(images[i], images[j], channel_axis=-1)
        out[i] = np.clip(np.rint(matched), 0, 255).astype(images.dtype)
    return out
