"""The runtime: answer questions within a budget, the test-time strategy picked per question.

A ``Solver`` holds the proposer, the verifier, the revision model (optional) and the allocator,
each loaded once. For every question it decides the arm (strategy, knobs, budget), runs the
strategies batched (the questions that share an arm run in one call), and returns a ``Solution``:
the answer, the text of the best-scored candidate with that answer, every candidate with its
score, and the compute record, the allocator's feature cost included.

Rules, tested in ``tests/test_solver.py``:

- **Who decides.** A query that names a strategy gets it (``chosen_by="request"``). Otherwise the
  learned policy decides from the question alone (``"allocator"``); without a policy the configured
  ``strategy`` runs (``"default"``).
- **Budgets.** A budget is in generations, from 1 to ``max_budget``; a query without one gets
  ``budget``. A fixed-budget policy decides at the largest budget it was trained for that is not
  above the query's (its smallest when the query's is below all), and the chosen strategy and knob
  then run at the query's budget. An adaptive policy chooses the budget as well; the query's
  budget is then a ceiling. When the chosen knob cannot run at the budget (a beam width above it
  or not dividing it) or the question's prompt leaves too little context for it, the default
  ``strategy`` runs instead and ``Solution.note`` says why.
- **Seeds.** A question's randomness comes from the query's seed and the question's text only
  (``question_seed``), never from its place in a batch: the same question and seed give the same
  solution alone or batched with others, which is what lets a server batch concurrent requests.
- **Bad queries** raise ``BadQuery`` naming the problem before any work: an empty question, a
  budget outside 1 ... ``max_budget``, a seed outside 0 ... 2**64 - 1 (seeds are mixed modulo
  2**64, so a larger one would repeat a smaller one's samples), a boolean for either, a strategy
  that cannot run at the budget, revisions without a revision model, a question whose prompt
  leaves less room in the proposer's context than its strategy needs (refused, never truncated):
  ``sampling.max_new_tokens`` for a solution sampled whole, ``2 x max_new_tokens - 1`` for
  search (a step after a partial solution), and for revisions the revision prompt with
  ``max_new_tokens`` in the revision model's context. A query left to the allocator needs the
  room of one solution before the decision, and falls back to the default strategy after it.
- **Failures stay with their query.** ``solve_each`` answers each query with its solution or the
  exception it raised: when a batched call fails, its queries are solved again in halves until
  the failing ones are alone, so one query that cannot run (or a fault it triggers) never costs
  the others their answers, which are the same as in any batch (see Seeds).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, model_validator

from .compute import Compute
from .config import ConfigError, StrictModel
from .generation.base import Generator, SamplingConfig
from .generation.engines import GenerationConfig, load_generator
from .generation.sampling import derive_seed
from .policies.features import build_featurizer
from .policies.learned import LearnedAllocator, load_policy
from .prompts import PromptConfig, RevisionPromptConfig
from .scoring import StepScorer, VerifierConfig, load_verifier
from .strategies import Candidate, SearchSettings, StrategyConfig
from .tasks import TaskConfig, group_answers

if TYPE_CHECKING:
    from .experiment_config import ExperimentConfig

ChosenBy = Literal["request", "allocator", "default"]


class SolverConfig(StrictModel):
    """What a ``Solver`` loads and how it answers; ``from_run`` builds one from a finished run."""

    proposer: str = Field(description="Directory of the proposer (any Hugging Face causal LM).")
    verifier: VerifierConfig = VerifierConfig()
    verifier_model: str | None = Field(
        None, description="The PRM's directory; None for verifier kind 'proposer_margin' (the proposer scores)."
    )
    revision_model: str | None = Field(None, description="The revision model's directory; None: no revisions.")
    policy: str | None = Field(
        None, description="A learned allocator's directory (written by `ttc run`); None: always `strategy`."
    )
    strategy: StrategyConfig = Field(
        StrategyConfig(name="best_of_n_weighted"),
        description="The strategy without a policy, and the fallback when the policy's knob cannot run.",
    )
    budget: int = Field(16, ge=1, description="Generations per question when a query gives none.")
    max_budget: int = Field(64, ge=1, description="The largest budget a query may ask for.")
    prompt: PromptConfig = PromptConfig()
    task: TaskConfig | None = Field(
        None,
        description="The task the proposer was trained on, whose format a typed question is put in "
        "(Task.format_question: a bare chain `7-3*2+5` gets the embedded tasks' header and padding); None: "
        "questions as given.",
    )
    revision_prompt: RevisionPromptConfig = RevisionPromptConfig()
    sampling: SamplingConfig = SamplingConfig()
    generation: GenerationConfig = GenerationConfig()
    seed: int = Field(0, ge=0, le=2**64 - 1, description="Seed of queries that give none (a query's seed's range).")
    device: str | None = Field(None, description="torch device; None picks cuda when available.")

    @model_validator(mode="after")
    def _consistent(self) -> SolverConfig:
        if self.budget > self.max_budget:
            raise ValueError(f"budget {self.budget} is above max_budget {self.max_budget}")
        if self.verifier.kind != "proposer_margin" and self.verifier_model is None:
            raise ValueError(f"verifier_model: a PRM directory is needed for verifier kind {self.verifier.kind!r}")
        return self

    @classmethod
    def from_run(cls, run: ExperimentConfig, policy: Literal["fixed", "adaptive"] | None = "fixed") -> SolverConfig:
        """The config that serves a finished run's models and its trained allocator (``policy``
        None: the default strategy for every question). Budgets: the pool's middle one by default,
        its largest at most."""
        from .experiment_config import RunLayout  # the run's configs import the trainers: only when asked

        layout = RunLayout(run)
        proposer = layout.proposer_dir()
        if not (proposer / "config.json").is_file():
            raise ConfigError(f"{proposer} holds no proposer: run `ttc run` on this config first")
        policy_dir = None
        if policy is not None:
            policy_dir = layout.policy_dir(policy)
            if not (policy_dir / "policy.json").is_file():
                raise ConfigError(f"{policy_dir} holds no trained allocator: run `ttc run` on this config first")
        revision = layout.revision_dir()
        budgets = sorted(run.pool.budgets)
        return cls(
            proposer=str(proposer),
            verifier=run.verifier,
            verifier_model=None if run.verifier.kind == "proposer_margin" else str(layout.prm_dir()),
            revision_model=str(revision) if (revision / "config.json").is_file() else None,
            policy=None if policy_dir is None else str(policy_dir),
            budget=budgets[len(budgets) // 2],
            max_budget=budgets[-1],
            prompt=run.proposer.prompt,
            task=None if run.task.name == "math" else run.task,
            revision_prompt=run.revision.prompt,
            sampling=run.sampling,
            generation=run.generation,
            device=run.device,
        )


class BadQuery(ValueError):
    """A query the solver refuses before doing any work; the message says what is wrong."""


@dataclass(frozen=True)
class Query:
    """One question to answer; None fields take the solver's defaults."""

    question: str
    budget: int | None = None
    strategy: StrategyConfig | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Solution:
    """A solver's answer to one query.

    ``compute`` is what the strategy spent; ``decision_flops`` what the allocator's features cost
    (0 when the query named its strategy); ``decision_seconds`` is the wall time of the allocator's
    decision for the batch this question was part of (features and policy) and ``strategy_seconds``
    the wall time of the strategy call it ran in: the two waits a caller sees.
    """

    question: str
    answer: str | None
    text: str
    strategy: StrategyConfig
    budget: int
    chosen_by: ChosenBy
    note: str | None
    seed: int
    candidates: list[Candidate]
    compute: Compute
    decision_flops: int
    decision_seconds: float
    strategy_seconds: float

    @property
    def flops(self) -> int:
        """Everything this answer cost: the strategy's FLOPs and the allocator's features."""
        return self.compute.flops + self.decision_flops

    def knobs(self) -> dict[str, object]:
        """The knobs the strategy ran with at its budget (resolved: ``sqrt`` becomes a number)."""
        s = self.strategy
        if s.name in ("beam_search", "dvts"):
            return {"beam_width": s.width(self.budget)}
        if s.name == "lookahead":
            return {"beam_width": s.width(self.budget), "lookahead": s.lookahead}
        if s.name == "revisions":
            return {"chain_length": s.length(self.budget), "across_chains": s.across_chains}
        return {}

    def to_dict(self, candidates: bool = True) -> dict[str, object]:
        """JSON form (what ``ttc solve --json`` prints and the server returns under ``ttc``)."""
        out: dict[str, object] = {
            "question": self.question,
            "answer": self.answer,
            "text": self.text,
            "strategy": self.strategy.name,
            "label": self.strategy.label,
            "knobs": self.knobs(),
            "budget": self.budget,
            "chosen_by": self.chosen_by,
            "note": self.note,
            "seed": self.seed,
            "flops": self.flops,
            "decision_flops": self.decision_flops,
            "compute": self.compute.to_dict(),
            "decision_ms": 1000 * self.decision_seconds,
            "strategy_ms": 1000 * self.strategy_seconds,
        }
        if candidates:
            out["candidates"] = [{"answer": c.answer, "score": c.score, "text": c.text} for c in self.candidates]
        return out


