"""The one training path every model uses: compile, fit with callbacks, keep the best.

Callbacks: ReduceLROnPlateau (or a cosine schedule), EarlyStopping on validation loss
with the best weights restored, a checkpoint of the best epoch (``best.keras``) and a
CSV history that survives a crash. Each call is one *phase*; transfer models call it
twice (head only, then fine-tuning) and the history continues across phases.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd

from brainmri.core.files import atomic_write_json
from brainmri.core.progress import enabled as progress_enabled


@dataclass
class FitConfig:
    """One training phase. Every field but ``jit_compile`` is a chapter parameter, so
    none has a default here: params/base.yaml gives them (the ``training`` and
    ``optimizer`` groups); ``for_phase`` fills them from a chapter's values."""

    epochs: int
    learning_rate: float  # the peak rate of a cosine schedule
    patience: int  # early stopping on validation loss
    schedule: str  # "plateau" (ReduceLROnPlateau) or "cosine"
    reduce_lr_patience: int  # plateau only
    reduce_lr_factor: float  # plateau only
    min_learning_rate: float  # plateau only
    warmup_epochs: int  # cosine only
    warmup_start: float  # cosine with warm-up: the first rate, as a share of the peak
    cosine_floor: float  # cosine: the last rate, as a share of the peak
    label_smoothing: float
    weight_decay: float  # > 0 switches Adam to AdamW
    restore_best: bool  # False: keep the last epoch's weights (a claim about epochs)
    jit_compile: bool | None = None  # not a parameter: XLA on GPUs only (on CPU it
    #                                  compiles slower than it trains for short runs)

    @classmethod
    def for_phase(cls, values: Mapping, epochs: int, learning_rate: float) -> FitConfig:
        """A phase of ``epochs`` at ``learning_rate``; the other fields are read from a
        chapter's parameter ``values`` (a transfer model's phases differ in those two)."""
        own = {"epochs", "learning_rate", "jit_compile"}
        return cls(epochs, learning_rate,
                   **{f.name: values[f.name] for f in fields(cls) if f.name not in own})


def _import_keras():
    import keras

    return keras


def smoothed_sparse_ce(label_smoothing: float):
    """Sparse categorical cross-entropy with label smoothing (Keras' sparse loss has none)."""
    keras = _import_keras()

    @keras.saving.register_keras_serializable(package="brainmri")
    def sparse_ce_smoothed(y_true, y_pred):
        import tensorflow as tf

        one_hot = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), tf.shape(y_pred)[-1])
        return keras.losses.categorical_crossentropy(one_hot, y_pred,
                                                     label_smoothing=label_smoothing)

    return sparse_ce_smoothed


def compile_model(model, config: FitConfig, steps_per_epoch: int) -> None:
    keras = _import_keras()
    lr = config.learning_rate
    if config.schedule == "cosine":
        total = max(1, config.epochs * steps_per_epoch)
        warmup = config.warmup_epochs * steps_per_epoch
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=lr if not warmup else lr * config.warmup_start,
            decay_steps=max(1, total - warmup), alpha=config.cosine_floor,
            warmup_target=lr if warmup else None, warmup_steps=warmup)
    optimizer = (keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)
                 if config.weight_decay else keras.optimizers.Adam(lr))
    loss = (smoothed_sparse_ce(config.label_smoothing) if config.label_smoothing
            else keras.losses.SparseCategoricalCrossentropy())
    jit = config.jit_compile
    if jit is None:
        from brainmri.modeling.devices import describe

        jit = "auto" if describe()["gpus"] else False
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=jit)
    # Create the optimizer's slot variables now: created inside the first training step,
    # they make TensorFlow trace that step twice (about 2 s per fit on a CPU, whatever
    # the model's size).
    with model.distribute_strategy.scope():
        model.optimizer.build(model.trainable_variables)


class _EpochTimer:
    """Adds wall seconds, images per second and the learning rate to each epoch's logs
    (before CSVLogger writes them)."""

    def __new__(cls, n_images: int):
        keras = _import_keras()

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                seconds = time.perf_counter() - self.start
                logs["seconds"] = seconds
                logs["images_per_s"] = n_images / seconds
                lr = self.model.optimizer.learning_rate  # evaluates a schedule at this step
                logs["learning_rate"] = float(lr.numpy() if hasattr(lr, "numpy") else lr)

        return Timer()


def _best_checkpoint(path: Path):
    """Keras' ModelCheckpoint (best validation loss), saving the classifier itself when
    training wraps it (``modeling.adversarial``: the wrapper is not a model to keep)."""
    keras = _import_keras()

    class BestClassifier(keras.callbacks.ModelCheckpoint):
        def set_model(self, model):
            super().set_model(getattr(model, "classifier", model))

    return BestClassifier(path, monitor="val_loss", save_best_only=True)


