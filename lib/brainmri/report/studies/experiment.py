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

import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from brainmri.core.runfolder import model_tag
from brainmri.data import dataset, recipes
from brainmri.data.inputs import ModelInputs
from brainmri.data.recipes import OTHER_DATASET, inputs_for
from brainmri.evaluation import metrics, predictions, published
from brainmri.modeling import (
    builders,
    calibration,
    devices,
    ood,
    precision,
    recalibrate,
    saved,
    training,
)
from brainmri.modeling.collection_check import collection_rates
from brainmri.report.series.notebook import Params
from brainmri.report.show import figures, frames

SUMMARY_ROWS = ["accuracy", "loss", "precision_w", "recall_w", "f1_report", "f1_w",
                "f1_macro", "auc_w", "fp", "fn"]
SUMMARY_NAMES = {"accuracy": "accuracy", "loss": "loss (cross-entropy)",
                 "precision_w": "precision (weighted)", "recall_w": "recall (weighted)",
                 "f1_report": "F1 (report 000's global F1)", "f1_w": "F1 (weighted)",
                 "f1_macro": "F1 (macro)", "auc_w": "AUC (weighted)",
                 "fp": "false positives", "fn": "false negatives"}
LAYER_COLUMNS = {"layer": "Layer", "type": "Type", "output": "Output shape",
                 "parameters": "Weights", "trainable": "Trained"}
PER_CLASS_COLUMNS = {"class": "Class", "precision": "Precision", "recall": "Recall",
                     "f1": "F1", "support": "Images", "fp": "False pos.", "fn": "Missed",
                     "auc": "AUC"}


def build(p: Params, inputs: ModelInputs):
    """The chapter's model; builder options are the parameters the builder takes."""
    values = p.values()
    options = {name: (tuple(values[name]) if isinstance(values[name], list) else values[name])
               for name in builders.options(p.model_name) if name in values}
    return builders.build(p.model_name, inputs.spec.shape, **options)


def phases(p: Params) -> list[tuple[str, int | str | None, training.FitConfig]]:
    """(phase name, first trainable layer or None for all, fit settings) in order."""
    values = p.values()
    if hasattr(p, "head_epochs"):
        return [("head", "backbone", training.FitConfig.for_phase(values, p.head_epochs,
                                                                  p.head_learning_rate)),
                ("finetune", p.unfreeze_from, training.FitConfig.for_phase(
                    values, p.finetune_epochs, p.finetune_learning_rate))]
    return [("train", None, training.FitConfig.for_phase(values, p.epochs, p.learning_rate))]


