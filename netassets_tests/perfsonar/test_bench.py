"""The perfSONAR bench's protocol: cuts read validation only, the verdict reads test only."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.perfsonar_detect import SCORERS, both_ways
from netassets.perfsonar.evaluation import DETECTOR, SEED_DETECTOR
from netassets.perfsonar.model import DetectorSettings


def _part(seed: int, anomalous: int = 3) -> tuple[dict, set]:
    rng = np.random.default_rng(seed)
    hours = list(pd.date_range("2024-03-02", periods=24, freq="h"))
    truth = set(hours[:anomalous])
    values = {name: {h: float(rng.normal() + 3 * (h in truth)) for h in hours} for name in SCORERS}
    return values, truth


def test_cuts_are_chosen_on_validation_and_the_test_labels_change_only_the_verdict():
    validation, test = _part(0), _part(1)
    flipped = (test[0], set(sorted(test[0][DETECTOR])[-3:]))  # other test labels, same validation
    a, b = both_ways(validation, test, DetectorSettings(), "r"), both_ways(validation, flipped, DetectorSettings(), "r")
    assert a["validation"] == b["validation"]
    assert a["validation_cuts"].notes[1] == b["validation_cuts"].notes[1]  # the cuts line
    assert a["validation_cuts"].scores != b["validation_cuts"].scores
    assert a["validation_cuts"].model == DETECTOR and a["seed_classifier_validation_cuts"].model == SEED_DETECTOR
    assert SEED_DETECTOR not in a["validation_cuts"].scores  # judged against the baselines only
    assert a["a_priori_cuts"].notes[1].startswith(f"cuts: {DETECTOR} > 2,")
