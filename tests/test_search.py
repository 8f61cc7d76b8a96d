"""Accuracy against budget: resampled parallel strategies, search runs, intervals, table and plot."""

import pytest

from ttc_runtime.compute import Usage
from ttc_runtime.evaluation.search import SearchEvalConfig, evaluate_budgets, format_budget_table, plot_budgets
from ttc_runtime.generation.base import Completion, GenerationOutput, SamplingParams
from ttc_runtime.scoring import ScoreOutput
from ttc_runtime.strategies import SearchSettings, StrategyConfig
from ttc_runtime.tasks import Problem, Task


class Fixed(Task):
    """Two problems whose gold answer is 1."""

    name = "fixed"

    def problems(self, split):
        return [Problem(f"p{i}", f"question {i}", "1", level) for i, level in enumerate((2, 3))]


class FourAnswers:
    """Every prompt's samples answer 1, 1, 2, 3 in turn (3 tokens each), whatever the seed."""

    flop_params = 2

    def generate(self, prompts, n=1, params=SamplingParams(), seed=0):
        rows = [[Completion(f"x\n\n\\boxed{{{'1123'[j % 4]}}}", 3, "eos") for j in range(n)] for _ in prompts]
        return GenerationOutput(rows, [Usage.inference(self.flop_params, 1, 3 * n)] * len(prompts))


class ThreeIsBest:
    flop_params = 1

    def score(self, questions, solutions):
        values = {"1": 0.2, "2": 0.1, "3": 0.9}
        return ScoreOutput([[0.5, values[s[-1][7]]] for s in solutions], [Usage.inference(1, 2)] * len(solutions))


def test_budget_curve_on_a_known_pool(tmp_path):
    config = SearchEvalConfig(
        problems_per_level=1,
        levels=[2, 3],
        max_budget=4,
        budget_factor=2,
        pool=4,
        resamples=400,
        bootstrap=50,
        strategies=[
            StrategyConfig(name="majority"),
            StrategyConfig(name="best_of_n_weighted"),
            StrategyConfig(name="beam_search", beam_width=4),
        ],
    )
    assert config.budgets() == [1, 2, 4]
    problems = Fixed().problems("test")
    points, skipped = evaluate_budgets(FourAnswers(), ThreeIsBest(), Fixed(), problems, SearchSettings(), config)
    at = {(p.strategy, p.budget, p.level): p for p in points}
    # N = 4 takes the whole pool: majority picks 1 (right); weighted picks 3 (0.9 against 0.4).
    assert at["majority", 4, 0].accuracy == 1.0 and at["best_of_n_weighted", 4, 0].accuracy == 0.0
    # N = 1 is one random sample: right half the time in expectation.
    assert at["majority", 1, 2].accuracy == pytest.approx(0.5, abs=0.1)
    assert at["majority", 1, 0].questions == 2 and at["majority", 1, 3].questions == 1
    for p in points:
        assert p.low <= p.accuracy <= p.high
    # Cost: 3 tokens per sample; FLOPs of the proposer (2 x 2 x tokens: the 1-token prompt once, as
    # for N fresh samples, and the N samples' own tokens) plus the verifier's for weighted.
    assert at["majority", 2, 0].generated_tokens == 6
    assert at["majority", 2, 0].flops == 2 * 2 * 1 + 2 * 2 * 12 * 2 / 4
    assert at["majority", 1, 0].flops == 2 * 2 * (1 + 3)
    assert at["best_of_n_weighted", 2, 0].flops == at["majority", 2, 0].flops + 2 * 1 * 2 * 2
    # Beam search runs: 4 full samples in the first round, weighted selection picks 3.
    assert at["beam_search(M=4)", 4, 0].accuracy == 0.0 and at["beam_search(M=4)", 4, 0].generated_tokens == 12
    assert skipped == {
        "beam_search(M=4)@1": "beam width 4 is larger than the budget 1",
        "beam_search(M=4)@2": "beam width 4 is larger than the budget 2",
    }
    table = format_budget_table(points)
    assert "| majority | 0." in table and "**Accuracy, level 3**" in table and "| beam_search(M=4) | - | - |" in table
    plot_budgets(points, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_budget_settings_are_errors():
    with pytest.raises(ValueError, match=r"pool \(8\) must be at least max_budget \(16\)"):
        SearchEvalConfig(pool=8, max_budget=16)
    with pytest.raises(ValueError, match="listed twice"):
        SearchEvalConfig(strategies=[StrategyConfig(name="majority"), StrategyConfig(name="majority")])
