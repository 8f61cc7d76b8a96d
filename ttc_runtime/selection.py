"""Score aggregation and answer selection: the arithmetic the verifier-based strategies share.

A PRM gives one score per step; ``aggregate_steps`` turns them into an answer score ("last", the
paper's default, or "min", "prod", "mean"). Given N candidates with final answers and answer
scores, the selectors pick one answer:

- ``majority_vote``: the most frequent answer;
- ``best_of_n_naive``: the answer of the highest-scoring candidate;
- ``best_of_n_weighted``: answers grouped, scores summed, the largest sum wins.

The selectors count equal strings as one answer, so the answers they get must already be merged:
each replaced by its group's representative with ``tasks.group_answers``, which puts ``0.5``,
``\\frac12`` and ``\\frac{1}{\\sqrt{4}}`` together (None when a candidate has no answer).
Merging is the caller's step, done once per question: an evaluation that resamples many subsets
of one question's candidates merges them all once and selects within each subset here.

Candidates without an answer never win. Ties go to the answer that appeared first, so selection is
deterministic given the candidates' order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

Aggregation = Literal["last", "min", "prod", "mean"]
AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)
Selection = Literal["weighted", "naive", "majority"]


def aggregate_steps(step_scores: Sequence[float], how: Aggregation = "last") -> float:
    """One answer score from a solution's step scores (each a probability in [0, 1])."""
    if not step_scores:
        raise ValueError("cannot aggregate an empty list of step scores")
    if how == "last":
        return float(step_scores[-1])
    if how == "min":
        return float(min(step_scores))
    if how == "prod":
        return float(math.prod(step_scores))
    if how == "mean":
        return float(sum(step_scores) / len(step_scores))
    raise ValueError(f"unknown aggregation {how!r}; expected one of {AGGREGATIONS}")


def _check(answers: Sequence[str | None], scores: Sequence[float] | None = None) -> None:
    if scores is not None and len(scores) != len(answers):
        raise ValueError(f"got {len(scores)} scores for {len(answers)} answers")


def _argmax_first(totals: dict[str, float]) -> str | None:
    """Key with the largest value; dict order (first appearance) breaks ties."""
    best, best_value = None, -math.inf
    for answer, value in totals.items():
        if value > best_value:
            best, best_value = answer, value
    return best


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """The most frequent answer, or None when no candidate has one."""
    counts: dict[str, float] = {}
    for answer in answers:
        if answer is not None:
            counts[answer] = counts.get(answer, 0) + 1
    return _argmax_first(counts)


def best_of_n_naive(answers: Sequence[str | None], scores: Sequence[float]) -> str | None:
    """The answer of the single highest-scoring candidate that has an answer."""
    _check(answers, scores)
    best: dict[str, float] = {}
    for answer, score in zip(answers, scores):
        if answer is not None and score > best.get(answer, -math.inf):
            best[answer] = score
    return _argmax_first(best)


def best_of_n_weighted(answers: Sequence[str | None], scores: Sequence[float]) -> str | None:
    """The answer whose candidates' scores sum highest (the paper's best-of-N weighted)."""
    _check(answers, scores)
    totals: dict[str, float] = {}
    for answer, score in zip(answers, scores):
        if answer is not None:
            totals[answer] = totals.get(answer, 0.0) + score
    return _argmax_first(totals)


def select_answer(how: Selection, answers: Sequence[str | None], scores: Sequence[float]) -> str | None:
    """The answer ``how`` picks: "majority" (scores unused), "weighted" or "naive" best-of-N."""
    if how == "majority":
        return majority_vote(answers)
    return best_of_n_weighted(answers, scores) if how == "weighted" else best_of_n_naive(answers, scores)
