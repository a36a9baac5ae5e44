"""What a model learns from: a chapter's parameters turned into its ``ModelInputs``.

The recipe options that change the training images (``extra_training``, ``drop_source``,
``restyle``) act here, once, so the model chapters (``report.studies.experiment``) and the
throughput benchmark (``modeling.throughput``) share one input path. ``p`` is any object
with the chapter's parameters as attributes (a notebook's ``Params``, a SimpleNamespace).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from brainmri.data import dataset, duplicates
from brainmri.data.inputs import ModelInputs
from brainmri.data.pixels import PixelSpec
from brainmri.data.sources import HOME_DATASETS

#: Each four-class dataset's external test set (``external_dataset: auto``): the other one.
OTHER_DATASET = {a: b for a in HOME_DATASETS for b in HOME_DATASETS if a != b}


def split_seed(p: Any) -> int:
    """The seed that draws the validation split and any subset: ``split_seed`` when set,
    so that models trained with different seeds see the same validation and test images
    (their ensemble averages predictions image by image), else ``seed``."""
    chosen = getattr(p, "split_seed", None)
    return p.seed if chosen is None else chosen


def inputs_for(p: Any, splits=("train", "val", "test")) -> ModelInputs:
    """The chapter's dataset at its input size, with the recipe's training images, as
    tf.data pipelines. The caller seeds the libraries first (``devices.seed_everything``):
    the pipelines take ``p.seed`` themselves."""
    ds = dataset.load(p.dataset, p.data_dir, p.val_fraction, split_seed(p), p.subset)
    held_out = None
    if getattr(p, "hold_out_source", None):
        ds, held_out = hold_out(ds, p)
    inputs = ModelInputs(ds, PixelSpec(p.image_size, p.color_mode, p.resample, p.crop),
                         normalization=p.normalization, batch_size=p.batch_size,
                         augment=p.augment, balance=p.balance, seed=p.seed, splits=splits)
    inputs.held_out = held_out
    if getattr(p, "source_balance", False) or getattr(p, "source_adversarial", 0):
        _label_sources(inputs, p)
    if getattr(p, "drop_source", None):
        _drop_source(inputs, p)
    if getattr(p, "extra_training", None):
        _add_training(inputs, p)
    if getattr(p, "restyle", 0):
        inputs.restyle_training(p.restyle, p.seed)
    return inputs


def _with_copy(home: dataset.Dataset, files, other: dataset.Dataset, p: Any) -> np.ndarray:
    """Positions in ``files`` (rows of ``home``) of the images with a near copy anywhere
    in ``other``, by the chapter's duplicate rule."""
    rule = {"max_distance": p.max_distance, "min_correlation": p.min_correlation}
    pairs = duplicates.near_pairs(
        duplicates.fingerprints(home.root, files["path"].tolist(), home.name),
        duplicates.fingerprints(other.root, other.files["path"].tolist(), other.name), **rule)
    return pairs["i"].unique()


#: The split of home images set aside because they copy a held-out collection's images.
HELD_OUT_COPY = "held_out_copy"


def hold_out(home: dataset.Dataset, p: Any) -> tuple[dataset.Dataset, dict]:
    """``home`` without any training or validation image that has a near copy in the
    ``hold_out_source`` collection (either of its folders): those images move to split
    ``held_out_copy``, so that neither training, early stopping nor temperature scaling
    ever sees that collection, and the model can be scored on all of it as a collection
    it never saw (issue 21: choose recipes by how they transfer). The home test images
    are left as they are (they select nothing). Returns the dataset and what was set
    aside."""
    if p.hold_out_source == home.name:
        raise ValueError(f"hold_out_source {p.hold_out_source!r} is the home dataset itself")
    if getattr(p, "extra_training", None) == p.hold_out_source:
        raise ValueError(f"{p.hold_out_source!r} cannot be both held out and added to training")
    other = dataset.load(p.hold_out_source, p.data_dir, p.val_fraction, split_seed(p))
    seen = home.files[home.files["split"].isin(["train", "val"])]
    moved = seen.index[_with_copy(home, seen, other, p)]
    files = home.files.copy()
    files.loc[moved, "split"] = HELD_OUT_COPY
    info = {"source": other.name, "images": int(len(other.files)),
            "copies_set_aside": {s: int((home.files.loc[moved, "split"] == s).sum())
                                 for s in ("train", "val")}}
    return dataset.Dataset(home.name, home.root, home.inventory, files), info


