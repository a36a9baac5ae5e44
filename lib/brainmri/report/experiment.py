"""One call per model chapter: load the data, build, train, evaluate, calibrate, save.

Every model chapter (04-08b) runs ``experiment.run(p)`` with its parameters and then
shows what is specific to its model. The recipe follows from the parameters:

- ``head_epochs`` present: a transfer model, trained in two phases, first the new head
  on a frozen backbone, then the layers from ``unfreeze_from`` on;
- otherwise one phase of ``epochs`` at ``learning_rate``, with the optional cosine
  ``schedule``, ``warmup_epochs``, ``weight_decay`` and ``label_smoothing``.

Five options change what a model learns from (chapter 08c measures each): ``crop``
(the head's square instead of the whole frame), ``extra_training`` (another dataset's
training images, minus those with a copy in the home validation or test set),
``drop_source`` (home training images with a copy in that collection left out),
``restyle`` (a share of the training images take another training image's grey-level
histogram) and ``bn_reestimate`` (batch-norm statistics recomputed on clean training
images after training). ``variant`` names such a recipe in file names and tables.

After training, the validation and test predictions are saved, a temperature and an
out-of-distribution threshold are fitted on validation and stored in the model's sidecar
(so ``brainmri predict`` reports calibrated probabilities and flags unusual inputs),
``external_dataset``'s test set is predicted when asked,
and ``export_to`` ships the model.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from brainmri.core.runfolder import ABLATION_PREFIX, model_tag
from brainmri.data import dataset, duplicates
from brainmri.data.inputs import ModelInputs
from brainmri.data.pixels import PixelSpec
from brainmri.evaluation import metrics, predictions, published
from brainmri.modeling import builders, devices, ood, recalibrate, saved, training
from brainmri.report import figures
from brainmri.report.notebook import Params

OTHER_DATASET = {"sartaj": "nickparvar", "nickparvar": "sartaj"}
SUMMARY_ROWS = ["accuracy", "loss", "precision_w", "recall_w", "f1_report", "f1_w",
                "f1_macro", "auc_w", "fp", "fn"]


def inputs_for(p: Params, splits=("train", "val", "test")) -> ModelInputs:
    """The chapter's dataset at its input size, seeded, as tf.data pipelines."""
    devices.seed_everything(p.seed)
    ds = dataset.load(p.dataset, p.data_dir, p.val_fraction, p.seed, p.subset)
    inputs = ModelInputs(ds, PixelSpec(p.image_size, p.color_mode, p.resample, p.crop),
                         normalization=p.normalization, batch_size=p.batch_size,
                         augment=p.augment, balance=p.balance, seed=p.seed, splits=splits)
    if getattr(p, "drop_source", None):
        _drop_source(inputs, p)
    if getattr(p, "extra_training", None):
        _add_training(inputs, p)
    if getattr(p, "restyle", 0):
        inputs.restyle_training(p.restyle, p.seed)
    return inputs


def _drop_source(inputs: ModelInputs, p: Params) -> None:
    """Leave out the home training images that have a copy in the ``drop_source``
    collection: when that collection feeds one class only (Br35H's no-tumour half in
    Nickparvar, chapter 01c), its style is a shortcut to the class."""
    home = inputs.dataset
    other = dataset.load(p.drop_source, p.data_dir, p.val_fraction, p.seed)
    train = home.split("train")
    rule = {"max_distance": p.max_distance, "min_correlation": p.min_correlation}
    pairs = duplicates.near_pairs(
        duplicates.fingerprints(home.root, train["path"].tolist(), home.name),
        duplicates.fingerprints(other.root, other.files["path"].tolist(), other.name), **rule)
    drop = np.zeros(len(train), bool)
    drop[pairs["i"].unique()] = True
    inputs.drop_training(drop)
    inputs.dropped = {"source": other.name, "dropped": int(drop.sum()),
                      "by_class": train[drop].groupby("label").size().to_dict()}


