"""The book's tables (``show.frames``): every rate with its count, few cases marked."""

import pandas as pd

from brainmri.report.show import frames, glued


def test_rate_cells_carry_count_and_interval_and_mark_few_cases():
    cells = frames.rate_column([19, 146, 0], [19, 200, 0])
    assert cells == ["19/19 (83-100)*", "146/200 (66-79)", ""]
    assert glued.FEW_CASES == 50 and frames.rate_column([49], [49])[0].endswith("*")
    assert not frames.rate_column([50], [50])[0].endswith("*")


def test_a_table_with_a_marked_rate_explains_the_mark_in_its_caption():
    frame = pd.DataFrame({"model": ["a", "b"], "spec": frames.rate_column([19, 300],
                                                                         [19, 400])})
    marked = frames.table(frame, {"model": "model", "spec": "specificity"},
                          caption="Home test")
    assert marked.caption == "Home test; * fewer than 50 cases: read with care"
    plain = frames.table(frame.iloc[1:], {"model": "model", "spec": "specificity"},
                         caption="Home test")
    assert plain.caption == "Home test"
