"""Outcome tables and the splits allocators are fitted and tested on.

An ``ArmOutcomes`` table holds every arm's result on every question of a rollout pool as an
expected rate: resampled for the parallel arms, drawn from the stored chains for the chained ones
(revisions), the mean over the stored runs for the run arms (whose runs and draws it keeps too,
for the replay environment to draw from); a ``PerQuestion`` holds one allocator's result at one
budget; ``Splits`` says which rows a fitted allocator learns from and which it answers
(cross-validation folds, or a separate training pool). The environment, the trainers and the
evaluation all read these, so they live here, apart from how a pool is collected.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .compute import inference_flops
from .generation.sampling import derive_seed
from .pool import PoolConfig, PoolMismatch, RolloutPool
from .strategies import Arm, select_chains
from .strategies.base import Candidate
from .tasks import answers_match, group_answers


@dataclass(frozen=True)
class StoredRuns:
    """A run arm's independent stored runs: ``(questions, runs)`` arrays of correctness (0/1),
    generations and FLOPs."""

    correct: np.ndarray
    generations: np.ndarray
    flops: np.ndarray

    def rows(self, rows: np.ndarray) -> StoredRuns:
        return StoredRuns(self.correct[rows], self.generations[rows], self.flops[rows])


@dataclass(frozen=True)
class ArmOutcomes:
    """Every arm's result on every question of a pool: ``correct[q, a]`` (the expected rate: over
    resamples for parallel arms, over stored runs for run arms), ``generations[q, a]`` and
    ``flops[q, a]`` (means per question); ``stored`` maps a run arm's column to its runs."""

    arms: list[Arm]
    levels: np.ndarray
    questions: list[str]
    correct: np.ndarray
    generations: np.ndarray
    flops: np.ndarray
    stored: dict[int, StoredRuns] = field(default_factory=dict)

    def column(self, arm: Arm) -> int:
        """The column of ``arm``, or of the arm that runs the same strategy at its budget (a pool
        holds each strategy once per budget: ``PoolConfig.arms``)."""
        if arm in self.arms:
            return self.arms.index(arm)
        key = arm.strategy.behaviour(arm.budget)
        for a, held in enumerate(self.arms):
            if held.budget == arm.budget and held.strategy.behaviour(arm.budget) == key:
                return a
        raise ValueError(f"the outcome table holds no arm {arm.label} nor one that runs the same strategy")

    def compute(self, unit: str) -> np.ndarray:
        """The ``(questions, arms)`` mean compute in ``unit``: generations or flops."""
        if unit not in ("generations", "flops"):
            raise ValueError(f"unknown compute unit {unit!r}: generations or flops")
        return self.generations if unit == "generations" else self.flops

    def within_budget(self) -> list[Arm]:
        """The arms that spend at most their budget in generations on every question: the choices
        of a fixed budget. Lookahead is left out, as it spends N x (k + 1) at budget N."""
        return [arm for a, arm in enumerate(self.arms) if (self.generations[:, a] <= arm.budget).all()]


@dataclass(frozen=True)
class QuestionSamples:
    """One question's stored samples, answers merged once (``group_answers``): each sample's
    answer group (-1 for none), whether each group is right (as its first sample is), the
    samples' scores, generated tokens and verifier FLOPs, and the question's prompt tokens."""

    groups: np.ndarray
    right: np.ndarray
    scores: np.ndarray
    generated: np.ndarray
    verifier: np.ndarray
    prompt: int

    @classmethod
    def of(cls, samples: pd.DataFrame) -> list[QuestionSamples]:
        """Per question of a pool's samples, in question order. Parquet's nulls (samples without
        an answer) read back as NaN and count as no answer."""
        found = []
        for _, rows in samples.groupby("question", sort=True):
            answers = group_answers([answer if isinstance(answer, str) else None for answer in rows["answer"]])
            numbers: dict[str, int] = {}
            right: list[bool] = []
            for answer, ok in zip(answers, rows["correct"].tolist()):
                if answer is not None and answer not in numbers:
                    numbers[answer] = len(numbers)
                    right.append(bool(ok))
            found.append(
                cls(
                    np.array([-1 if answer is None else numbers[answer] for answer in answers]),
                    np.array(right, dtype=bool),
                    rows["score"].to_numpy(),
                    rows["generated_tokens"].to_numpy(),
                    rows["verifier_flops"].to_numpy(),
                    int(rows["prompt_tokens"].iloc[0]),
                )
            )
        return found


