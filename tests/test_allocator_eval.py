"""The allocators' evaluation: frontiers and the efficiency at matched accuracy with its paired
bootstrap, the priced frontiers, cross-validated fits, and every baseline on a real pool."""

from __future__ import annotations

import numpy as np
import pytest
from ttc_runtime.policies.allocators import PricedOracle

from tests.conftest import outcomes
from tests.test_allocators import BEAM_FOUR, FOUR, ONE, priced_table
from ttc_runtime.evaluation.allocator_tables import format_report, report_to_json
from ttc_runtime.evaluation.allocators import (
    FEATURE_ADAPTIVE,
    ORACLE_FRONTIER,
    BaselinesConfig,
    cross_validated,
    evaluate_allocators,
    feature_table_frontier,
    lambda_sweep,
    oracle_frontier,
)
from ttc_runtime.evaluation.efficiency import compute_to_reach, efficiency_ratio, frontier, paired_efficiency
from ttc_runtime.outcomes import PerQuestion, Splits
from ttc_runtime.pool import RolloutPool


def test_compute_to_reach_follows_the_frontier_in_log_compute_and_says_out_of_range():
    # (2, 0.4) is below the frontier: a cheaper point is more accurate.
    xs, ys = frontier([1.0, 4.0, 2.0, 16.0], [0.5, 0.7, 0.4, 0.8])
    assert (xs, ys) == ([1.0, 4.0, 16.0], [0.5, 0.7, 0.8])
    assert compute_to_reach(xs, ys, 0.7) == 4.0
    assert compute_to_reach(xs, ys, 0.5) == 1.0
    assert compute_to_reach(xs, ys, 0.6) == pytest.approx(2.0)
    assert compute_to_reach(xs, ys, 0.75) == pytest.approx(8.0)
    assert compute_to_reach(xs, ys, 0.81) is None and compute_to_reach(xs, ys, 0.45) is None
    # Best-of-N reaches 0.7 at 4; the allocator halfway between (0.5, 0.6) and (2, 0.8), at 1.
    curve = ([1.0, 4.0, 16.0], [0.5, 0.7, 0.8])
    assert efficiency_ratio(*curve, [0.5, 2.0], [0.6, 0.8], 0.7) == pytest.approx(4.0)
    assert efficiency_ratio(*curve, [0.5, 2.0], [0.6, 0.8], 0.55) is None  # below its cheapest point
    assert efficiency_ratio(*curve, [0.5, 2.0], [0.6, 0.8], 0.85) is None  # beyond both


def _curve(correct: np.ndarray) -> list[PerQuestion]:
    """Best-of-N at N = 1, 2, 4, ... (columns of ``correct``), FLOPs 10 per generation."""
    count = len(correct)
    return [
        PerQuestion("best-of-N", 2**k, correct[:, k], np.full(count, 2.0**k), np.full(count, 10 * 2.0**k))
        for k in range(correct.shape[1])
    ]


def _point(name: str, correct, compute) -> PerQuestion:
    compute = np.asarray(compute, dtype=float)
    return PerQuestion(name, 0, np.asarray(correct, dtype=float), compute, 10 * compute)


def test_paired_bootstrap_on_identical_questions_gives_the_exact_ratio_and_oracle_share():
    # Every question alike, so every resample is the sample: best-of-N reaches 0.5 ... 0.9 at
    # N = 1 ... 16. The allocator runs from (1, 0.65) to (4, 0.75): best-of-N's 0.7 at N = 4 takes
    # it 2 (halfway in log compute), a ratio of 2 and a saving of 1/2; the oracle gets there at 1,
    # a saving of 3/4, so the allocator's is 2/3 of it. Best-of-N's 0.6 (N = 2) is below the
    # allocator's cheapest point and 0.8, 0.9 (N = 8, 16) above its best: out of range.
    count = 6
    curve = _curve(np.tile([0.5, 0.6, 0.7, 0.8, 0.9], (count, 1)))
    frontiers = {
        "allocator": [
            _point("allocator", [0.65] * count, [1] * count),
            _point("allocator", [0.75] * count, [4] * count),
        ],
        "oracle": [_point("oracle", [0.7] * count, [1] * count), _point("oracle", [0.9] * count, [2] * count)],
    }
    found = paired_efficiency(curve, frontiers, "oracle", resamples=50, seed=1)
    by = {(e.allocator, e.unit, e.n): e for e in found}
    assert sorted({e.n for e in found}) == [2, 4, 8, 16]
    for unit in ("generations", "flops"):
        at4 = by["allocator", unit, 4]
        assert at4.target == pytest.approx(0.7)
        for interval, expected in ((at4.ratio, 2.0), (at4.saving, 0.5), (at4.oracle_share, 2 / 3)):
            assert interval.value == pytest.approx(expected)
            assert interval.median == pytest.approx(expected)
            assert (interval.low, interval.high) == (pytest.approx(expected), pytest.approx(expected))
            assert interval.out_of_range == 0 and interval.resamples == 50
        for n in (2, 8, 16):
            ratio = by["allocator", unit, n].ratio
            assert ratio.value is None and ratio.median is None and ratio.out_of_range == 50
        assert by["oracle", unit, 16].ratio.value == pytest.approx(8.0)  # 0.9 at 2 against 16


