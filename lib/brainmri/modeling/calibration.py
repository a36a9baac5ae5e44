"""Calibrating a saved model's out-of-distribution checks (``modeling.ood``): the
per-image limits chosen on its validation images, measured on its test images and on
non-MRI pictures, the collection check placed on half its home test set and measured on
other collections, all written to its JSON sidecar.

    python -m brainmri.modeling.calibration --calibrate MODEL --data-dir DIR

It runs the model (``modeling.inference``) and rewrites its sidecar (``modeling.saved``),
so it sits above both; ``modeling.ood`` holds only what ``predict`` applies and needs
neither, which keeps the three free of import cycles.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from brainmri.core.errors import BrainMRIError
from brainmri.core.paths import SHIPPED_MODEL
from brainmri.core.progress import note
from brainmri.core.runfolder import RunFolder
from brainmri.data import nonmri, sources
from brainmri.data.dataset import load
from brainmri.data.duplicates import training_copies
from brainmri.data.images import decode
from brainmri.modeling import ood
from brainmri.modeling.collection_check import (
    COLLECTION_BATCH,
    COLLECTION_DRAWS,
    COLLECTION_FALSE_ALARM_RATE,
    collection_limit,
    firing,
    firing_by_size,
    mixed_distances,
    share,
    split_halves,
)
from brainmri.modeling.embedding_distance import (
    EMBEDDING_SHRINKAGE,
    encode_array,
    fit_embedding,
    mahalanobis,
)
from brainmri.modeling.inference import features, predict_files
from brainmri.modeling.saved import load_for_prediction, update_sidecar


def calibrate(model, metadata: dict, fit_images: Iterable, fit_labels,
              val_images: Iterable, batch_size: int,
              false_alarm_rate: float = ood.CHECKS_FALSE_ALARM_RATE,
              workers: int | None = None) -> dict:
    """The sidecar's ``ood`` entry for ``model`` (with its sidecar ``metadata``), with
    calibrated ``checks``.

    ``fit_images`` (file paths or decoded (H, W, C) uint8 arrays) with ``fit_labels``:
    training images, for the embedding's class means and shared covariance only.
    ``val_images``: clean held-out images; every limit (the image statistics', the
    feature distance's and the energy's) is chosen on them, jointly, so that at most
    ``false_alarm_rate`` of them get a warning (``joint_limits``). Images that cannot be
    read are left out (and counted). The training run's energy entry is kept as it is
    (or made from these validation images, at ``false_alarm_rate``, when the sidecar
    has none).
    """

    fit = features(fit_images, model, metadata, batch_size, workers, embedding=True)
    labels = np.asarray(list(fit_labels))[fit.index]
    means, precision = fit_embedding(fit.embeddings, labels)
    val = features(val_images, model, metadata, batch_size, workers, embedding=True)
    if len(val.index) < 10:
        raise ValueError(f"only {len(val.index)} readable validation images; at least 10 "
                         f"are needed to choose limits")
    base = {k: v for k, v in (metadata.get("ood") or {}).items() if k != "checks"}
    base = base or ood.sidecar_entry(val.logits, false_alarm_rate)
    scores = pd.DataFrame({name: val.stats[name] * (1 if side == "max" else -1)
                           for name, (side, _) in ood.IMAGE_CHECKS.items()})
    scores["embedding"] = mahalanobis(val.embeddings, means, precision)
    scores["energy"] = ood.energy(val.logits, float(base.get("temperature", 1.0)))
    limits, n_flagged = ood.joint_limits(scores, false_alarm_rate)
    image = {name: {side: float(limits[name] * (1 if side == "max" else -1))}
             for name, (side, _) in ood.IMAGE_CHECKS.items()}
    checks = {"version": ood.CHECKS_VERSION, "stats_size": ood.STATS_SIZE,
              "false_alarm_rate": float(false_alarm_rate), "n_val": len(val.index),
              "val_flagged": n_flagged, "image": image,
              "energy": {"max": float(limits["energy"])},
              "embedding": {"layer": "input of 'logits'", "max": float(limits["embedding"]),
                            "shrinkage": EMBEDDING_SHRINKAGE, "n_fit": len(fit.index),
                            "means": encode_array(means),
                            "precision": encode_array(precision)},
              "unreadable": {"fit": len(fit.errors), "val": len(val.errors)}}
    return {**base, "checks": checks}


# ------------------------------------------------------------------- measuring


def calibrate_collection(model, metadata: dict, home_test: dict[str, Sequence],
                         batch_size: int, seed: int, external: Sequence = (),
                         external_name: str = "", workers: int | None = None,
                         external_healthy: Sequence = ()) -> dict:
    """The sidecar's ``ood.checks.collection``.

    ``home_test``: clean test images of the collections the model trained on (name ->
    files or arrays), the model's own dataset first. Random batches of one half of the
    first (drawn with ``seed``) place the limit, reached by ``COLLECTION_FALSE_ALARM_RATE``
    of them; false alarms are measured on batches of its other half, and of the other
    collections' test sets (whose test folder may itself differ from their training
    folder: Sartaj's does, chapter 09); firing on batches of ``external`` images (tumour
    images of a collection the model did not train on), with how many of those tumours
    the model finds. ``metadata`` must hold the calibrated checks (their embedding entry
    gives the distances). ``by_size`` gives the firing rates at every size of
    ``COLLECTION_SIZES`` on each set, on ``external_healthy`` (no-tumour images of that
    collection without a training copy) and on sets half home, half external tumours.

    Written here rather than taken from a drift library: alibi-detect and frouros pin
    TensorFlow or NumPy versions the project cannot take, and the statistic (a mean of the
    distances the per-image check already computes, against a quantile of random home
    sets) is a few lines of NumPy; "Failing Loudly" (Rabanser et al. 2019) found
    two-sample tests on a model's own features among the strongest detectors of such
    shifts."""

    checks = ood.checks_of(metadata)
    if checks is None or checks.precision is None:
        raise ValueError("the sidecar needs calibrated ood.checks with an embedding entry")
    rng = np.random.default_rng(seed)
    halves = {}
    for name, images in home_test.items():
        f = features(list(images), model, metadata, batch_size, workers, embedding=True)
        halves[name] = split_halves(checks.distances(f.embeddings), rng)
    own, (placing, _) = next(iter(halves.items()))
    limit = collection_limit(placing, COLLECTION_BATCH, COLLECTION_FALSE_ALARM_RATE,
                             COLLECTION_DRAWS, seed)
    fired = firing(limit, seed)

    measured = {"limit_from": {"dataset": own, "images": int(len(placing))},
                "home_test_batches": {own: {**fired(halves[own][1]),
                                            "images": int(len(halves[own][1]))}}}
    for name, (a, b) in list(halves.items())[1:]:
        both = np.concatenate([a, b])
        measured["home_test_batches"][name] = {**fired(both), "images": int(len(both))}
    held_out = halves[own][1]
    sets = {f"{own} test, held-out half": held_out}
    sets.update({f"{name} test": np.concatenate(h) for name, h in list(halves.items())[1:]})
    if len(external):
        e = features(list(external), model, metadata, batch_size, workers, embedding=True)
        found = int((e.logits.argmax(axis=1) != ood.NO_TUMOUR_INDEX).sum())
        away = checks.distances(e.embeddings)
        measured["external"] = {"dataset": external_name,
                                "batches": fired(away),
                                "tumours": int(len(e.logits)), "tumours_found": found,
                                "tumour_sensitivity": round(found / len(e.logits), 4)}
        sets[f"{external_name} tumours, no training copy"] = away
        sets[f"half {own} test, half {external_name} tumours"] = mixed_distances(
            held_out, away, rng)
    if len(external_healthy):
        h = features(list(external_healthy), model, metadata, batch_size, workers,
                     embedding=True)
        sets[f"{external_name} no tumour, no training copy"] = checks.distances(h.embeddings)
    measured["by_size"] = {name: {"images": int(len(d)), **firing_by_size(limit, d, seed)}
                           for name, d in sets.items()}
    return {"batch": COLLECTION_BATCH, "false_alarm_rate": COLLECTION_FALSE_ALARM_RATE,
            "statistic": "mean Mahalanobis distance of the set's embeddings", "max": limit,
            "measured": measured}


def measure(model, metadata: dict, home_test: Sequence, non_mri: Sequence,
            batch_size: int, workers: int | None = None) -> dict:
    """How often ``brainmri predict`` warns (any warning) on clean home test files and on
    non-MRI images (``data.nonmri.Example``s, saved as PNG files and read back like any
    input), in total and per kind of non-MRI image."""

    table = predict_files(list(home_test), model, metadata, batch_size, show_progress=False,
                          workers=workers)
    read = table[table["error"] == ""]
    out = {"home_test": {**share(int((read["warning"] != "").sum()), len(read)),
                         "unreadable": int(len(table) - len(read))}}
    with tempfile.TemporaryDirectory(prefix="brainmri-nonmri-") as tmp:
        paths = []
        for i, example in enumerate(non_mri):
            paths.append(Path(tmp) / f"{i:04d}_{example.name}.png")
            Image.fromarray(example.pixels).save(paths[-1])
        table = predict_files(paths, model, metadata, batch_size, show_progress=False,
                              workers=workers)
    table["kind"] = [e.kind for e in non_mri]
    table["warned"] = table["warning"] != ""
    by_kind = table.groupby("kind", sort=False)["warned"].agg(["sum", "size"])
    out["non_mri"] = {**share(int(table["warned"].sum()), len(table)),
                      "by_kind": {k: share(int(r["sum"]), int(r["size"]))
                                  for k, r in by_kind.iterrows()},
                      "missed": [Path(p).name[5:-4] for p, w in zip(table["path"],
                                                                    table["warned"]) if not w]}
    return out


# ---------------------------------------------------------- command line


def _external_tumours(args, label: str = "tumour") -> list[Path]:
    """The ``label`` images of ``--external`` (an evaluation-only dataset) without a copy in
    any training folder (the list chapter 01c writes, ``--exclude``): external only if
    the model never saw them."""
    if not args.external:
        return []

    exclude = Path(args.exclude) if args.exclude else None
    if exclude is None or not exclude.is_file():
        raise BrainMRIError(f"--external {args.external} needs --exclude: the CSV of its images "
                            f"with a copy in a training folder (results/<run>/duplicates/"
                            f"{args.external}_in_training.csv, written by chapter 01c); "
                            f"got {exclude}")
    data = load(args.external, args.data_dir, 0.0, 0)
    seen = set(pd.read_csv(exclude)["path"])
    files = data.files[(data.files["label"] == label) & ~data.files["path"].isin(seen)]
    return [data.root / p for p in files["path"]]


def _copies_in_training(args, evaluated: str, trained_on: list[str]) -> set[str] | None:
    """``evaluated``'s test images with a copy in any of ``trained_on`` (the duplicate
    audit of the run ``--run`` names); None without ``--run``."""
    if not args.run:
        return None

    run = RunFolder.at(args.run)
    found = [training_copies(run, collection, evaluated) for collection in trained_on]
    if any(f is None for f in found):
        raise BrainMRIError(f"--run {args.run} holds no duplicate audit of {evaluated} "
                            f"against {', '.join(trained_on)} (chapters 01b and 01c "
                            f"write it under duplicates/)")
    return set().union(*found)


def calibrate_file(argv: list[str]) -> dict:
    """The command's calibration as a call, with its arguments (the reference run
    calibrates the model it ships this way, so that no step is left to a person); returns
    the ``ood`` entry, written to the sidecar unless ``--dry-run``."""
    return _calibrate(_parser().parse_args(argv))


def _calibrate(args) -> dict:
    """Recompute and store the sidecar's ``ood`` entry from the model's own split."""

    model_file = Path(args.calibrate)
    model, metadata = load_for_prediction(model_file)
    # the split and batch size the model was trained with, as its sidecar records them
    training = metadata.get("training", {})
    missing = [k for k in ("seed", "val_fraction", "batch_size") if k not in training]
    if missing:
        raise BrainMRIError(f"{model_file.with_suffix('.json')} records no training "
                            f"{', '.join(missing)}: it was not written by the series.")
    name = args.dataset or metadata.get("dataset")
    seed = int(training["seed"])
    batch_size = args.batch_size or int(training["batch_size"])
    split = int(training["seed"] if training.get("split_seed") is None
                else training["split_seed"])  # as data.recipes.split_seed drew it
    data = load(name, args.data_dir, float(training["val_fraction"]), split)
    train, val, test = data.split("train"), data.split("val"), data.split("test")
    note(f"{name}: fitting on {len(train)} training images, choosing limits on {len(val)} "
         f"validation images")
    fit_files = [data.root / p for p in train["path"]]
    fit_labels = list(data.labels("train"))
    home_test = {name: [data.root / p for p in test["path"]]}
    extra_name = training.get("extra_training")
    if extra_name:  # the recipe trained on another collection too: it is home as well
        extra = load(extra_name, args.data_dir, float(training["val_fraction"]), split)
        fit_files += [extra.root / p for p in extra.split("train")["path"]]
        fit_labels += list(extra.labels("train"))
        extra_test = extra.split("test")["path"]
        copies = _copies_in_training(args, extra_name, [name, extra_name])
        if copies is not None:  # only its test images the model never saw a copy of
            extra_test = extra_test[~extra_test.isin(copies)]
        home_test[extra_name] = [extra.root / p for p in extra_test]
        note(f"{extra_name}: its {len(extra.split('train'))} training images join the "
             f"feature statistics (the model trained on them)")
    entry = calibrate(model, metadata, fit_files, fit_labels,
                      [data.root / p for p in val["path"]], batch_size, args.rate,
                      args.workers)
    picked = test.groupby("label", sort=True).sample(n=args.per_class, random_state=seed)
    mris = [(Path(p).stem, decode(data.root / p, metadata["color_mode"]).pixels)
            for p in picked["path"]]
    non_mri = nonmri.examples(mris, seed)
    note(f"measuring on {len(test)} test images and {len(non_mri)} non-MRI images")
    measured = {"dataset": name, **measure(
        model, {**metadata, "ood": entry}, [data.root / p for p in test["path"]], non_mri,
        batch_size, args.workers)}
    measured["non_mri"]["transformed_from"] = (
        f"{args.per_class} test images per class (seed {seed})")
    entry["checks"]["measured"] = measured
    external = _external_tumours(args)
    note("placing the collection check on random batches of half of each home test set"
         + (f"; measuring it on the other half and on {len(external)} {args.external} "
            f"tumour images" if external else "; measuring it on the other half"))
    entry["checks"]["collection"] = calibrate_collection(
        model, {**metadata, "ood": entry}, home_test, batch_size, seed, external,
        sources.DISPLAY.get(args.external, args.external or ""),
        args.workers, _external_tumours(args, "no_tumor") if external else ())
    if extra_name:  # say whether its rates count images the model saw a copy of
        entry["checks"]["collection"]["measured"]["home_test_batches"][extra_name][
            "training_copies_left_out"] = bool(args.run)
    if not args.dry_run:
        written = update_sidecar(model_file, "ood", entry)
        note(f"written to {written}")
    return entry


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m brainmri.modeling.calibration",
        description="Choose the out-of-distribution limits of a saved model on its "
                    "dataset's validation split, measure them on its test split and on "
                    "non-MRI images, and store them in the model's JSON sidecar.")
    parser.add_argument("--calibrate", required=True, metavar="MODEL",
                        help=f"a .keras file with its sidecar, e.g. "
                             f"{SHIPPED_MODEL.as_posix()}")
    parser.add_argument("--data-dir", default=None, help="a folder holding the datasets "
                                                         "(default: $BRAIN_MRI_DATA)")
    parser.add_argument("--dataset", default=None, help="default: the sidecar's dataset")
    parser.add_argument("--rate", type=float, default=ood.CHECKS_FALSE_ALARM_RATE,
                        help="share of validation images all checks together may flag")
    parser.add_argument("--per-class", type=int, default=2,
                        help="test images per class turned into non-MRI images")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: the batch size the model was trained with")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--external", default=None, metavar="DATASET",
                        help="an evaluation-only dataset (br35h) whose tumour images the "
                             "collection check is measured on")
    parser.add_argument("--exclude", default=None, metavar="CSV",
                        help="its images with a copy in a training folder (column path), "
                             "e.g. results/reference/duplicates/br35h_in_training.csv")
    parser.add_argument("--run", default=None, metavar="RUN",
                        help="a run folder whose duplicate audit lists the copies between "
                             "collections (e.g. results/reference): the other home "
                             "collection's test images with a copy in the model's training "
                             "data are then left out of its measured rates")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    try:
        entry = _calibrate(args)
    except BrainMRIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = {k: v for k, v in entry["checks"].items() if k not in ("embedding",)}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