def _add_training(inputs: ModelInputs, p: Params) -> None:
    """Another dataset's training and validation images join the training set, except
    those with a near copy in the home validation or test images: a duplicate stays on
    one side of every split."""
    extra = dataset.load(p.extra_training, p.data_dir, p.val_fraction, p.seed, p.subset)
    home = inputs.dataset
    held_out = home.files[home.files["split"].isin(["val", "test"])]
    candidates = extra.files[extra.files["split"].isin(["train", "val"])]
    rule = {"max_distance": p.max_distance, "min_correlation": p.min_correlation}
    pairs = duplicates.near_pairs(
        duplicates.fingerprints(extra.root, candidates["path"].tolist(), extra.name),
        duplicates.fingerprints(home.root, held_out["path"].tolist(), home.name), **rule)
    kept = candidates.drop(candidates.index[pairs["i"].unique()])
    inputs.add_training(extra.pixels_of(kept["path"], inputs.spec),
                        kept["label"].map(home.spec.labels.index).to_numpy(np.int32))
    inputs.extra = {"dataset": extra.name, "added": int(len(kept)),
                    "dropped_as_copies": int(len(candidates) - len(kept))}


def build(p: Params, inputs: ModelInputs):
    """The chapter's model; builder options are the parameters the builder takes."""
    values = p.values()
    options = {name: (tuple(values[name]) if isinstance(values[name], list) else values[name])
               for name in builders.options(p.model_name) if name in values}
    return builders.build(p.model_name, inputs.spec.shape, **options)


def phases(p: Params) -> list[tuple[str, int | str | None, training.FitConfig]]:
    """(phase name, first trainable layer or None for all, fit settings) in order."""
    if hasattr(p, "head_epochs"):
        return [("head", "backbone", training.FitConfig(p.head_epochs, p.head_learning_rate,
                                                        p.patience)),
                ("finetune", p.unfreeze_from, training.FitConfig(
                    p.finetune_epochs, p.finetune_learning_rate, p.patience))]
    optional = {k: getattr(p, k) for k in ("schedule", "warmup_epochs", "weight_decay",
                                          "label_smoothing") if hasattr(p, k)}
    if hasattr(p, "restore_best"):
        optional["last_epoch"] = not p.restore_best
    return [("train", None, training.FitConfig(p.epochs, p.learning_rate, p.patience,
                                               **optional))]


