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

``--framed`` measures instead what the per-image checks catch of grey photographs framed on
black like a head slice (``data.nonmri.framed``, 24 images; issue 36, item 10), and what a
k-nearest-neighbour feature distance adds: every combination of checks gets its limits
chosen together on the clean validation images, as ``modeling.calibration`` chooses the
shipped ones (``ood.joint_limits`` at ``ood.CHECKS_FALSE_ALARM_RATE``), and is counted on
the home test images, the framed photos and the other non-MRI images:

    .venv/bin/python benchmarks/warning_power.py --framed

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
    parser.add_argument("--exclude", default=None,
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
    parser.add_argument("--framed", action="store_true",
                        help="measure on grey photos framed on black instead of Br35H")
    parser.add_argument("--layers", default="stage1_out,stage2_out",
                        help="with --framed: layers whose globally pooled outputs get a "
                             "Mahalanobis distance of their own (Lee et al. 2018's feature "
                             "ensemble); '' for none")
    args = parser.parse_args()
    if args.members:
        return disagreement_power(args)
    if args.framed:
        return framed_power(args)
    if not args.exclude:
        parser.error("--exclude is required (except with --framed)")
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


def framed_power(args) -> None:
    """The framed photos against the home images, per combination of per-image checks."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from sklearn.neighbors import NearestNeighbors

    from brainmri.data import nonmri
    from brainmri.data.dataset import load
    from brainmri.data.images import decode
    from brainmri.modeling import embedding_distance, inference, ood
    from brainmri.modeling.saved import load_for_prediction

    model_path = Path(args.model) if args.model else inference.default_model()
    model, metadata = load_for_prediction(model_path)
    training = metadata["training"]
    seed = int(training["seed"])
    split = int(training["seed"] if training.get("split_seed") is None
                else training["split_seed"])
    home = load(metadata["dataset"], args.data_dir, float(training["val_fraction"]), split)
    fit_files = [home.root / p for p in home.split("train")["path"]]
    fit_labels = list(home.labels("train"))
    if training.get("extra_training"):
        extra = load(training["extra_training"], args.data_dir,
                     float(training["val_fraction"]), split)
        fit_files += [extra.root / p for p in extra.split("train")["path"]]
        fit_labels += list(extra.labels("train"))
    test = home.split("test")
    picked = test.groupby("label", sort=True).sample(n=2, random_state=seed)
    mris = [(Path(p).stem, decode(home.root / p, metadata["color_mode"]).pixels)
            for p in picked["path"]]  # as the calibration command picks them
    sets = {"validation": [home.root / p for p in home.split("val")["path"]],
            "home test": [home.root / p for p in test["path"]],
            "framed photos": [e.pixels for e in nonmri.framed(seed=0)],
            "other non-MRI": [e.pixels for e in nonmri.examples(mris, seed)]}
    checks, entry = ood.checks_of(metadata), metadata["ood"]
    batch = int(training["batch_size"])
    ks = sorted({1, args.neighbours, 50})

    def unit(e: np.ndarray) -> np.ndarray:
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)

    fitted = inference.features(fit_files, model, metadata, batch, embedding=True)
    index = NearestNeighbors(n_neighbors=max(ks)).fit(unit(fitted.embeddings))
    layers = [name for name in args.layers.split(",") if name]
    pooled = _pooled_features(model, metadata, layers, batch)
    fitted_layers = [embedding_distance.fit_embedding(f, np.asarray(fit_labels)[fitted.index])
                     for f in pooled(fit_files)]
    scores, shipped = {}, {}
    for name, sources in sets.items():
        f = inference.features(sources, model, metadata, batch, embedding=True)
        frame = pd.DataFrame({c: f.stats[c] * (1 if side == "max" else -1)
                              for c, (side, _) in ood.IMAGE_CHECKS.items()})
        frame["energy"] = ood.energy(f.logits, float(entry.get("temperature", 1.0)))
        frame["Mahalanobis"] = checks.distances(f.embeddings)
        near = index.kneighbors(unit(f.embeddings))[0]
        for k in ks:
            frame[f"{k}-NN"] = near[:, k - 1]
        for layer, pool, (means, precision) in zip(layers, pooled(sources), fitted_layers):
            frame[f"Mahalanobis {layer}"] = embedding_distance.mahalanobis(pool, means, precision)
        scores[name] = frame
        shipped[name] = np.array([bool(checks.failed(s, d))
                                  or e > ood.energy_threshold(entry, checks)
                                  for s, d, e in zip(f.stats.to_dict("records"),
                                                     frame["Mahalanobis"], frame["energy"])])
    stats = list(ood.IMAGE_CHECKS) + ["energy"]
    combos = {"shipped limits (sidecar)": None,
              "statistics + energy + Mahalanobis (recalibrated)": stats + ["Mahalanobis"]}
    for k in ks:
        combos[f"statistics + energy + Mahalanobis + {k}-NN"] = stats + ["Mahalanobis",
                                                                         f"{k}-NN"]
        combos[f"statistics + energy + {k}-NN"] = stats + [f"{k}-NN"]
    for layer in layers:
        combos[f"statistics + energy + Mahalanobis + Mahalanobis {layer}"] = stats + [
            "Mahalanobis", f"Mahalanobis {layer}"]
    if len(layers) > 1:
        combos["statistics + energy + Mahalanobis on every layer above"] = stats + [
            "Mahalanobis", *[f"Mahalanobis {layer}" for layer in layers]]
    combos["statistics + energy alone"] = stats

    def count(flags) -> str:
        return f"{int(np.sum(flags))}/{len(flags)}"

    rows = []
    for label, columns in combos.items():
        if columns is None:
            flags = shipped
        else:
            limits, _ = ood.joint_limits(scores["validation"][columns],
                                         ood.CHECKS_FALSE_ALARM_RATE)
            flags = {n: (s[columns] > limits).any(axis=1).to_numpy()
                     for n, s in scores.items()}
        rows.append({"checks (limits chosen together on validation)": label,
                     **{n: count(v) for n, v in flags.items()}})
    table = pd.DataFrame(rows)
    framed = scores["framed photos"]
    names = [e.name for e in nonmri.framed(seed=0)]
    alone = []
    signals = ["energy", "Mahalanobis", *[f"{k}-NN" for k in ks],
               *[f"Mahalanobis {layer}" for layer in layers]]
    for column in signals:
        home_test = scores["home test"][column]
        row = {"score alone": column}
        for allowed in (0, int(shipped["home test"].sum())):
            limit = np.sort(home_test.to_numpy())[len(home_test) - 1 - allowed]
            row[f"framed caught at {allowed}/{len(home_test)} home test alarms"] = count(
                framed[column] > limit)
        limit = scores["validation"][column].max()
        row["framed caught above the validation maximum"] = count(framed[column] > limit)
        row["home test above it"] = count(home_test > limit)
        alone.append(row)
    per_image = pd.DataFrame({"image": names, "shipped warns": shipped["framed photos"],
                              **{c: framed[c].round(2) for c in
                                 signals}})
    limits_row = {"image": "validation maximum", "shipped warns": "",
                  **{c: round(float(scores["validation"][c].max()), 2)
                     for c in per_image.columns[2:]}}
    per_image = pd.concat([per_image, pd.DataFrame([limits_row])], ignore_index=True)
    text = "\n\n".join(t.to_markdown(index=False) for t in (table, pd.DataFrame(alone),
                                                            per_image))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


def _pooled_features(model, metadata: dict, layers: list[str], batch_size: int):
    """A function of image sources: the global average of each of ``layers``' outputs,
    one (N, channels) array per layer, for the readable images, prepared as ``predict``
    prepares them (it uses ``modeling.inference``'s private stream: a measurement only)."""
    import keras
    import tensorflow as tf

    from brainmri.data.pixels import normalize
    from brainmri.modeling import inference

    net = keras.Model(model.input, [keras.layers.GlobalAveragePooling2D()(
        model.get_layer(name).output) for name in layers])
    fn = tf.function(lambda x: net(x, training=False))

    def pooled(sources) -> list[np.ndarray]:
        if not layers:
            return []
        out: list[list[np.ndarray]] = [[] for _ in layers]
        with inference.start(sources, metadata, None, statistics=False) as stream:
            for batch in inference._batches(stream, batch_size):
                if batch[0].error:
                    continue
                x = normalize(np.stack([b.pixels for b in batch]), metadata["normalization"])
                values = fn(x)
                for kept, value in zip(out, values if len(layers) > 1 else [values]):
                    kept.append(np.asarray(value, np.float64))
        return [np.concatenate(kept) for kept in out]
    return pooled


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
