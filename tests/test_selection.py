import math

import pytest

from ttc_runtime.selection import aggregate_steps, best_of_n_naive, best_of_n_weighted, majority_vote, select_answer
from ttc_runtime.strategies.base import Candidate, select
from ttc_runtime.tasks import group_answers

STEPS = [0.9, 0.5, 0.8]


@pytest.mark.parametrize(
    ("how", "expected"), [("last", 0.8), ("min", 0.5), ("prod", 0.9 * 0.5 * 0.8), ("mean", 2.2 / 3)]
)
def test_aggregations_hand_computed(how, expected):
    assert math.isclose(aggregate_steps(STEPS, how), expected)


def test_aggregation_errors():
    with pytest.raises(ValueError, match="empty"):
        aggregate_steps([], "last")
    with pytest.raises(ValueError, match="unknown aggregation 'max'"):
        aggregate_steps([0.1], "max")


def test_majority_vote():
    assert majority_vote(["3", "4", "3", None, None, None]) == "3"
    assert majority_vote(["4", "3", "3", "4"]) == "4"  # tie: first seen
    assert majority_vote([None, None]) is None


def test_weighted_best_of_n_sums_scores_per_answer():
    answers = ["7", "9", "7", "9", "9"]
    scores = [0.9, 0.3, 0.8, 0.3, 0.3]
    # 7: 0.9 + 0.8 = 1.7; 9: 0.9 -> 7 wins although 9 is the majority.
    assert best_of_n_weighted(answers, scores) == "7"
    assert majority_vote(answers) == "9"


def test_weighted_best_of_n_can_beat_the_single_best_score():
    answers = ["1", "2", "2"]
    scores = [0.95, 0.5, 0.5]
    assert best_of_n_naive(answers, scores) == "1"
    assert best_of_n_weighted(answers, scores) == "2"  # 1.0 > 0.95


def test_candidates_without_answer_never_win():
    assert best_of_n_naive([None, "5"], [0.99, 0.01]) == "5"
    assert best_of_n_weighted([None, None], [0.5, 0.5]) is None


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="2 scores for 3 answers"):
        best_of_n_weighted(["1", "2", "3"], [0.1, 0.2])


HALVES = ["1", "0.5", "1", "\\frac12", "\\frac{1}{2}"]
HALF_SCORES = [0.9, 0.7, 0.9, 0.7, 0.7]


def test_equal_answers_written_differently_vote_together():
    """Three ways of writing 1/2 outvote two 1s, by count and by summed score (2.1 against 1.8);
    kept apart, each would lose to 1 (one vote, 0.7)."""
    assert majority_vote(HALVES) == "1" and best_of_n_weighted(HALVES, HALF_SCORES) == "1"
    merged = group_answers(HALVES)
    assert merged == ["1", "0.5", "1", "0.5", "0.5"]
    assert majority_vote(merged) == "0.5"
    assert best_of_n_weighted(merged, HALF_SCORES) == "0.5"
    assert best_of_n_naive(merged, HALF_SCORES) == "1"
    candidates = [Candidate("", (), score, answer, True) for answer, score in zip(HALVES, HALF_SCORES)]
    assert select(candidates, "majority") == select(candidates, "weighted") == "0.5"
    assert select(candidates, "naive") == "1"


def test_answers_equal_only_under_math_verify_vote_together():
    answers = ["1", "\\frac{\\sqrt{2}}{2}", "1", "\\frac{1}{\\sqrt{2}}", "\\sqrt{\\frac{1}{2}}"]
    candidates = [Candidate("", (), score, answer, True) for answer, score in zip(answers, HALF_SCORES)]
    assert select(candidates, "majority") == select(candidates, "weighted") == "\\frac{\\sqrt{2}}{2}"


def test_select_answer_dispatches_on_the_rule():
    answers, scores = ["2", "3", "3"], [0.9, 0.2, 0.2]
    assert select_answer("majority", answers, scores) == "3"
    assert select_answer("weighted", answers, scores) == "2"
    assert select_answer("naive", answers, scores) == "2"