def planned_epochs(p: Params) -> int:
    """The epochs the chapter's phases allow in all (what early stopping is measured by)."""
    return p.head_epochs + p.finetune_epochs if hasattr(p, "head_epochs") else p.epochs


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
    #: The model as training left it, with its optimizer (``continue_training`` trains it
    #: on); ``model`` is its float32 copy when it trained in mixed precision.
    trained: object = None

    def __post_init__(self):
        if self.trained is None:
            self.trained = self.model

    @property
    def test(self) -> pd.DataFrame:
        return self.predictions["test"]

    def architecture(self):
        """The layer table (shown)."""
        return frames.table(builders.layer_table(self.model), LAYER_COLUMNS,
                            counts=["parameters"])

    def augmentation(self, n: int = 4):
        """Training images before and after one random augmentation (figure)."""
        originals, augmented = self.inputs.augmented(n)
        return figures.image_grid(list(originals) + list(augmented),
                                  ["original"] * n + [f"augmented ({self.p.augment})"] * n,
                                  ncols=n, size=2.0)

    def curves(self) -> None:
        """Training curves (figure); the epoch table stays in the model's history.csv."""
        figures.training_curves(self.history, f"{self.p.model_name} on {self.p.dataset}")
        plt.show()

    def test_results(self):
        """Confusion matrices (figure), the per-class table, and the summary next to the
        published figures (returned, shown)."""
        from IPython.display import display

        y, probs, _ = predictions.arrays(self.test)
        figures.confusion_matrices(y, probs.argmax(1),
                                   f"{self.p.model_name}: {self.p.dataset} test set")
        plt.show()
        per_class = predictions.summarize(self.test)[1].reset_index()
        display(frames.table(per_class, PER_CLASS_COLUMNS, counts=["support", "fp", "fn"],
                             decimals=["precision", "recall", "f1", "auc"]))
        return self.versus_published_table()

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

    def versus_published_table(self):
        """``versus_published`` as a table: measures by name, counts as integers, and
        the test accuracy's count with its Wilson interval."""
        versus = self.versus_published()
        theirs = versus.columns[1]

        def cell(measure, x):
            if pd.isna(x):
                return ""
            return f"{int(x):,}" if measure in ("fp", "fn") else f"{x:.3f}"

        rows = [{"measure": SUMMARY_NAMES[m], "ours": cell(m, versus.loc[m, "this run"]),
                 "theirs": cell(m, versus.loc[m, theirs])} for m in SUMMARY_ROWS]
        correct = int((self.test["prediction"] == self.test["label"]).sum())
        rows.insert(1, {"measure": "correct test images (95 % CI, %)",
                        "ours": frames.rate_column([correct], [len(self.test)])[0],
                        "theirs": ""})
        name = theirs.removeprefix("published: ")
        return frames.table(pd.DataFrame(rows), {
            "measure": "Measure", "ours": "This run",
            "theirs": f"Published ({published.DISPLAY.get(name, name)})"})

    def calibration(self) -> pd.DataFrame:
        """ECE on test before and after the validation temperature; the external set's
        accuracy when one was predicted (before removing images the datasets share).
        ``correct`` and ``n`` count the images behind each row's rate."""
        y, probs, logits = predictions.arrays(self.test)
        rows = {f"{self.p.dataset} test": {
            "temperature": self.temperature, "ECE before": metrics.ece(y, probs, self.p.ece_bins),
            "ECE after": metrics.ece(y, metrics.softmax(logits, self.temperature),
                                     self.p.ece_bins),
            "accuracy": metrics.accuracy(y, probs),
            "correct": int((probs.argmax(1) == y).sum()), "n": len(y)}}
        if "external" in self.predictions:
            frame = self.predictions["external"]
            ye, pe, _ = predictions.arrays(frame)
            rows[f"{frame['eval_dataset'].iloc[0]} test (external)"] = {
                "accuracy": metrics.accuracy(ye, pe),
                "correct": int((pe.argmax(1) == ye).sum()), "n": len(ye)}
        if predictions.DETECTION_SPLIT in self.predictions:
            frame = self.predictions[predictions.DETECTION_SPLIT]
            tumours = frame[frame["label"] == "tumour"]
            yd, pd_, _ = predictions.arrays(tumours)
            rows[f"{predictions.DETECTION_SPLIT} tumour images (all)"] = {
                "tumour sensitivity": metrics.tumour_sensitivity(yd, pd_),
                "correct": int((tumours["prediction"] != "no_tumor").sum()),
                "n": len(tumours)}
        return pd.DataFrame(rows).T

    def calibration_table(self):
        """``calibration`` as a table: one row per test set, its rate with the count and
        Wilson interval, and the home set's temperature and ECE."""
        table = self.calibration().rename_axis("test set").reset_index()
        table["measure"] = ["tumour sensitivity" if pd.notna(row.get("tumour sensitivity"))
                            else "accuracy" for _, row in table.iterrows()]
        table["rate"] = frames.rate_column(table["correct"], table["n"])
        return frames.table(table, {"test set": "Test set", "measure": "Measure",
                                    "rate": "Count (95 % CI, %)", "temperature": "Temperature",
                                    "ECE before": "ECE before", "ECE after": "ECE after"},
                            decimals=["temperature", "ECE before", "ECE after"])