def fit(model, inputs, config: FitConfig, out_dir: str | Path, phase: str = "train",
        continue_history: bool = False, verbose: int | None = None,
        recompile: bool = True) -> pd.DataFrame:
    """Train ``model`` on ``inputs`` (a tfdata.ModelInputs); return the history so far.

    Writes into ``out_dir``: ``best.keras`` (best validation loss so far), ``history.csv``
    (one row per epoch, Keras' CSVLogger) and ``fit.json`` (per-phase config and timings).
    ``continue_history`` appends this phase to the previous one (fine-tuning after
    training the head); otherwise the folder's history starts afresh. ``recompile=False``
    keeps the model's optimizer (its moments and learning rate) to train on where the
    last call stopped; a new phase with other trainable layers needs a new one.
    """
    keras = _import_keras()
    from brainmri.modeling.devices import strategy

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    history_file, log_file = out_dir / "history.csv", out_dir / "fit.json"
    if config.epochs <= 0 and continue_history and history_file.exists():
        return load_history(out_dir)  # a phase switched off by its profile
    log = {"phases": []}
    if continue_history and history_file.exists():
        log = json.loads(log_file.read_text())
        initial_epoch = len(pd.read_csv(history_file))
    else:
        history_file.unlink(missing_ok=True)
        initial_epoch = 0
    # Stepping through a notebook, Keras shows its epoch lines; in a batch run (progress
    # off) it stays silent: history.csv and fit.json in the model's folder are the
    # training log, and the executed chapter keeps none of it.
    if verbose is None:
        verbose = 1 if progress_enabled() else 0
    said = int(verbose > 0)  # the callbacks' own messages follow the same choice
    # a source-adversarial wrapper (modeling.adversarial) also reads each image's source
    train_ds = inputs.train(with_sources=getattr(model, "needs_sources", False))
    val_ds = inputs.eval("val")
    steps = int(train_ds.cardinality().numpy())
    if recompile or getattr(model, "optimizer", None) is None:
        with strategy().scope():
            compile_model(model, config, steps)
    callbacks = [
        _EpochTimer(steps * inputs.batch_size
                    if inputs.balance or getattr(inputs, "balance_sources", False)
                    else len(inputs.arrays["train"][1])),  # images an epoch shows
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                      restore_best_weights=config.restore_best, verbose=said),
        _best_checkpoint(out_dir / "best.keras"),
        keras.callbacks.CSVLogger(history_file, append=True),
    ]
    if config.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=config.reduce_lr_factor,
            patience=config.reduce_lr_patience, min_lr=config.min_learning_rate, verbose=said))
    start = time.perf_counter()
    # Keras prints its epoch lines and callback messages on stdout: they go to stderr,
    # which a run keeps in its notebooks and logs and the book leaves out.
    with contextlib.redirect_stdout(sys.stderr):
        model.fit(train_ds, validation_data=val_ds, epochs=initial_epoch + config.epochs,
                  initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose,
                  shuffle=False)  # tf.data shuffles every epoch already
    history = pd.read_csv(history_file)
    log["phases"].append({"phase": phase, "config": asdict(config),
                          "seconds": round(time.perf_counter() - start, 1),
                          "epochs_run": len(history) - initial_epoch,
                          "trainable_layers": sum(int(x.trainable) for x in model.layers),
                          "trainable_weights": int(sum(w.numpy().size
                                                       for w in model.trainable_weights)),
                          "inputs": inputs.describe()})
    atomic_write_json(log, log_file)
    return load_history(out_dir)


def load_history(out_dir: str | Path) -> pd.DataFrame:
    """The epoch table of a model folder, with the phase each epoch belongs to."""
    out_dir = Path(out_dir)
    history = pd.read_csv(out_dir / "history.csv")
    phases = []
    for entry in json.loads((out_dir / "fit.json").read_text())["phases"]:
        phases += [entry["phase"]] * entry["epochs_run"]
    history["phase"] = phases[:len(history)] + ["?"] * (len(history) - len(phases))
    return history


def phase_table(out_dir: str | Path) -> pd.DataFrame:
    """One row per training phase of a model folder (from ``fit.json``)."""
    phases = json.loads((Path(out_dir) / "fit.json").read_text())["phases"]
    return pd.DataFrame([{"phase": p["phase"], "epochs run": p["epochs_run"],
                          "learning rate": p["config"]["learning_rate"],
                          "trainable layers": p.get("trainable_layers"),
                          "trainable weights": p.get("trainable_weights"),
                          "seconds": p["seconds"]} for p in phases]).set_index("phase")


def set_trainable(model, unfreeze_from: int | str) -> int:
    """Freeze the layers before ``unfreeze_from`` (an index, or the name prefix of the
    first layer to train) and train the rest; returns the number of trainable layers.

    Batch-norm layers of a frozen part stay in inference mode (Keras does this for
    ``trainable=False`` layers), which is what fine-tuning with small batches needs.
    """
    if isinstance(unfreeze_from, str):
        matches = [i for i, layer in enumerate(model.layers)
                   if layer.name.startswith(unfreeze_from)]
        if not matches:
            raise ValueError(f"no layer of {model.name} starts with {unfreeze_from!r}")
        unfreeze_from = matches[0]
    for i, layer in enumerate(model.layers):
        layer.trainable = i >= unfreeze_from
    return sum(int(layer.trainable) for layer in model.layers)
