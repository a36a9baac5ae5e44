"""DataFrames shown as the book's tables: human headers, counts as integers, rates as
percentages, no index or dtype line. A chapter picks and names its columns here instead
of printing a frame with its code names (``f1_w``, ``acc_ci_low``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import pandas as pd
from pandas.io.formats.style import Styler

from brainmri.report.show import glued


def _percent(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _count(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{int(x):,}"


def _decimal(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def table(frame: pd.DataFrame, columns: Mapping[str, str], *, percent: Iterable[str] = (),
          counts: Iterable[str] = (), decimals: Iterable[str] = (),
          caption: str | None = None) -> Styler:
    """``frame``'s ``columns`` (code name -> header, in that order) as a styled table.

    ``percent``, ``counts`` and ``decimals`` name code columns shown as ``73.4`` (the
    header says %), ``2,870`` and ``0.123``; other columns are shown as they are.
    """
    shown = frame.loc[:, list(columns)].rename(columns=dict(columns))
    formats = {}
    for names, fmt in ((percent, _percent), (counts, _count), (decimals, _decimal)):
        formats.update({columns[c]: fmt for c in names})
    styler = shown.style.format(formats, na_rep="").hide(axis="index")
    styler = styler.set_table_attributes('class="brainmri-table"')
    if any(isinstance(v, str) and v.endswith(FEW_MARK) for v in shown.to_numpy().ravel()):
        note = f"{FEW_MARK} fewer than {glued.FEW_CASES} cases: read with care"
        caption = f"{caption}; {note}" if caption else note
    if caption:
        styler = styler.set_caption(caption)
    return styler


#: Ends a rate cell resting on fewer than ``glued.FEW_CASES`` cases; :func:`table` then
#: explains it in the caption, so a reader never takes 19/19 for a settled 100 %.
FEW_MARK = "*"


def rate_column(k: Iterable[int], n: Iterable[int]) -> list[str]:
    """Cells such as ``19/19 (83-100)*``: the count and its 95 % Wilson interval in points,
    for a column headed e.g. "specificity, count (95 % CI %)", marked when the count is
    under ``glued.FEW_CASES``."""
    cells = []
    for a, b in zip(k, n):
        if b is None or (isinstance(b, float) and math.isnan(b)) or int(b) == 0:
            cells.append("")
            continue
        low, high = glued.wilson(int(a), int(b))
        few = FEW_MARK if int(b) < glued.FEW_CASES else ""
        cells.append(f"{int(a)}/{int(b)} ({100 * low:.0f}-{100 * high:.0f}){few}")
    return cells


def ci_column(x: Iterable[float], low: Iterable[float], high: Iterable[float]) -> list[str]:
    """Cells such as ``66.8 (62.2-71.8)``: a share in per cent and its 95 % interval, for a
    column headed e.g. "accuracy % (95 % CI)"."""
    def blank(v):
        return v is None or (isinstance(v, float) and math.isnan(v))
    return ["" if blank(v) else f"{100 * v:.1f} ({100 * lo:.1f}-{100 * hi:.1f})"
            for v, lo, hi in zip(x, low, high)]
