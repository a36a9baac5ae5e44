"""The "What we found" paragraph that ends each chapter, written from the run's numbers.

One function per chapter (one for all the from-scratch model chapters), each returning
Markdown that starts with a bold "**What we found.**"; a chapter shows it with
``Markdown(findings.<chapter>(...))`` in a ``remove-input`` cell. Every number comes from
the values the chapter computed, and every sentence that interprets them either holds
whatever they are or is chosen by comparing them here, so a rerun never leaves a
paragraph contradicting its own tables.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping

import pandas as pd

from brainmri import CLASS_NAMES
from brainmri.data.sources import DATASETS
from brainmri.report import experiment

LEAD = "**What we found.**"
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}
#: Largest relative difference from the report's variance figures that still counts as
#: reproducing them (the report's own validation draw is unknown: a few per cent remain).
REPRODUCED = 0.05
#: Largest pixel difference between two normalisation recipes that is float rounding.
ROUNDING = 1e-4


def _and(items: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _points(x: float) -> str:
    """A difference of two shares, in percentage points."""
    return f"{100 * abs(x):.1f} points"


# --- 01 data exploration -----------------------------------------------------------


def data_exploration(counts: Mapping[str, pd.DataFrame],
                     inventories: Mapping[str, pd.DataFrame], skipped: pd.DataFrame) -> str:
    """Chapter 01: images per split, the least represented training class, sizes and
    storage, unusable files. ``counts``: dataset -> its long split table (``dataset``,
    ``split``, ``class``, ``n``); ``inventories``: dataset -> its inventory; ``skipped``:
    the unusable files of all datasets."""
    per_split = []
    for name, table in counts.items():
        sizes = table.groupby("split", sort=False)["n"].sum()
        parts = [f"{n:,} {SPLIT_NAMES.get(s, s)}" for s, n in sizes.items() if n]
        per_split.append(f"{name} {_and(parts)} images")
    sentences = [f"{LEAD} The splits hold: {'; '.join(per_split)}."]

    balance = []
    for name, table in counts.items():
        train = table[table["split"] == "train"].set_index("class")["n"]
        if train.sum() == 0:
            continue  # an evaluation-only dataset
        low, high = train.idxmin(), train.idxmax()
        balance.append(f"{low} in {name} ({train[low]:,} images, {train[low] / train[high]:.0%} "
                       f"of the largest, {high}, with {train[high]:,})")
    if balance:
        sentences.append(f"The smallest training class is {_and(balance)}.")

    common, rgb, varied = [], [], False
    for name, inventory in inventories.items():
        ok = inventory[inventory["ok"].astype(bool)]
        if ok.empty:
            continue
        size = ok["width"].astype(str) + " x " + ok["height"].astype(str)
        shares = size.value_counts(normalize=True)
        common.append(f"{shares.index[0]} in {name} ({shares.iloc[0]:.0%} of its files)")
        rgb.append(f"{(ok['mode'] == 'RGB').mean():.0%}")
        varied |= len(shares) > 1 or bool((ok["mode"] != ok["mode"].iloc[0]).any())
    if common:
        whose = "its files are" if len(rgb) == 1 else "their files respectively are"
        sentences.append(f"The most common size is {_and(common)}; {_and(rgb)} of {whose} "
                         f"stored as RGB.")
    total = sum(len(inventory) for inventory in inventories.values())
    sentences.append(f"Every one of the {total:,} files could be decoded." if skipped.empty else
                     f"{len(skipped):,} of the {total:,} files could not be used; they are "
                     f"listed above and left out of every split.")
    sentences.append(
        "The later chapters draw their training, validation and test images from these "
        "splits; " + ("since the images differ in size or storage, every model resizes them "
                      "to one square input and states its colour mode." if varied else
                      "the images share one size and one colour mode.")
        + " The next chapter measures how far apart the classes are in raw pixel space.")
    return " ".join(sentences)


# --- 01b leakage audit -------------------------------------------------------------


def leakage_audit(summaries: Mapping[str, dict], planted_found: float, n_planted: int,
                  shared: dict | None) -> str:
    """Chapter 01b: how well the rule finds planted copies, test images with a copy in
    training per dataset (``summaries``: dataset -> ``Audit.summary()``), and the images
    two datasets share (``Overlap.shared_counts()``, or None)."""
    rule = next(iter(summaries.values()))["rule"]
    sentences = [f"{LEAD} The duplicate rule (hashes at most {rule['max_distance']} bits "
                 f"apart, thumbnails correlated at {rule['min_correlation']} or more) finds "
                 f"{planted_found:.0%} of {n_planted} planted copies."]
    leaked_any = False
    for name, s in summaries.items():
        per_class = pd.DataFrame(s["per_class"]).T
        share = per_class["with_copy_in_training"] / per_class["test_images"].clip(lower=1)
        low, high = (f"{per_class.loc[c, 'with_copy_in_training']:,} of "
                     f"{per_class.loc[c, 'test_images']:,} {c} images"
                     for c in (share.idxmin(), share.idxmax()))
        leaked_any |= s["test_images_with_copy_in_training"] > 0
        agreement = s.get("cross_split_pairs_label_agreement")
        sentences.append(
            f"In {name}, {s['test_images_with_copy_in_training']:,} of the {s['n_test']:,} "
            f"test images ({s['share_of_test_with_copy_in_training']:.1%}) have a copy in the "
            f"training folder ({s['test_images_with_exact_copy_in_training']:,} "
            f"byte-identical, {s['test_images_with_near_copy_in_training']:,} near), by "
            f"class from {low} to {high}"
            + (f"; the two copies carry the same label in {agreement:.1%} of the pairs."
               if agreement is not None else "."))
    if shared:
        first, second = shared["datasets"].split(" & ")
        sentences.append(f"Across datasets, {shared['shared images of the first']:,} {first} "
                         f"images have a copy in {second} "
                         f"({shared['shared images of the second']:,} {second} images in "
                         f"{first}).")
    sentences.append("A test image with a copy in training measures memory rather than "
                     "generalisation, which is why chapter 09 scores every model again "
                     "without them." if leaked_any else
                     "No test image has a copy in training: the official test sets measure "
                     "generalisation as they are.")
    return " ".join(sentences)


# --- 01c source audit --------------------------------------------------------------


def source_audit(by_source: pd.DataFrame, shortcut: dict, n_hard: int,
                 hard_copies: pd.DataFrame, by_origin: pd.DataFrame) -> str:
    """Chapter 01c: where Nickparvar's classes come from, what a statistics-only
    classifier does at home and on Br35H's new tumour images (``shortcut``, as
    ``shortcuts.shortcut_check`` returns it), and the ``n_hard`` Sartaj test gliomas
    without a training copy: their Br35H copies (``hard_copies``, pairs of the Br35H-Sartaj
    overlap) and Sartaj's images with and without a Br35H copy (``by_origin``)."""
    no_tumour = by_source.drop(index="All", level=0).xs("no_tumor", level="label").sum()
    tumour = by_source.drop(index="All", level=0).drop(index="no_tumor", level="label").sum()
    figshare_none = (f"and {no_tumour['figshare']:,} from" if no_tumour.get("figshare", 0)
                     else "none from")
    br35h_tumours = tumour.get("br35h", 0)
    br35h_none = f"none from Br35H ({br35h_tumours})" if not br35h_tumours \
        else f"and {br35h_tumours:,} from Br35H"
    home = shortcut["home: tumour vs none, cross-validated accuracy"]
    called_none = shortcut["Br35H new tumour images called no_tumor"]
    if home <= shortcut["home: majority baseline"]:
        reading = ("framing and grey levels alone do not beat the majority answer, so they\n"
                   "offer no shortcut to the class here.")
    elif called_none > 1 - home:
        reading = ("on this dataset the source is a shortcut\nto the class, and it fails on a "
                   "new collection.")
    else:
        reading = ("on this dataset the source is a shortcut\nto the class, yet it still finds "
                   "most tumours of the new collection.")

    contradicted = not set(hard_copies["br35h_label"]) <= {"tumour"}
    verdict = "some contradict Sartaj's label" if contradicted \
        else "none contradicts Sartaj's label"
    hard_labels = " and ".join(sorted(hard_copies["br35h_label"].unique())) or "-"
    share = by_origin["copy in Br35H"] / by_origin.sum(axis=1)
    split_share = by_origin.groupby(level="official_split").sum()
    split_share = split_share["copy in Br35H"] / split_share.sum(axis=1)
    if contradicted:
        meaning = ("Part of the errors on the hard gliomas may be label noise: another "
                   "collection\ncalls some of them otherwise.")
    elif share.loc[("test", "glioma")] > share.loc[("train", "glioma")]:
        meaning = ("The hard gliomas are not label\nnoise: Sartaj's test folder samples "
                   "another collection than its training folder, and the\nmodels meet a "
                   "population they were barely trained on.")
    else:
        meaning = ("The Br35H copies do not\nsingle out the test gliomas, so a change of "
                   "collection does not explain why\nthey are hard.")
    unchecked = ("Whether the tumour *type* is right\ncannot be checked here (Br35H has no "
                 "types).")
    return f"""**What we found.** Nickparvar's no-tumour images come from Br35H
({no_tumour.get("br35h", 0):,}) and Sartaj ({no_tumour.get("sartaj", 0):,}), {figshare_none}
figshare; its tumour images come from figshare ({tumour.get("figshare", 0):,}) and Sartaj
({tumour.get("sartaj", 0):,}), {br35h_none}. Ten numbers
that describe only framing and grey levels tell tumour from no tumour at home with
{home:.1%} cross-validated accuracy
(always answering the majority class: {shortcut["home: majority baseline"]:.1%}), and the
same classifier calls {called_none:.1%} of Br35H's
{shortcut["Br35H new tumour images"]:,} new tumour images "no tumour": {reading}

Of the {n_hard} Sartaj test gliomas without a training copy,
{hard_copies["sartaj_path"].nunique()} have a copy in Br35H, labelled {hard_labels} there;
{verdict} at the one level Br35H can check (tumour or not). But
{share.loc[("test", "glioma")]:.0%} of Sartaj's test gliomas have a Br35H copy against
{share.loc[("train", "glioma")]:.1%} of its training gliomas, and
{split_share.get("test", 0):.0%} of the whole test folder against
{split_share.get("train", 0):.0%} of the training folder. {meaning} {unchecked}"""


