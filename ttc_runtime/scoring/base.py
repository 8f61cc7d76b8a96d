"""The step-scorer protocol: what strategies call to score (question, solution steps) pairs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..compute import Usage


@dataclass(frozen=True)
class ScoreOutput:
    """One list of step scores (probabilities in [0, 1]) per scored pair, and the verifier's cost."""

    step_scores: list[list[float]]
    usage: Usage


@runtime_checkable
class StepScorer(Protocol):
    """Scores every step of many solutions in as few forward passes as the batch size allows.

    ``score(questions, solutions)`` takes the raw questions and, for each, the solution's steps
    (without separators); it returns one score per step. Prompt formatting is the scorer's own.
    """

    flop_params: int

    def score(self, questions: Sequence[str], solutions: Sequence[Sequence[str]]) -> ScoreOutput: ...
