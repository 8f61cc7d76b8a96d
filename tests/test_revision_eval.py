"""The revision evaluation: one revision against its controls by level, and the sweep of
parallel against sequential."""

import numpy as np
import pytest

from tests.conftest import SCORES, Proposer, Reviser
from ttc_runtime.compute import Usage
from ttc_runtime.evaluation.revisions import (
    OneRevisionLevel,
    RevisionEvalConfig,
    best_lengths,
    format_length_gains,
    format_positions,
    length_gains,
    one_revision,
    revision_ratios,
)
from ttc_runtime.generation.base import Completion, GenerationOutput, SamplingParams
from ttc_runtime.strategies import SearchSettings
from ttc_runtime.tasks import Problem, Task


class Problems(Task):
    """A task over hand-made problems."""

    name = "hand-made"

    def __init__(self, problems):
        self.listed = problems

    def problems(self, split):
        return self.listed


def test_one_revision_figures_by_level():
    problems = [Problem("p1", "Q1", "1", 1), Problem("p2", "Q2", "b", 2)]
    config = RevisionEvalConfig(attempts_per_problem=2, cases_per_problem=4)
    settings = SearchSettings(reviser=Reviser())
    first, second = one_revision(Proposer("ab"), Reviser(), SCORES, Problems(problems), problems, settings, config)
    # Q1: attempts a, b both wrong; each revised to "1", right. Q2: a wrong, b right; both revised to "1", wrong.
    # Controls: a fresh proposer sample answers "a" (wrong for both); the reviser with no attempt
    # answers "0" (wrong); no level has a second problem, so there is no other-problem attempt.
    assert first == OneRevisionLevel(1, 1, 0.0, 1, 0.0, 2, 1.0, 0.0, 0.0, 0.0, None, 0, None, None, None)
    assert second == OneRevisionLevel(2, 1, 0.5, 1, 0.5, 1, 0.0, 0.0, 0.0, 0.0, None, 1, 1.0, 1.0, None)


class WrongByQuestion(Proposer):
    """Every sample of question Qi answers "a" for even i, "b" for odd i, which is never right."""

    def generate(self, prompts, n=1, params=SamplingParams(), seed=0):
        rows = [[Completion(f"p\n\n\\boxed{{{'ab'[int(p.strip()[1:]) % 2]}}}", 3, "eos")] * n for p in prompts]
        return GenerationOutput(rows, [Usage.inference(self.flop_params, 1, 3 * n)] * len(prompts))


def test_the_one_revision_controls_swap_in_another_problems_attempt_of_the_same_level():
    problems = [Problem("p1", "Q1", "1", 3), Problem("p2", "Q2", "0", 3), Problem("p3", "Q3", "1", 4)]
    config = RevisionEvalConfig(attempts_per_problem=1, cases_per_problem=1)
    reviser = Reviser()
    settings = SearchSettings(reviser=reviser)
    three, four = one_revision(WrongByQuestion(), reviser, SCORES, Problems(problems), problems, settings, config)
    # The reviser answers the number of attempts it sees: "1" with an attempt (right for Q1 and
    # Q3), "0" without (right for Q2 only); a fresh proposer sample is always wrong.
    assert (three.incorrect_revised, three.revised_correct, three.fresh_sample_correct) == (2, 0.5, 0.0)
    assert (three.without_attempt_correct, three.other_attempt_correct) == (0.5, 0.5)
    assert (four.revised_correct, four.without_attempt_correct, four.other_attempt_correct) == (1.0, 0.0, None)
    one_attempt = [p for p in reviser.prompts if p.count("<attempt>") == 1]
    assert sorted((p.strip()[-2:], p[p.index("boxed{") + 6]) for p in one_attempt) == [
        ("Q1", "a"),  # Q2's attempt, the other problem of level 3
        ("Q1", "b"),  # its own attempt
        ("Q2", "a"),
        ("Q2", "b"),
        ("Q3", "b"),  # level 4 has no other problem: its own attempt only
    ]


