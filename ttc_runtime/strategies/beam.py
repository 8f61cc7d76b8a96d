"""Beam search against the verifier, exactly as the paper runs it, and lookahead search.

With budget N and beam width M: sample N first steps; score each prefix with the verifier; keep the
best N/M open prefixes; sample M next steps from each (N candidates again); repeat until no prefix
is open or ``max_rounds`` (40) rounds; select by best-of-N weighted over the final candidates.
Lookahead (depth k >= 1) ranks each candidate by the verifier's score at the end of a k-step greedy
rollout from it (the rollout only ranks; the candidate kept is the step itself); k = 0 is beam search.

Bookkeeping, documented because the prior art gets it wrong or leaves it implicit:

- **Finished beams.** A candidate that ends (end of sequence, or the solution's token limit
  ``sampling.max_new_tokens``) leaves the frontier for the final pool, whatever its rank. With
  ``R = N - pool`` candidates still to find, a round keeps the best ``ceil(R / M)`` open prefixes
  and samples M children from each, the last one only what is left of R: every round samples at
  most N steps, and the search ends with exactly N candidates once they have all finished. Open
  prefixes left after the last round join the pool as unfinished candidates.
- **Duplicates.** A round keeps distinct open prefixes first; only when fewer distinct ones exist
  than the beam holds do repeats fill it (each copy then samples its own M next steps with its own
  seed), so every round still samples N steps. Finished duplicates all stay in the pool (they are
  separate samples, and weighted voting should count them).
- **Empty steps.** A candidate whose new step is blank made no progress: it ranks below every
  candidate that did (score 0 for ranking); its text is unchanged otherwise.
- **Compute.** Every sampled step, every rollout token and every verifier pass is charged to its
  question, by the one rule of ``compute``: the prompt once (the first round samples the N first
  steps from it), every sampled token once, and not the prefix a later round or a rollout
  continues, which the proposer already read when it sampled it (the transformers back end does
  encode it again; at N = 1 the search is then charged as one plain sample of its tokens is).
  ``generations`` is N x (d + 1), the paper's cost of lookahead N x (k + 1) at the depth
  d actually rolled out: the most steps any rollout of the question took (a rollout stops early
  where its solution ends, and a search whose rollouts all stopped within d steps is the search
  with k = d, result and spend alike), so a k beyond the solutions' length is not charged for
  steps never sampled; N when no rollout ran (beam search, or every candidate finished in the
  first round).
- **Context.** An open beam's solution is shorter than ``sampling.max_new_tokens`` tokens (it ends
  on reaching them), and a step or a rollout sampled after it may take ``max_new_tokens`` more, so
  search needs ``2 x max_new_tokens - 1`` tokens of the proposer's context after the prompt
  (``context_room``); ``Solver.check`` refuses a question whose prompt leaves less. The count is
  exact where the prompt followed by the text encodes to no more tokens than were sampled (the
  embedded tokenizer); a tokenizer that encodes a sampled text longer can still overflow, and
  then only that question fails (``Solver.solve_each``).
- **Fused scoring.** When the verifier is a margin PRM over the generator's own model
  (``scoring.margin.fuse``), steps are sampled with their log-probabilities and each beam carries
  its running margin statistics, so a new step is scored from its own tokens with the PRM's head
  and no prefix is read again; the verifier is charged the head's FLOPs per scored step, as
  best-of-N is for each step of its samples. ``SearchSettings(fused_scoring=False)`` re-reads every
  prefix with the full PRM each round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from ..compute import Usage
from ..generation.base import Completion, Generator, greedy_continue, sample_next_steps
from ..generation.sampling import derive_seed
from ..scoring import StepScorer
from ..scoring.margin import FusedMarginScorer
from ..tasks.grading import STEP_SEPARATOR
from .base import (
    Beam,
    Ledger,
    SearchSettings,
    Strategy,
    StrategyResult,
    charge,
    continued,
    fused_verifier,
    score_texts,
    select,
)


class BeamSearch(Strategy):
    """Beam search with beam width ``beam_width`` and lookahead depth ``lookahead`` (0: none)."""

    def __init__(self, beam_width: int, lookahead: int = 0, max_rounds: int = 40) -> None:
        if lookahead < 0:
            raise ValueError(f"lookahead depth must be >= 0, got {lookahead}")
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
        self.beam_width = beam_width
        self.lookahead = lookahead
        self.max_rounds = max_rounds
        self.name = "lookahead" if lookahead else "beam_search"

    def context_room(self, max_new_tokens: int) -> int:
        """A step or rollout of up to ``max_new_tokens`` after an open beam of up to ``max_new_tokens - 1``."""
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
        pools: list[list[Beam]] = [[] for _ in questions]
        depths = [0] * len(questions)  # the most steps a rollout of each question took
        width = self.beam_width
        fused = fused_verifier(scorer, generator, settings)
        frontier = [(q, Beam(), budget) for q in range(len(questions))]  # each root samples N first steps
        for round_ in range(self.max_rounds):
            children = self._expand(generator, prompts, frontier, settings, seeds, round_, ledgers, fused)
            if fused is None:
                ranks = self._rank(generator, scorer, questions, prompts, children, settings, ledgers, depths)
            else:
                ranks = self._rank_fused(generator, fused, prompts, children, settings, ledgers, depths)
            frontier = []
            by_question: dict[int, list[tuple[float, Beam]]] = {}
            for (q, beam), rank in zip(children, ranks):
                by_question.setdefault(q, []).append((rank, beam))
            for q, mine in by_question.items():
                pools[q].extend(beam for _, beam in mine if not beam.open)
                room = budget - len(pools[q])
                kept = _best_distinct([(rank, beam) for rank, beam in mine if beam.open], math.ceil(room / width))
                if round_ == self.max_rounds - 1:
                    pools[q].extend(kept)
                else:  # M children per kept beam; the last one gets what is left of the N
                    frontier.extend((q, beam, min(width, room - i * width)) for i, beam in enumerate(kept))
            if not frontier:
                break
        unscored = [(q, i) for q, pool in enumerate(pools) for i, beam in enumerate(pool) if not beam.scored]
        texts = [pools[q][i].text for q, i in unscored]
        for (q, i), scores in zip(unscored, score_texts(scorer, questions, texts, [q for q, _ in unscored], ledgers)):
            pools[q][i] = replace(pools[q][i], step_scores=scores)
        results = []
        for pool, ledger, depth in zip(pools, ledgers, depths):
            candidates = [beam.candidate(settings.aggregation) for beam in pool]
            results.append(
                StrategyResult(select(candidates, "weighted"), candidates, ledger.record(budget * (depth + 1)))
            )
        return results

    def _expand(self, generator, prompts, frontier, settings, seeds, round_, ledgers, fused) -> list[tuple[int, Beam]]:
        """Next steps from every frontier beam (``(question, beam, children)``), all questions in one
        call per distinct number of children; children come back in frontier order."""
        limit = settings.sampling.max_new_tokens
        params = replace(settings.sampling, logprobs=fused is not None)
        rows: list[list[tuple[int, Beam]]] = [[] for _ in frontier]
        seen: dict[int, int] = {}
        position = []  # a beam's place among its own question's beams: seeds must not depend on the batch
        for q, _, _ in frontier:
            position.append(seen.get(q, 0))
            seen[q] = position[-1] + 1
        for n in sorted({n for _, _, n in frontier}):
            index = [i for i, (_, _, count) in enumerate(frontier) if count == n]
            output = sample_next_steps(
                generator,
                [prompts[frontier[i][0]] + frontier[i][1].text for i in index],
                params,
                [derive_seed(seeds[frontier[i][0]], round_, position[i]) for i in index],
                n,
            )
            usages = output.usages if round_ == 0 else continued(output.usages, generator.flop_params)
            charge(ledgers, [frontier[i][0] for i in index], usages, "proposer")
            for i, completions in zip(index, output.completions, strict=True):
                q, beam, _ = frontier[i]
                rows[i] = [(q, beam.extend(c, limit, fused)) for c in completions]
        return [child for row in rows for child in row]

    def _rank_fused(self, generator, fused, prompts, children, settings, ledgers, depths) -> list[float]:
        """``_rank`` from the margin statistics the children carry: no verifier forward pass. A
        lookahead rollout is sampled with log-probabilities and read the same way."""
        for i, beam in enumerate(score_fused(fused, children, ledgers)):
            children[i] = (children[i][0], beam)
        ranks = [beam.rank for _, beam in children]
        if not self.lookahead:
            return ranks
        ahead = [i for i, (_, beam) in enumerate(children) if beam.open and not beam.blank_step]
        if not ahead:
            return ranks
        rolled = greedy_continue(
            generator,
            [prompts[children[i][0]] + children[i][1].text for i in ahead],
            settings.sampling.max_new_tokens,
            steps=self.lookahead,
            logprobs=True,
        )
        owners = [children[i][0] for i in ahead]
        charge(ledgers, owners, continued(rolled.usages, generator.flop_params), "proposer")
        self._record_depths(depths, owners, rolled.completions)
        charge(ledgers, owners, [Usage.inference(fused.head_params, 1)] * len(ahead), "verifier")
        states = [
            children[i][1].state.extend(row[0], fused.skip, evidence=fused.evidence)
            for i, row in zip(ahead, rolled.completions)
        ]
        for i, probability in zip(ahead, fused.probabilities(states)):
            ranks[i] = probability
        return ranks

    def _rank(self, generator, scorer, questions, prompts, children, settings, ledgers, depths) -> list[float]:
        """Each child's ranking score; children get their own step scores where that is what ranks
        them. Each question's entry of ``depths`` keeps the most steps one of its rollouts took."""
        owners = [q for q, _ in children]
        texts = [beam.text for _, beam in children]
        ahead = (
            [i for i, (_, beam) in enumerate(children) if beam.open and not beam.blank_step] if self.lookahead else []
        )
        if ahead:
            rolled = greedy_continue(
                generator,
                [prompts[owners[i]] + texts[i] for i in ahead],
                settings.sampling.max_new_tokens,
                self.lookahead,
            )
            charge(ledgers, [owners[i] for i in ahead], continued(rolled.usages, generator.flop_params), "proposer")
            self._record_depths(depths, [owners[i] for i in ahead], rolled.completions)
            for i, row in zip(ahead, rolled.completions, strict=True):
                texts[i] = Beam(texts[i]).extend(row[0], math.inf).text
        ranked_by_rollout = set(ahead)
        ranks = []
        for i, step_scores in enumerate(score_texts(scorer, questions, texts, owners, ledgers)):
            scored = replace(children[i][1], step_scores=step_scores)
            if i not in ranked_by_rollout:
                children[i] = (owners[i], scored)
            ranks.append(scored.rank)
        return ranks

    def _record_depths(self, depths: list[int], owners: Sequence[int], rollouts: list[list[Completion]]) -> None:
        """Raise each owner's entry of ``depths`` to the steps its rollout took (``rollout_steps``)."""
        for owner, row in zip(owners, rollouts, strict=True):
            depths[owner] = max(depths[owner], rollout_steps(row[0], self.lookahead))


