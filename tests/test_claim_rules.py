"""The book's claim rules (issue 28), checked on what the quick run wrote and showed.

Rule 1: an external row leaves out every image with a copy in *that model's* training
data, whatever its recipe added. Rule 2: every rate a chapter shows carries its count.
The other two rules (degenerate models, one seed gives no claim) are unit-tested in
test_headlines.py and test_levers.py, and the quick run's tables are read here too.
"""

import re
from html.parser import HTMLParser

import nbformat
import pandas as pd
import pytest


def _copies(run, collection: str, evaluated: str) -> set[str]:
    """``evaluated``'s test images with a copy in what a model trained on ``collection``
    saw, read from the duplicate audit's own CSV files (not through the benchmark)."""
    if collection == evaluated:
        path, column = run.test_with_copy(evaluated), "test_path"
    else:
        path, column = run.overlap(collection, evaluated), f"{evaluated}_path"
    assert path.exists(), f"the audit list {path.name} is missing"
    return set(pd.read_csv(path)[column])


@pytest.mark.slow
def test_external_rows_leave_out_every_copy_of_the_models_own_training_data(quick_run):
    from brainmri.core.runfolder import RunFolder, model_tag
    from brainmri.evaluation.predictions import DETECTION_SPLIT

    run = RunFolder.at(quick_run["run_dir"])
    metrics = pd.read_csv(run.metrics)
    external = metrics[metrics["eval_set"] == "external"]
    assert len(external), "the quick run scored no model on the other collection"
    added = 0
    for row in external.itertuples():
        frame = pd.read_csv(run.predictions(model_tag(row.model, row.dataset), "external"))
        other = frame["eval_dataset"].iloc[0]
        trained_on = row.trained_on.split("+")
        assert row.dataset in trained_on and other != row.dataset
        seen = set().union(*(_copies(run, c, other) for c in trained_on))
        kept = frame[~frame["path"].isin(seen)]
        assert row.n == len(kept), row.model
        assert row.excluded_copies == len(frame) - len(kept), row.model
        added += other in trained_on
    # the rule's hard case: a recipe that adds the evaluated collection's training images
    assert added, "no external row of a recipe that adds the other collection"

    br35h = metrics[metrics["eval_set"] == "external_br35h"]
    in_training = set(pd.read_csv(run.external_exclusions("br35h"))["path"])
    for row in br35h.itertuples():
        frame = pd.read_csv(run.predictions(model_tag(row.model, row.dataset), DETECTION_SPLIT))
        tumours = frame[frame["label"] == "tumour"]
        assert row.n == (~tumours["path"].isin(in_training)).sum(), row.model


class _Tables(HTMLParser):
    """The project's tables (``class="brainmri-table"``) of an HTML output: header row
    and body rows as text."""

    def __init__(self):
        super().__init__()
        self.tables, self._row, self._cell, self._inside = [], None, None, False

    def handle_starttag(self, tag, attrs):
        if tag == "table" and "brainmri-table" in (dict(attrs).get("class") or ""):
            self._inside = True
            self.tables.append([])
        elif self._inside and tag == "tr":
            self._row = []
        elif self._inside and tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._inside = False
        elif self._inside and tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif self._inside and tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


#: Headers of a rate over cases (a count of images right or found)...
RATE = re.compile(r"accuracy|\bacc\.|sensitivity|specificity|recall|tumours found", re.I)
#: ...unless the column is a statistic over models or seeds, not over images.
OVER_MODELS = re.compile(r"lowest|highest|range|width|change|mean|gap|points", re.I)
#: A cell that carries its count: ``19/19 (83-100)*``.
WITH_COUNT = re.compile(r"^\d[\d,]*/\d[\d,]*\b")
#: Headers of a column giving the cases a row's rates rest on.
COUNT_HEADER = re.compile(r"\bimages\b|\bcases\b|^n$|count", re.I)


def _rate_columns_without_counts(rows: list[list[str]]) -> list[str]:
    header, body = rows[0], rows[1:]
    if any(COUNT_HEADER.search(h) and not RATE.search(h) for h in header):
        return []  # the row's count is in its own column
    bad = []
    for i, name in enumerate(header):
        if not RATE.search(name) or OVER_MODELS.search(name):
            continue
        cells = [r[i] for r in body if i < len(r) and r[i]]
        if any("±" in c for c in cells):
            continue  # a mean ± SD over seeds: a statistic over models, not over images
        if any(not WITH_COUNT.match(c) for c in cells):
            bad.append(name)
    return bad


@pytest.mark.slow
@pytest.mark.parametrize("step", ["08c_shortcut_ablation", "09_benchmark"])
def test_every_rate_a_chapter_tables_carries_its_count(quick_run, step):
    tables = _html_tables(quick_run["run_dir"], step)
    assert tables, f"{step} shows no table"
    bad = [name for rows in tables for name in _rate_columns_without_counts(rows)]
    assert not bad, f"{step}: rate columns without their counts: {bad}"