@dataclass
class Result:
    """What a model chapter shows."""

    p: Params
    inputs: ModelInputs
    model: object
    folder: Path
    history: pd.DataFrame
    predictions: dict[str, pd.DataFrame]  # split -> predictions frame
    temperature: float

    @property
    def test(self) -> pd.DataFrame:
        return self.predictions["test"]

    def architecture(self) -> pd.DataFrame:
        return builders.layer_table(self.model)

    def augmentation(self, n: int = 4):
        """Training images before and after one random augmentation (figure)."""
        originals, augmented = self.inputs.augmented(n)
        return figures.image_grid(list(originals) + list(augmented),
                                  ["original"] * n + [f"augmented ({self.p.augment})"] * n,
                                  ncols=n, size=2.0)

    def curves(self) -> pd.DataFrame:
        """Training curves (figure) and the epoch table."""
        figures.training_curves(self.history, f"{self.p.model_name} on {self.p.dataset}")
        plt.show()
        return self.history[[c for c in ("phase", "loss", "accuracy", "val_loss",
                                         "val_accuracy", "learning_rate", "seconds",
                                         "images_per_s") if c in self.history]].round(4)

    def test_results(self) -> pd.DataFrame:
        """Confusion matrices (figure), the per-class table, and the summary next to the
        published figures (returned)."""
        from IPython.display import display

        y, probs, _ = predictions.arrays(self.test)
        figures.confusion_matrices(y, probs.argmax(1),
                                   f"{self.p.model_name}: {self.p.dataset} test set")
        plt.show()
        display(predictions.summarize(self.test)[1].round(3))
        return self.versus_published()

    def versus_published(self) -> pd.DataFrame:
        """Our test figures next to the report's for the same model (or the best
        published model on this test set, for a model of ours)."""
        ours = predictions.summarize(self.test)[0]
        name = self.p.model_name
        theirs = published.reported(name, self.p.dataset)
        if theirs is None:
            name = published.BEST_PUBLISHED[self.p.dataset]
            theirs = published.reported(name, self.p.dataset) or {}
        return pd.DataFrame({"this run": ours, f"published: {name}": theirs}).reindex(
            SUMMARY_ROWS)

    def calibration(self) -> pd.DataFrame:
        """ECE on test before and after the validation temperature; the external set's
        accuracy when one was predicted (before removing images the datasets share)."""
        y, probs, logits = predictions.arrays(self.test)
        rows = {f"{self.p.dataset} test": {
            "temperature": self.temperature, "ECE before": metrics.ece(y, probs, self.p.ece_bins),
            "ECE after": metrics.ece(y, metrics.softmax(logits, self.temperature),
                                     self.p.ece_bins),
            "accuracy": metrics.accuracy(y, probs)}}
        if "external" in self.predictions:
            frame = self.predictions["external"]
            ye, pe, _ = predictions.arrays(frame)
            rows[f"{frame['eval_dataset'].iloc[0]} test (external)"] = {
                "accuracy": metrics.accuracy(ye, pe)}
        if predictions.DETECTION_SPLIT in self.predictions:
            frame = self.predictions[predictions.DETECTION_SPLIT]
            yd, pd_, _ = predictions.arrays(frame[frame["label"] == "tumour"])
            rows[f"{predictions.DETECTION_SPLIT} tumour images (all)"] = {
                "tumour sensitivity": metrics.tumour_sensitivity(yd, pd_)}
        return pd.DataFrame(rows).T


def display_name(p: Params) -> str:
    """The model's name in files and tables: the builder, plus the recipe's variant."""
    variant = getattr(p, "variant", None)
    return f"{p.model_name}+{variant}" if variant else p.model_name


def run(p: Params) -> Result:
    """Train and evaluate the chapter's model; every file goes to ``p.run``."""
    inputs = inputs_for(p)
    model = build(p, inputs)
    folder = p.run.model_dir(model_tag(display_name(p), p.dataset))
    history = None
    for i, (phase, unfreeze_from, config) in enumerate(phases(p)):
        if unfreeze_from == "backbone":
            unfreeze_from = model.backbone_layers
        if unfreeze_from is not None:
            training.set_trainable(model, unfreeze_from)
        history = training.fit(model, inputs, config, folder, phase=phase,
                               continue_history=i > 0)
    return _evaluate_and_save(p, inputs, model, folder, history)


def continue_training(result: Result, epochs: int, variant: str) -> Result:
    """``result``'s model trained on for ``epochs`` more epochs (same optimizer state),
    then evaluated and saved as ``variant``; the shorter model's files stay as they are.

    A claim "N epochs vs M epochs" then costs M epochs instead of N + M, and the longer
    model is exactly the shorter one trained on."""
    p = result.p
    q = Params(chapter=p.chapter, run=p.run,
               **{**p.values(), "variant": variant, "epochs": p.epochs + epochs})
    folder = q.run.model_dir(model_tag(display_name(q), q.dataset))
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("history.csv", "fit.json"):
        shutil.copy2(result.folder / name, folder / name)
    (_, _, config), = phases(q)
    history = training.fit(result.model, result.inputs, replace(config, epochs=epochs), folder,
                           phase="continued", continue_history=True, recompile=False)
    return _evaluate_and_save(q, result.inputs, result.model, folder, history)


