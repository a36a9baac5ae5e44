"""Values a chapter hands to the book's prose, through myst-nb's ``glue``.

A chapter glues a value under a key; a markdown page (or the chapter's own markdown
cells) pastes it with ``{glue}`key``` on the same page, or ``{glue}`notebooks/<stem>.ipynb::key```
from another page. Values are glued as finished text (``73.4 %``, ``19/19``), so that the
page shows exactly what the chapter formatted: the formatting rules live here, once.
"""

from __future__ import annotations

import ast
import math

from myst_nb import glue as _glue

from brainmri.evaluation.metrics import wilson  # noqa: F401 (chapters use glued.wilson)

#: Fewer cases than this and a rate is marked as resting on few cases.
FEW_CASES = 50


#: An invisible character that ends a pasted value which Python would read as a tuple.
WORD_JOINER = "\u2060"


class Text(str):
    """A string shown as written: its repr has no quotes, so ``{glue}`` pastes it plain.

    ``{glue:text}`` reads the pasted text as a Python literal first (to drop quotes), and
    would show a count with a thousands separator, ``2,539``, as the tuple ``(2, 539)``,
    and a rounded figure, ``0.70``, as ``0.7``: a value that would not read back as
    written ends with an invisible word joiner, which no literal contains."""

    def __repr__(self) -> str:
        text = str(self)
        try:
            read = ast.literal_eval(text)
        except Exception:  # not a literal: pasted as written
            return text
        return text if str(read) == text else text + WORD_JOINER


def text(key: str, value: str) -> Text:
    """Glue ``value`` (already worded) under ``key``, without showing it on the page."""
    value = Text(value)
    _glue(key, value, display=False)
    return value


def number(x: float, digits: int = 1) -> str:
    """A number for prose: integers with thousands separators, others rounded."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:,.{digits}f}"


def percent(x: float, digits: int = 1) -> str:
    """A share in [0, 1] as ``73.4 %``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.{digits}f} %"


def rate(k: int, n: int, digits: int = 1) -> str:
    """A rate with its count and Wilson interval, e.g. ``19/19 (100.0 %, 95 % CI 83.2-100.0)``;
    rates on fewer than :data:`FEW_CASES` cases say so."""
    if any(x is None or (isinstance(x, float) and math.isnan(x)) for x in (k, n)):
        return "n/a"  # a set this run did not score
    k, n = int(k), int(n)
    if n == 0:
        return "0/0 (no cases)"
    low, high = wilson(k, n)
    few = f"; only {n} cases" if n < FEW_CASES else ""
    return (f"{k:,}/{n:,} ({100 * k / n:.{digits}f} %, 95 % CI "
            f"{100 * low:.{digits}f}-{100 * high:.{digits}f}{few})")


def p_value(p: float) -> str:
    """``p = 0.46``, ``p = 0.004``, ``p < 0.001``: never a p-value printed as 0.00."""
    if p is None or math.isnan(p):
        return "p n/a"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def glue_all(values: dict[str, str]) -> None:
    """Glue each worded value of ``values`` under its key (a chapter's findings at once)."""
    for key, value in values.items():
        text(key, value)


def glue_percent(key: str, x: float, digits: int = 1) -> Text:
    return text(key, percent(x, digits))


def glue_number(key: str, x: float, digits: int = 1) -> Text:
    return text(key, number(x, digits))


def glue_rate(key: str, k: int, n: int, digits: int = 1) -> Text:
    return text(key, rate(k, n, digits))