def display_name(p: Params) -> str:
    """The model's name in files and tables: the builder, plus the recipe's variant."""
    variant = getattr(p, "variant", None)
    return f"{p.model_name}+{variant}" if variant else p.model_name


def run(p: Params, reuse: bool = False) -> Result:
    """Train and evaluate the chapter's model; every file goes to ``p.run``.

    ``reuse``: take the model a previous call left in its folder when it was trained with
    the same parameters by the same library (studies that train many models use it, so a
    step stopped midway resumes where it stopped); never where training continues from
    the returned model, whose optimizer a reused model lacks."""
    devices.seed_everything(p.seed)
    inputs = inputs_for(p)
    folder = p.run.model_dir(model_tag(display_name(p), p.dataset))
    reused = _reuse_trained(p, folder) if reuse else None
    if reused is not None:
        return _evaluate_and_save(p, inputs, reused, folder, training.load_history(folder))
    with precision.training_policy(_precision(p)):
        model = build(p, inputs)
        if getattr(p, "pretrain_epochs", 0):
            _pretrain(p, inputs, model, folder)
        if getattr(p, "source_adversarial", 0):
            from brainmri.modeling.adversarial import SourceAdversarial

            if hasattr(p, "head_epochs"):
                raise ValueError("source_adversarial trains one-phase models "
                                 "(not transfer models)")
            model = SourceAdversarial(model, len(inputs.source_names), p.source_adversarial)
        history = None
        for i, (phase, unfreeze_from, config) in enumerate(phases(p)):
            if unfreeze_from == "backbone":
                unfreeze_from = model.backbone_layers
            if unfreeze_from is not None:
                training.set_trainable(model, unfreeze_from)
            history = training.fit(model, inputs, config, folder, phase=phase,
                                   continue_history=i > 0)
    trained = getattr(model, "classifier", model)  # what is kept: never the adversary
    model = precision.as_float32(trained)
    _keep_trained(p, model, folder)
    return _evaluate_and_save(p, inputs, model, folder, history, trained)


def _precision(p: Params) -> str:
    """The chapter's training precision (float32 where it has no ``precision``)."""
    return getattr(p, "precision", "float32")


#: A model as training left it, before evaluation touches it, and what it was trained
#: with: a chapter that stops midway (a session's end, a crash) and runs again reuses the
#: models it had finished instead of training them again (08c trains about thirty).
TRAINED, TRAINED_KEY = "trained.keras", "trained.json"


def _training_key(p: Params) -> dict:
    from brainmri.report.series.runner import library_hash

    values = {k: v for k, v in p.values().items() if k not in ("data_dir", "export_to")}
    return {"params": json.loads(json.dumps(values, sort_keys=True, default=str)),
            "library": library_hash()}


def _keep_trained(p: Params, model, folder: Path) -> None:
    from brainmri.core.files import atomic_path, atomic_write_json

    with atomic_path(folder / TRAINED) as tmp:
        model.save(tmp)
    atomic_write_json(_training_key(p), folder / TRAINED_KEY)


def _reuse_trained(p: Params, folder: Path):
    """The model this folder's last training left, when it had the same parameters and
    the same library; None otherwise (then the model is trained)."""
    try:
        recorded = json.loads((folder / TRAINED_KEY).read_text())
    except (OSError, ValueError):
        return None
    if recorded != _training_key(p) or not (folder / TRAINED).exists():
        return None
    from brainmri.core.progress import note

    note(f"{display_name(p)}: reusing the model trained with these parameters "
         f"({folder.name}/{TRAINED})")
    return saved.load_saved(folder / TRAINED)[0]


