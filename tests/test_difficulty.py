"""Difficulty from the pool's samples and its quantile bins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ttc_runtime.evaluation.difficulty import difficulty, quantile_bins


def test_quantile_bins_easiest_first_and_ties_share_a_bin():
    assert quantile_bins(np.array([0.9, 0.1, 0.5, 0.7, 0.3]), 5).tolist() == [1, 5, 3, 2, 4]
    tied = quantile_bins(np.array([1.0, 1.0, 1.0, 1.0, 0.0]), 5)
    assert len(set(tied[:4].tolist())) == 1 and tied[4] == 5
    with pytest.raises(ValueError, match="no questions"):
        quantile_bins(np.array([]), 5)


def test_difficulty_from_samples_and_its_cost():
    frame = pd.DataFrame(
        {
            "question": [0, 0, 1, 1],
            "sample": [0, 1, 0, 1],
            "correct": [True, True, False, True],
            "last_score": [0.9, 0.7, 0.2, 0.4],
            "prompt_tokens": [5, 5, 7, 7],
            "generated_tokens": [10, 20, 30, 40],
            "verifier_flops": [100, 100, 200, 200],
        }
    )
    d = difficulty(frame, proposer_params=1000, bins=2)
    assert d.pass_at_1.tolist() == [1.0, 0.5]
    assert d.mean_last_score.tolist() == pytest.approx([0.8, 0.3])
    assert d.oracle_bins.tolist() == [1, 2] and d.predicted_bins.tolist() == [1, 2]
    assert d.oracle_flops.tolist() == [2 * 1000 * 35, 2 * 1000 * 77]
    assert d.predicted_flops.tolist() == [2 * 1000 * 35 + 200, 2 * 1000 * 77 + 400]