def test_the_parallel_sequential_sweep_resamples_chains_and_shares_compute():
    problems = [Problem("p1", "Q1", "2", 3)]
    config = RevisionEvalConfig(budgets=[4, 2], resamples=3, bootstrap=10)
    assert config.budgets == [2, 4] and config.lengths() == [1, 2, 4]
    settings = SearchSettings(reviser=Reviser())
    sweep = revision_ratios(Proposer("abab"), SCORES, Problems(problems), problems, settings, config)
    points = sweep.points
    at = {(p.strategy, p.budget): p for p in points if p.level == 3}
    assert set(at) == {
        (f"revisions(L={length}{how})", n) for how in ("", ",majority") for n in (2, 4) for length in (1, 2, 4)
    } - {("revisions(L=4)", 2), ("revisions(L=4,majority)", 2)}
    # Only the one chain of four reaches the answer 2 (attempts a, 1, 2, 3); shorter ones stop at 1.
    assert {key: p.accuracy for key, p in at.items() if p.accuracy} == {
        ("revisions(L=4)", 4): 1.0,
        ("revisions(L=4,majority)", 4): 1.0,
    }
    for length in (1, 2):
        assert at[f"revisions(L={length})", 2].flops == at[f"revisions(L={length})", 4].flops / 2
    assert best_lengths(points)[3] == {2: [1, 2], 4: [4]}
    # The chain of four writes a, 1, 2, 3: only its third attempt is right.
    assert sweep.positions == {3: [0.0, 0.0, 1.0, 0.0], 0: [0.0, 0.0, 1.0, 0.0]}
    assert format_positions(sweep.positions).splitlines()[2:] == [
        "| 3 | 0.000 | 0.000 | 1.000 | 0.000 |",
        "| all | 0.000 | 0.000 | 1.000 | 0.000 |",
    ]
    # One question: the chain of four is the best length on its level and over all levels.
    (gain,) = [g for g in sweep.gains if g.budget == 4]
    assert (gain.best, gain.reference, gain.accuracy, gain.over_reference.value, gain.over_parallel.value) == (
        4,
        4,
        1.0,
        0.0,
        1.0,
    )
    with pytest.raises(ValueError, match="budget 6 is not a power of 2"):
        RevisionEvalConfig(budgets=[6])


def test_each_levels_best_chain_length_is_paired_against_the_best_over_all_levels():
    # Level 1 (four questions) is solved by parallel chains, level 2 (four) by chains of two and of
    # four alike; over all eight, L = 4 is best (0.75 against 0.5 and 0.5), so level 1 gains over it
    # and level 2, where L = 2 ties it, keeps it: a tie goes to the reference.
    levels = [1, 1, 1, 1, 2, 2, 2, 2]
    rates = {
        (1, 4): np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=float),
        (2, 4): np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=float),
        (4, 4): np.array([1, 1, 0, 0, 1, 1, 1, 1], dtype=float),
    }
    first, second = length_gains(rates, levels, resamples=200, seed=0)
    assert (first.level, first.best, first.reference, first.accuracy, first.reference_accuracy) == (1, 1, 4, 1.0, 0.5)
    assert first.over_reference.value == pytest.approx(0.5) and first.over_parallel.value == 0.0
    # Every resample of level 1's questions keeps 1.0 for L = 1 and between 0 and 1 for L = 4.
    assert 0.0 <= first.over_reference.low <= 0.5 <= first.over_reference.high <= 1.0
    assert (second.level, second.best, second.reference, second.accuracy) == (2, 4, 4, 1.0)
    assert second.over_reference.value == 0.0 and second.over_reference.low == second.over_reference.high == 0.0
    assert second.over_parallel.value == pytest.approx(1.0)
    assert format_length_gains([first, second]).splitlines()[2] == (
        f"| 4 | 1 | 1 | 1.000 | 4 | 0.500 | +0.500 [{first.over_reference.low:+.3f}, "
        f"{first.over_reference.high:+.3f}] | +0.000 [+0.000, +0.000] |"
    )