def _pretrain(p: Params, inputs: ModelInputs, model, folder: Path) -> None:
    """Self-supervised pretraining (``modeling.pretrain``, SimCLR) on the recipe's training
    images, labels unread; its loss per epoch goes to the model folder's pretrain.json."""
    from brainmri.core.files import atomic_write_json
    from brainmri.modeling.pretrain import pretrain

    start = time.perf_counter()
    losses = pretrain(model, inputs.arrays["train"][0], epochs=p.pretrain_epochs,
                      batch_size=p.batch_size, learning_rate=p.learning_rate,
                      augment=p.pretrain_augment, normalization=p.normalization,
                      temperature=p.pretrain_temperature, seed=p.seed)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json({"method": "SimCLR", "images": int(len(inputs.arrays["train"][0])),
                       "epochs": p.pretrain_epochs, "loss": losses,
                      "seconds": round(time.perf_counter() - start, 1)}, folder / "pretrain.json")


#: What a lever model's training cost (``training_cost``): its columns in the levers table.
COST = ("train seconds", "images seen", "pretrain seconds", "pretrain images seen", "image size")


def training_cost(folder) -> dict:
    """What training the model in ``folder`` cost (``fit.json``, ``pretrain.json``): wall
    seconds of its supervised phases and the images they saw (images times epochs run),
    the same for its self-supervised pretraining, and its input size. The shipped
    recipe's training time is predicted from these (``predicted_minutes``)."""
    phases = json.loads((folder / "fit.json").read_text())["phases"]
    pretrain = folder / "pretrain.json"
    pre = json.loads(pretrain.read_text()) if pretrain.exists() else {}
    return dict(zip(COST, (
        float(sum(ph["seconds"] for ph in phases)),
        int(sum(ph["inputs"]["images"]["train"] * ph["epochs_run"] for ph in phases)),
        float(pre.get("seconds", 0.0)),
        int(pre.get("images", 0) * pre.get("epochs", 0)),
        int(phases[0]["inputs"]["input_shape"][0]))))


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
    with precision.training_policy(_precision(q)):
        history = training.fit(result.trained, result.inputs, replace(config, epochs=epochs),
                               folder, phase="continued", continue_history=True,
                               recompile=False)
    return _evaluate_and_save(q, result.inputs, precision.as_float32(result.trained), folder,
                              history, result.trained)


def _evaluate_and_save(p: Params, inputs: ModelInputs, model, folder: Path,
                       history: pd.DataFrame, trained=None) -> Result:
    """Predictions, temperature and OOD threshold (fitted on validation), the saved
    model with its sidecar, the external sets, and the shipped copy if asked.
    ``trained``: the model as training left it, when ``model`` is its float32 copy."""
    name = display_name(p)
    if getattr(p, "bn_reestimate", False):
        recalibrate.reestimate_batchnorm(model, inputs.eval("train", with_labels=False))
    frames = predictions.evaluate(model, inputs, p.run, name)
    y_val, _, logits_val = predictions.arrays(frames["val"])
    temperature = metrics.fit_temperature(logits_val, y_val)
    saved.save(model, folder, saved.metadata(
        model, p.model_name, inputs, seed=p.seed, temperature=temperature,
        ood=ood.sidecar_entry(logits_val, p.ood_false_alarm_rate),
        training={k: v for k, v in p.values().items() if k not in ("data_dir", "export_to")}))
    other = OTHER_DATASET[p.dataset] if p.external_dataset == "auto" else p.external_dataset
    if other is not None and other == getattr(p, "hold_out_source", None):
        other = None  # scored whole below, as the held-out collection
    frames.update(_predict_external(model, inputs, p, name, (other, p.external_binary)))
    if getattr(p, "hold_out_source", None):
        frames[predictions.HELD_OUT_SPLIT] = predictions.evaluate_external(
            model, inputs, recipes.held_out_collection(p), p.run, name,
            predictions.HELD_OUT_SPLIT)
    _collection_check(p, inputs, model, folder)
    if p.export_to:
        _calibrate_shipped(p, saved.export(folder, p.export_to))
    return Result(p, inputs, model, folder, history, frames, temperature, trained)


