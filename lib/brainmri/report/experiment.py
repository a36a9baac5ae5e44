"""One call per model chapter: load the data, build, train, evaluate, calibrate, save.

Every model chapter (04-08b) runs ``experiment.run(p)`` with its parameters and then
shows what is specific to its model. The recipe follows from the parameters:

- ``head_epochs`` present: a transfer model, trained in two phases, first the new head
  on a frozen backbone, then the layers from ``unfreeze_from`` on;
- otherwise one phase of ``epochs`` at ``learning_rate``, with the optional cosine
  ``schedule``, ``warmup_epochs``, ``weight_decay`` and ``label_smoothing``.

After training, the validation and test predictions are saved, a temperature is fitted
on validation and stored in the model's sidecar (so ``brainmri predict`` reports
calibrated probabilities), ``external_dataset``'s test set is predicted when asked,
and ``export_to`` ships the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from brainmri.core.runfolder import model_tag
from brainmri.data import dataset
from brainmri.data.inputs import ModelInputs
from brainmri.data.pixels import PixelSpec
from brainmri.evaluation import metrics, predictions, published
from brainmri.modeling import builders, devices, saved, training
from brainmri.report import figures
from brainmri.report.notebook import Params

OTHER_DATASET = {"sartaj": "nickparvar", "nickparvar": "sartaj"}
SUMMARY_ROWS = ["accuracy", "loss", "precision_w", "recall_w", "f1_report", "f1_w",
                "f1_macro", "auc_w", "fp", "fn"]


def inputs_for(p: Params, splits=("train", "val", "test")) -> ModelInputs:
    """The chapter's dataset at its input size, seeded, as tf.data pipelines."""
    devices.seed_everything(p.seed)
    ds = dataset.load(p.dataset, p.data_dir, p.val_fraction, p.seed, p.subset)
    return ModelInputs(ds, PixelSpec(p.image_size, p.color_mode, p.resample),
                       normalization=p.normalization, batch_size=p.batch_size,
                       augment=p.augment, balance=p.balance, seed=p.seed, splits=splits)


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
            "temperature": self.temperature, "ECE before": metrics.ece(y, probs),
            "ECE after": metrics.ece(y, metrics.softmax(logits, self.temperature)),
            "accuracy": metrics.accuracy(y, probs)}}
        if "external" in self.predictions:
            frame = self.predictions["external"]
            ye, pe, _ = predictions.arrays(frame)
            rows[f"{frame['eval_dataset'].iloc[0]} test (external)"] = {
                "accuracy": metrics.accuracy(ye, pe)}
        return pd.DataFrame(rows).T


def run(p: Params) -> Result:
    """Train and evaluate the chapter's model; every file goes to ``p.run``."""
    inputs = inputs_for(p)
    model = build(p, inputs)
    folder = p.run.model_dir(model_tag(p.model_name, p.dataset))
    history = None
    for i, (phase, unfreeze_from, config) in enumerate(phases(p)):
        if unfreeze_from == "backbone":
            unfreeze_from = model.backbone_layers
        if unfreeze_from is not None:
            training.set_trainable(model, unfreeze_from)
        history = training.fit(model, inputs, config, folder, phase=phase,
                               continue_history=i > 0)
    frames = predictions.evaluate(model, inputs, p.run, p.model_name)
    y_val, _, logits_val = predictions.arrays(frames["val"])
    temperature = metrics.fit_temperature(logits_val, y_val)
    saved.save(model, folder, saved.metadata(
        model, p.model_name, inputs, seed=p.seed, temperature=temperature,
        training={k: v for k, v in p.values().items() if k not in ("data_dir", "export_to")}))
    other = OTHER_DATASET[p.dataset] if p.external_dataset == "auto" else p.external_dataset
    if other:
        external = dataset.load(other, p.data_dir, p.val_fraction, p.seed, p.subset)
        frames["external"] = predictions.evaluate_external(model, inputs, external, p.run,
                                                           p.model_name)
    if p.export_to:
        saved.export(folder, p.export_to)
    return Result(p, inputs, model, folder, history, frames, temperature)