# --- 02 variance analysis ----------------------------------------------------------


def variance(stats: dict, comparison: pd.DataFrame) -> str:
    """Chapter 02: our variance figures next to the report's (``comparison``, as
    ``variance.compare_with_report`` gives it) and the scale-free ratios (``stats``, as
    ``variance.class_variances`` gives it)."""
    rel = comparison.set_index("quantity")["relative difference"]
    intra = rel[rel.index.str.startswith("intra ")]
    worst = rel.abs().idxmax()
    if abs(rel[worst]) <= REPRODUCED:
        verdict = (f"every figure is within {REPRODUCED:.0%} of the report's, so this run "
                   "reproduces them")
    else:
        verdict = ("this run does not reproduce the report's figures, which depend on the "
                   "number and size of the images")
    separation = ("the class means differ (F above 1)" if stats["f_ratio"] > 1
                  else "the class means barely differ (F at most 1)")
    spread = ("but by little next to the spread within each class: the classes overlap "
              "heavily in raw pixel space, whatever R suggests" if stats["explained_share"] < 0.5
              else "and by more than the spread within each class")
    row = comparison.set_index("quantity")
    return (
        f"{LEAD} On {stats['n_images']:,} images of {stats['n_features']:,} values each, "
        f"the inter-class variance B is {stats['inter']:,.4g} against the report's "
        f"{row.loc['inter', 'report']:,.4g} ({rel['inter']:+.1%}) and R is "
        f"{stats['R_report']:.2f} against {row.loc['R', 'report']:.2f} ({rel['R']:+.1%}); "
        f"the four intra-class variances differ from the report's by {intra.min():+.1%} to "
        f"{intra.max():+.1%}. The largest relative difference is {rel[worst]:+.1%} "
        f"({worst}): {verdict}. The class explains {stats['explained_share']:.1%} of the "
        f"pixel variance (B / W = {stats['between_over_within']:.3f}) and the F ratio is "
        f"{stats['f_ratio']:,.1f}: {separation}, {spread}. R grows with the number of "
        f"images, so its size alone says nothing about separability.")