def _calibrate_shipped(p: Params, target: Path) -> None:
    """Calibrate and measure the shipped model's out-of-distribution checks as
    ``python -m brainmri.modeling.calibration --calibrate`` does (per-image limits on validation,
    measured on test and non-MRI images; the collection check placed on half the home test
    set and measured on Br35H's new tumour images and on the other home collection's test
    images without a copy in training), so that the run that ships a model leaves no step
    to a person."""
    argv = ["--calibrate", str(target), "--run", str(p.run.root)]
    if p.data_dir:
        argv += ["--data-dir", str(p.data_dir)]
    excluded = p.run.external_exclusions(predictions.DETECTION_SPLIT)
    if p.external_binary and excluded.exists():
        argv += ["--external", p.external_binary, "--exclude", str(excluded)]
    calibration.calibrate_file(argv)


def _collection_check(p: Params, inputs: ModelInputs, model, folder: Path) -> None:
    """How often the collection check (``brainmri predict`` on 20 images or more) would
    fire for this model on batches of its home test images and of Br35H's new tumour
    images (issue 21), measured from its own embeddings: ``collection_check.json`` in the
    model folder, which the benchmark reads. Skipped without Br35H or chapter 01c's list
    of its images with a copy in training."""
    import keras

    from brainmri.core.files import atomic_write_json

    excluded = p.run.external_exclusions(predictions.DETECTION_SPLIT)
    if p.external_binary is None or not excluded.exists():
        return
    other = dataset.load(p.external_binary, p.data_dir, p.val_fraction,
                         recipes.split_seed(p), p.subset)
    seen = set(pd.read_csv(excluded)["path"])
    new = other.files[(other.files["label"] == "tumour") & ~other.files["path"].isin(seen)]
    external = ModelInputs(dataset.Dataset(other.name, other.root, other.inventory,
                                           new.assign(split="test")),
                           inputs.spec, normalization=inputs.normalization,
                           batch_size=inputs.batch_size, seed=p.seed, splits=("test",))
    embed = keras.Model(model.input, model.get_layer("logits").input)

    def embeddings(source: ModelInputs, split: str):
        return embed.predict(source.eval(split, with_labels=False), verbose=0)

    rates = collection_rates(embeddings(inputs, "train"), inputs.arrays["train"][1],
                                 embeddings(inputs, "test"), embeddings(external, "test"),
                                 p.seed)
    if rates is not None:
        atomic_write_json({**rates, "external_dataset": other.name,
                           "external_images": int(len(new))},
                          p.run.collection_check(folder.name))


def _predict_external(model, inputs: ModelInputs, p: Params, model_name: str,
                      datasets: tuple) -> dict[str, pd.DataFrame]:
    """Predict each named dataset's test images (None entries are skipped), saved under
    ``model_name``; returns {split name: predictions frame}."""
    frames = {}
    for other in filter(None, datasets):
        external = dataset.load(other, p.data_dir, p.val_fraction, recipes.split_seed(p),
                                p.subset)
        frame = predictions.evaluate_external(model, inputs, external, p.run, model_name)
        frames[frame["split"].iloc[0]] = frame
    return frames


def bn_twin(p: Params) -> Params:
    """The parameters of ``p``'s batch-norm re-estimated twin (``with_reestimated_batchnorm``):
    its name is known before the model is trained."""
    values = {**p.values(), "variant": f"{p.variant or 'base'}+bn", "bn_reestimate": True}
    return Params(chapter=p.chapter, run=p.run, **values)


def with_reestimated_batchnorm(result: Result) -> Result:
    """The same trained model with batch-norm statistics recomputed on clean training
    images, evaluated again under the variant name ``<variant>+bn`` (no retraining)."""
    import keras

    p, q = result.p, bn_twin(result.p)
    model = keras.models.clone_model(result.model)
    model.set_weights(result.model.get_weights())
    recalibrate.reestimate_batchnorm(model, result.inputs.eval("train", with_labels=False))
    name = display_name(q)
    frames = predictions.evaluate(model, result.inputs, p.run, name)
    frames.update(_predict_external(model, result.inputs, p, name, (p.external_binary,)))
    return Result(q, result.inputs, model, result.folder, result.history, frames,
                  result.temperature)