def _evaluate_and_save(p: Params, inputs: ModelInputs, model, folder: Path,
                       history: pd.DataFrame) -> Result:
    """Predictions, temperature and OOD threshold (fitted on validation), the saved
    model with its sidecar, the external sets, and the shipped copy if asked."""
    name = display_name(p)
    if getattr(p, "bn_reestimate", False):
        recalibrate.reestimate_batchnorm(model, inputs.eval("train", with_labels=False))
    frames = predictions.evaluate(model, inputs, p.run, name)
    y_val, _, logits_val = predictions.arrays(frames["val"])
    temperature = metrics.fit_temperature(logits_val, y_val)
    saved.save(model, folder, saved.metadata(
        model, p.model_name, inputs, seed=p.seed, temperature=temperature,
        ood=ood.sidecar_entry(logits_val),
        training={k: v for k, v in p.values().items() if k not in ("data_dir", "export_to")}))
    other = OTHER_DATASET[p.dataset] if p.external_dataset == "auto" else p.external_dataset
    frames.update(_predict_external(model, inputs, p, name, (other, p.external_binary)))
    if p.export_to:
        saved.export(folder, p.export_to)
    return Result(p, inputs, model, folder, history, frames, temperature)


def _predict_external(model, inputs: ModelInputs, p: Params, model_name: str,
                      datasets: tuple) -> dict[str, pd.DataFrame]:
    """Predict each named dataset's test images (None entries are skipped), saved under
    ``model_name``; returns {split name: predictions frame}."""
    frames = {}
    for other in filter(None, datasets):
        external = dataset.load(other, p.data_dir, p.val_fraction, p.seed, p.subset)
        frame = predictions.evaluate_external(model, inputs, external, p.run, model_name)
        frames[frame["split"].iloc[0]] = frame
    return frames


def with_reestimated_batchnorm(result: Result) -> Result:
    """The same trained model with batch-norm statistics recomputed on clean training
    images, evaluated again under the variant name ``<variant>+bn`` (no retraining)."""
    import keras

    p = result.p
    values = {**p.values(), "variant": f"{p.variant or 'base'}+bn", "bn_reestimate": True}
    q = Params(chapter=p.chapter, run=p.run, **values)
    model = keras.models.clone_model(result.model)
    model.set_weights(result.model.get_weights())
    recalibrate.reestimate_batchnorm(model, result.inputs.eval("train", with_labels=False))
    name = display_name(q)
    frames = predictions.evaluate(model, result.inputs, p.run, name)
    frames.update(_predict_external(model, result.inputs, p, name, (p.external_binary,)))
    return Result(q, result.inputs, model, result.folder, result.history, frames,
                  result.temperature)




def ablation(base: dict, variants: list[dict], run_folder, scoring: dict,
             repeat: str | None = None, seeds: list[int] = ()) -> pd.DataFrame:
    """Train one model per variant (``base`` parameters with the variant's changes), and
    its batch-norm re-estimated twin when ``also_bn``; score them all like the benchmark.
    The variant named ``repeat`` is trained again with each of ``seeds``.

    One row per model: its recipe (variant name, ``+bn`` for the twin) and seed,
    validation accuracy (the only figure a choice may rest on), the home test and
    deduplicated test, and the external Br35H tumour images.
    """
    from brainmri.evaluation import benchmark

    repeats = [{**v, "seed": seed} for v in variants if v["name"] == repeat
               for seed in seeds if seed != base["seed"]]
    names, recipes, model_seeds = [], [], []
    for variant in [*variants, *repeats]:
        changes = {k: v for k, v in variant.items() if k not in ("name", "also_bn")}
        seed = changes.get("seed", base["seed"])
        suffix = "" if seed == base["seed"] else f"-seed{seed}"
        p = Params(chapter="ablation", run=run_folder, **{
            **base, **changes, "variant": ABLATION_PREFIX + variant["name"] + suffix})
        result = run(p)
        names.append(display_name(p))
        recipes.append(variant["name"])
        if variant.get("also_bn"):
            names.append(display_name(with_reestimated_batchnorm(result).p))
            recipes.append(variant["name"] + "+bn")
        model_seeds += [seed] * (len(names) - len(model_seeds))
    scores = benchmark.benchmark(run_folder, models=names, studies=True, **scoring)
    table = scores.pivot_table(index="model", columns="eval_set", aggfunc="first",
                               values=["accuracy", "tumour_sensitivity", "tumour_specificity",
                                       "sens_ci_low", "sens_ci_high", "n"])
    val = {name: _val_accuracy(run_folder, name, base["dataset"]) for name in names}
    out = pd.DataFrame({
        "recipe": pd.Series(recipes, index=names),
        "seed": pd.Series(model_seeds, index=names),
        "val accuracy": pd.Series(val),
        "test accuracy": table[("accuracy", "test")],
        "dedup test accuracy": table.get(("accuracy", "test_dedup")),
        "test specificity": table[("tumour_specificity", "test")],
        "dedup test specificity": table.get(("tumour_specificity", "test_dedup")),
        "external sensitivity": table.get(("tumour_sensitivity", "external_br35h")),
        "external CI low": table.get(("sens_ci_low", "external_br35h")),
        "external CI high": table.get(("sens_ci_high", "external_br35h")),
        "external n": table.get(("n", "external_br35h")),
    })
    numeric = out.columns.drop("recipe")  # a set no variant was scored on: NaN, not None
    out[numeric] = out[numeric].apply(pd.to_numeric, errors="coerce")
    return out.reindex(names)