def rollout_steps(rollout: Completion, lookahead: int) -> int:
    """Steps a greedy rollout of depth ``lookahead`` took: all of them when the stop string ended it;
    else it reached the end of the solution or the token limit in the step after its last step
    separator, so a rollout of that depth gives the same completion. At most ``lookahead`` (the
    engines count separators token by token, the text decoded whole could show more)."""
    if rollout.finish_reason == "stop":
        return lookahead
    return min(lookahead, rollout.text.count(STEP_SEPARATOR) + 1)


def score_fused(fused: FusedMarginScorer, beams: list[tuple[int, Beam]], ledgers: list[Ledger]) -> list[Beam]:
    """``beams`` (question, beam) with their newest step scored from their margin statistics; each
    scored step is charged to its question as one position read by the verifier's head."""
    probabilities = fused.probabilities([beam.state for _, beam in beams])
    new = [i for i, (_, beam) in enumerate(beams) if not beam.scored]
    charge(ledgers, [beams[i][0] for i in new], [Usage.inference(fused.head_params, 1)] * len(new), "verifier")
    scored = [beam for _, beam in beams]
    for i in new:
        scored[i] = replace(scored[i], step_scores=scored[i].step_scores + (probabilities[i],))
    return scored


def _best_distinct(ranked: list[tuple[float, Beam]], keep: int) -> list[Beam]:
    """The ``keep`` best beams by rank, distinct texts first; when fewer distinct texts exist, the
    best-ranked repeats fill the rest. Ties keep sampling order."""
    order = [beam for _, beam in sorted(ranked, key=lambda item: -item[0])]
    seen: set[str] = set()
    distinct, repeats = [], []
    for beam in order:
        (repeats if beam.text in seen else distinct).append(beam)
        seen.add(beam.text)
    return (distinct + repeats)[:keep]
