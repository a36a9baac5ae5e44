"""The mark of checks on the committed reference run that wait for its regeneration.

results/reference/ was run at 1f6de38, before the book pages were reworked (issue 27: no
training logs, chapter 10's maps as JPEG) and before the prose took its numbers from glue
(issue 29). Its executed notebooks lack the glue keys the book's pages now paste, so its
book cannot build, and its metrics lack the columns README.md's generated blocks read.
Issue 32 regenerates the run and removes this mark; until then these checks must fail
(strict), so that the mark cannot outlive its reason.
"""

import pytest

STALE_REFERENCE = pytest.mark.xfail(
    strict=True,
    reason="results/reference predates issues 27 and 29 (no glue keys, PNG maps, logs); "
           "issue 32 regenerates it and removes this mark")