def test_paired_bootstrap_on_varied_questions_keeps_a_known_ratio_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    count = 40
    # Per question, correctness strictly rising with N = 1 ... 16, so every resample's curve rises.
    correct = np.sort(rng.uniform(0, 1, size=(count, 5)), axis=1) + np.linspace(0, 1e-3, 5)
    curve = _curve(correct)
    # The same questions' outcomes at half best-of-N's compute up to N = 8: a ratio of exactly 2
    # wherever best-of-N's accuracy is matched, and nothing as accurate as N = 16.
    halved = [PerQuestion("halved", r.budget, r.correct, r.generations / 2, r.flops / 2) for r in curve[:4]]
    # Best-of-1's outcomes at 1 generation and best-of-8's at a per-question spend of mean 4: its
    # ratio at N = 4 varies with the questions drawn.
    spend = rng.uniform(1, 7, size=count)
    varied = [_point("varied", correct[:, 0], np.ones(count)), _point("varied", correct[:, 3], spend)]
    found = paired_efficiency(curve, {"halved": halved, "varied": varied}, None, resamples=200, seed=3)
    by = {(e.allocator, e.unit, e.n): e for e in found}
    for unit in ("generations", "flops"):
        for n in (2, 4, 8):
            ratio = by["halved", unit, n].ratio
            assert ratio.value == pytest.approx(2.0) and ratio.median == pytest.approx(2.0)
            assert ratio.low <= 2.0 + 1e-9 and ratio.high >= 2.0 - 1e-9 and ratio.out_of_range == 0
            assert by["halved", unit, n].oracle_share.value is None  # no oracle given
        assert by["halved", unit, 16].ratio.value is None and by["halved", unit, 16].ratio.out_of_range == 200
    ratio = by["varied", "generations", 4].ratio
    assert ratio.out_of_range == 0 and ratio.low < ratio.value < ratio.high
    assert ratio.low < ratio.median < ratio.high
    saving = by["varied", "generations", 4].saving
    assert saving.median == pytest.approx(1 - 1 / ratio.median, abs=1e-6)


def test_lambda_sweep_spans_six_decades_from_zero():
    lambdas = lambda_sweep()
    assert lambdas[0] == 0.0 and len(lambdas) == 26
    assert lambdas[1] == pytest.approx(1e-3) and lambdas[-1] == pytest.approx(1e3)
    assert lambdas[5] == pytest.approx(1e-2)


def test_oracle_frontier_on_a_hand_made_table():
    # See priced_table: thresholds 0.2667 (question 3), 0.5333 (question 1), 1.0667 (question 2).
    table = priced_table()
    points = oracle_frontier(table, lambda_sweep())
    assert [p.allocator for p in points] == [ORACLE_FRONTIER] * 4
    assert [p.budget for p in points] == [1, 2, 3, 4]
    assert [p.correct.mean() for p in points] == pytest.approx([1.7 / 4, 2.5 / 4, 2.9 / 4, 3.1 / 4])
    assert [p.generations.mean() for p in points] == pytest.approx([1.0, 1.75, 2.5, 3.25])
    assert points[2].generations.tolist() == [1.0, 4.0, 4.0, 1.0]  # lam in (0.2667, 0.5333)
    assert PricedOracle(table, 0.3, "generations", 4.0).choose(table.questions) == [ONE, FOUR, BEAM_FOUR, ONE]


