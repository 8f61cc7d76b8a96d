"""Sequential revisions: a budget of N generations as N/L parallel chains of L attempts each.

A chain starts with one proposer sample for the question (the ``generator`` of ``run``, as in
best-of-N); each later attempt is sampled from the revision model (``settings.reviser``) with the
question and the chain's earlier attempts in context, the last ``settings.revision_prompt
.max_attempts`` (the paper's 4) of them, oldest first. L = 1 is best-of-N over proposer samples;
L = N is one chain of N attempts. Starting from the proposer keeps the revision model on the
distribution it was trained to revise (its training attempts are proposer samples).

**Selection.** The verifier scores every attempt as a solution of the question alone (earlier
attempts are not shown to it); the best-scored attempt of a chain is that chain's pick, the first
on ties; across chains, best-of-N weighted (the picks' scores summed per answer) or a majority
vote of the picks (``select_chains``). The verifier is the run's step scorer, its step scores
aggregated as for the other strategies (the last step's by default): the revision model writes
solutions in the proposer's format, and the revision evaluation measures how well the verifier
ranks them (``revision_eval``), so no second verifier is trained.

**Context.** A revision prompt the revision model cannot take with ``max_new_tokens`` of room
(``PromptTooLong``) loses its oldest attempts, one at a time, until it fits; a prompt that does
not fit with no attempt at all is an error naming the question. Prompts are never cut inside.

**Compute.** Every attempt is one generation, so the record's ``generations`` is N exactly. The
revision model's tokens and FLOPs are charged as proposer spend (it is a generator of the
proposer's size), the scoring of all N attempts as verifier spend.

``StrategyResult.candidates`` holds all N attempts chain by chain: chain ``c`` is
``candidates[c * L : (c + 1) * L]``, in the order written.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..generation.base import Completion, Generator, PromptTooLong
from ..generation.sampling import derive_seed
from ..scoring import StepScorer
from .base import (
    Beam,
    Candidate,
    Ledger,
    SearchSettings,
    Strategy,
    StrategyResult,
    sample,
    score_texts,
    select,
)


def select_chains(candidates: Sequence[Candidate], length: int, how: str) -> str | None:
    """The answer among chains of ``length`` attempts (laid out chain by chain): each chain's
    best-scored attempt, then ``how`` ("weighted" or "majority") across those picks."""
    if length < 1 or len(candidates) % length:
        raise ValueError(f"{len(candidates)} candidates do not split into chains of length {length}")
    picks = []
    for start in range(0, len(candidates), length):
        chain = candidates[start : start + length]
        picks.append(max(chain, key=lambda c: c.score))
    return select(picks, how)


def revise(
    reviser: Generator,
    settings: SearchSettings,
    questions: Sequence[str],
    histories: Sequence[Sequence[str]],
    owners: Sequence[int],
    seeds: Sequence[int],
    ledgers: list[Ledger],
) -> list[Completion]:
    """One revision of each history (earlier attempts of question ``owners[i]``, oldest first),
    applying the context rule of the module docstring; each prompt's cost goes to its question."""
    keep = [min(len(h), settings.revision_prompt.max_attempts) for h in histories]
    while True:
        prompts = [
            settings.revision_prompt.format(
                settings.prompt, questions[owner], list(history[len(history) - k :]) if k else []
            )
            for history, owner, k in zip(histories, owners, keep)
        ]
        try:
            rows = sample(reviser, prompts, owners, 1, settings.sampling, seeds, ledgers)
        except PromptTooLong as error:
            for i in error.indices:
                if keep[i] == 0:
                    raise ValueError(
                        f"question {owners[i]}: the revision prompt does not fit the revision model's context "
                        f"even without earlier attempts ({error})"
                    ) from error
                keep[i] -= 1
            continue
        return [row[0] for row in rows]


class SequentialRevisions(Strategy):
    """N/L parallel chains of L attempts per question (see the module docstring)."""

    name = "revisions"

    def __init__(self, length: int, selection: str = "weighted") -> None:
        if length < 1:
            raise ValueError(f"revision chain length must be >= 1, got {length}")
        if selection not in ("weighted", "majority"):
            raise ValueError(f"selection across chains must be 'weighted' or 'majority', got {selection!r}")
        self.length = length
        self.selection = selection

    def run(
        self,
        questions: Sequence[str],
        generator: Generator,
        scorer: StepScorer | None,
        budget: int,
        settings: SearchSettings = SearchSettings(),
        seed: int | Sequence[int] = 0,
    ) -> list[StrategyResult]:
        seeds, ledgers, prompts = self._start(questions, scorer, budget, self.length, settings, seed, "chain length")
        if self.length > 1 and settings.reviser is None:
            raise ValueError(f"strategy 'revisions' with chain length {self.length} needs a revision model")
        chains, limit = budget // self.length, settings.sampling.max_new_tokens
        first = sample(generator, prompts, list(range(len(questions))), chains, settings.sampling, seeds, ledgers)
        attempts = [[[Beam().extend(c, limit)] for c in row] for row in first]
        keys = [(q, c) for q in range(len(questions)) for c in range(chains)]
        for turn in range(1, self.length):
            revised = revise(
                settings.reviser,
                settings,
                questions,
                [[beam.text for beam in attempts[q][c]] for q, c in keys],
                [q for q, _ in keys],
                [derive_seed(seeds[q], c, turn) for q, c in keys],
                ledgers,
            )
            for (q, c), completion in zip(keys, revised, strict=True):
                attempts[q][c].append(Beam().extend(completion, limit))
        flat = [(q, beam) for q, row in enumerate(attempts) for chain in row for beam in chain]
        scores = iter(score_texts(scorer, questions, [b.text for _, b in flat], [q for q, _ in flat], ledgers))
        results = []
        for row, ledger in zip(attempts, ledgers):
            candidates = [
                Beam(b.text, b.tokens, b.finish_reason, next(scores)).candidate(settings.aggregation)
                for chain in row
                for b in chain
            ]
            answer = select_chains(candidates, self.length, self.selection)
            results.append(StrategyResult(answer, candidates, ledger.record(budget)))
        return results
