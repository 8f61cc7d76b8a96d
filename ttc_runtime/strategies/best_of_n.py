"""Parallel sampling: N full solutions per question, then one selection rule.

``majority`` needs no verifier; ``weighted`` (the paper's best-of-N weighted: answers grouped,
answer scores summed) and ``naive`` (the single best-scored candidate) score every step of every
solution. When the verifier is a margin PRM over the proposer's own model (``scoring.margin.fuse``,
``SearchSettings.fused_scoring``), the solutions are sampled with their log-probabilities and each
step's score is read from them, so the verifier costs its head alone per scored step, as in search;
otherwise the verifier reads every solution in one batched call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..generation.base import Generator
from ..scoring import StepScorer
from .base import (
    Beam,
    SearchSettings,
    Selection,
    Strategy,
    StrategyResult,
    fused_verifier,
    sample,
    score_samples,
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
        fused = fused_verifier(scorer, generator, settings) if self.needs_scorer else None
        params = replace(settings.sampling, logprobs=fused is not None)
        samples = sample(generator, prompts, owners, budget, params, seeds, ledgers)
        limit = settings.sampling.max_new_tokens
        beams = [[Beam().extend(c, limit) for c in row] for row in samples]
        if self.needs_scorer:
            flat = [c for row in samples for c in row]
            sample_owners = [q for q, row in enumerate(samples) for _ in row]
            scored = iter(score_samples(scorer, fused, questions, flat, sample_owners, ledgers))
            beams = [[replace(b, step_scores=next(scored)) for b in row] for row in beams]
        results = []
        for row, ledger in zip(beams, ledgers):
            candidates = [b.candidate(settings.aggregation) for b in row]
            results.append(StrategyResult(select(candidates, self.selection), candidates, ledger.record(budget)))
        return results
