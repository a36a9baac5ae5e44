"""How far a model's features lie from its training images: the Mahalanobis distance of
the penultimate layer's embedding (the input of the ``logits`` layer) to the nearest
training class mean under one shared covariance (Lee et al., 2018, "A simple unified
framework for detecting out-of-distribution samples"), and the sidecar's JSON form of
the arrays it needs. The per-image checks (``modeling.ood``) and the collection check
(``modeling.collection_check``) both read it."""

from __future__ import annotations

import base64
import math

import numpy as np

#: Shrinkage of the embedding covariance towards a multiple of the identity, so that it
#: can be inverted even where the embedding's dimensions are nearly collinear.
EMBEDDING_SHRINKAGE = 0.01


def encode_array(array) -> dict:
    """A float32 array as JSON: shape plus base64 of its little-endian bytes (a 128 x 128
    precision matrix is 87 KB this way, against ~17,000 lines as a list of numbers)."""
    a = np.ascontiguousarray(np.asarray(array, "<f4"))
    return {"shape": list(a.shape), "dtype": "<f4",
            "base64": base64.b64encode(a.tobytes()).decode("ascii")}


def decode_array(value) -> np.ndarray:
    """The float64 array ``encode_array`` stored; ValueError if it is malformed."""
    if not isinstance(value, dict) or value.get("dtype") != "<f4":
        raise ValueError("an array must be {'shape', 'dtype': '<f4', 'base64'}")
    shape = value.get("shape")
    if not (isinstance(shape, list) and all(isinstance(n, int) and n > 0 for n in shape)):
        raise ValueError(f"bad array shape {shape!r}")
    try:
        raw = base64.b64decode(str(value.get("base64", "")), validate=True)
    except ValueError:
        raise ValueError("array data is not base64") from None
    if len(raw) != 4 * math.prod(shape):
        raise ValueError(f"array data does not hold {shape} float32 values")
    array = np.frombuffer(raw, "<f4").reshape(shape).astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError("array holds NaN or infinite values")
    return array


def fit_embedding(embeddings, labels, shrinkage: float = EMBEDDING_SHRINKAGE
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(class means (K, D), shared precision matrix (D, D)) of training embeddings, both
    rounded to float32 as the sidecar stores them."""
    e = np.asarray(embeddings, np.float64)
    labels = np.asarray(labels)
    classes = sorted(set(labels.tolist()))
    means = np.stack([e[labels == c].mean(0) for c in classes])
    centred = e - means[np.searchsorted(classes, labels)]
    cov = centred.T @ centred / len(e)
    scale = float(np.trace(cov)) / len(cov) or 1.0
    cov = (1 - shrinkage) * cov + shrinkage * scale * np.eye(len(cov))
    precision = np.linalg.inv(cov)
    precision = (precision + precision.T) / 2
    return (means.astype("<f4").astype(np.float64),
            precision.astype("<f4").astype(np.float64))


def mahalanobis(embeddings, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Distance of each embedding (N, D) to its nearest class mean."""
    d = np.asarray(embeddings, np.float64)[:, None, :] - means[None]
    squared = np.einsum("nkd,de,nke->nk", d, precision, d)
    return np.sqrt(np.maximum(squared.min(axis=1), 0.0))
