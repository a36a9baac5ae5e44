"""Report 000's untested claims (chapter 05b): colour mode, epochs and seeds, read
against the figures the report gives and against the bootstrap interval."""

from __future__ import annotations

import pandas as pd

from brainmri.evaluation import benchmark, published

#: The report's figure for each (colour mode, epochs) cell, with what it is. Its RGB
#: model's epoch count is not stated: its 74 % is shown against both RGB rows.
REPORTED = {
    ("grayscale", 6): ("relu_cnn", "section 6.2, 6 epochs"),
    ("grayscale", 16): ("relu_cnn_16_epochs_grayscale", "section 10.2, +10 epochs"),
    ("rgb", 6): ("relu_cnn_rgb", "section 10.2, epochs not stated"),
    ("rgb", 16): ("relu_cnn_rgb", "section 10.2, epochs not stated"),
}


def first_seed(table: pd.DataFrame) -> pd.DataFrame:
    """The grid: one row per setting, at the run's seed (the first row of each)."""
    return table.drop_duplicates("setting").set_index("setting")


def versus_published(table: pd.DataFrame) -> pd.DataFrame:
    """Each cell of the grid next to the report's figure for it (when it gives one)."""
    grid = first_seed(table)
    reported, source = [], []
    for _, row in grid.iterrows():
        name, where = REPORTED.get((row["color_mode"], int(row["epochs"])), (None, ""))
        figures = published.reported(name, published.REPORT_000_DATASET) if name else None
        reported.append((figures or {}).get("accuracy"))
        source.append(where if figures else "")
    return grid[["val accuracy", "val correct", "val images", "test accuracy", "test CI low",
                 "test CI high", "test images"]].assign(
        **{"report 000": reported, "where": source})


def spread(table: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy over seeds, beside the width of one model's bootstrap interval."""
    return benchmark.seed_spread(table, by="setting", value="test accuracy",
                                 ci_low="test CI low", ci_high="test CI high")


#: Report 000's claims read here: (name, setting it says is better, setting it compares
#: with, what it says). The report's RGB model's epoch count is not stated: RGB is read
#: against grayscale at both epoch counts, the longer first.
CLAIMS = [
    ("epochs", ("grayscale", "long"), ("grayscale", "short"),
     "training on to 16 epochs lifts test accuracy (67 % to 71 %)"),
    ("rgb", ("rgb", "long"), ("grayscale", "long"), "RGB input beats grayscale (74 % to 71 %)"),
    ("rgb_short", ("rgb", "short"), ("grayscale", "short"), "the same, at the fewer epochs"),
]


def paired(table: pd.DataFrame, run, dataset: str) -> pd.DataFrame:
    """Each of report 000's claims (``CLAIMS``) read on this run's grid: the two models'
    test accuracies (run's seed), McNemar's paired test on the same test images, the
    seed range of the repeated setting, and the verdict (``findings.claim_verdict``)."""
    from brainmri.core.runfolder import model_tag
    from brainmri.report.studies import findings

    grid = first_seed(table)
    epochs = sorted({int(e) for e in grid["epochs"]})
    s = spread(table)
    seed_range = float(s["range over seeds"].max()) if not s.empty else float("nan")
    by_cell = {(r["color_mode"], int(r["epochs"])): r for _, r in grid.iterrows()}
    rows = []
    for name, better, worse, claim in CLAIMS:
        cells = [(mode, epochs[-1] if when == "long" else epochs[0]) for mode, when in
                 (better, worse)]
        if not all(c in by_cell for c in cells):
            continue
        a, b = (by_cell[c] for c in cells)
        frames = [pd.read_csv(run.predictions(model_tag(r["model"], dataset), "test"))
                  for r in (a, b)]
        test = findings.paired_test(*frames)
        difference = a["test accuracy"] - b["test accuracy"]
        rows.append({"claim": name, "what": claim, "better": a.name, "worse": b.name,
                     "accuracy better": a["test accuracy"],
                     "accuracy worse": b["test accuracy"], "difference": difference,
                     "only better right": test["b"], "only worse right": test["c"],
                     "p value": test["p_value"], "seed range": seed_range,
                     "verdict": findings.claim_verdict(difference, test["p_value"],
                                                       seed_range)})
    return pd.DataFrame(rows)