def test_the_rule_reader_flags_a_bare_rate_and_accepts_counts():
    bare = [["Recipe", "Validation acc., %"], ["baseline", "81.2"]]
    counted = [["Recipe", "Validation accuracy (95 % CI, %)"], ["baseline", "13/16 (57-93)*"]]
    own_column = [["Model", "Images", "Accuracy %"], ["cnn", "394", "81.2"]]
    spread = [["Recipe", "Lowest, %", "Highest, %"], ["crop", "31.0", "44.0"]]
    over_seeds = [["Lever", "Br35H tumours found, %"], ["gin", "41.2 ± 3.1"]]
    assert _rate_columns_without_counts(bare) == ["Validation acc., %"]
    assert _rate_columns_without_counts(counted) == []
    assert _rate_columns_without_counts(own_column) == []
    assert _rate_columns_without_counts(spread) == []
    assert _rate_columns_without_counts(over_seeds) == []


def _html_tables(run_dir, step: str) -> list[list[list[str]]]:
    """Every project table a chapter's executed notebook shows, as rows of cell texts."""
    nb = nbformat.read(run_dir / "notebooks" / f"{step}.ipynb", 4)
    tables = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            html = output.get("data", {}).get("text/html")
            if html:
                parser = _Tables()
                parser.feed(html if isinstance(html, str) else "".join(html))
                tables += parser.tables
    return tables


@pytest.mark.slow
def test_constant_models_are_flagged_and_left_out_of_the_ranges(quick_run):
    from brainmri.core.runfolder import RunFolder
    from brainmri.report.studies import summary
    from test_smoke import _glued

    run = RunFolder.at(quick_run["run_dir"])
    metrics = pd.read_csv(run.metrics)
    rows = metrics[metrics["eval_set"] == "test"]
    assert len(rows)
    constant = set()
    for row in rows.itertuples():
        # the rule, read from the model's own validation answers
        answers = pd.read_csv(run.predictions(row.tag, "val"))["prediction"]
        assert bool(row.degenerate) == (answers.nunique() == 1), row.tag
        if row.degenerate:
            constant.add(summary.label(row.model))
    words = _glued(quick_run["run_dir"], "09_benchmark")
    for name in constant:
        assert name in words["degenerate_models"]
        assert f"({name}," not in words["br35h_range"]  # ranges name "(model, collection)"


#: An effect cell of the levers' table: ``+3.1 (noise; range 8.2)``.
EFFECT_CELL = re.compile(r"^([+-]\d+\.\d) \(([^;]+); range (nan|\d+\.\d)\)$")


@pytest.mark.slow
def test_a_lever_claim_needs_two_seeds_and_an_effect_beyond_their_range(quick_run):
    from brainmri.core.runfolder import RunFolder
    from brainmri.report.studies import levers

    run = RunFolder.at(quick_run["run_dir"])
    trained = pd.read_csv(run.levers)
    seeds = trained[trained["seed"] != levers.ENSEMBLE].groupby("lever")["seed"].nunique()
    effects = [t for t in _html_tables(quick_run["run_dir"], "08c_shortcut_ablation")
               if t[0][:2] == ["Lever", "Against"]]
    assert len(effects) == 1, "chapter 08c shows no table of lever effects"
    verdicts = 0
    for lever, against, *cells in effects[0][1:]:
        for cell in cells:
            found = EFFECT_CELL.match(cell)
            if not found:  # a reading the run did not measure
                continue
            change, verdict, spread = found.groups()
            verdicts += 1
            if min(seeds.get(lever, 0), seeds.get(against, 0)) < 2:
                assert verdict == "one seed: no claim", (lever, cell)
            elif verdict in ("helps", "hurts"):
                assert abs(float(change)) > float(spread), (lever, cell)
            else:
                assert verdict == "noise" and abs(float(change)) <= float(spread), (lever, cell)
    assert verdicts


@pytest.mark.slow
def test_a_recipe_trained_once_gives_no_claim_in_the_ablation(quick_run):
    from brainmri.core.runfolder import RunFolder
    from brainmri.report.studies.findings import NO_SPREAD

    run = RunFolder.at(quick_run["run_dir"])
    seeds = pd.read_csv(run.ablation).groupby("recipe")["seed"].nunique()
    tables = [t for t in _html_tables(quick_run["run_dir"], "08c_shortcut_ablation")
              if t[0][:3] == ["Recipe", "Against", "Change, points"]]
    assert len(tables) == 1, "chapter 08c shows no table of recipe effects"
    header, *rows = tables[0]
    assert rows
    column = {name: i for i, name in enumerate(header)}
    for row in rows:
        recipe, against = row[column["Recipe"]], row[column["Against"]]
        reading = row[column["Reading"]]
        if min(seeds[recipe], seeds[against]) < 2:
            assert reading == NO_SPREAD, (recipe, reading)
        else:
            change = abs(float(row[column["Change, points"]]))
            spread = float(row[column["Wider seed range, points"]])
            assert reading.startswith("beyond" if change > spread else "within"), row
