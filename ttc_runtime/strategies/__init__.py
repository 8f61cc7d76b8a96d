"""Test-time strategies under one budget, chosen by name from ``STRATEGIES``.

Every strategy has the signature of ``Strategy.run`` (questions, generator, scorer, budget, settings,
seed -> one ``StrategyResult`` per question). ``StrategyConfig`` is the typed form a config file
gives: a registry name and the knobs that name uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from ..config import StrictModel
from .base import Candidate, SearchSettings, Strategy, StrategyResult, check_budget
from .beam import BeamSearch
from .best_of_n import BestOfN
from .dvts import DiverseTreeSearch
from .revisions import SequentialRevisions, select_chains

StrategyName = Literal[
    "majority", "best_of_n_weighted", "best_of_n_naive", "beam_search", "lookahead", "dvts", "revisions"
]

PARALLEL_SELECTION = {"majority": "majority", "best_of_n_weighted": "weighted", "best_of_n_naive": "naive"}
"""The parallel strategies and the rule each picks an answer by among N independent samples."""

MAX_STEPS = 1024
"""The most steps a knob counted in steps may ask for (``max_rounds``, ``lookahead``). A step is at
least one token, and solutions and rollouts end at ``sampling.max_new_tokens`` tokens, so more
steps than that never run: 1024 covers the longest solutions the shipped configs sample
(``configs/example-real.yaml``: 1024 tokens), 25 times the paper's 40 rounds."""


class StrategyConfig(StrictModel):
    """One strategy and its knobs, as a config file names it."""

    name: StrategyName
    beam_width: int | Literal["sqrt"] = Field(
        4,
        description="M for beam_search, lookahead and dvts: a number, or 'sqrt' for the largest divisor of "
        "the budget not above its square root (the paper's two choices are 4 and sqrt(N)). At most the budget "
        "and dividing it (checked against the budget the strategy runs at): N/M beams of M children each.",
    )
    lookahead: int = Field(
        2,
        ge=1,
        le=MAX_STEPS,
        description="Depth k of the greedy rollouts of 'lookahead', in steps; at most MAX_STEPS (1024): a step is "
        "a token or more and a rollout ends at sampling.max_new_tokens tokens.",
    )
    max_rounds: int = Field(
        40,
        ge=1,
        le=MAX_STEPS,
        description="Step rounds before search stops (the paper's 40); at most MAX_STEPS (1024): every round "
        "lengthens each open beam by a token or more, and a beam ends at sampling.max_new_tokens tokens.",
    )
    chain_length: int | Literal["all"] = Field(
        4,
        description="L for 'revisions': attempts per chain, N/L chains in parallel; 'all' for one chain of N "
        "(L = 1 is all parallel). At most the budget and dividing it (checked against the budget).",
    )
    across_chains: Literal["weighted", "majority"] = Field(
        "weighted", description="How 'revisions' picks among the chains' best attempts."
    )

    @field_validator("beam_width", "chain_length")
    @classmethod
    def _at_least_one(cls, value: int | str, info: ValidationInfo) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"{info.field_name} must be at least 1, got {value}")
        return value

    @property
    def parallel(self) -> str | None:
        """The selection rule of a parallel strategy ("majority", "weighted" or "naive"), None for
        search and revisions. A parallel strategy's outcome at any N can be resampled from stored
        samples; the others must be run."""
        return PARALLEL_SELECTION.get(self.name)

    @property
    def chain(self) -> int | None:
        """L when a run at N is N/L independent chains of L attempts each (revisions with a number
        L), so its outcome at any multiple of L can be drawn from stored chains as a parallel
        strategy's is drawn from stored samples; None for every other strategy (and for 'all',
        one chain as long as the budget)."""
        if self.name == "revisions" and isinstance(self.chain_length, int):
            return self.chain_length
        return None

    @property
    def searches(self) -> bool:
        return self.name in ("beam_search", "lookahead", "dvts")

    @property
    def label(self) -> str:
        """A short name for tables and plots, e.g. ``beam_search(M=4)``, ``lookahead(M=sqrt,k=2)``,
        ``revisions(L=4)``."""
        if self.name == "revisions":
            across = "" if self.across_chains == "weighted" else ",majority"
            return f"revisions(L={self.chain_length}{across})"
        if not self.searches:
            return self.name
        knobs = f"M={self.beam_width}" + (f",k={self.lookahead}" if self.name == "lookahead" else "")
        return f"{self.name}({knobs})"

    def width(self, budget: int) -> int:
        """The beam width at ``budget``."""
        if self.beam_width == "sqrt":
            return max(m for m in range(1, math.isqrt(budget) + 1) if budget % m == 0)
        return self.beam_width

    def length(self, budget: int) -> int:
        """The revision chain length at ``budget``."""
        return budget if self.chain_length == "all" else self.chain_length

    def behaviour(self, budget: int) -> tuple:
        """What this configuration does at ``budget``, equal for two configurations exactly when they
        run the same strategy there (with other seeds), so a grid that names one strategy twice
        stores and offers it once. One generation is one sample, whatever picks it; a beam or
        subtree width of 1 prunes nothing and a chain of 1 revises nothing, so both are best-of-N
        by their final selection (weighted, or the chains' majority); ``sqrt`` resolves to its width
        (``M=sqrt`` at N = 16 is ``M=4``)."""
        if budget == 1:
            return ("sample",)
        if self.searches:
            if self.width(budget) == 1:
                return ("best_of_n_weighted",)
            depth = self.lookahead if self.name == "lookahead" else 0
            return (self.name, self.width(budget), depth, self.max_rounds)
        if self.name == "revisions":
            if self.length(budget) == 1:
                return ("best_of_n_weighted",) if self.across_chains == "weighted" else ("majority",)
            return (self.name, self.length(budget), self.across_chains)
        return (self.name,)

    def _check(self, budget: int) -> None:
        if self.searches:
            check_budget(budget, self.width(budget))
        elif self.name == "revisions":
            check_budget(budget, self.length(budget), "chain length")
        else:
            check_budget(budget)

    def unusable(self, budget: int) -> str | None:
        """Why this strategy cannot run at ``budget`` (a beam width or chain length above it or not
        dividing it), or None."""
        try:
            self._check(budget)
        except ValueError as error:
            return str(error)
        return None

    def build(self, budget: int) -> Strategy:
        """The strategy object for ``budget`` (the width or chain length may depend on it)."""
        self._check(budget)
        return STRATEGIES[self.name](self, budget)


