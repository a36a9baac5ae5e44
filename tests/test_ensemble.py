"""Seed ensembles from saved predictions (``evaluation.ensemble``)."""

import numpy as np
import pandas as pd
import pytest

from brainmri import CLASS_NAMES, PROB_COLUMNS
from brainmri.core.runfolder import RunFolder
from brainmri.evaluation import benchmark, ensemble
from synthetic import saved_predictions

FOUR = list(CLASS_NAMES) * 3


def _members(root, answers_by_seed):
    for seed, answers in answers_by_seed.items():
        for split in ("val", "test"):
            saved_predictions(root, f"compact_cnn+r-seed{seed}", "nickparvar", split, FOUR,
                              answers, seed=seed, confidence=0.7)


def test_the_ensemble_averages_probabilities_and_votes_by_them(tmp_path):
    wrong = FOUR[1:] + FOUR[:1]  # every answer shifted: all wrong
    _members(tmp_path, {1: FOUR, 2: FOUR, 3: wrong})
    run = RunFolder(tmp_path)
    members = [f"compact_cnn+r-seed{s}" for s in (1, 2, 3)]
    assert ensemble.save(run, members, "nickparvar", "compact_cnn+r-ensemble") == ["test", "val"]
    frame = pd.read_csv(run.predictions("compact_cnn+r-ensemble-nickparvar", "test"))
    assert (frame["prediction"] == frame["label"]).all()  # two right members outvote one
    assert np.allclose(frame[PROB_COLUMNS].sum(axis=1), 1.0)
    assert np.allclose(frame.loc[0, "p_glioma"], (0.7 + 0.7 + 0.1) / 3)
    assert set(frame["seed"]) == {-1}
    row = benchmark.benchmark(run, target_sensitivity=0.9, n_bootstrap=20, seed=0,
                              ece_bins=5, models=["compact_cnn+r-ensemble"])
    assert row.set_index("eval_set").loc["test", "accuracy"] == 1.0


def test_members_must_have_predicted_the_same_images():
    a = pd.DataFrame({"path": ["x", "y"], "split": "test", **{c: [0.25, 0.25]
                                                               for c in PROB_COLUMNS}})
    with pytest.raises(ValueError, match="at least two"):
        ensemble.average([a], "m")
    with pytest.raises(ValueError, match="different images"):
        ensemble.average([a, a.iloc[::-1].reset_index(drop=True)], "m")


def test_disagreement_is_zero_for_agreeing_members_and_grows_with_dissent(tmp_path):
    wrong = FOUR[1:] + FOUR[:1]
    _members(tmp_path, {1: FOUR, 2: FOUR, 3: wrong})
    run = RunFolder(tmp_path)
    frames = {s: pd.read_csv(run.predictions(f"compact_cnn+r-seed{s}-nickparvar", "test"))
              for s in (1, 2, 3)}
    assert np.allclose(ensemble.disagreement([frames[1], frames[2]]), 0.0)
    split = ensemble.disagreement([frames[1], frames[2], frames[3]])
    # two members at 0.7 on one class, one at 0.7 on another: a variance on both classes
    one_class = np.var([0.7, 0.7, 0.1])
    assert split.min() > 0 and np.isclose(split[0], 2 * one_class + 2 * np.var([0.1] * 3),
                                          atol=1e-9)
    with pytest.raises(ValueError, match="different images"):
        ensemble.disagreement([frames[1], frames[2].iloc[::-1]])
