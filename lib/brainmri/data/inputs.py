"""tf.data input pipelines: in-memory pixels in, normalised (and augmented) batches out.

The cached uint8 arrays fit in memory for both datasets at every size the report uses,
so the pipeline never touches the disk while training: batches are sliced from RAM,
augmented and normalised by parallel map calls, and prefetched, which keeps a CPU or a
GPU busy with the model rather than with input (``make bench`` measures this).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainmri.data.pixels import normalize

AUGMENTATIONS = ("none", "basic", "strong", "convnext", "gin", "geometric", "bigaug")


def augmenter(kind: str, channels: int, seed: int):
    """Keras preprocessing layers for ``kind``; they act on 0..255 pixels before normalising.

    ``basic``: the report's ImageDataGenerator recipe, rotation, zoom and shift.
    ``strong``: ``basic`` plus horizontal flips and brightness/contrast jitter (our compact
      model; axial slices are close to left-right symmetric, so flips are label-preserving).
    ``convnext``: report 001's recipe, rotation +-10 degrees, horizontal flip, colour jitter
      and a random resized crop; Keras has no RandomResizedCrop layer, so a random zoom-in
      of up to 20 % plus a random shift stands in for it (crop scale about 0.64 to 1).
    ``gin``: ``strong``'s geometry, then random shallow convolutions of the intensities
      (``data.intensity.RandomConvIntensity``): other sequences map tissues to other greys.
    ``geometric``: views other collections show: flips both ways, rotation at any angle,
      a zoom-in keeping 0.5 to 1 of the area (a random resized crop), elastic deformation.
    ``bigaug``: ``geometric`` plus the rest of a BigAug-style stack (Zhang et al., 2020)
      for other scanners: blur, sharpening, brightness and contrast.
    """
    import keras

    L = keras.layers
    if kind in (None, "none"):
        return None
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {kind!r}")
    if kind == "basic":
        layers = [L.RandomRotation(0.05, fill_mode="constant", seed=seed),
                  L.RandomZoom(0.1, fill_mode="constant", seed=seed + 1),
                  L.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed + 2)]
    elif kind in ("strong", "gin"):
        layers = [L.RandomFlip("horizontal", seed=seed),
                  L.RandomRotation(0.04, fill_mode="constant", seed=seed + 1),
                  L.RandomZoom((-0.15, 0.1), fill_mode="constant", seed=seed + 2),
                  L.RandomTranslation(0.08, 0.08, fill_mode="constant", seed=seed + 3)]
        if kind == "strong":
            layers += [L.RandomBrightness(0.1, value_range=(0, 255), seed=seed + 4),
                       L.RandomContrast(0.15, value_range=(0, 255), seed=seed + 5)]
        else:
            from brainmri.data.intensity import RandomConvIntensity

            layers.append(RandomConvIntensity(seed=seed + 6))
    elif kind in ("geometric", "bigaug"):
        # zoom -0.3: each side shrinks by up to 30 %, so 0.49 to 1 of the area is kept
        layers = [L.RandomFlip("horizontal_and_vertical", seed=seed),
                  L.RandomRotation(0.5, fill_mode="constant", seed=seed + 1),
                  L.RandomZoom((-0.3, 0.0), fill_mode="constant", seed=seed + 2),
                  L.RandomElasticTransform(factor=0.5, scale=0.5, fill_mode="constant",
                                           value_range=(0, 255), seed=seed + 3)]
        if kind == "bigaug":
            layers += [L.RandomGaussianBlur(factor=0.5, kernel_size=3, sigma=1.0,
                                            value_range=(0, 255), seed=seed + 4),
                       L.RandomSharpness(0.3, value_range=(0, 255), seed=seed + 5),
                       L.RandomBrightness(0.2, value_range=(0, 255), seed=seed + 6),
                       L.RandomContrast(0.3, value_range=(0, 255), seed=seed + 7)]
    else:
        jitter = (L.RandomColorJitter(value_range=(0, 255), brightness_factor=0.2,
                                      contrast_factor=0.2, saturation_factor=0.2,
                                      seed=seed + 3) if channels == 3 else
                  L.RandomBrightness(0.2, value_range=(0, 255), seed=seed + 3))
        layers = [L.RandomRotation(10 / 360, fill_mode="constant", seed=seed),
                  L.RandomFlip("horizontal", seed=seed + 1),
                  jitter,
                  L.RandomZoom((-0.2, 0.0), fill_mode="constant", seed=seed + 4),
                  L.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed + 5)]
    return keras.Sequential(layers, name=f"augment_{kind}")


def balanced_indices(labels: np.ndarray, seed: int) -> np.ndarray:
    """Indices that oversample every class up to the largest one (random copies, seeded).

    This is the report's "balance the minority class with augmented copies": the copies
    are exact duplicates here and become distinct images through the random augmentation
    applied on every epoch.
    """
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    target = counts.max()
    parts = [np.arange(len(labels))]
    for cls, n in zip(classes, counts):
        if n < target:
            members = np.flatnonzero(labels == cls)
            parts.append(rng.choice(members, size=target - n, replace=True))
    return np.concatenate(parts)


def make_dataset(images: np.ndarray, labels: np.ndarray | None, *, batch_size: int,
                 normalization: str, training: bool = False, augment: str | None = None,
                 balance: bool | None = None, seed: int | None = None,
                 groups: np.ndarray | None = None):
    """A batched, prefetched tf.data.Dataset of (normalised images, labels).

    ``balance`` oversamples every class, or every group of ``groups`` when given (one
    value per image, e.g. source collection and class), up to the largest.

    ``training`` shuffles every epoch (seeded: ``seed`` is then required) and applies
    ``augment``; evaluation datasets are normalised once and cached, and keep the input
    order (predictions line up with files).
    """
    import tensorflow as tf

    if (training or balance) and seed is None:
        raise ValueError("a training pipeline needs a seed (shuffling, augmentation)")

    if balance:
        classes = labels if labels.ndim == 1 else labels[:, 0]  # (class, source) rows
        idx = balanced_indices(classes if groups is None else groups, seed)
        images, labels = images[idx], labels[idx]
    parts = images if labels is None else (images, labels)
    ds = tf.data.Dataset.from_tensor_slices(parts)
    autotune = tf.data.AUTOTUNE

    def norm(x, *y):
        return (normalize(x, normalization), *y)

    if not training:
        return ds.batch(batch_size).map(norm, num_parallel_calls=autotune).cache().prefetch(
            autotune)
    # A last training batch of a single image crashes the process natively with TensorFlow
    # 2.20 on CPU ("free(): invalid pointer", tests/test_models_train.py): drop the incomplete
    # last batch. The shuffle changes every epoch, so every image is still seen.
    ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).batch(
        batch_size, drop_remainder=len(images) > batch_size)
    aug = augmenter(augment, channels=images.shape[-1], seed=seed)
    if aug is not None:
        ds = ds.map(lambda x, *y: (aug(tf.cast(x, tf.float32), training=True), *y),
                    num_parallel_calls=autotune)
    return ds.map(norm, num_parallel_calls=autotune).prefetch(autotune)


class ModelInputs:
    """The arrays of one dataset at one input size, and the tf.data pipelines over them.

    Model notebooks build one of these and hand it to ``train.fit`` and
    ``evaluate.evaluate``: that is the single input path every model shares.
    """

    def __init__(self, dataset, spec, *, normalization: str, batch_size: int,
                 augment: str | None = None, balance: bool | None = None,
                 seed: int | None = None, splits=("train", "val", "test")):
        """``augment`` and ``balance`` apply to training batches; None turns them off
        (evaluation-only inputs)."""
        self.dataset, self.spec, self.normalization = dataset, spec, normalization
        self.batch_size, self.augment, self.balance, self.seed = (batch_size, augment, balance,
                                                                 seed)
        self.arrays = {split: dataset.arrays(split, spec) for split in splits}
        #: Source collection of each training image, once ``label_sources`` is called.
        self.sources: np.ndarray | None = None
        self.balance_sources = False

    def label_sources(self, sources, *, balance: bool) -> None:
        """Name the source collection of each training image (in order); ``balance``:
        sample every source x class group equally often (source-balanced training)."""
        sources = np.asarray(sources, dtype=object)
        if len(sources) != len(self.arrays["train"][1]):
            raise ValueError("one source per training image is needed")
        self.sources, self.balance_sources = sources, balance

    @property
    def source_names(self) -> list[str]:
        """The training images' source collections, in the order of their codes."""
        return [] if self.sources is None else sorted(set(self.sources))

    def add_training(self, pixels: np.ndarray, labels: np.ndarray, source: str = "") -> None:
        """More training images (another dataset's, already deduplicated by the caller;
        ``source`` names it); validation and test stay the home dataset's."""
        x, y = self.arrays["train"]
        self.arrays["train"] = (np.concatenate([x, pixels]), np.concatenate([y, labels]))
        if self.sources is not None:
            self.sources = np.concatenate([self.sources, np.full(len(labels), source, object)])

    def drop_training(self, drop: np.ndarray) -> None:
        """Remove the training images where ``drop`` (a boolean mask over the training
        split's files, in order) is true; validation and test are never changed."""
        x, y = self.arrays["train"]
        if len(drop) > len(y):
            raise ValueError("drop mask longer than the training set")
        keep = np.ones(len(y), bool)
        keep[:len(drop)] = ~np.asarray(drop, bool)
        self.arrays["train"] = (x[keep], y[keep])
        if self.sources is not None:
            self.sources = self.sources[keep]

    def restyle_training(self, share: float, seed: int) -> None:
        """Give a ``share`` of the training images another training image's grey-level
        style (``restyle.match_styles``); validation and test are never changed."""
        from brainmri.data.restyle import match_styles

        x, y = self.arrays["train"]
        self.arrays["train"] = (match_styles(x, share, seed), y)

    def files(self, split: str):
        return self.dataset.split(split)

    def train(self, with_sources: bool = False):
        """Training batches of (images, labels); ``with_sources``: labels are (N, 2) rows
        of class and source code (``source_names`` order), for source-adversarial training."""
        x, y = self.arrays["train"]
        groups = (None if not self.balance_sources else
                  np.array([f"{s}/{c}" for s, c in zip(self.sources, y)], dtype=object))
        if with_sources:
            if self.sources is None:
                raise ValueError("source-adversarial training needs label_sources first")
            codes = {name: i for i, name in enumerate(self.source_names)}
            y = np.stack([y, [codes[s] for s in self.sources]], axis=1).astype(np.int32)
        return make_dataset(x, y, batch_size=self.batch_size, normalization=self.normalization,
                            training=True, augment=self.augment,
                            balance=self.balance or groups is not None, seed=self.seed,
                            groups=groups)

    def eval(self, split: str, with_labels: bool = True):
        x, y = self.arrays[split]
        return make_dataset(x, y if with_labels else None, batch_size=self.batch_size,
                            normalization=self.normalization)

    def normalized(self, split: str, n: int | None = None):
        """First ``n`` images of ``split`` normalised, as a NumPy array (for explainers)."""
        x, y = self.arrays[split]
        return np.asarray(normalize(x[:n], self.normalization)), y[:n]

    def balance_table(self) -> pd.DataFrame:
        """Training images per class as stored, and per epoch after balancing."""
        from brainmri import CLASS_NAMES

        y = self.arrays["train"][1]
        seen = y[balanced_indices(y, self.seed)] if self.balance else y
        return pd.DataFrame({"stored": np.bincount(y, minlength=len(CLASS_NAMES)),
                             "per epoch": np.bincount(seen, minlength=len(CLASS_NAMES))},
                            index=pd.Index(CLASS_NAMES, name="class"))

    def augmented(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The first ``n`` training images and one random augmentation of each (0..255)."""
        x = self.arrays["train"][0][:n]
        layers = augmenter(self.augment, channels=self.spec.channels, seed=self.seed)
        if layers is None:
            return x, x
        out = np.asarray(layers(x.astype("float32"), training=True))
        return x, np.clip(np.round(out), 0, 255).astype(np.uint8)

    def describe(self) -> dict:
        counts = {s: int(len(a[1])) for s, a in self.arrays.items()}
        return {"dataset": self.dataset.name, "input_shape": list(self.spec.shape),
                "normalization": self.normalization, "augment": self.augment or "none",
                "balance": self.balance, "batch_size": self.batch_size, "images": counts}
