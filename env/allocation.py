"""The allocation environment: one question, one decision, one reward."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np

from ttc_runtime.generation.base import Generator
from ttc_runtime.generation.sampling import derive_seed
from ttc_runtime.outcomes import ArmOutcomes
from ttc_runtime.pool import PoolConfig, arm_seed
from ttc_runtime.scoring import StepScorer
from ttc_runtime.strategies import Arm, SearchSettings
from ttc_runtime.tasks import Problem, answers_match

from .actions import ActionSpace

ENV_ID = "ttc/Allocation-v0"


@dataclass(frozen=True)
class Outcome:
    """What running an arm on a question gave: correctness and compute."""

    correct: bool
    generations: float
    flops: float


class Backend(ABC):
    """Where outcomes come from."""

    @abstractmethod
    def outcome(self, question: int, arm: Arm, rng: np.random.Generator) -> Outcome:
        """Run (or replay) ``arm`` on the pool's question number ``question``."""


class ReplayBackend(Backend):
    """Outcomes resampled from a rollout pool's outcome table: one of a run arm's stored runs (a
    chained arm's draws of its chains), drawn uniformly, with its correctness and compute; a
    parallel arm's correctness drawn with its resampled rate (the chance that N fresh samples
    select the right answer), at its mean compute. A table without stored runs for a run arm (one
    made by hand) is drawn like a parallel arm."""

    def __init__(self, outcomes: ArmOutcomes) -> None:
        self.outcomes = outcomes
        self.columns = {arm: a for a, arm in enumerate(outcomes.arms)}

    def outcome(self, question: int, arm: Arm, rng: np.random.Generator) -> Outcome:
        if arm not in self.columns:
            raise KeyError(f"the pool holds no arm {arm.label}")
        a = self.columns[arm]
        runs = self.outcomes.stored.get(a)
        if runs is not None:
            run = int(rng.integers(runs.correct.shape[1]))
            return Outcome(
                bool(runs.correct[question, run]),
                float(runs.generations[question, run]),
                float(runs.flops[question, run]),
            )
        rate = self.outcomes.correct[question, a]
        return Outcome(
            bool(rng.random() < rate),
            float(self.outcomes.generations[question, a]),
            float(self.outcomes.flops[question, a]),
        )


class LiveBackend(Backend):
    """Outcomes from running the strategy with the generator and the scorer. A run arm uses the seed
    the pool used for one of its stored runs, drawn uniformly (so it reproduces that run, and draws
    runs as the replay does); a parallel or chained arm (whose outcomes the pool draws from stored
    samples or chains) draws fresh samples or chains with a seed from the episode's generator."""

    def __init__(
        self,
        problems: Sequence[Problem],
        generator: Generator,
        scorer: StepScorer,
        settings: SearchSettings,
        pool: PoolConfig,
    ) -> None:
        self.problems = list(problems)
        self.generator = generator
        self.scorer = scorer
        self.settings = settings
        self.pool = pool

    def outcome(self, question: int, arm: Arm, rng: np.random.Generator) -> Outcome:
        if arm.strategy.parallel or arm.strategy.chain:
            seed = derive_seed(int(rng.integers(0, 2**62)), question)
        else:
            seed = arm_seed(self.pool, question, arm, int(rng.integers(self.pool.runs_of(arm))))
        problem = self.problems[question]
        (result,) = arm.strategy.build(arm.budget).run(
            [problem.question], self.generator, self.scorer, arm.budget, self.settings, [seed]
        )
        right = result.answer is not None and answers_match(result.answer, problem.answer)
        return Outcome(right, float(result.compute.generations), float(result.compute.flops))


class AllocationEnv(gym.Env):
    """Test-time compute allocation as a one-step episode.

    **Episode.** ``reset`` draws one question (uniformly from ``questions``, pool indices) and, in
    the fixed-budget mode, one budget (uniformly from the pool's budgets); ``step`` takes one
    action and ends the episode (``terminated`` is always True).

    **Observation.** ``Box(features_dim (+ budgets),)`` float32: the question's features (computed
    from the question text alone, before any answer is sampled), followed in the fixed-budget mode
    by a one-hot of the episode's budget.

    **Action.** ``MultiDiscrete(actions.nvec)``: strategy, knob (beam width M, lookahead k, chain
    length L: the strategy's grid entries) and, in the adaptive mode, budget N. Invalid combinations
    map to arms by the rule of ``env.actions``.

    **Reward.** ``correct - lam * compute / scale``: ``correct`` is 1 when the chosen answer is
    right; ``compute`` the episode's generations (``unit="generations"``) or FLOPs; ``scale`` a
    normaliser (the trainer passes best-of-N weighted's mean compute at the largest budget, so
    ``lam`` reads as "accuracy given up per largest-budget run").

    **Info.** ``question``, ``budget`` (after reset); ``arm``, ``correct``, ``generations``,
    ``flops`` (after step).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        features: np.ndarray,
        actions: ActionSpace,
        backend: Backend,
        questions: Sequence[int] | None = None,
        lam: float = 0.0,
        unit: Literal["generations", "flops"] = "generations",
        scale: float = 1.0,
    ) -> None:
        if features.ndim != 2:
            raise ValueError(f"features must be one row per question, got shape {features.shape}")
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        if unit not in ("generations", "flops"):
            raise ValueError(f"unit must be 'generations' or 'flops', got {unit!r}")
        self.features = features.astype(np.float32)
        self.actions = actions
        self.backend = backend
        self.questions = np.arange(len(features)) if questions is None else np.asarray(questions)
        if len(self.questions) == 0:
            raise ValueError("no questions to draw episodes from")
        self.lam, self.unit, self.scale = lam, unit, scale
        width = features.shape[1] + (0 if actions.adaptive else len(actions.budgets))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (width,), np.float32)
        self.action_space = gym.spaces.MultiDiscrete(actions.nvec)
        self._question: int | None = None
        self._budget: int | None = None

    def observe(self, question: int, budget: int | None) -> np.ndarray:
        """The observation of ``question`` (a pool index) at ``budget`` (fixed mode)."""
        return self.actions.observations(self.features[question : question + 1], budget)[0]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._question = int(self.questions[self.np_random.integers(len(self.questions))])
        self._budget = None if self.actions.adaptive else int(self.np_random.choice(self.actions.budgets))
        return self.observe(self._question, self._budget), {"question": self._question, "budget": self._budget}

    def step(self, action):
        if self._question is None:
            raise RuntimeError("step before reset")
        arm = self.actions.arm(action, self._budget)
        result = self.backend.outcome(self._question, arm, self.np_random)
        compute = result.generations if self.unit == "generations" else result.flops
        reward = float(result.correct) - self.lam * compute / self.scale
        info = {
            "question": self._question,
            "budget": arm.budget,
            "arm": arm.label,
            "correct": result.correct,
            "generations": result.generations,
            "flops": result.flops,
        }
        observation = self.observe(self._question, self._budget)
        self._question = None
        return observation, reward, True, False, info


def register() -> None:
    """Register ``ttc/Allocation-v0`` with gymnasium (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point=AllocationEnv, disable_env_checker=False)
