"""Outcome scoring: one score per solution, the verifier's verdict on the finished solution only."""

from __future__ import annotations

from collections.abc import Sequence

from .base import ScoreOutput, StepScorer


class OutcomeScorer:
    """Wraps a ``StepScorer`` and keeps only each solution's last step score.

    Over a PRM this is the paper's default answer score ("last"); over an outcome reward model (a
    scorer trained with a label on the final step only) it is that model's verdict. Every
    aggregation of the single score returns it, so strategies need no special case. Causal scorers
    see the whole solution at its last step, so the cost is that of the full forward pass.
    """

    def __init__(self, scorer: StepScorer) -> None:
        self.scorer = scorer
        self.flop_params = scorer.flop_params

    def score(self, questions: Sequence[str], solutions: Sequence[Sequence[str]]) -> ScoreOutput:
        out = self.scorer.score(questions, solutions)
        return ScoreOutput([scores[-1:] for scores in out.step_scores], out.usages)