def epochs_and_colour(base: dict, color_modes: list[str], epochs: list[int],
                      seeds: list[int], run_folder, scoring: dict) -> pd.DataFrame:
    """Report 000's untested claims (colour mode, number of epochs) as a grid, and the
    spread over seeds of its cheapest cell.

    Each colour mode trains for ``epochs[0]`` epochs, then on to ``epochs[1]`` (one
    training, read twice: see ``continue_training``). The first colour mode at
    ``epochs[0]`` is trained again with each extra seed. One row per model: its setting,
    validation accuracy and test accuracy with the benchmark's bootstrap interval.
    """
    from brainmri.evaluation import benchmark

    short, long_ = epochs
    rows = []

    def train(color_mode: str, seed: int) -> Result:
        suffix = "" if seed == base["seed"] else f"-seed{seed}"
        p = Params(chapter="claims", run=run_folder, **{
            **base, "color_mode": color_mode, "epochs": short, "seed": seed,
            "variant": f"{ABLATION_PREFIX}{color_mode}-{short}ep{suffix}"})
        result = run(p)
        rows.append((display_name(p), color_mode, short, seed))
        return result

    for color_mode in color_modes:
        result = train(color_mode, base["seed"])
        longer = continue_training(
            result, long_ - short, f"{ABLATION_PREFIX}{color_mode}-{long_}ep")
        rows.append((display_name(longer.p), color_mode, long_, base["seed"]))
    for seed in seeds:
        if seed != base["seed"]:
            train(color_modes[0], seed)
    table = pd.DataFrame(rows, columns=["model", "color_mode", "epochs", "seed"])
    table.insert(0, "setting", [f"{c}, {e} epochs" for c, e in zip(table["color_mode"],
                                                                   table["epochs"])])
    scores = benchmark.benchmark(run_folder, models=table["model"].tolist(), studies=True,
                                 **scoring)
    test = scores[scores["eval_set"] == "test"].set_index("model")
    table["val accuracy"] = [_val_accuracy(run_folder, m, base["dataset"]) for m in table["model"]]
    table["test accuracy"] = table["model"].map(test["accuracy"])
    table["test CI low"] = table["model"].map(test["acc_ci_low"])
    table["test CI high"] = table["model"].map(test["acc_ci_high"])
    return table


def _val_accuracy(run_folder, model: str, dataset_name: str) -> float:
    frame = pd.read_csv(run_folder.predictions(model_tag(model, dataset_name), "val"))
    return metrics.accuracy(*predictions.arrays(frame)[:2])
