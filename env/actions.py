"""The allocator's factored action: strategy, knob and (in the adaptive mode) budget.

Built from the arms of a rollout pool. Strategies are the grid's strategy names in grid order
(``majority``, ``best_of_n_weighted``, ``beam_search``, ...); a strategy's knobs are its grid
entries in grid order (``beam_search(M=4)``, ``beam_search(M=sqrt)``: two knobs; a strategy with
one entry has one knob); budgets are the pool's budgets, ascending.

**Invalid combinations.** A ``MultiDiscrete`` space has a knob slot as wide as the strategy with the
most knobs, so some actions name a knob a strategy does not have: the knob index is taken modulo
the strategy's knob count. An arm the pool does not hold at the chosen budget (a beam width above
it) is replaced by the strategy's first knob that runs at that budget, else by the first arm of the
pool at that budget. The learned policy masks knobs that do not exist, so only random actions meet
the first rule.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ttc_runtime.strategies import Arm, StrategyConfig


@dataclass(frozen=True)
class ActionSpace:
    """The action factors and how an action maps to an arm."""

    strategies: tuple[str, ...]
    knobs: tuple[tuple[StrategyConfig, ...], ...]
    budgets: tuple[int, ...]
    available: frozenset[Arm]
    adaptive: bool

    @classmethod
    def from_arms(cls, arms: Sequence[Arm], adaptive: bool) -> ActionSpace:
        if not arms:
            raise ValueError("no arms: the pool holds no strategy configuration")
        strategies: list[str] = []
        knobs: dict[str, list[StrategyConfig]] = {}
        for arm in arms:
            if arm.strategy.name not in knobs:
                strategies.append(arm.strategy.name)
                knobs[arm.strategy.name] = []
            if arm.strategy not in knobs[arm.strategy.name]:
                knobs[arm.strategy.name].append(arm.strategy)
        return cls(
            tuple(strategies),
            tuple(tuple(knobs[name]) for name in strategies),
            tuple(sorted({arm.budget for arm in arms})),
            frozenset(arms),
            adaptive,
        )

    @property
    def nvec(self) -> list[int]:
        """Sizes of the factors: strategy, knob, and budget when adaptive."""
        sizes = [len(self.strategies), max(len(k) for k in self.knobs)]
        return sizes + [len(self.budgets)] if self.adaptive else sizes

    def knob_counts(self) -> list[int]:
        return [len(k) for k in self.knobs]

    def arm(self, action: Sequence[int], budget: int | None = None) -> Arm:
        """The arm an action stands for (see the module docstring for invalid combinations);
        ``budget`` is the episode's budget in the fixed mode, ignored when adaptive."""
        action = [int(a) for a in action]
        if len(action) != len(self.nvec) or not all(0 <= a < n for a, n in zip(action, self.nvec)):
            raise ValueError(f"action {action} is outside the space {self.nvec}")
        if self.adaptive:
            budget = self.budgets[action[2]]
        elif budget not in self.budgets:
            raise ValueError(f"budget {budget} is not one of the pool's budgets {list(self.budgets)}")
        family = self.knobs[action[0]]
        chosen = Arm(family[action[1] % len(family)], budget)
        if chosen in self.available:
            return chosen
        for strategy in family:
            if Arm(strategy, budget) in self.available:
                return Arm(strategy, budget)
        return next(arm for arm in sorted(self.available, key=lambda a: a.label) if arm.budget == budget)

    def action(self, arm: Arm) -> list[int]:
        """The action that stands for ``arm`` (its budget factor only when adaptive)."""
        s = self.strategies.index(arm.strategy.name)
        k = self.knobs[s].index(arm.strategy)
        return [s, k, self.budgets.index(arm.budget)] if self.adaptive else [s, k]

    def to_json(self) -> str:
        """A stable description, to tell whether a saved policy fits this space."""
        return json.dumps(
            {
                "strategies": list(self.strategies),
                "knobs": [[k.label for k in family] for family in self.knobs],
                "budgets": list(self.budgets),
                "adaptive": self.adaptive,
            },
            sort_keys=True,
        )

    def arms(self) -> list[Arm]:
        """The available arms, strategy by strategy and knob by knob in the space's order, then by
        budget: ``from_arms`` of this list rebuilds the same space."""
        return [
            Arm(strategy, budget)
            for family in self.knobs
            for strategy in family
            for budget in self.budgets
            if Arm(strategy, budget) in self.available
        ]

    def to_dict(self) -> dict:
        """Everything needed to rebuild the space (``from_dict``): every arm with its full strategy
        configuration, and the mode."""
        return {
            "arms": [{"strategy": a.strategy.model_dump(mode="json"), "budget": a.budget} for a in self.arms()],
            "adaptive": self.adaptive,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ActionSpace:
        arms = [Arm(StrategyConfig.model_validate_json(json.dumps(a["strategy"])), a["budget"]) for a in data["arms"]]
        return cls.from_arms(arms, data["adaptive"])

    def budget_one_hot(self, budget: int) -> np.ndarray:
        out = np.zeros(len(self.budgets), dtype=np.float32)
        out[self.budgets.index(budget)] = 1.0
        return out

    def observations(self, features: np.ndarray, budget: int | None) -> np.ndarray:
        """The policy's inputs for feature rows: the features, followed in the fixed mode by the
        one-hot of ``budget`` (the one place an observation is formed)."""
        features = np.asarray(features, dtype=np.float32)
        if self.adaptive:
            return features.copy()
        return np.hstack([features, np.tile(self.budget_one_hot(budget), (len(features), 1))])