# --- 03 preprocessing --------------------------------------------------------------


def preprocessing(spec, normalization: str, shapes: pd.DataFrame,
                  largest_difference: float) -> str:
    """Chapter 03: the input the models get (``spec``, a PixelSpec, and the
    ``normalization``), the cached arrays (``shapes``: one row per split with ``split``,
    ``shape`` as text and ``MB``), and the largest difference between min-max scaling
    then standardising and standardising alone."""
    sizes = {row.split: ast.literal_eval(row.shape)[0] for row in shapes.itertuples()}
    crop = ", cropped to the head" if spec.crop == "head" else ""
    same = largest_difference < ROUNDING
    return (
        f"{LEAD} Every image becomes a {spec.image_size} x {spec.image_size} "
        f"{spec.color_mode} array ({spec.resample} resampling{crop}), then is normalised "
        f"with `{normalization}`. The cached arrays hold "
        f"{_and([f'{n:,} {SPLIT_NAMES.get(s, s)}' for s, n in sizes.items()])} images, "
        f"{shapes['MB'].sum():,.1f} MB in all as uint8. Min-max scaling before "
        f"standardisation changes the standardised pixels by at most "
        f"{largest_difference:.1e}: "
        + ("float rounding only, so the pipeline leaves that step out without changing "
           "the result." if same else
           "more than float rounding, so the two recipes differ on these images.")
        + " The model chapters read arrays built the same way, each at its own input size "
          "and colour mode, from the same cache.")


