"""Outcomes of the pool's arms: the parallel strategies' outcome and compute, the chained ones'
draws of stored chains, folds, and a training pool beside the evaluation pool."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tests.conftest import BEAM, BON, SCORES, Proposer, Reviser, outcomes
from ttc_runtime.evaluation.allocators import cross_validated
from ttc_runtime.outcomes import (
    ArmOutcomes,
    Splits,
    StoredRuns,
    chained_outcome,
    folds_of,
    parallel_outcome,
    select_drawn,
    with_training_pool,
)
from ttc_runtime.pool import PoolMismatch
from ttc_runtime.selection import select_answer
from ttc_runtime.strategies import Arm, SearchSettings, SequentialRevisions, StrategyConfig


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


REVISIONS = StrategyConfig(name="revisions", chain_length=2)


def _chains(rows: list[tuple[int, int, list[tuple[str, float]], int]]) -> pd.DataFrame:
    """Stored chain rows: (question, run, the chain's (answer, score) attempts, FLOPs)."""
    return pd.DataFrame(
        {
            "question": [q for q, _, _, _ in rows],
            "run": [r for _, r, _, _ in rows],
            "candidates": [[{"text": "", "answer": a, "score": s} for a, s in chain] for _, _, chain, _ in rows],
            "flops": [f for _, _, _, f in rows],
        }
    )


def test_a_chained_arm_is_every_draw_of_its_stored_chains():
    # Question 0: three chains whose best attempts answer 7 (0.9), 5 (0.8) and nothing (0.95, an
    # attempt without an answer, which loses every vote). At N = 4 (two chains of two), weighted
    # selection across chains: {7, 5} -> 7 (0.9 > 0.8), {7, -} -> 7, {5, -} -> 5 (right). Each
    # draw reads the prompt (10 tokens) once, not twice.
    chains = _chains(
        [
            (0, 0, [("7", 0.9), ("5", 0.1)], 1000),
            (0, 1, [("3", 0.2), ("5", 0.8)], 2000),
            (0, 2, [("5", 0.7), (None, 0.95)], 4000),
        ]
    )
    params = 3
    at4 = chained_outcome(chains, 3, Arm(REVISIONS, 4), ["5"], np.array([10]), params, resamples=10, seed=0)
    assert at4.correct.tolist() == [[0.0, 0.0, 1.0]]
    prompt = 2 * params * 10
    assert at4.flops.tolist() == [[3000 - prompt, 5000 - prompt, 6000 - prompt]]
    assert at4.generations.tolist() == [[4, 4, 4]]
    # At N = L, each chain alone: the draws are the stored chains.
    at2 = chained_outcome(chains, 3, Arm(REVISIONS, 2), ["5"], np.array([10]), params, resamples=10, seed=0)
    assert at2.correct.tolist() == [[0.0, 1.0, 0.0]] and at2.flops.tolist() == [[1000, 2000, 4000]]
    # More subsets than resamples: that many seeded draws, each of two distinct chains.
    drawn = chained_outcome(chains, 3, Arm(REVISIONS, 4), ["5"], np.array([10]), params, resamples=2, seed=0)
    assert drawn.correct.shape == (1, 2)
    assert set(drawn.flops[0].tolist()) <= {3000 - prompt, 5000 - prompt, 6000 - prompt}
    with pytest.raises(ValueError, match="draws 4 chains and the pool holds 3"):
        chained_outcome(chains, 3, Arm(REVISIONS, 8), ["5"], np.array([10]), params, resamples=10, seed=0)
    with pytest.raises(ValueError, match="fewer than 4 chains"):
        chained_outcome(chains, 4, Arm(REVISIONS, 4), ["5"], np.array([10]), params, resamples=10, seed=0)


def test_a_draw_of_stored_chains_costs_what_a_run_of_the_same_chains_costs():
    # The scripted proposer answers "a" whatever the seed, so two runs of one chain (N = 2) make
    # the same attempts as the two chains of one run at N = 4: the draw of both is charged exactly
    # the run's FLOPs, the prompt once, and picks its answer.
    settings = SearchSettings(reviser=Reviser())
    (live,) = SequentialRevisions(2).run(["Q"], Proposer("aa"), SCORES, 4, settings, [0])
    singles = [SequentialRevisions(2).run(["Q"], Proposer("aa"), SCORES, 2, settings, [s])[0] for s in (1, 2)]
    chains = pd.DataFrame(
        {
            "question": [0, 0],
            "run": [0, 1],
            "candidates": [
                [{"text": c.text, "answer": c.answer, "score": c.score} for c in r.candidates] for r in singles
            ],
            "flops": [r.compute.flops for r in singles],
        }
    )
    drawn = chained_outcome(chains, 2, Arm(REVISIONS, 4), [live.answer], np.array([1]), Proposer.flop_params, 10, 0)
    assert drawn.flops.tolist() == [[live.compute.flops]]
    assert drawn.correct.tolist() == [[1.0]] and drawn.generations.tolist() == [[live.compute.generations]]


def test_selection_over_many_draws_at_once_follows_the_selection_rules():
    # Scores from a few values and answers from a few groups, so sums and maxima tie often: the
    # group drawn first among the tied wins, as select_answer decides one draw at a time.
    rng = np.random.default_rng(0)
    for how in ("majority", "weighted", "naive"):
        for count in (0, 1, 3, 5):
            groups = rng.integers(-1, count, size=(300, 6))
            scores = rng.choice([0.1, 0.25, 0.5, 0.7], size=(300, 6))
            picked = select_drawn(how, groups, scores, count)
            for draw in range(300):
                answers = [None if g < 0 else str(g) for g in groups[draw]]
                expected = select_answer(how, answers, scores[draw].tolist())
                assert picked[draw] == (-1 if expected is None else int(expected)), (how, count, draw)
