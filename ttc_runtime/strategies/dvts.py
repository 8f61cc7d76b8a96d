"""Diverse verifier tree search (after search-and-learn), beyond the paper.

Budget N and width M give N/M independent subtrees. In the first round each subtree samples M first
steps (N in all); every later round each open subtree samples M next steps from its current
prefix. A subtree keeps only its best-scored child; it ends when that child has ended (end of
sequence or the token limit) or after ``max_rounds`` rounds. Best-of-N weighted then selects among
the N/M subtrees' solutions. Separate subtrees keep the candidates diverse where one beam would
collapse onto the verifier's favourite prefix. Empty steps rank last, scoring is fused when it
can be and a question needs ``2 x max_new_tokens - 1`` tokens of context after its prompt, as in
beam search; compute is charged per question by the rule of ``compute`` (the prompt once, though
every subtree starts from it; each sampled token once; no prefix again); ``generations`` is N.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..generation.base import Generator, sample_next_steps
from ..generation.sampling import derive_seed
from ..scoring import StepScorer
from .base import (
    Beam,
    SearchSettings,
    Strategy,
    StrategyResult,
    charge,
    continued,
    fused_verifier,
    score_texts,
    select,
)
from .beam import score_fused


class DiverseTreeSearch(Strategy):
    """DVTS with ``beam_width`` children per subtree and round."""

    name = "dvts"

    def __init__(self, beam_width: int, max_rounds: int = 40) -> None:
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
        self.beam_width = beam_width
        self.max_rounds = max_rounds

    def context_room(self, max_new_tokens: int) -> int:
        """A step of up to ``max_new_tokens`` after an open subtree of up to ``max_new_tokens - 1``."""
        return 2 * max_new_tokens - 1

    def run(
        self,
        questions: Sequence[str],
        generator: Generator,
        scorer: StepScorer | None,
        budget: int,
        settings: SearchSettings = SearchSettings(),
        seed: int | Sequence[int] = 0,
    ) -> list[StrategyResult]:
        seeds, ledgers, prompts = self._start(questions, scorer, budget, self.beam_width, settings, seed)
        width, limit = self.beam_width, settings.sampling.max_new_tokens
        trees = budget // width
        fused = fused_verifier(scorer, generator, settings)
        params = replace(settings.sampling, logprobs=fused is not None)
        best: dict[tuple[int, int], Beam] = {(q, t): Beam() for q in range(len(questions)) for t in range(trees)}
        open_trees = list(best)
        for round_ in range(self.max_rounds):
            if not open_trees:
                break
            output = sample_next_steps(
                generator,
                [prompts[q] + best[q, t].text for q, t in open_trees],
                params,
                [derive_seed(seeds[q], round_, t) for q, t in open_trees],
                width,
            )
            # A question's subtrees start from its one prompt: charged once, as N samples of it are.
            prefix_charged = [round_ > 0 or t > 0 for _, t in open_trees]
            fresh = continued(output.usages, generator.flop_params)
            usages = [f if again else u for u, f, again in zip(output.usages, fresh, prefix_charged)]
            charge(ledgers, [q for q, _ in open_trees], usages, "proposer")
            children = [
                best[key].extend(c, limit, fused) for key, row in zip(open_trees, output.completions) for c in row
            ]
            owners = [key[0] for key in open_trees for _ in range(width)]
            if fused is None:
                scores = score_texts(scorer, questions, [c.text for c in children], owners, ledgers)
                children = [replace(c, step_scores=s) for c, s in zip(children, scores)]
            else:
                children = score_fused(fused, list(zip(owners, children)), ledgers)
            still_open = []
            for j, key in enumerate(open_trees):
                mine = children[j * width : (j + 1) * width]
                chosen = max(mine, key=lambda beam: beam.rank)  # the first of equal ranks: sampling order
                best[key] = chosen
                if chosen.open:
                    still_open.append(key)
            open_trees = still_open
        results = []
        for q, ledger in enumerate(ledgers):
            candidates = [best[q, t].candidate(settings.aggregation) for t in range(trees)]
            results.append(StrategyResult(select(candidates, "weighted"), candidates, ledger.record(budget)))
        return results
