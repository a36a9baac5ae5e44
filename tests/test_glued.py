"""The book's number formats (``show.glued``): what a pasted value looks like."""

import math

from brainmri.report.show import glued


def test_rates_carry_their_count_and_interval_and_say_when_cases_are_few():
    assert glued.rate(19, 19) == "19/19 (100.0 %, 95 % CI 83.2-100.0; only 19 cases)"
    assert glued.rate(146, 200) == "146/200 (73.0 %, 95 % CI 66.5-78.7)"
    assert glued.rate(0, 0) == "0/0 (no cases)"


def test_p_values_never_read_as_zero():
    assert glued.p_value(0.0004) == "p < 0.001"
    assert glued.p_value(0.0042) == "p = 0.004"
    assert glued.p_value(0.4567) == "p = 0.46"
    assert glued.p_value(math.nan) == "p n/a"


def test_numbers_and_percentages():
    assert glued.number(2870.0) == "2,870" and glued.number(1.25, 2) == "1.25"
    assert glued.percent(0.734) == "73.4 %" and glued.percent(math.nan) == "n/a"
    assert repr(glued.Text("73.4 %")) == "73.4 %"  # pasted without quotes


def test_counts_with_a_thousands_separator_are_pasted_as_written():
    """myst-nb's {glue:text} reads the pasted text as a literal: ``2,539`` must not become
    the tuple ``(2, 539)``."""
    from myst_nb.core.variables import format_plain_text

    for value in ("2,539", "654 / 1,311", "73.4 %", "4", "0.95", "n/a", "0.70", "0.030", "1e-4"):
        assert format_plain_text(repr(glued.Text(value)), "s").strip(glued.WORD_JOINER) == value
    assert repr(glued.Text("73.4 %")) == "73.4 %"
