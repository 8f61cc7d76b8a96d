"""Parallel sampling: N full solutions per question, then one selection rule.

``majority`` needs no verifier; ``weighted`` (the paper's best-of-N weighted: answers grouped,
answer scores summed) and ``naive`` (the single best-scored candidate) score every solution with
the verifier in one batched call.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..generation.base import Generator
from ..scoring import StepScorer
from .base import (
    Beam,
    SearchSettings,
    Selection,
    Strategy,
    StrategyResult,
    sample,
    score_texts,
    select,
)


class BestOfN(Strategy):
    """N independent samples per question, selected by ``selection``."""

    def __init__(self, selection: Selection = "weighted") -> None:
        self.selection = selection
        self.name = "majority" if selection == "majority" else f"best_of_n_{selection}"
        self.needs_scorer = selection != "majority"

    def run(
        self,
        questions: Sequence[str],
        generator: Generator,
        scorer: StepScorer | None,
        budget: int,
        settings: SearchSettings = SearchSettings(),
        seed: int | Sequence[int] = 0,
    ) -> list[StrategyResult]:
        seeds, ledgers, prompts = self._start(questions, scorer, budget, None, settings, seed)
        owners = list(range(len(questions)))
        samples = sample(generator, prompts, owners, budget, settings.sampling, seeds, ledgers)
        limit = settings.sampling.max_new_tokens
        beams = [[Beam().extend(c, limit) for c in row] for row in samples]
        if self.needs_scorer:
            flat = [b for row in beams for b in row]
            scores = score_texts(
                scorer, questions, [b.text for b in flat], [q for q, row in enumerate(beams) for _ in row], ledgers
            )
            scored = iter(scores)
            beams = [[Beam(b.text, b.tokens, b.finish_reason, next(scored)) for b in row] for row in beams]
        results = []
        for row, ledger in zip(beams, ledgers):
            candidates = [b.candidate(settings.aggregation) for b in row]
            results.append(StrategyResult(select(candidates, self.selection), candidates, ledger.record(budget)))
        return results
