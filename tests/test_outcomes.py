"""Outcomes of the pool's arms: the parallel strategies' outcome and compute, folds, and a
training pool beside the evaluation pool."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tests.conftest import BEAM, BON, outcomes
from ttc_runtime.evaluation.allocators import cross_validated
from ttc_runtime.outcomes import ArmOutcomes, Splits, StoredRuns, folds_of, parallel_outcome, with_training_pool
from ttc_runtime.pool import PoolMismatch
from ttc_runtime.strategies import Arm


def test_parallel_outcome_never_picks_a_sample_without_an_answer():
    """A stored sample without an answer reads back from Parquet as NaN, not None: it must still
    lose every vote, however many such samples there are and however well they score."""
    table = pa.table(
        {
            "question": [0, 0, 0],
            "answer": pa.array([None, None, "7"], pa.string()),
            "correct": [False, False, True],
            "score": [0.9, 0.9, 0.1],
            "generated_tokens": [10, 10, 10],
            "prompt_tokens": [5, 5, 5],
            "verifier_flops": [7, 7, 7],
        }
    )
    for how in ("majority", "weighted", "naive"):
        correct, _ = parallel_outcome(table.to_pandas(), how, 3, 4, seed=0, params=100)
        assert correct.tolist() == [1.0], how


def test_parallel_outcome_merges_equal_answers_once_per_question(monkeypatch):
    """Three ways of writing 1/sqrt(2) (equal only under math-verify) outvote two 1s; the merge
    runs once per question, not in each of the resamples."""
    from ttc_runtime import outcomes as module

    merge, calls = module.group_answers, []

    def counted(answers):
        calls.append(len(answers))
        return merge(answers)

    monkeypatch.setattr(module, "group_answers", counted)
    frame = pd.DataFrame(
        {
            "question": [0] * 5,
            "answer": ["1", "\\frac{\\sqrt{2}}{2}", "1", "\\frac{1}{\\sqrt{2}}", "\\sqrt{\\frac{1}{2}}"],
            "correct": [False, True, False, True, True],
            "score": [0.9, 0.7, 0.9, 0.7, 0.7],
            "generated_tokens": [10] * 5,
            "prompt_tokens": [5] * 5,
            "verifier_flops": [7] * 5,
        }
    )
    for how in ("majority", "weighted"):
        calls.clear()
        correct, _ = parallel_outcome(frame, how, 5, 8, seed=0, params=100)
        assert correct.tolist() == [1.0] and len(calls) == 1, how


def test_folds_are_balanced_and_seeded():
    folds = folds_of(11, 2, seed=3)
    assert sorted(np.bincount(folds).tolist()) == [5, 6]
    assert folds.tolist() == folds_of(11, 2, seed=3).tolist()


def test_a_training_pool_fits_the_allocator_and_the_evaluation_pool_only_tests_it():
    # Evaluation questions q0-q3, right only under beam; the training pool holds q2 again (left
    # out of training) and two new questions, right only under beam too, in the one bin.
    evaluation = outcomes([[0, 1]] * 4, [[1, 1]] * 4)
    training = ArmOutcomes(
        evaluation.arms,
        np.ones(3, dtype=int),
        ["q2", "t0", "t1"],
        np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]),
        np.full((3, 2), 4.0),
        np.ones((3, 2)),
    )
    evaluation = replace(evaluation, stored={1: StoredRuns(*[np.arange(8.0).reshape(4, 2)] * 3)})
    training = replace(training, stored={1: StoredRuns(*[np.arange(10.0, 16.0).reshape(3, 2)] * 3)})
    table, kept = with_training_pool(evaluation, training)
    assert kept.tolist() == [1, 2]
    # The stored runs follow their rows: the evaluation's, then the kept training rows'.
    assert table.stored[1].flops.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7], [12, 13], [14, 15]]
    assert table.questions == ["q0", "q1", "q2", "q3", "t0", "t1"]
    assert table.correct[4:].tolist() == [[0.0, 1.0], [0.0, 1.0]]
    splits = Splits.training_pool(4, 2, "validation")
    assert splits.fit_rows.tolist() == [4, 5] and "2 validation questions" in splits.description
    result = cross_validated("trained", table, np.ones(6, dtype=int), 4, splits)
    assert result.correct.tolist() == [1, 1, 1, 1]
    other = ArmOutcomes(
        [Arm(BON, 4), Arm(BEAM, 16)],
        *[getattr(training, f) for f in ("levels", "questions")],
        training.correct,
        training.generations,
        training.flops,
    )
    with pytest.raises(PoolMismatch, match="arms"):
        with_training_pool(evaluation, other)
    with pytest.raises(ValueError, match="nothing to train on"):
        with_training_pool(evaluation, evaluation)


def test_parallel_outcome_charges_the_prompt_once_and_majority_no_verifier():
    frame = pd.DataFrame(
        {
            "question": [0, 0, 0],
            "answer": ["1", "2", "2"],
            "correct": [True, False, False],
            "score": [0.6, 0.4, 0.5],
            "generated_tokens": [10, 20, 30],
            "prompt_tokens": [5, 5, 5],
            "verifier_flops": [7, 7, 7],
        }
    )
    correct, flops = parallel_outcome(frame, "weighted", 3, 4, seed=0, params=100)
    assert correct.tolist() == [0.0] and flops.tolist() == [2 * 100 * (5 + 60) + 21]
    correct, flops = parallel_outcome(frame, "naive", 3, 4, seed=0, params=100)
    assert correct.tolist() == [1.0]
    correct, flops = parallel_outcome(frame, "majority", 3, 4, seed=0, params=100)
    assert correct.tolist() == [0.0] and flops.tolist() == [2 * 100 * 65]