# --- model chapters (05, 06, 07, 08b) ----------------------------------------------


def _training(history: pd.DataFrame, planned: int, restore_best: bool) -> str:
    run = len(history)
    done = ("trained for the one epoch allowed" if run >= planned == 1 else
            f"trained for all {planned} epochs allowed" if run >= planned else
            f"stopped early after {run} of the {planned} epochs allowed")
    last = history[history["phase"] == history["phase"].iloc[-1]] \
        if "phase" in history else history
    if run == 1:
        return done
    if not restore_best:
        return f"{done}, keeping the last epoch's weights"
    if "val_loss" not in last or last["val_loss"].isna().all():
        return done
    kept = int(last["val_loss"].idxmin()) + 1
    where = ("the lowest validation loss" if len(last) == run
             else "the lowest validation loss of its last phase")
    return f"{done}, keeping the weights of epoch {kept}, {where}"


def _versus_published(versus: pd.DataFrame, model_name: str, n: int) -> str | None:
    column = next((c for c in versus.columns if c.startswith("published: ")), None)
    if column is None or pd.isna(versus.loc["accuracy", column]):
        return None
    name = column.removeprefix("published: ")
    ours, theirs = versus.loc["accuracy", "this run"], versus.loc["accuracy", column]
    who = (f"The published figure for the same model is {theirs:.1%}" if name == model_name
           else f"The best published model on this test set, `{name}`, reached {theirs:.1%}")
    gap = ours - theirs
    margin = 1.96 * math.sqrt(ours * (1 - ours) / n) if n else float("nan")
    side = "higher" if gap > 0 else "lower"
    if gap == 0:
        return f"{who}, the same as ours."
    within = "within" if abs(gap) <= margin else "beyond"
    return (f"{who}: ours is {_points(gap)} {side}, {within} the ±{_points(margin)} 95 % "
            f"sampling margin of an accuracy measured on {n:,} images.")


def _calibration(table: pd.DataFrame) -> str:
    home = table.iloc[0]
    t, before, after = home["temperature"], home["ECE before"], home["ECE after"]
    confidence = ("above 1: the raw probabilities were overconfident" if t > 1 else
                  "below 1: the raw probabilities were underconfident" if t < 1 else
                  "exactly 1")
    effect = (f"lowers the test ECE from {before:.3f} to {after:.3f}" if after < before else
              f"raises the test ECE from {before:.3f} to {after:.3f}: the validation fit "
              f"does not carry over to test" if after > before else
              f"leaves the test ECE at {before:.3f}")
    return f"The temperature fitted on validation is {t:.2f}, {confidence}; it {effect}."


def _outside(table: pd.DataFrame) -> str:
    """The external rows of ``Result.calibration()`` and what chapter 09 adds."""
    outside = []
    for label, row in table.iloc[1:].iterrows():
        if pd.notna(row.get("accuracy")):
            outside.append(f"{row['accuracy']:.1%} accuracy on {label}")
        if pd.notna(row.get("tumour sensitivity")):
            outside.append(f"{row['tumour sensitivity']:.1%} tumour sensitivity on {label}")
    if not outside:
        return ("These figures come from one training run scored on one test set; chapter 09 "
                "adds confidence intervals, paired tests between models and the test set "
                "without the images that also appear in training.")
    return (f"Outside its training collection it scores {_and(outside)}, images that also "
            f"appear in a training folder included; chapter 09 removes those, and adds "
            f"confidence intervals and paired tests between models to these single-run "
            f"figures.")