def test_feature_table_frontier_on_a_hand_made_table():
    # Level 1 takes best-of-4 while lam < 0.2667, level 2 beam search while lam < 0.6667.
    table = priced_table()
    everything = Splits([(np.arange(4), np.arange(4))], 4, np.arange(4), "fitted on all")
    points = feature_table_frontier(table, everything, lambda_sweep(), {"generations": 4.0, "flops": 4.0})
    assert [p.allocator for p in points] == [FEATURE_ADAPTIVE] * 3
    assert [p.correct.mean() for p in points] == pytest.approx([1.7 / 4, 2.7 / 4, 3.1 / 4])
    assert [p.generations.mean() for p in points] == pytest.approx([1.0, 2.5, 4.0])
    # Cross-validated, level 2's questions are answered from each other: question 2 alone prefers
    # beam search up to lam = 1.0667, question 3 alone up to 0.2667.
    crossed = Splits([(np.array([0, 1, 3]), np.array([2])), (np.array([0, 1, 2]), np.array([0, 1, 3]))], 4, None, "")
    held = feature_table_frontier(table, crossed, [0.5], {"generations": 4.0, "flops": 4.0})
    assert held[0].generations.tolist() == [1.0, 1.0, 1.0, 4.0]


def test_cross_validation_answers_each_fold_with_the_other_folds_fit():
    # One bin. Fold 0 questions are right only under beam, fold 1 only under best-of-N: fitted on
    # the other fold, every question gets the wrong arm, where fitting on itself would be perfect.
    table = outcomes([[0, 1], [1, 0], [0, 1], [1, 0]], [[1, 1]] * 4)
    folds = np.array([0, 1, 0, 1])
    splits = Splits([(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in (0, 1)], 4, np.arange(4), "")
    result = cross_validated("cv", table, np.ones(4, dtype=int), 4, splits)
    assert result.correct.tolist() == [0, 0, 0, 0]
    balanced = Splits.folds(11, 2, seed=3)
    answered = np.sort(np.concatenate([held for _, held in balanced.parts]))
    assert answered.tolist() == list(range(11))
    assert all(not set(train) & set(held) for train, held in balanced.parts)


def test_evaluation_of_every_baseline_on_a_real_pool(full_pool):
    report = evaluate_allocators(RolloutPool(full_pool), BaselinesConfig(bins=2, bootstrap=20))
    names = {p.allocator for p in report.points}
    assert {"best_of_n_weighted", "beam_search(M=2)", "revisions(L=2)", "per-question oracle"} <= names
    assert "compute-optimal (predicted bins), estimation charged" in names
    by = {(p.allocator, p.budget, p.view): p for p in report.points}
    for budget in (2, 4):
        oracle = by["per-question oracle", budget, 0].accuracy
        assert all(p.accuracy <= oracle + 1e-9 for p in report.points if p.budget == budget and p.view == 0)
        plain = by["compute-optimal (oracle bins)", budget, 0]
        paid = by["compute-optimal (oracle bins), estimation charged", budget, 0]
        assert paid.accuracy == plain.accuracy and paid.flops > plain.flops
        assert paid.generations == plain.generations + 8
    assert [c.n for c in report.curve] == [1, 2, 4, 8]
    assert all(c.low <= c.accuracy <= c.high for c in report.curve)
    assert {FEATURE_ADAPTIVE, ORACLE_FRONTIER} == set(report.adaptive)
    assert {"best_of_n_weighted", "feature table (level), fixed budget"} <= names
    ceiling = max(p.accuracy for p in report.points if p.allocator == ORACLE_FRONTIER and p.view == 0)
    assert ceiling >= max(p.accuracy for p in report.points if p.view == 0 and p.allocator != ORACLE_FRONTIER) - 1e-9
    efficiency = {(e.allocator, e.unit, e.n): e for e in report.efficiency}
    assert {n for _, _, n in efficiency} == {2, 4, 8}
    oracle = efficiency[ORACLE_FRONTIER, "generations", 4]
    assert oracle.oracle_share.value in (None, pytest.approx(1.0))
    assert oracle.ratio.resamples == 20
    # Every other fixed-budget allocator against compute-optimal by oracle and by predicted bins,
    # paired: the feature table's difference is its accuracy minus the bins' at that budget.
    against = {(d.allocator, d.reference, d.budget): d.difference.value for d in report.bin_differences}
    for bins in ("compute-optimal (oracle bins)", "compute-optimal (predicted bins)"):
        table_name = "feature table (level), fixed budget"
        assert against[table_name, bins, 4] == pytest.approx(by[table_name, 4, 0].accuracy - by[bins, 4, 0].accuracy)
        assert not any(name.startswith(("compute-optimal", "per-question")) for name, ref, _ in against if ref == bins)
    text = format_report(report)
    assert "efficiency (FLOPs)" in text and "arm per bin" in text and "arm per level" in text
    assert "**Fixed budget against compute-optimal (predicted bins)**" in text
    record = report_to_json(report)
    assert {"efficiency", "adaptive", "fixed", "lambda_sweep"} <= set(record)
    assert record["lambda_sweep"]["scales"]["generations"] == 4.0


def test_outcome_model_is_cross_validated_at_every_budget_and_over_the_price_sweep():
    from ttc_runtime.trainers.allocator import AllocatorTrainConfig

    from tests.conftest import learnable, table
    from ttc_runtime.evaluation.allocators import cross_validated_outcomes

    # Beam search is right where x > 0 and revisions elsewhere, at both budgets: fitted on 32
    # questions, the model answers most of the other 32 right at every budget, and its frontier
    # starts at the cheapest arms (budget 4), as right as budget 16. The network: one feature of
    # four decides, and distances over all four (the neighbours') blur it.
    features, correct = learnable(64)
    outcomes = table(correct)
    splits = Splits.folds(64, 2, seed=0)
    fixed, adaptive = cross_validated_outcomes(
        ("fixed", "adaptive"),
        features,
        np.zeros(64),
        outcomes,
        splits,
        AllocatorTrainConfig(outcome_model="network"),
        lambda_sweep(),
        {"generations": 16.0, "flops": 1.0},
    )
    assert [r.budget for r in fixed] == [4, 16] and all(r.correct.mean() >= 0.8 for r in fixed)
    assert all(r.allocator == "fixed" for r in fixed)
    assert {r.allocator for r in adaptive} == {"adaptive"}
    assert adaptive[0].generations.mean() == 4 and adaptive[0].correct.mean() == max(r.correct.mean() for r in fixed)


def test_fixed_budget_differences_are_paired_over_the_same_questions():
    from ttc_runtime.evaluation.efficiency import paired_differences

    # The allocator is right exactly where the reference is, plus one more question in ten: the
    # difference is +0.1 on all questions, and a paired resample can only move it as far as that
    # one question's draws do (never below 0), where unpaired intervals of two accuracies near 0.5
    # would overlap widely.
    reference_correct = np.array([1.0, 0.0] * 10)
    mine_correct = reference_correct.copy()
    mine_correct[[1, 11]] = 1.0
    reference = PerQuestion("best fixed", 4, reference_correct, np.full(20, 4.0), np.ones(20))
    mine = PerQuestion("learned", 4, mine_correct, np.full(20, 4.0), np.ones(20))
    other_budget = PerQuestion("learned", 16, mine_correct, np.full(20, 16.0), np.ones(20))
    (difference,) = paired_differences([reference, mine, other_budget], {4: reference}, 400, seed=0)
    assert (difference.allocator, difference.budget, difference.reference) == ("learned", 4, "best fixed")
    assert difference.difference.value == pytest.approx(0.1)
    assert 0.0 <= difference.difference.low <= 0.1 <= difference.difference.high <= 0.25
    assert difference.difference.resamples == 400 and difference.difference.out_of_range == 0


def test_fewer_training_questions_keep_an_equal_share_per_level_and_the_answered_rows():
    # 10 answered rows, then a training pool of 30 rows on 3 levels (10 each): cut to 7, the
    # training rows hold 3 / 2 / 2 per level (the remainder to the first level), all from the pool.
    levels = np.concatenate([np.ones(10, dtype=int), np.repeat([1, 2, 3], 10)])
    splits = Splits.training_pool(10, 30, "validation")
    fewer = splits.fewer(7, levels, seed=0)
    ((train, held),) = fewer.parts
    assert held.tolist() == list(range(10)) and np.array_equal(fewer.fit_rows, train)
    assert len(set(train.tolist())) == 7 and train.min() >= 10
    assert np.bincount(levels[train], minlength=4).tolist() == [0, 3, 2, 2]
    assert np.array_equal(splits.fewer(7, levels, seed=0).fit_rows, train)
    assert not np.array_equal(splits.fewer(7, levels, seed=1).fit_rows, train)
    assert splits.fewer(30, levels, seed=0).parts[0][0].tolist() == splits.parts[0][0].tolist()
