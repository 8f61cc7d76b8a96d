"""The FLOPs-matched comparison: the exchange rule and the per-bin comparison on hand-made data."""

import numpy as np
import pandas as pd
import pytest

from ttc_runtime.evaluation.counterpart import CounterpartConfig, compare, format_matched, multiplier


def test_the_exchange_rule_matches_the_paper():
    # a 14x model: R = 0.16 buys about 258 generations, R = 22 about 16, R = 0.79 about 63
    assert multiplier(14, 0.16) == pytest.approx(14 + 3 * 13 / 0.16)
    assert multiplier(14, 0.16) == pytest.approx(257.75)
    assert multiplier(14, 22) == pytest.approx(15.7727, abs=1e-4)
    assert multiplier(14, 0.79) == pytest.approx(63.367, abs=1e-3)
    assert multiplier(1, 0.5) == 1  # the same model: one generation
    with pytest.raises(ValueError, match="scale >= 1"):
        multiplier(0.5, 1)
    with pytest.raises(ValueError):
        CounterpartConfig(ratios=[0.0])


def samples(correct: list[list[bool]]) -> pd.DataFrame:
    rows = []
    for q, flags in enumerate(correct):
        for s, right in enumerate(flags):
            rows.append(
                {
                    "question": q,
                    "sample": s,
                    "answer": "7" if right else f"wrong{s}",
                    "correct": right,
                    "score": 0.9 if right else 0.1,
                    "generated_tokens": 10,
                    "verifier_flops": 5,
                    "prompt_tokens": 4,
                }
            )
    return pd.DataFrame(rows)


def test_compare_puts_both_sides_side_by_side_per_bin():
    frame = samples([[True, False, False, False], [False] * 4, [True] * 4])
    config = CounterpartConfig(ratios=[0.16, 22.0], resamples=20)
    large = np.array([0.0, 1.0, 0.5])
    rows = compare(frame, 100, large, np.array([1, 2, 1]), 2.0, config)
    wide, narrow = rows
    assert (wide.generations, wide.capped) == (4, True)  # X = 2 + 3 / 0.16 = 20.75 > K = 4
    assert (narrow.generations, narrow.capped) == (2, False)  # X = 2 + 3 / 22 = 2.14
    # with all 4 samples, the verifier finds question 0's one right answer; question 1 has none
    assert wide.small_by_bin == {1: 1.0, 2: 0.0} and wide.large_by_bin == {1: 0.25, 2: 1.0}
    assert wide.small == pytest.approx(2 / 3) and wide.large == pytest.approx(0.5)
    assert wide.proposer_pass_by_bin == {1: 0.625, 2: 0.0} and wide.proposer_pass == pytest.approx(1.25 / 3)
    # with 2 of 4 samples, question 0's right answer is drawn half the time
    assert 0.5 < narrow.small_by_bin[1] < 1.0
    text = format_matched(rows, 2.0, 200, 100)
    assert "| 0.16 | 20.8 | 4 (capped at K) |" in text
    assert "R = 0.16: test-time compute ahead on bins [1], the larger model ahead on bins [2]" in text
    assert "| proposer, pass@1 (reference) | 0.417 | 0.625 | 0.000 |" in text
    assert "Per sample, the larger model is ahead of the proposer on bins [2] and behind on bins [1]." in text