def question_seed(seed: int, question: str) -> int:
    """The seed of one question: from the query's seed and the question's text (CRC-32), so that
    it does not depend on the batch."""
    return derive_seed(seed, zlib.crc32(question.encode()))


def best_text(candidates: Sequence[Candidate], answer: str | None) -> str:
    """The text of the best-scored candidate with ``answer`` or an answer equal to it (selection
    merges equal answers, so ``1/2`` may win with ``\\frac{1}{\\sqrt{4}}`` among its candidates);
    any candidate when none has it; "" without candidates."""
    groups = group_answers([answer, *(c.answer for c in candidates)])
    pool = [c for c, group in zip(candidates, groups[1:]) if group == groups[0]] or list(candidates)
    return max(pool, key=lambda c: c.score).text if pool else ""


class Solver:
    """Answers queries (see the module docstring). Build with ``Solver.load(config)``."""

    def __init__(
        self,
        config: SolverConfig,
        generator: Generator,
        scorer: StepScorer,
        reviser: Generator | None = None,
        allocator: LearnedAllocator | None = None,
    ) -> None:
        self.config = config
        self.generator = generator
        self.scorer = scorer
        self.reviser = reviser
        self.allocator = allocator
        self.task = None if config.task is None else config.task.build()
        self.settings = SearchSettings(
            config.prompt,
            config.sampling.params(),
            config.verifier.aggregation,
            reviser=reviser,
            revision_prompt=config.revision_prompt,
        )
        if allocator is not None and reviser is None:
            needs = [a.label for a in allocator.policy.actions.available if self._needs_reviser(a.strategy, a.budget)]
            if needs:
                raise ConfigError(
                    f"the policy at {config.policy} can choose {sorted(needs)[0]}, which needs a revision model: "
                    "give revision_model"
                )

    @classmethod
    def load(cls, config: SolverConfig) -> Solver:
        """Load every model ``config`` names, once."""
        import torch

        device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        generator = load_generator(config.proposer, config.generation, device)
        scorer = load_verifier(config.verifier, config.verifier_model or config.proposer, config.prompt, device)
        reviser = (
            load_generator(config.revision_model, config.generation, device)
            if config.revision_model is not None
            else None
        )
        allocator = None
        if config.policy is not None:
            if not (Path(config.policy) / "policy.json").is_file():
                raise ConfigError(f"policy: {config.policy} holds no allocator policy (no policy.json)")
            policy, features = load_policy(config.policy)
            featurizer = build_featurizer(features, config.proposer, config.prompt, device)
            allocator = LearnedAllocator("learned", policy, featurizer)
        return cls(config, generator, scorer, reviser, allocator)

    @classmethod
    def from_experiment(cls, path: str | Path, policy: Literal["fixed", "adaptive"] | None = "fixed") -> Solver:
        """The solver of a finished run: its experiment YAML at ``path`` (``SolverConfig.from_run``)."""
        from .experiment_config import load_experiment

        return cls.load(SolverConfig.from_run(load_experiment(path), policy))

    @staticmethod
    def _needs_reviser(strategy: StrategyConfig, budget: int) -> bool:
        return strategy.name == "revisions" and strategy.length(budget) > 1

    def prompt_tokens(self, question: str) -> int:
        """Tokens of the proposer's prompt for ``question``."""
        return len(self.generator.tokenizer(self.config.prompt.format(question))["input_ids"])

    def check(self, query: Query) -> Query:
        """``query`` with its defaults filled in and its question in the proposer's format
        (``SolverConfig.task``), or ``BadQuery`` saying what is wrong."""
        config = self.config
        if not isinstance(query.question, str) or not query.question.strip():
            raise BadQuery("the question is empty")
        if self.task is not None:
            query = replace(query, question=self.task.format_question(query.question))
        budget = config.budget if query.budget is None else query.budget
        if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= config.max_budget:
            raise BadQuery(f"budget must be an integer from 1 to {config.max_budget} generations, got {budget!r}")
        seed = config.seed if query.seed is None else query.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise BadQuery(f"seed must be an integer from 0 to 2**64 - 1, got {seed!r}")
        strategy = query.strategy
        if strategy is None and self.allocator is None:
            strategy = config.strategy  # what will run; an allocator's choice is checked once made (_runnable)
        if strategy is not None:
            self._check_strategy(strategy, budget)
        problem = self._fit_problem(strategy, budget, query.question)
        if problem is not None:
            raise BadQuery(problem)
        return replace(query, budget=budget, seed=seed)

    def _fit_problem(self, strategy: StrategyConfig | None, budget: int, question: str) -> str | None:
        """Why ``question`` leaves too little of the proposer's context for ``strategy`` at ``budget``
        (None: for one solution, what every strategy needs) or of the revision model's context for
        a revision; None when it fits."""
        max_new = self.config.sampling.max_new_tokens
        context = self.generator.context
        if context is not None:
            needed = max_new if strategy is None else strategy.build(budget).context_room(max_new)
            tokens = self.prompt_tokens(question)
            if tokens + needed > context:
                what = f"{needed} new tokens" if strategy is None else f"the {needed} tokens {strategy.label} needs"
                return (
                    f"the question's prompt is {tokens} tokens; the proposer's context of {context} tokens "
                    f"leaves room for {context - needed} next to {what}"
                )
        if strategy is not None and self._needs_reviser(strategy, budget) and self.reviser.context is not None:
            context = self.reviser.context
            prompt = self.config.revision_prompt.format(self.config.prompt, question, [])
            tokens = len(self.reviser.tokenizer(prompt)["input_ids"])
            if tokens + max_new > context:
                return (
                    f"the question's revision prompt is {tokens} tokens; the revision model's context of {context} "
                    f"tokens leaves room for {context - max_new} next to {max_new} new tokens"
                )
        return None

    def _check_strategy(self, strategy: StrategyConfig, budget: int) -> None:
        why = strategy.unusable(budget)
        if why is not None:
            raise BadQuery(f"strategy {strategy.label} cannot run at budget {budget}: {why}")
        if self.reviser is None and self._needs_reviser(strategy, budget):
            raise BadQuery(f"strategy {strategy.label} needs a revision model, and this solver has none")

    def solve(
        self, question: str, budget: int | None = None, strategy: StrategyConfig | None = None, seed: int | None = None
    ) -> Solution:
        """Answer one question (see ``solve_batch``)."""
        return self.solve_batch([Query(question, budget, strategy, seed)])[0]

    def solve_batch(self, queries: Sequence[Query]) -> list[Solution]:
        """Answer every query; questions that share an arm run in one strategy call. The first
        problem raises for the whole batch: ``BadQuery`` for a bad query, else what the failing
        call raised (``solve_each`` answers the other queries)."""
        return self._solve_checked([self.check(q) for q in queries])

    def solve_each(self, queries: Sequence[Query]) -> list[Solution | Exception]:
        """Answer every query as ``solve_batch`` does, each with its solution or the exception it
        raised in its place: ``BadQuery`` for a query refused by ``check``; a batched call that
        fails is made again for each half of its queries, down to the failing queries alone."""
        outcomes: list[Solution | Exception | None] = [None] * len(queries)
        checked = []
        for i, query in enumerate(queries):
            try:
                checked.append((i, self.check(query)))
            except Exception as error:  # noqa: BLE001 - the query's own answer
                outcomes[i] = error
        self._solve_isolated(checked, outcomes)
        return outcomes

    def _solve_isolated(self, checked: list[tuple[int, Query]], outcomes: list[Solution | Exception | None]) -> None:
        """Fill ``outcomes`` at the positions of ``checked`` (position, checked query), halving on failure."""
        if not checked:
            return
        try:
            solutions = self._solve_checked([query for _, query in checked])
        except Exception as error:  # noqa: BLE001 - kept for the query that raised it, or retried by halves
            if len(checked) == 1:
                outcomes[checked[0][0]] = error
                return
            half = len(checked) // 2
            self._solve_isolated(checked[:half], outcomes)
            self._solve_isolated(checked[half:], outcomes)
            return
        for (i, _), solution in zip(checked, solutions, strict=True):
            outcomes[i] = solution

    def _solve_checked(self, checked: list[Query]) -> list[Solution]:
        """``solve_batch`` of queries ``check`` has passed."""
        arms, decision_flops, decision_seconds = self._decide(checked)
        groups: dict[tuple[StrategyConfig, int], list[int]] = {}
        for i, (strategy, budget, _, _) in enumerate(arms):
            groups.setdefault((strategy, budget), []).append(i)
        solutions: list[Solution | None] = [None] * len(checked)
        for (strategy, budget), members in groups.items():
            questions = [checked[i].question for i in members]
            seeds = [question_seed(checked[i].seed, checked[i].question) for i in members]
            started = time.perf_counter()
            results = strategy.build(budget).run(
                questions, self.generator, self.scorer, budget, self.settings, seed=seeds
            )
            seconds = time.perf_counter() - started
            for i, result in zip(members, results, strict=True):
                _, _, chosen_by, note = arms[i]
                solutions[i] = Solution(
                    checked[i].question,
                    result.answer,
                    best_text(result.candidates, result.answer),
                    strategy,
                    budget,
                    chosen_by,
                    note,
                    checked[i].seed,
                    result.candidates,
                    result.compute,
                    int(decision_flops[i]),
                    decision_seconds[i],
                    seconds,
                )
        return solutions

    def _decide(self, queries: list[Query]):
        """Per query: (strategy, budget, chosen_by, note), the features' FLOPs and decision seconds."""
        count = len(queries)
        flops, seconds = np.zeros(count), np.zeros(count)
        decided: list[tuple[StrategyConfig, int, ChosenBy, str | None] | None] = [None] * count
        open_rows = []
        for i, query in enumerate(queries):
            if query.strategy is not None:
                decided[i] = (query.strategy, query.budget, "request", None)
            elif self.allocator is None:
                decided[i] = (self.config.strategy, query.budget, "default", None)
            else:
                open_rows.append(i)
        if open_rows:
            started = time.perf_counter()
            features, cost = self.allocator.featurizer([queries[i].question for i in open_rows])
            actions = self.allocator.policy.actions
            by_budget: dict[int | None, list[int]] = {}
            for row, i in enumerate(open_rows):
                key = None if actions.adaptive else self._policy_budget(queries[i].budget)
                by_budget.setdefault(key, []).append(row)
            for key, rows in by_budget.items():
                for row, arm in zip(rows, self.allocator.decide(features[rows], key), strict=True):
                    i = open_rows[row]
                    budget = min(arm.budget, queries[i].budget) if actions.adaptive else queries[i].budget
                    decided[i] = self._runnable(arm.strategy, budget, queries[i].question)
                    flops[i] = cost[row]
            elapsed = time.perf_counter() - started
            seconds[open_rows] = elapsed
        return decided, flops, seconds

    def _policy_budget(self, budget: int) -> int:
        """The trained budget a fixed-budget policy decides at for a query's ``budget``."""
        trained = self.allocator.policy.actions.budgets
        below = [b for b in trained if b <= budget]
        return max(below) if below else min(trained)

    def _runnable(
        self, strategy: StrategyConfig, budget: int, question: str
    ) -> tuple[StrategyConfig, int, ChosenBy, str | None]:
        """The policy's strategy at ``budget`` for ``question``, or the default one with the reason
        (``BadQuery`` when the default cannot run either)."""
        why = strategy.unusable(budget)
        if why is None:
            problem = self._fit_problem(strategy, budget, question)
            if problem is None:
                return strategy, budget, "allocator", None
            note = f"the allocator chose {strategy.label}, but {problem}; ran the default"
        else:
            note = f"the allocator chose {strategy.label}, which cannot run at budget {budget} ({why}); ran the default"
        self._check_strategy(self.config.strategy, budget)
        problem = self._fit_problem(self.config.strategy, budget, question)
        if problem is not None:
            raise BadQuery(problem)
        return self.config.strategy, budget, "default", note
