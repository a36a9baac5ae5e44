"""Classify image files with a saved model: the engine behind ``brainmri predict``.

Every input path gives exactly one row: a prediction with its calibrated probabilities,
or an ``error`` saying why the file could not be used. The ``warning`` column flags
predictions not to trust (decoder complaints, near-constant or tiny images, extreme
aspect ratios, images unlike brain MRI slices or unlike the training images; see
``modeling.ood``).

Files are decoded and prepared ahead of the model (``modeling.prefetch``); the model
runs in graph mode on one batch while the next ones are prepared. Rows keep the order of
the inputs.
"""

from __future__ import annotations

import os
import stat
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brainmri import CLASS_NAMES, PROB_COLUMNS
from brainmri.core import paths
from brainmri.core.progress import progress
from brainmri.data.pixels import normalize
from brainmri.modeling import ood
from brainmri.modeling.prefetch import Prepared, start
from brainmri.modeling.saved import pixel_spec

COLUMNS = ["path", "prediction", *PROB_COLUMNS, "warning", "error"]

def default_model() -> Path:
    return paths.project_root() / paths.SHIPPED_MODEL


# ------------------------------------------------------------------------ inputs


@dataclass
class Inputs:
    """The files to classify (each once), how many hidden entries the folder walk
    skipped, and the mentions left out because they name a file already listed."""

    files: list[Path]
    hidden: int = 0
    repeated: list[Path] = field(default_factory=list)


def _identity(path: Path) -> tuple:
    """What makes two mentions the same file: device and inode for a regular file (the
    same scan through ``./a.png``, a folder, or a link), else the normalised path."""
    try:
        info = os.stat(path)
        if stat.S_ISREG(info.st_mode):
            return ("file", info.st_dev, info.st_ino)
    except (OSError, ValueError):
        pass
    return ("path", os.path.normpath(os.path.abspath(path)))


def _walk(folder: Path) -> tuple[list[Path], int]:
    """Every non-hidden entry under ``folder``, including the ones that cannot be read
    (broken or looping links, pipes, links to folders, unreadable subfolders), so that
    each gets a row saying why instead of silently vanishing from the table; and the
    number of hidden entries (names starting with '.') skipped, a hidden folder counting
    once, so that the caller can say so."""
    found: list[Path] = []
    hidden = 0

    def unreadable(exc: OSError) -> None:
        if exc.filename:
            found.append(Path(exc.filename))

    for root, dirs, files in os.walk(folder, onerror=unreadable):
        base = Path(root)
        hidden += sum(d.startswith(".") for d in dirs) + sum(f.startswith(".") for f in files)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [base / d for d in dirs if (base / d).is_symlink()]  # walk does not follow
        found += [base / f for f in files if not f.startswith(".")]
    return sorted(set(found)), hidden


def scan(inputs: Iterable[str | os.PathLike]) -> Inputs:
    """Files named directly (hidden or not), plus every non-hidden entry under the
    folders named, each file once (the first mention kept: a file named twice, or also
    through its folder, used to get a row per mention), with the count of hidden entries
    skipped in those folders and the repeated mentions left out."""
    found: list[Path] = []
    hidden = 0
    for item in map(Path, inputs):
        try:
            is_folder = item.is_dir()
        except OSError:  # e.g. inside an unreadable folder: the reader says so
            is_folder = False
        if is_folder:
            files, skipped = _walk(item)
            found += files
            hidden += skipped
        else:
            found.append(item)
    seen: set[tuple] = set()
    files: list[Path] = []
    repeated: list[Path] = []
    for path in found:
        key = _identity(path)
        (repeated if key in seen else files).append(path)
        seen.add(key)
    return Inputs(files, hidden, repeated)


