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
        figures = published.reported(name, "sartaj") if name else None
        reported.append((figures or {}).get("accuracy"))
        source.append(where if figures else "")
    return grid[["val accuracy", "test accuracy", "test CI low", "test CI high"]].assign(
        **{"report 000": reported, "where": source})


def spread(table: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy over seeds, beside the width of one model's bootstrap interval."""
    return benchmark.seed_spread(table, by="setting", value="test accuracy",
                                 ci_low="test CI low", ci_high="test CI high")


def findings(table: pd.DataFrame) -> str:
    """The chapter's "What we found", worded from the numbers."""
    grid = first_seed(table)
    modes = list(dict.fromkeys(grid["color_mode"]))
    short, long_ = sorted({int(e) for e in grid["epochs"]})
    t = grid.rename(columns=lambda c: c.replace(" ", "_"))
    cells = {(r.color_mode, int(r.epochs)): r for r in t.itertuples()}

    def cell(mode, epochs):
        r = cells[(mode, epochs)]
        return f"{r.test_accuracy:.1%} ({r.test_CI_low:.1%}-{r.test_CI_high:.1%})"

    def overlap(a, b):
        ra, rb = cells[a], cells[b]
        return ra.test_CI_low <= rb.test_CI_high and rb.test_CI_low <= ra.test_CI_high

    parts = [f"**What we found.** Test accuracy after {short} and {long_} epochs: " + "; ".join(
                 f"{m} {cell(m, short)} then {cell(m, long_)}" for m in modes) + "."]
    if len(modes) == 2:
        a, b = modes
        diff = cells[(b, long_)].test_accuracy - cells[(a, long_)].test_accuracy
        verdict = "overlap" if overlap((a, long_), (b, long_)) else "do not overlap"
        parts.append(
            f"After {long_} epochs {b} is {100 * abs(diff):.1f} points "
            f"{'above' if diff >= 0 else 'below'} {a}; the two intervals {verdict}.")
    s = spread(table)
    if not s.empty:
        r = s.iloc[0]
        wider = ("wider than" if r["range over seeds"] > r["bootstrap CI width"]
                 else "narrower than")
        parts.append(
            f"Retrained with {int(r['seeds'])} seeds, {s.index[0]} ranges from {r['min']:.1%} "
            f"to {r['max']:.1%} (standard deviation {r['sd over seeds']:.1%}), a range "
            f"{wider} one model's bootstrap interval ({r['bootstrap CI width']:.1%} wide): "
            "a difference between two single-seed models must clear both before it means "
            "anything.")
    return " ".join(parts)