def _collapse(test: pd.DataFrame) -> str | None:
    used = sorted(test["prediction"].unique())
    if len(used) == 1:
        return f"Every test image is called {used[0]}: the model has collapsed to one class."
    if len(used) < len(CLASS_NAMES):
        return (f"Its test predictions use only {len(used)} of the {len(CLASS_NAMES)} "
                f"classes ({_and(used)}).")
    return None


def _gradients(norms: pd.DataFrame) -> str | None:
    """The gradient reaching the first layer, sigmoid against ReLU, at initialisation."""
    if not {"relu, initial", "sigmoid, initial"} <= set(norms.columns) or norms.empty:
        return None
    layer = norms.index[0]
    relu, sigmoid = norms.iloc[0]["relu, initial"], norms.iloc[0]["sigmoid, initial"]
    if not relu or not sigmoid:
        return None
    ratio = sigmoid / relu
    factor = (f"{1 / ratio:,.0f} times smaller" if ratio < 1
              else f"{ratio:,.1f} times larger")
    return (f"At initialisation the gradient reaching the first layer (`{layer}`) is "
            f"{factor} with sigmoid than with ReLU units ({sigmoid:.2e} against "
            f"{relu:.2e}).")


def model_chapter(result, gradient_norms: pd.DataFrame | None = None) -> str:
    """A model chapter (05, 06, 07, 08b): test accuracy and F1, the epochs trained, the
    published figure next to ours, calibration, the external sets when predicted, and a
    collapse onto few classes. ``result`` is what ``experiment.run`` returns;
    ``gradient_norms`` (chapter 07) the per-layer gradient norms of the networks it
    compares."""
    p = result.p
    versus = result.versus_published()
    ours = versus["this run"]
    n = len(result.test)
    planned = sum(config.epochs for *_, config in experiment.phases(p))
    sentences = [
        f"{LEAD} `{experiment.display_name(p)}` reaches {ours['accuracy']:.1%} test accuracy "
        f"on the {n:,} test images of {p.dataset}, with weighted F1 {ours['f1_w']:.3f} and "
        f"macro F1 {ours['f1_macro']:.3f}; it "
        f"{_training(result.history, planned, getattr(p, 'restore_best', True))}."]
    calibration = result.calibration()
    sentences += [_versus_published(versus, p.model_name, n), _collapse(result.test),
                  _calibration(calibration),
                  _gradients(gradient_norms) if gradient_norms is not None else None,
                  _outside(calibration)]
    return " ".join(s for s in sentences if s)


# --- 11 try the model ---------------------------------------------------------------


def _folder_label(path) -> str | None:
    """The class a file's folder names in any known dataset (None when it names none)."""
    for spec in DATASETS.values():
        if path.parent.name in spec.class_folders:
            return spec.class_folders[path.parent.name]
    return None


def tryout(example, meta: dict | None) -> str:
    """Chapter 11: what the model (``meta``: its sidecar) answers on the worked example
    (``tryout.explain_file``'s result; None for both when the example could not run)."""
    close = ("One image illustrates, it does not measure: chapter 09 gives the model's "
             "accuracy on whole test sets, and how much of it survives another "
             "collection's images.")
    if example is None:
        return (f"{LEAD} No worked example could run in this build (the message above "
                f"says why); in a live kernel the widgets classify any image. {close}")
    variant = meta.get("training", {}).get("variant")
    model = (f"`{meta['model']}{'+' + variant if variant else ''}`, trained on "
             f"{meta['dataset']}")
    truth = _folder_label(example.path)
    confidence = example.probabilities[example.prediction]
    sentences = [f"{LEAD} The model ({model}, probabilities calibrated with "
                 f"temperature {meta['temperature']:.2f}) calls the worked example "
                 f"**{example.prediction}** with probability {confidence:.1%}, and "
                 + ("raises no warning." if not example.warning
                    else f"flags it: {example.warning}.")]
    if truth is not None:
        right = truth == example.prediction or (truth == "tumour"
                                                 and example.prediction != "no_tumor")
        sentences.append(f"The image is filed under {truth}, so the answer is "
                         f"{'right' if right else 'wrong'}.")
    sentences.append(close)
    return " ".join(sentences)