def collect(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files named directly, plus every non-hidden entry under the folders named."""
    return scan(inputs).files


# ------------------------------------------------------------------------ model


_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _graph(model, shape: tuple[int, ...], embedding: bool):
    """The model up to its ``logits`` layer (and the input of that layer, the embedding,
    when asked), as a graph function: about twice as fast as calling the model eagerly
    per batch. Cached per model; call it inside ``_exact``."""
    import keras
    import tensorflow as tf

    cache = _GRAPHS.setdefault(model, {})
    if (shape, embedding) not in cache:
        layer = model.get_layer("logits")
        net = keras.Model(model.input, [layer.output] + ([layer.input] if embedding else []))
        cache[(shape, embedding)] = tf.function(
            lambda x: net(x, training=False),
            input_signature=[tf.TensorSpec((None, *shape), tf.float32)])
    return cache[(shape, embedding)]


@contextmanager
def _exact() -> Iterator[None]:
    """Grappler's arithmetic optimiser off while graph functions run: it reorders float
    sums, so that logits would differ from the eager model's by up to ~1e-6. TensorFlow
    reads this option at every call, hence around the calls, not only the tracing."""
    import tensorflow as tf

    before = tf.config.optimizer.get_experimental_options().get("arithmetic_optimization")
    tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options(
            {"arithmetic_optimization": True if before is None else before})


def _batches(prepared: Iterable[Prepared], batch_size: int
             ) -> Iterator[list[Prepared]]:
    """Lists of up to ``batch_size`` usable inputs; an unusable one alone, at once."""
    batch: list[Prepared] = []
    for item in prepared:
        if item.error:
            yield [item]
            continue
        batch.append(item)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _forward(fn, batch: list[Prepared], normalization: str
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """(logits, embeddings or None) of a batch of usable inputs, as float64."""
    outputs = fn(normalize(np.stack([b.pixels for b in batch]), normalization))
    if not isinstance(outputs, (list, tuple)):  # a one-output model returns its tensor
        outputs = [outputs]
    logits = np.asarray(outputs[0], np.float64)
    return logits, (np.asarray(outputs[1], np.float64) if len(outputs) > 1 else None)


def predict_files(files: Sequence[Path], model, metadata: dict, batch_size: int,
                  show_progress: bool = True, workers: int | None = None,
                  prepared: Iterable[Prepared] | None = None) -> pd.DataFrame:
    """One row per file, in the order of ``files``: the prediction and calibrated class
    probabilities, or an error. With a calibrated collection check in the sidecar,
    ``table.attrs["collection"]`` holds its verdict on the readable images together
    (None below its batch size), and a ``collection`` column says it on every readable
    row: ``new collection``, ``like training`` or ``not judged (fewer than N images)``.

    ``metadata`` must have passed ``saved.check_sidecar``. Without an ``ood`` entry no
    image is flagged as out of distribution, and without ``ood.checks`` only the energy
    score is used (the caller says so). ``prepared``: the inputs already being prepared
    (``start(files, metadata)``); by default they are prepared here with ``workers``
    threads.
    """
    from scipy.special import softmax

    spec = pixel_spec(metadata)
    temperature = float(metadata.get("temperature", 1.0))
    entry = metadata.get("ood")
    checks = ood.checks_of(metadata)
    fn = _graph(model, spec.shape, checks is not None and checks.embedding_dim is not None)
    rows: list[dict] = []
    seen_distances: list[float] = []
    with (start(files, metadata, workers) if prepared is None else nullcontext(prepared)
          ) as stream, _exact():
        bar = progress(stream, total=len(files), desc="predicting", unit="img",
                       disable=not show_progress or len(files) < 2)
        for batch in _batches(bar, batch_size):
            if batch[0].error:
                rows.append({"path": str(batch[0].path), "prediction": "", "warning": "",
                             "error": batch[0].error})
                continue
            logits, embeddings = _forward(fn, batch, metadata["normalization"])
            probs = softmax(logits / temperature, axis=1)
            energies = (ood.energy(logits, float(entry.get("temperature", 1.0)))
                        if entry else [None] * len(batch))
            limit = {"threshold": ood.energy_threshold(entry, checks)} if entry else None
            distances = (checks.distances(embeddings) if checks and embeddings is not None
                         else [None] * len(batch))
            seen_distances += [float(d) for d in distances if d is not None]
            for item, p, score, distance in zip(batch, probs, energies, distances):
                notes = [*item.warnings,
                         checks.note(item.stats, distance) if checks else "",
                         ood.flag(score, limit) if entry else ""]
                rows.append({"path": str(item.path),
                             "prediction": CLASS_NAMES[int(p.argmax())],
                             **dict(zip(PROB_COLUMNS, map(float, p))),
                             "warning": "; ".join(n for n in notes if n), "error": ""})
    order = {str(p): i for i, p in enumerate(files)}
    table = pd.DataFrame(rows, columns=COLUMNS)
    table = table.sort_values("path", key=lambda s: s.map(order),
                              kind="stable").reset_index(drop=True)
    if checks is not None and checks.collection is not None:
        # The images taken together: does the set look like a training collection?
        verdict = checks.collection.verdict(seen_distances)
        table.attrs["collection"] = verdict
        # the same verdict on every readable row, so that a script reading the CSV sees it
        word = (f"not judged (fewer than {checks.collection.batch} images)" if verdict is None
                else "new collection" if verdict["new"] else "like training")
        table["collection"] = np.where(table["error"] == "", word, "")
    return table


@dataclass
class Features:
    """What the OOD checks see of each readable input: positions in the input list,
    image statistics (one row each), embeddings and logits; and the unreadable ones."""

    index: np.ndarray
    stats: pd.DataFrame
    embeddings: np.ndarray
    logits: np.ndarray
    errors: list[tuple[int, str]]


def features(sources: Iterable, model, metadata: dict, batch_size: int,
             workers: int | None = None, embedding: bool = True) -> Features:
    """Image statistics, embeddings and logits of ``sources`` (file paths or decoded
    (H, W, C) uint8 arrays), prepared exactly as ``predict_files`` prepares its inputs:
    what ``calibration.calibrate`` chooses its limits on."""
    spec = pixel_spec(metadata)
    fn = _graph(model, spec.shape, embedding)
    index, stats, embeddings, logits, errors = [], [], [], [], []
    with start(sources, metadata, workers, statistics=True) as stream, _exact():
        for batch in _batches(stream, batch_size):
            if batch[0].error:
                errors.append((batch[0].index, batch[0].error))
                continue
            z, e = _forward(fn, batch, metadata["normalization"])
            index += [b.index for b in batch]
            stats += [b.stats for b in batch]
            logits.append(z)
            if e is not None:
                embeddings.append(e)
    width = len(CLASS_NAMES)
    return Features(np.asarray(index, int), pd.DataFrame(stats, columns=list(ood.IMAGE_CHECKS)),
                    np.concatenate(embeddings) if embeddings else np.zeros((0, 0)),
                    np.concatenate(logits) if logits else np.zeros((0, width)), errors)