def parallel_outcome(
    samples: pd.DataFrame | Sequence[QuestionSamples], how: str, budget: int, resamples: int, seed: int, params: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per question, the expected correctness and FLOPs of ``how`` (majority, weighted, naive)
    over ``budget`` samples drawn without replacement from its stored samples (a pool's rows, or
    ``QuestionSamples.of`` them, merged once for every arm), ``resamples`` times. The prompt is
    charged once per run; majority is charged no verifier. A chosen group is as right as its
    representative, the first sample with that answer; the resamples of a question are selected
    together (``select_drawn``)."""
    questions = QuestionSamples.of(samples) if isinstance(samples, pd.DataFrame) else samples
    correct, flops = [], []
    for question, mine in enumerate(questions):
        rng = np.random.default_rng(derive_seed(seed, question, budget) & 0xFFFFFFFF)
        picked = np.argsort(rng.random((resamples, len(mine.groups))), axis=1)[:, :budget]
        winners = select_drawn(how, mine.groups[picked], mine.scores[picked], len(mine.right))
        right = np.append(mine.right, False)  # winner -1: no answer, never right
        correct.append(float(right[winners].mean()))
        spent = 2 * params * (mine.prompt + mine.generated[picked].sum(axis=1))
        if how != "majority":
            spent = spent + mine.verifier[picked].sum(axis=1)
        flops.append(float(spent.mean()))
    return np.array(correct), np.array(flops)


def select_drawn(how: str, groups: np.ndarray, scores: np.ndarray, count: int) -> np.ndarray:
    """The answer group ``how`` picks in each row of ``groups`` (a ``(draws, N)`` array of group
    numbers 0..count-1 in the order drawn, -1 for no answer) with the candidates' ``scores``; -1
    where no candidate has an answer. The rules of ``selection.select_answer``, for many draws at
    once: majority counts, weighted sums the scores in the order drawn, naive takes each group's
    best score; the largest value wins, ties to the group drawn first."""
    draws, n = groups.shape
    answered = groups >= 0
    row, column = np.nonzero(answered)[0], groups[answered]  # row-major: each draw in the order drawn
    value = np.full((draws, max(count, 1)), -np.inf)
    if how == "naive":
        np.maximum.at(value, (row, column), scores[answered])
    else:
        totals = np.zeros_like(value)
        np.add.at(totals, (row, column), 1.0 if how == "majority" else scores[answered])
        seen = np.zeros(value.shape, dtype=bool)
        seen[row, column] = True
        value = np.where(seen, totals, -np.inf)
    first = np.full(value.shape, n)
    for position in range(n - 1, -1, -1):
        here = np.nonzero(answered[:, position])[0]
        first[here, groups[here, position]] = position
    best = value.max(axis=1)
    winner = np.where(value == best[:, None], first, n + 1).argmin(axis=1)
    return np.where(np.isfinite(best), winner, -1)


def stored_runs(runs: pd.DataFrame, arm: Arm, count: int, per_question: int) -> StoredRuns:
    """``arm``'s ``per_question`` runs on each of the pool's ``count`` questions, from the pool's
    run rows; a missing run is an error naming the arm (a pool is only read complete)."""
    mine = runs[runs["arm"] == arm.label]

    def grid(column: str) -> np.ndarray:
        table = mine.pivot(index="question", columns="run", values=column)
        return table.reindex(index=range(count), columns=range(per_question)).to_numpy(dtype=float)

    stored = StoredRuns(grid("correct"), grid("generations"), grid("flops"))
    if np.isnan(stored.correct).any():
        raise ValueError(f"the pool holds fewer than {per_question} runs of {arm.label} on some question")
    return stored


def chained_outcome(
    chains: pd.DataFrame,
    stored: int,
    arm: Arm,
    gold: Sequence[str],
    prompt_tokens: np.ndarray,
    params: int,
    resamples: int,
    seed: int,
) -> StoredRuns:
    """``arm`` (a chained strategy at N, ``StrategyConfig.chain`` = L) on each question, as every
    draw of N/L of the question's ``stored`` chains (``chains``: the rows of its chain arm, one per
    chain and question): all the subsets when there are at most ``resamples``, else ``resamples``
    seeded draws without replacement. A draw's answer is ``select_chains`` over its chains'
    attempts; its compute is the sum of its chains', less the question's prompt (``prompt_tokens``,
    at 2 x ``params`` FLOPs a token) for every chain after the first: a run samples all its chains'
    first attempts from one reading of the prompt (``strategies.base.sample``)."""
    length = arm.strategy.chain
    if not length or arm.budget % length:
        raise ValueError(f"{arm.label} is not drawn from chains: its budget is not a multiple of a chain length")
    take, count = arm.budget // length, len(gold)
    sizes = chains.groupby("question").size().reindex(range(count), fill_value=0)
    if (sizes != stored).any():
        raise ValueError(f"the pool holds fewer than {stored} chains of {arm.label} on some question")
    if take > stored:
        raise ValueError(f"{arm.label} draws {take} chains and the pool holds {stored} per question")
    every = math.comb(stored, take) <= resamples
    draws = [list(c) for c in itertools.combinations(range(stored), take)] if every else []
    correct = np.zeros((count, len(draws) or resamples))
    flops = np.zeros_like(correct)
    for question, rows in chains.groupby("question", sort=True):
        q = int(question)
        rows = rows.sort_values("run")
        attempts = [
            [Candidate(c["text"], (), float(c["score"]), c["answer"], True) for c in candidates]
            for candidates in rows["candidates"]
        ]
        spent = rows["flops"].to_numpy(dtype=float)
        if not every:
            rng = np.random.default_rng(derive_seed(seed, q, arm.budget) & 0xFFFFFFFF)
            draws = [rng.choice(stored, size=take, replace=False).tolist() for _ in range(resamples)]
        for d, draw in enumerate(draws):
            answer = select_chains([a for c in draw for a in attempts[c]], length, arm.strategy.across_chains)
            correct[q, d] = answer is not None and answers_match(answer, gold[q])
            flops[q, d] = spent[draw].sum() - (take - 1) * inference_flops(params, int(prompt_tokens[q]))
    return StoredRuns(correct, np.full_like(correct, arm.budget), flops)


def arm_outcomes(pool: RolloutPool) -> ArmOutcomes:
    """The outcome table of a complete pool: run arms as the mean of their stored runs, parallel
    arms resampled from the samples, chained arms drawn from the stored chains (each draw kept as a
    stored run, for the replay environment)."""
    if not pool.complete():
        raise ValueError(f"the pool at {pool.directory} is incomplete: collect it first")
    manifest = pool.manifest()
    config = PoolConfig.model_validate_json(json.dumps(manifest["config"]))
    questions = pool.questions()
    samples = pool.samples()
    sampled = QuestionSamples.of(samples)
    runs = pool.runs()
    arms = config.arms()
    count = len(questions)
    correct = np.zeros((count, len(arms)))
    flops = np.zeros((count, len(arms)))
    generations = np.zeros((count, len(arms)))
    stored: dict[int, StoredRuns] = {}
    for a, arm in enumerate(arms):
        if arm.strategy.parallel:
            correct[:, a], flops[:, a] = parallel_outcome(
                sampled,
                arm.strategy.parallel,
                arm.budget,
                config.resamples,
                config.seed,
                manifest["proposer_params"],
            )
            generations[:, a] = arm.budget
        elif arm.strategy.chain:
            chain = Arm(arm.strategy, arm.strategy.chain)
            stored[a] = chained_outcome(
                runs[runs["arm"] == chain.label],
                config.runs_of(chain),
                arm,
                questions["answer"].tolist(),
                np.array([q.prompt for q in sampled]),
                manifest["proposer_params"],
                config.resamples,
                config.seed,
            )
        else:
            stored[a] = stored_runs(runs, arm, count, config.runs_of(arm))
        if a in stored:
            correct[:, a] = stored[a].correct.mean(axis=1)
            flops[:, a] = stored[a].flops.mean(axis=1)
            generations[:, a] = stored[a].generations.mean(axis=1)
    levels, texts = questions["level"].to_numpy(), questions["question"].tolist()
    return ArmOutcomes(arms, levels, texts, correct, generations, flops, stored)


@dataclass(frozen=True)
class PerQuestion:
    """One allocator at one budget: per pool question, the outcome and its compute."""

    allocator: str
    budget: int
    correct: np.ndarray
    generations: np.ndarray
    flops: np.ndarray


def folds_of(count: int, folds: int, seed: int) -> np.ndarray:
    """A balanced random fold number per question."""
    order = np.random.default_rng(derive_seed(seed, count, folds) & 0xFFFFFFFF).permutation(count)
    assignment = np.empty(count, dtype=int)
    assignment[order] = np.arange(count) % folds
    return assignment


@dataclass(frozen=True)
class Splits:
    """Which rows of an outcome table a fitted allocator learns from and which it answers.

    ``parts`` holds ``(train rows, answered rows)`` pairs whose answered rows cover ``0 ..
    tested - 1`` (the evaluation questions) once; ``fit_rows`` are the rows a final allocator, the
    one saved or shown, is fitted on."""

    parts: list[tuple[np.ndarray, np.ndarray]]
    tested: int
    fit_rows: np.ndarray
    description: str

    @classmethod
    def folds(cls, count: int, folds: int, seed: int) -> Splits:
        """Cross-validation on one table of ``count`` questions (``folds_of``)."""
        assignment = folds_of(count, folds, seed)
        parts = [(np.flatnonzero(assignment != f), np.flatnonzero(assignment == f)) for f in sorted(set(assignment))]
        return cls(parts, count, np.arange(count), f"{folds}-fold cross-validation on the {count} pool questions")

    @classmethod
    def training_pool(cls, tested: int, trained: int, split: str) -> Splits:
        """Rows ``tested ..`` (``trained`` training-pool questions) fit, rows ``0 .. tested - 1`` answer."""
        train = np.arange(tested, tested + trained)
        description = (
            f"fitted on {trained} {split} questions of the training pool, tested on the {tested} pool questions"
        )
        return cls([(train, np.arange(tested))], tested, train, description)

    def fewer(self, size: int, levels: np.ndarray, seed: int) -> Splits:
        """The same splits with each part's training rows cut to ``size`` (at most what it has),
        an equal share per level (``levels`` of every row; the remainder to the first levels),
        drawn with ``seed`` (the same rows cut the same way in every part and in ``fit_rows``): what
        an allocator learns from fewer questions."""

        def cut(rows: np.ndarray) -> np.ndarray:
            rng = np.random.default_rng(seed)
            groups = [rng.permutation(rows[levels[rows] == level]) for level in sorted(set(levels[rows].tolist()))]
            shares = [size // len(groups) + (i < size % len(groups)) for i in range(len(groups))]
            return np.sort(np.concatenate([group[:share] for group, share in zip(groups, shares)]))

        parts = [(cut(train) if size < len(train) else train, held) for train, held in self.parts]
        fit_rows = cut(self.fit_rows) if size < len(self.fit_rows) else self.fit_rows
        return Splits(parts, self.tested, fit_rows, f"{self.description}, cut to {size} training questions")


STORED_FIELDS = ("correct", "generations", "flops")


def with_training_pool(evaluation: ArmOutcomes, training: ArmOutcomes) -> tuple[ArmOutcomes, np.ndarray]:
    """One table: ``evaluation``'s rows, then those of ``training`` whose question is not an
    evaluation question; returns it and the kept training rows. The pools must hold the same arms."""
    if [a.label for a in training.arms] != [a.label for a in evaluation.arms]:
        raise PoolMismatch(
            f"the training pool's arms {[a.label for a in training.arms]} are not the evaluation pool's "
            f"{[a.label for a in evaluation.arms]}"
        )
    seen = set(evaluation.questions)
    kept = np.array([i for i, q in enumerate(training.questions) if q not in seen], dtype=int)
    if not len(kept):
        raise ValueError("every question of the training pool is an evaluation question: nothing to train on")
    combined = ArmOutcomes(
        evaluation.arms,
        np.concatenate([evaluation.levels, training.levels[kept]]),
        evaluation.questions + [training.questions[i] for i in kept],
        np.vstack([evaluation.correct, training.correct[kept]]),
        np.vstack([evaluation.generations, training.generations[kept]]),
        np.vstack([evaluation.flops, training.flops[kept]]),
        {
            a: StoredRuns(
                *(np.vstack([getattr(runs, f), getattr(training.stored[a].rows(kept), f)]) for f in STORED_FIELDS)
            )
            for a, runs in evaluation.stored.items()
            if a in training.stored
        },
    )
    return combined, kept


def outcome_of(
    outcomes: ArmOutcomes,
    name: str,
    budget: int,
    rows: np.ndarray,
    arms: Sequence,
    extra_flops: np.ndarray | None = None,
) -> PerQuestion:
    """The outcomes of pool questions ``rows`` under the arms chosen for them, with
    ``extra_flops`` per pool question (e.g. the features' cost) added to their compute."""
    columns = np.array([outcomes.column(arm) for arm in arms])
    flops = outcomes.flops[rows, columns]
    return PerQuestion(
        name,
        budget,
        outcomes.correct[rows, columns],
        outcomes.generations[rows, columns],
        flops if extra_flops is None else flops + extra_flops[rows],
    )


def merge_folds(parts: Sequence[tuple[np.ndarray, PerQuestion]], count: int) -> PerQuestion:
    """One result over all ``count`` pool questions from per-fold results on their rows."""
    correct, generations, flops = np.zeros(count), np.zeros(count), np.zeros(count)
    for rows, part in parts:
        correct[rows], generations[rows], flops[rows] = part.correct, part.generations, part.flops
    return PerQuestion(parts[0][1].allocator, parts[0][1].budget, correct, generations, flops)


def charged(result: PerQuestion, name: str, flops: np.ndarray, samples: int) -> PerQuestion:
    """``result`` with a difficulty estimate's cost added to every question."""
    return PerQuestion(name, result.budget, result.correct, result.generations + samples, result.flops + flops)
