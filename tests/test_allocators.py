"""The baseline allocators: fixed, by difficulty bin, and the per-question oracle."""

from __future__ import annotations

import numpy as np
import pytest
from ttc_runtime.policies.allocators import BinAllocator, FixedAllocator, PerQuestionOracle

from tests.conftest import BEAM, BON, outcomes
from ttc_runtime.strategies import Arm


def test_bin_allocator_picks_the_best_arm_per_bin_and_cheaper_on_ties():
    table = outcomes([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1]], [[10, 5]] * 5)
    bins = np.array([1, 1, 2, 2, 1])
    fitted = BinAllocator.fit("by bin", table, bins, np.arange(5))
    assert fitted.choose(["q0", "q2"], 4) == [Arm(BON, 4), Arm(BEAM, 4)]
    tie = BinAllocator.fit("by bin", table, bins, np.array([4]))
    assert tie.choose(["q4"], 4) == [Arm(BEAM, 4)]
    with pytest.raises(KeyError, match="q9"):
        fitted.choose(["q9"], 4)
    with pytest.raises(ValueError, match="budget 16"):
        BinAllocator.fit("by bin", table, bins, np.arange(5)).choose(["q0"], 16)


def test_per_question_oracle_and_fixed():
    table = outcomes([[1, 1], [0, 1], [0, 0]], [[10, 5], [1, 5], [3, 2]])
    oracle = PerQuestionOracle(table)
    assert oracle.choose(["q0", "q1", "q2"], 4) == [Arm(BEAM, 4), Arm(BEAM, 4), Arm(BEAM, 4)]
    assert FixedAllocator(BON).choose(["x", "y"], 16) == [Arm(BON, 16)] * 2
