"""Allocators: which strategy configuration (an ``Arm``) to run on a question within a budget.

Every allocator answers ``choose(questions, budget)`` with one arm per question. The baselines here
are the paper's reference points, fitted on a rollout pool's outcome table (``pool.ArmOutcomes``):

- ``FixedAllocator``: the same strategy for every question;
- ``BinAllocator``: the compute-optimal strategy of the question's difficulty bin, the best arm at
  the budget on the fitting questions of that bin (the paper's compute-optimal scaling); with
  oracle bins (pass@1 from the gold answer) or predicted bins (mean verifier score), whose
  estimation cost the evaluation charges or not;
- ``PerQuestionOracle``: the best arm for each question in hindsight, an upper bound no real
  allocator reaches;
- ``FeatureTable``: ``BinAllocator`` with a visible question feature as its bins (the difficulty
  level, ``ArmOutcomes.levels``): the bar a learned policy must clear, as it needs no estimate;
- ``PricedFeatureTable`` and ``PricedOracle``: the adaptive counterparts, which pick the budget
  too: per level, or per question in hindsight, the arm maximising
  ``correct - lam x compute / scale`` (mean correctness on the level's fitting questions, or the
  question's expected correctness). Swept over ``lam`` they trace a frontier of accuracy against
  mean compute; the oracle's is the ceiling of every adaptive allocator.

``lam`` is in accuracy per ``scale`` of compute, ``scale`` being the largest budget (generations) or
best-of-N weighted's mean FLOPs there (``trainers.allocator.scale_of``): at ``lam`` = 0.5, a
question's extra spend of the largest budget's compute is worth it only if it adds half a correct
answer or more.

Compute-optimal and oracle choices at budget N are made among the arms that spend at most N
generations (``ArmOutcomes.within_budget``): lookahead, which spends N x (k + 1), is not one of
them. Priced choices pick the budget too, among every arm of the pool, lookahead included at what
it spends.

A question's bin comes from a lookup built on the pool, keyed by the question text: these
allocators only answer questions of the pool they were fitted on (``KeyError`` names the question
otherwise). The learned allocator decides from the question text alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from ttc_runtime.outcomes import ArmOutcomes
from ttc_runtime.strategies import Arm, StrategyConfig


class Allocator(ABC):
    """Maps questions and a budget (generations) to the arm each question gets."""

    name: str

    @abstractmethod
    def choose(self, questions: Sequence[str], budget: int) -> list[Arm]:
        """One arm per question, each at ``budget``."""


def _at_budget(outcomes: ArmOutcomes, budget: int) -> list[int]:
    """The columns an allocator may choose at ``budget``: arms of that budget spending no more."""
    allowed = set(outcomes.within_budget())
    columns = [a for a, arm in enumerate(outcomes.arms) if arm.budget == budget and arm in allowed]
    if not columns:
        budgets = sorted({arm.budget for arm in outcomes.arms})
        raise ValueError(f"the pool has no arm at budget {budget}; its budgets are {budgets}")
    return columns


def _best(outcomes: ArmOutcomes, columns: list[int], rows: np.ndarray) -> int:
    """The column with the highest mean accuracy on ``rows``; the lower mean FLOPs breaks ties."""
    accuracy = outcomes.correct[np.ix_(rows, columns)].mean(axis=0)
    cost = outcomes.flops[np.ix_(rows, columns)].mean(axis=0)
    return columns[min(range(len(columns)), key=lambda c: (-accuracy[c], cost[c]))]


def _priced_best(
    outcomes: ArmOutcomes, columns: list[int], rows: np.ndarray, lam: float, unit: str, scale: float
) -> int:
    """The column maximising mean correctness - ``lam`` x mean compute (``unit``) / ``scale`` on
    ``rows``; the lower mean compute breaks ties."""
    accuracy = outcomes.correct[np.ix_(rows, columns)].mean(axis=0)
    cost = outcomes.compute(unit)[np.ix_(rows, columns)].mean(axis=0)
    value = accuracy - lam * cost / scale
    return columns[min(range(len(columns)), key=lambda c: (-value[c], cost[c]))]


class FixedAllocator(Allocator):
    """One strategy configuration for every question."""

    def __init__(self, strategy: StrategyConfig) -> None:
        self.strategy = strategy
        self.name = strategy.label

    def choose(self, questions: Sequence[str], budget: int) -> list[Arm]:
        return [Arm(self.strategy, budget) for _ in questions]


class BinAllocator(Allocator):
    """The compute-optimal arm of each difficulty bin, per budget."""

    def __init__(self, name: str, bins: dict[str, int], table: dict[tuple[int, int], Arm]) -> None:
        self.name = name
        self.bins = bins
        self.table = table

    @classmethod
    def fit(cls, name: str, outcomes: ArmOutcomes, bins: np.ndarray, rows: np.ndarray) -> BinAllocator:
        """Fit on the pool questions ``rows``: per bin and budget, the arm with the best accuracy
        on those questions of the bin (on all of ``rows`` for a bin none of them falls in)."""
        if len(bins) != len(outcomes.questions):
            raise ValueError(f"got {len(bins)} bins for {len(outcomes.questions)} questions")
        rows = np.asarray(rows)
        table = {}
        for budget in sorted({arm.budget for arm in outcomes.arms}):
            columns = _at_budget(outcomes, budget)
            for b in sorted(set(bins.tolist())):
                mine = rows[bins[rows] == b]
                table[b, budget] = outcomes.arms[_best(outcomes, columns, mine if len(mine) else rows)]
        return cls(name, dict(zip(outcomes.questions, bins.tolist())), table)

    def choose(self, questions: Sequence[str], budget: int) -> list[Arm]:
        chosen = []
        for question in questions:
            if question not in self.bins:
                raise KeyError(f"{self.name}: no difficulty bin for the question {question!r}")
            key = (self.bins[question], budget)
            if key not in self.table:
                raise ValueError(f"{self.name}: not fitted at budget {budget}")
            chosen.append(self.table[key])
        return chosen


class PerQuestionOracle(Allocator):
    """The best arm for each question in hindsight (the cheapest among equally good ones)."""

    name = "per-question oracle"

    def __init__(self, outcomes: ArmOutcomes) -> None:
        self.best: dict[tuple[str, int], Arm] = {}
        for budget in sorted({arm.budget for arm in outcomes.arms}):
            columns = _at_budget(outcomes, budget)
            for row, question in enumerate(outcomes.questions):
                self.best[question, budget] = outcomes.arms[_best(outcomes, columns, np.array([row]))]

    def choose(self, questions: Sequence[str], budget: int) -> list[Arm]:
        missing = [q for q in questions if (q, budget) not in self.best]
        if missing:
            raise KeyError(f"{self.name}: no outcome for {missing[0]!r} at budget {budget}")
        return [self.best[q, budget] for q in questions]


class FeatureTable(BinAllocator):
    """The fixed-budget feature table: per value of the question's level and per budget N, the most
    accurate arm among those within N on the fitting questions of that level."""

    @classmethod
    def fit_levels(cls, name: str, outcomes: ArmOutcomes, rows: np.ndarray) -> FeatureTable:
        """Fit on the pool questions ``rows`` with ``outcomes.levels`` as the bins."""
        return cls.fit(name, outcomes, np.asarray(outcomes.levels, dtype=int), rows)


class PricedFeatureTable(Allocator):
    """The adaptive feature table at one price ``lam``: per level, the arm (any budget) with the
    best mean correctness - ``lam`` x mean compute / ``scale`` on the fitting questions of that level
    (on all of them for a level none of them has)."""

    def __init__(self, name: str, levels: dict[str, int], table: dict[int, Arm]) -> None:
        self.name = name
        self.levels = levels
        self.table = table

    @classmethod
    def fit(
        cls, name: str, outcomes: ArmOutcomes, rows: np.ndarray, lam: float, unit: str, scale: float
    ) -> PricedFeatureTable:
        """Fit on the pool questions ``rows``; compute in ``unit`` (generations or flops)."""
        rows = np.asarray(rows)
        levels = np.asarray(outcomes.levels, dtype=int)
        columns = list(range(len(outcomes.arms)))
        table = {}
        for level in sorted(set(levels.tolist())):
            mine = rows[levels[rows] == level]
            table[level] = outcomes.arms[_priced_best(outcomes, columns, mine if len(mine) else rows, lam, unit, scale)]
        return cls(name, dict(zip(outcomes.questions, levels.tolist())), table)

    def choose(self, questions: Sequence[str], budget: int | None = None) -> list[Arm]:
        """The level's arm for each question; the budget is the table's own choice (``budget``
        is ignored)."""
        missing = [q for q in questions if q not in self.levels]
        if missing:
            raise KeyError(f"{self.name}: no level for the question {missing[0]!r}")
        return [self.table[self.levels[q]] for q in questions]


class PricedOracle(Allocator):
    """The adaptive oracle at one price ``lam``: per question, the arm (any budget) with the best
    expected correctness - ``lam`` x compute / ``scale`` in hindsight (the cheaper on ties)."""

    name = "expected-rate oracle"

    def __init__(self, outcomes: ArmOutcomes, lam: float, unit: str, scale: float) -> None:
        columns = list(range(len(outcomes.arms)))
        self.best = {
            question: outcomes.arms[_priced_best(outcomes, columns, np.array([row]), lam, unit, scale)]
            for row, question in enumerate(outcomes.questions)
        }

    def choose(self, questions: Sequence[str], budget: int | None = None) -> list[Arm]:
        """Each question's priced best arm (``budget`` is ignored: the oracle picks it)."""
        missing = [q for q in questions if q not in self.best]
        if missing:
            raise KeyError(f"{self.name}: no outcome for {missing[0]!r}")
        return [self.best[q] for q in questions]
