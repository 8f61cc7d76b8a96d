"""The allocators' evaluation: the efficiency ratio, cross-validated fits, and every baseline on
a real pool."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import outcomes
from ttc_runtime.evaluation.allocators import (
    BaselinesConfig,
    cross_validated,
    efficiency_ratio,
    evaluate_allocators,
    format_report,
)
from ttc_runtime.outcomes import Splits
from ttc_runtime.pool import RolloutPool


def test_efficiency_ratio_interpolates_in_log_compute_and_marks_bounds():
    compute, accuracy = [1.0, 4.0, 16.0], [0.5, 0.7, 0.8]
    assert efficiency_ratio(compute, accuracy, 0.7, 2.0) == (2.0, "=")
    ratio, bound = efficiency_ratio(compute, accuracy, 0.75, 4.0)
    assert bound == "=" and ratio == pytest.approx(8.0 / 4.0)
    assert efficiency_ratio(compute, accuracy, 0.9, 4.0) == (4.0, ">")
    assert efficiency_ratio(compute, accuracy, 0.4, 0.5) == (2.0, "<")


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
    text = format_report(report)
    assert "efficiency (FLOPs)" in text and "arm per bin" in text
