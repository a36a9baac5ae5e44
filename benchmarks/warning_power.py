"""How many tumour images of a collection the model never saw each per-image score would
flag, at the false-alarm rate it is allowed on clean home test images (issue 21, item 4:
"how much better can the per-image warning do at the same home false-alarm rate").

Scores, each oriented so that higher means "unlike the training images": the energy of
the logits, the Mahalanobis distance of the penultimate features (the sidecar's
``ood.checks.embedding``), the distance of the L2-normalised features to their k-th
nearest training image (Sun et al. 2022, "Out-of-distribution detection with deep
nearest neighbors"; scikit-learn's NearestNeighbors over the model's training images),
one minus the highest softmax probability, and the checks
``brainmri predict`` applies today (any warning). A limit for each score is the
(1 - rate) quantile of its home test values; the share of external tumours above it is
reported with its count. Ensemble disagreement needs several trained models of one recipe:
``--members`` names them in a run (``--run``, e.g. chapter 08c's seed repeats), whose saved
predictions on the home test set and on Br35H give the variance of their probabilities.

    .venv/bin/python benchmarks/warning_power.py \\
        --exclude results/reference/duplicates/br35h_in_training.csv
    .venv/bin/python benchmarks/warning_power.py --run results/reference \\
        --members 'compact_cnn+ablation-crop-union,compact_cnn+ablation-crop-union-seed7,...' \\
        --exclude results/reference/duplicates/br35h_in_training.csv

Not a test: it reads the real datasets ($BRAIN_MRI_DATA) and the shipped model.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--data-dir", default=None, help="default: $BRAIN_MRI_DATA")
    parser.add_argument("--exclude", required=True,
                        help="Br35H images with a copy in a training folder (chapter 01c)")
    parser.add_argument("--rates", default="0.003,0.01,0.05",
                        help="home false-alarm rates to compare at")
    parser.add_argument("--neighbours", type=int, default=10,
                        help="k of the k-th nearest training image distance")
    parser.add_argument("--out", default=None, help="also write the table here (Markdown)")
    parser.add_argument("--run", default=None, help="a run folder holding --members' predictions")
    parser.add_argument("--members", default=None,
                        help="comma-separated model names of one recipe (its seeds), trained "
                             "on Nickparvar: scores their disagreement instead")
    args = parser.parse_args()
    if args.members:
        return disagreement_power(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from scipy.special import softmax

    from brainmri.data.dataset import load
    from brainmri.modeling import inference, ood
    from brainmri.modeling.saved import load_for_prediction

    model_path = Path(args.model) if args.model else inference.default_model()
    model, metadata = load_for_prediction(model_path)
    training = metadata["training"]
    split = int(training["seed"] if training.get("split_seed") is None
                else training["split_seed"])  # the split the model was trained on
    home = load(metadata["dataset"], args.data_dir, float(training["val_fraction"]), split)
    test = home.split("test")
    fit_files = [home.root / p for p in home.split("train")["path"]]
    if training.get("extra_training"):  # the recipe trained on that collection too
        extra = load(training["extra_training"], args.data_dir,
                     float(training["val_fraction"]), split)
        fit_files += [extra.root / p for p in extra.split("train")["path"]]
    br35h = load("br35h", args.data_dir, 0.0, 0)
    seen = set(pd.read_csv(args.exclude)["path"])
    new = br35h.files[(br35h.files["label"] == "tumour") & ~br35h.files["path"].isin(seen)]
    checks = ood.checks_of(metadata)
    entry = metadata["ood"]
    batch = int(training["batch_size"])

    from sklearn.neighbors import NearestNeighbors

    def unit(e: np.ndarray) -> np.ndarray:
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)

    fitted = inference.features(fit_files, model, metadata, batch, embedding=True)
    neighbours = NearestNeighbors(n_neighbors=args.neighbours).fit(unit(fitted.embeddings))

    def scores(files) -> pd.DataFrame:
        f = inference.features(files, model, metadata, batch, embedding=True)
        temperature = float(metadata.get("temperature", 1.0))
        distance = checks.distances(f.embeddings)
        energy = ood.energy(f.logits, float(entry.get("temperature", 1.0)))
        today = [bool(checks.failed(s, d)) or e > ood.energy_threshold(entry, checks)
                 for s, d, e in zip(f.stats.to_dict("records"), distance, energy)]
        return pd.DataFrame({
            "energy": energy, "feature distance": distance,
            f"{args.neighbours}-NN distance": neighbours.kneighbors(
                unit(f.embeddings))[0][:, -1],
            "1 - max softmax": 1 - softmax(f.logits / temperature, axis=1).max(axis=1),
            "current checks": np.asarray(today, float)})

    at_home = scores([home.root / p for p in test["path"]])
    away = scores([br35h.root / p for p in new["path"]])
    print(f"home: {len(at_home)} {home.name} test images; external: {len(away)} new Br35H "
          f"tumour images; the current checks warn on {int(at_home['current checks'].sum())} "
          f"home and {int(away['current checks'].sum())} external images")
    table = power(at_home.drop(columns="current checks"), away, args.rates)
    print(table.to_markdown(index=False))
    if args.out:
        Path(args.out).write_text(table.to_markdown(index=False) + "\n")


def power(at_home: pd.DataFrame, away: pd.DataFrame, rates: str) -> pd.DataFrame:
    """Per home false-alarm rate: the external images each score flags at that rate."""
    rows = []
    for rate in (float(r) for r in rates.split(",")):
        row = {"home false alarms allowed": f"{100 * rate:.1f} %"}
        for name in at_home.columns:
            limit = np.quantile(at_home[name], 1 - rate, method="higher")
            k = int((away[name] > limit).sum())
            row[name] = f"{k}/{len(away)} ({100 * k / len(away):.1f} %)"
        rows.append(row)
    return pd.DataFrame(rows)


def disagreement_power(args) -> None:
    """Ensemble disagreement of ``--members`` from their saved predictions (no model runs)."""
    from brainmri.core.runfolder import RunFolder, model_tag
    from brainmri.evaluation.ensemble import disagreement
    from brainmri.evaluation.predictions import DETECTION_SPLIT

    if not args.run:
        raise SystemExit("--members needs --run: the run folder that holds their predictions")
    run = RunFolder.at(args.run)
    tags = [model_tag(m.strip(), "nickparvar") for m in args.members.split(",")]
    seen = set(pd.read_csv(args.exclude)["path"])

    def frames(split: str) -> list[pd.DataFrame]:
        out = [pd.read_csv(run.predictions(tag, split)) for tag in tags]
        if split == DETECTION_SPLIT:
            out = [f[(f["label"] == "tumour") & ~f["path"].isin(seen)].reset_index(drop=True)
                   for f in out]
        return out

    at_home = pd.DataFrame({"ensemble disagreement": disagreement(frames("test"))})
    away = pd.DataFrame({"ensemble disagreement": disagreement(frames(DETECTION_SPLIT))})
    print(f"{len(tags)} members; home: {len(at_home)} test images; external: {len(away)} "
          f"new Br35H tumour images")
    print(power(at_home, away, args.rates).to_markdown(index=False))


if __name__ == "__main__":
    main()
