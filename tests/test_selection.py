import math

import pytest

from ttc_runtime.selection import aggregate_steps, best_of_n_naive, best_of_n_weighted, majority_vote

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