def held_out_collection(p: Any) -> dataset.Dataset:
    """Every image of the ``hold_out_source`` collection (both folders) as one test split:
    what a model trained with ``hold_out`` is scored on."""
    other = dataset.load(p.hold_out_source, p.data_dir, p.val_fraction, split_seed(p), p.subset)
    return dataset.Dataset(other.name, other.root, other.inventory,
                           other.files.assign(split="test"))


#: The collections a home training image may copy, in the order a match is attributed
#: (as chapter 01c's source audit does); an image with no copy is the dataset's own.
SOURCE_COLLECTIONS = ("sartaj", "br35h")


def _label_sources(inputs: ModelInputs, p: Any) -> None:
    """Name each home training image's source collection (a near copy in Sartaj or Br35H,
    else figshare for Nickparvar, whose remaining images come from there), so that
    training samples every source x class group equally (source-balanced training)."""
    from brainmri.data.provenance import FIGSHARE

    home = inputs.dataset
    train = home.split("train")
    own = FIGSHARE if home.name == "nickparvar" else home.name
    sources = np.full(len(train), own, dtype=object)
    for name in reversed([c for c in SOURCE_COLLECTIONS
                          if c not in (home.name, getattr(p, "hold_out_source", None))]):
        other = dataset.load(name, p.data_dir, p.val_fraction, split_seed(p))
        sources[_with_copy(home, train, other, p)] = name
    inputs.label_sources(sources, balance=getattr(p, "source_balance", False))


def _drop_source(inputs: ModelInputs, p: Any) -> None:
    """Leave out the home training images that have a copy in the ``drop_source``
    collection: when that collection feeds one class only (Br35H's no-tumour half in
    Nickparvar, chapter 01c), its style is a shortcut to the class."""
    home = inputs.dataset
    other = dataset.load(p.drop_source, p.data_dir, p.val_fraction, split_seed(p))
    train = home.split("train")
    drop = np.zeros(len(train), bool)
    drop[_with_copy(home, train, other, p)] = True
    inputs.drop_training(drop)
    inputs.dropped = {"source": other.name, "dropped": int(drop.sum()),
                      "by_class": train[drop].groupby("label").size().to_dict()}


def _add_training(inputs: ModelInputs, p: Any) -> None:
    """Another dataset's training and validation images join the training set, except
    those with a near copy in the home validation or test images: a duplicate stays on
    one side of every split."""
    extra = dataset.load(p.extra_training, p.data_dir, p.val_fraction, split_seed(p), p.subset)
    home = inputs.dataset
    held_out = home.files[home.files["split"].isin(["val", "test"])]
    candidates = extra.files[extra.files["split"].isin(["train", "val"])]
    rule = {"max_distance": p.max_distance, "min_correlation": p.min_correlation}
    pairs = duplicates.near_pairs(
        duplicates.fingerprints(extra.root, candidates["path"].tolist(), extra.name),
        duplicates.fingerprints(home.root, held_out["path"].tolist(), home.name), **rule)
    kept = candidates.drop(candidates.index[pairs["i"].unique()])
    inputs.add_training(extra.pixels_of(kept["path"], inputs.spec),
                        kept["label"].map(home.spec.labels.index).to_numpy(np.int32),
                        source=extra.name)
    inputs.extra = {"dataset": extra.name, "added": int(len(kept)),
                    "dropped_as_copies": int(len(candidates) - len(kept))}
