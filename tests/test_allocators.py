"""The baseline allocators: fixed, by difficulty bin, the feature table by level, and the oracles."""

from __future__ import annotations

import numpy as np
import pytest
from ttc_runtime.policies.allocators import (
    BinAllocator,
    FeatureTable,
    FixedAllocator,
    PerQuestionOracle,
    PricedFeatureTable,
    PricedOracle,
)

from tests.conftest import BEAM, BON, outcomes
from ttc_runtime.outcomes import ArmOutcomes
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


ONE, FOUR, BEAM_FOUR = Arm(BON, 1), Arm(BON, 4), Arm(BEAM, 4)


def priced_table() -> ArmOutcomes:
    """Four questions (levels 1, 1, 2, 2) over best-of-1, best-of-4 and beam search at 4, compute
    equal to the budget in both units (scale 4). Question 0 is solved by every arm; question 1 gains
    0.4 from best-of-4 (worth it while lam < 0.4 / 0.75); questions 2 and 3 gain 0.8 and 0.2 from
    beam search (lam < 1.0667 and < 0.2667)."""
    correct = np.array([[1.0, 1.0, 1.0], [0.5, 0.9, 0.6], [0.0, 0.2, 0.8], [0.2, 0.2, 0.4]])
    spend = np.array([[1.0, 4.0, 4.0]] * 4)
    return ArmOutcomes(
        arms=[ONE, FOUR, BEAM_FOUR],
        levels=np.array([1, 1, 2, 2]),
        questions=["q0", "q1", "q2", "q3"],
        correct=correct,
        generations=spend,
        flops=spend.copy(),
    )


def test_priced_oracle_trades_expected_correctness_against_compute_per_question():
    table = priced_table()
    questions = table.questions
    assert PricedOracle(table, 0.0, "generations", 4.0).choose(questions) == [ONE, FOUR, BEAM_FOUR, BEAM_FOUR]
    assert PricedOracle(table, 0.3, "generations", 4.0).choose(questions) == [ONE, FOUR, BEAM_FOUR, ONE]
    assert PricedOracle(table, 0.6, "flops", 4.0).choose(questions) == [ONE, ONE, BEAM_FOUR, ONE]
    assert PricedOracle(table, 2.0, "generations", 4.0).choose(questions) == [ONE] * 4
    with pytest.raises(KeyError, match="q9"):
        PricedOracle(table, 0.0, "generations", 4.0).choose(["q9"])


def test_feature_table_picks_per_level_at_each_budget_and_priced():
    table = priced_table()
    fixed = FeatureTable.fit_levels("level", table, np.arange(4))
    # Level 1: best-of-4 0.95 against beam 0.8; level 2: beam 0.6 against best-of-4 0.2.
    assert fixed.choose(["q0", "q1", "q2", "q3"], 4) == [FOUR, FOUR, BEAM_FOUR, BEAM_FOUR]
    assert fixed.choose(["q3"], 1) == [ONE]
    # Priced, level 1 gains 0.2 from best-of-4 (lam < 0.2667), level 2 0.5 from beam (lam < 0.6667).
    assert PricedFeatureTable.fit("t", table, np.arange(4), 0.1, "generations", 4.0).table == {1: FOUR, 2: BEAM_FOUR}
    assert PricedFeatureTable.fit("t", table, np.arange(4), 0.5, "generations", 4.0).table == {1: ONE, 2: BEAM_FOUR}
    assert PricedFeatureTable.fit("t", table, np.arange(4), 1.0, "flops", 4.0).table == {1: ONE, 2: ONE}
    # Fitted on level 2's question 3 alone (beam gains 0.2: lam < 0.2667); level 1, unseen, uses it too.
    only = PricedFeatureTable.fit("t", table, np.array([3]), 0.1, "generations", 4.0)
    assert only.choose(["q0", "q2"]) == [BEAM_FOUR, BEAM_FOUR]
    with pytest.raises(KeyError, match="q9"):
        only.choose(["q9"])
