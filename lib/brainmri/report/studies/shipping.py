"""The shipped recipe: the levers chapter 08c chose on the held-out collection, combined
into a model chapter's recipe as far as its training time allows (issue 21: choose on a
collection the model never saw, then train the chosen recipe on all training data; the
shipped model trains in at most ``training_minutes`` on two CPU cores)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainmri.core.errors import BrainMRIError
from brainmri.data import recipes
from brainmri.report.series.notebook import Params
from brainmri.report.series.notebook import parameters as notebook_parameters
from brainmri.report.studies.experiment import COST
from brainmri.report.studies.levers import ENSEMBLE, TTA, helping

#: The chapter whose levers a model chapter can take (``levers_from``).
CHAPTER = "08c_shortcut_ablation"


def with_chosen(p: Params, train_images: int | None = None) -> Params:
    """``p`` with the levers chapter 08c chose combined into its recipe (issue 21: choose
    on the held-out collection, then train the chosen recipe on all training data to
    ship): every lever that beats 08c's baseline there beyond the seed spread, best first,
    a lever skipped when it sets a parameter a better one already set, or when it would
    take the recipe's predicted training time past ``training_minutes``
    (``predicted_minutes``; ``train_images``: the recipe's training images, counted
    from its inputs when not given). Unchanged when ``levers_from`` is unset or no lever
    helps; the chosen names join ``variant``, the ones left out for time are listed in
    ``levers_too_slow`` with their predicted minutes."""
    import yaml

    if not getattr(p, "levers_from", None):
        return p
    if not p.run.levers.exists():
        raise FileNotFoundError(f"{p.run.levers} is missing: run chapter {p.levers_from} "
                                f"before this one (levers_from names it)")
    # the levers as that run defined them; stepping through notebooks: the defaults
    steps = (yaml.safe_load(p.run.params.read_text()) or {}).get("steps", {}) \
        if p.run.params.exists() else {}
    recorded = steps.get(p.levers_from) or notebook_parameters(p.levers_from)
    defined = {lever["name"]: {k: v for k, v in lever.items() if k != "name"}
               for lever in recorded["levers"]}
    baseline = recorded["levers"][0]["name"]
    table = pd.read_csv(p.run.levers)
    budget = getattr(p, "training_minutes", None)
    if budget and not set(COST) <= set(table.columns):
        raise BrainMRIError(f"{p.run.levers} was written before chapter {p.levers_from} "
                            f"recorded what its models cost to train, which this chapter "
                            f"needs to keep training within {budget} minutes: run "
                            f"{p.levers_from} again (brainmri run --only {p.levers_from[:3]})")
    changes, taken, too_slow = {}, [], {}
    for name in helping(table, baseline):
        if all(getattr(p, k, None) == v for k, v in defined[name].items()):
            continue  # the recipe has it already (res128 for a 128 px model)
        if set(defined[name]) & set(changes):
            continue
        if budget:
            if train_images is None:  # the recipe's own count (cached pixels: seconds)
                train_images = len(recipes.inputs_for(p, splits=("train",)).arrays["train"][0])
            minutes = predicted_minutes(table, defined, baseline, [*taken, name],
                                        image_size=p.image_size, train_images=train_images,
                                        epochs=p.epochs)
            if minutes > budget:
                too_slow[name] = round(minutes, 1)
                continue
        changes.update(defined[name])
        taken.append(name)
    if not taken and not too_slow:
        return p
    variant = "-".join(filter(None, [p.variant, *taken]))
    return Params(chapter=p.chapter, run=p.run,
                  **{**p.values(), **changes, "variant": variant, "levers_taken": taken,
                     "levers_too_slow": too_slow})


def predicted_minutes(table: pd.DataFrame, defined: dict[str, dict], baseline: str,
                      taken: list[str], *, image_size: int, train_images: int,
                      epochs: int) -> float:
    """The shipped recipe's training time with ``taken``, predicted from chapter 08c's
    models, which trained on this machine in this run (medians over seeds):

    - seconds per image seen at the recipe's input size: ``baseline``'s when it trained
      at that size, else the lever that changes only the size to it, else ``baseline``'s
      scaled by pixel count (rough: fixed costs do not scale);
    - times the images the recipe sees in its most epochs (early stopping only shortens);
    - times each taken lever's seconds per image over ``baseline``'s (heavier
      augmentation, more channels);
    - plus each taken lever's pretraining: its seconds per image pretrained, at the
      recipe's size, times the recipe's images and the lever's pretraining epochs, and
      times the other levers' factors (an upper bound: augmentation does not change it)."""
    single = table[(table["seed"] != ENSEMBLE) & ~table["lever"].str.endswith(TTA)]
    cost = single.groupby("lever")[list(COST)].median()
    per_image = cost["train seconds"] / cost["images seen"]
    at_size = [n for n, c in defined.items() if c == {"image_size": image_size}
               and n in per_image.index]
    if cost.loc[baseline, "image size"] == image_size:
        rate = per_image[baseline]
    elif at_size:
        rate = per_image[at_size[0]]
    else:
        rate = per_image[baseline] * (image_size / cost.loc[baseline, "image size"]) ** 2
    scale = rate / per_image[baseline]
    factors = {n: per_image[n] / per_image[baseline] for n in taken}
    seconds = rate * train_images * epochs * float(np.prod(list(factors.values())))
    for n in taken:
        if cost.loc[n, "pretrain images seen"] > 0:
            others = float(np.prod([f for m, f in factors.items() if m != n]))
            seconds += (cost.loc[n, "pretrain seconds"] / cost.loc[n, "pretrain images seen"]
                        * scale * train_images * defined[n]["pretrain_epochs"] * others)
    return float(seconds / 60)