@dataclass(frozen=True)
class Arm:
    """A strategy configuration at one budget: what an allocator chooses for a question."""

    strategy: StrategyConfig
    budget: int

    @property
    def label(self) -> str:
        """E.g. ``beam_search(M=4)@16``."""
        return f"{self.strategy.label}@{self.budget}"


def default_grid() -> list[StrategyConfig]:
    """The strategies the paper compares, with the knobs it studies: the parallel ones, beam search
    at M = 4 and M = sqrt(N), lookahead (k = 1), DVTS and revision chains of L = 4. The search
    evaluation takes the grid without revisions (the revision evaluation sweeps L itself), the
    rollout pool the grid without naive best-of-N and DVTS (weighted best-of-N and beam search
    cover them, and each arm of the pool adds a column of runs)."""
    return [
        StrategyConfig(name="majority"),
        StrategyConfig(name="best_of_n_weighted"),
        StrategyConfig(name="best_of_n_naive"),
        StrategyConfig(name="beam_search", beam_width=4),
        StrategyConfig(name="beam_search", beam_width="sqrt"),
        StrategyConfig(name="lookahead", beam_width=4, lookahead=1),
        StrategyConfig(name="dvts", beam_width=4),
        StrategyConfig(name="revisions", chain_length=4),
    ]


STRATEGIES: dict[str, Callable[[StrategyConfig, int], Strategy]] = {
    "majority": lambda c, n: BestOfN("majority"),
    "best_of_n_weighted": lambda c, n: BestOfN("weighted"),
    "best_of_n_naive": lambda c, n: BestOfN("naive"),
    "beam_search": lambda c, n: BeamSearch(c.width(n), 0, c.max_rounds),
    "lookahead": lambda c, n: BeamSearch(c.width(n), c.lookahead, c.max_rounds),
    "dvts": lambda c, n: DiverseTreeSearch(c.width(n), c.max_rounds),
    "revisions": lambda c, n: SequentialRevisions(c.length(n), c.across_chains),
}

__all__ = [
    "MAX_STEPS",
    "PARALLEL_SELECTION",
    "STRATEGIES",
    "Arm",
    "BeamSearch",
    "BestOfN",
    "Candidate",
    "DiverseTreeSearch",
    "SearchSettings",
    "SequentialRevisions",
    "Strategy",
    "StrategyConfig",
    "StrategyName",
    "StrategyResult",
    "check_budget",
    "default_grid",
    "select_chains",
]
