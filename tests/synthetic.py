"""Small synthetic MRI-like datasets laid out like the Kaggle downloads.

Each image is a grey ellipse (the head) on black, with a bright blob whose position
depends on the class (no blob for no_tumor): easy enough that a tiny CNN learns it in
one epoch, so tests can check that training does something.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from brainmri.data.sources import get_spec

BLOB_CENTRES = {"glioma": (0.38, 0.4), "meningioma": (0.2, 0.7), "pituitary": (0.5, 0.8),
                "no_tumor": None, "tumour": (0.38, 0.4)}


def mri_like(label: str, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    cx, cy = 0.5 + rng.normal(0, 0.02), 0.5 + rng.normal(0, 0.02)
    head = ((xx - cx) / 0.38) ** 2 + ((yy - cy) / 0.45) ** 2 <= 1
    img = np.where(head, 90 + 40 * rng.random((size, size)), 0.0)
    centre = BLOB_CENTRES[label]
    if centre is not None:
        bx, by = centre[0] + rng.normal(0, 0.03), centre[1] + rng.normal(0, 0.03)
        blob = ((xx - bx) ** 2 + (yy - by) ** 2) <= (0.07 + 0.02 * rng.random()) ** 2
        img = np.where(blob, 230.0, img)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_dataset(root: Path, dataset: str = "sartaj", per_class: dict[str, int] | None = None,
                 size: int = 64, seed: int = 0) -> Path:
    """Write a dataset folder laid out like the download (``root/<spec.folder>/...``).
    ``per_class`` counts images per class by official split folder; an evaluation-only
    dataset (Br35H, no split folders) gets the ``Testing`` count."""
    spec = get_spec(dataset)
    per_class = per_class or {"Training": 10, "Testing": 4}
    rng = np.random.default_rng(seed)
    base = root / spec.folder
    by_split = {"train": "Training", "test": "Testing"}
    for split_folder, official in spec.split_folders.items():
        n = per_class.get(split_folder, per_class.get(by_split[official], 0))
        for folder, label in spec.class_folders.items():
            out = base / split_folder / folder
            out.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                gray = mri_like(label, size, rng)
                Image.fromarray(np.stack([gray] * 3, -1)).save(out / f"img {i:03d}.jpg",
                                                               quality=92)
    return base


def saved_predictions(run_root: Path, model: str, dataset: str, split: str,
                      labels: list[str], predicted: list[str], *, paths: list[str] | None = None,
                      eval_dataset: str | None = None, seed: int = 0,
                      confidence: float = 0.85) -> Path:
    """A predictions file as a model chapter saves it, without a model: each image's
    ``predicted`` class gets probability ``confidence``, the other classes share the rest
    (for benchmark tests that need exact counts). Returns the file."""
    import pandas as pd

    from brainmri import CLASS_NAMES, LOGIT_COLUMNS, PROB_COLUMNS
    from brainmri.core.runfolder import RunFolder, model_tag

    probs = np.full((len(labels), len(CLASS_NAMES)), (1 - confidence) / (len(CLASS_NAMES) - 1))
    probs[np.arange(len(labels)), [CLASS_NAMES.index(c) for c in predicted]] = confidence
    frame = pd.DataFrame({"model": model, "dataset": dataset, "split": split,
                          "eval_dataset": eval_dataset or dataset, "seed": seed,
                          "path": paths or [f"{split}/{i}.jpg" for i in range(len(labels))],
                          "label": labels, "prediction": predicted})
    frame[PROB_COLUMNS] = probs
    frame[LOGIT_COLUMNS] = np.log(probs)
    target = RunFolder(run_root).predictions(model_tag(model, dataset), split)
    target.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(target, index=False)
    return target
