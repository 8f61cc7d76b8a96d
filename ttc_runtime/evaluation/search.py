"""Accuracy against budget: every strategy at N = 1, f, f^2, ... up to a maximum, by level, with
bootstrap confidence intervals, the compute spent, a table and a plot.

How each figure is obtained (the prior art takes the first n samples of one pool instead):

- **Parallel strategies** (majority, best-of-N weighted and naive) draw on one pool of ``pool``
  scored samples per question, scored as ``BestOfN`` scores them (fused into sampling where the
  verifier is a margin PRM over the proposer's own model). Accuracy at N is the mean, over
  ``resamples`` random N-subsets of the pool drawn without replacement, of whether the selection
  is right: an estimate of the expected accuracy of a fresh N-sample run. Compute at N is what a
  fresh N-sample run is charged (``compute``'s rule): the prompt once, and N times the pool's mean
  cost per sample of its own tokens and, except for majority, its verifier.
- **Search strategies** (beam search, lookahead, DVTS) run once per question and budget; their
  compute is what the run spent.
- **Confidence intervals**: the 2.5th and 97.5th percentiles of the accuracy over ``bootstrap``
  resamples of the questions (with replacement), per level and over all levels.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from ttc_runtime.compute import Compute, Usage
from ttc_runtime.config import StrictModel
from ttc_runtime.files import save_figure
from ttc_runtime.generation.base import Generator
from ttc_runtime.generation.batches import sample_in_batches
from ttc_runtime.generation.sampling import derive_seed
from ttc_runtime.scoring import StepScorer
from ttc_runtime.selection import aggregate_steps, select_answer
from ttc_runtime.strategies import SearchSettings, StrategyConfig, default_grid
from ttc_runtime.strategies.base import Ledger, answer_of, fused_verifier, score_samples
from ttc_runtime.tasks import LEVELS, Problem, Task, answers_match, check_levels, group_answers


def _default_strategies() -> list[StrategyConfig]:
    return [s for s in default_grid() if s.name != "revisions"]


class SearchEvalConfig(StrictModel):
    """The accuracy-against-budget evaluation."""

    split: str = Field("test", pattern="^(validation|test)$")
    levels: list[int] = Field(list(LEVELS), min_length=1)
    problems_per_level: int = Field(30, ge=1)
    max_budget: int = Field(64, ge=1, description="Largest N; budgets are 1, f, f^2, ... up to it.")
    budget_factor: int = Field(4, ge=2, description="Ratio f between successive budgets (2: every power of 2).")
    strategies: list[StrategyConfig] = Field(default_factory=_default_strategies, min_length=1)
    pool: int = Field(128, ge=1, description="Scored samples per question for the parallel strategies.")
    resamples: int = Field(200, ge=1, description="N-subsets of the pool drawn per question and budget.")
    bootstrap: int = Field(1000, ge=10, description="Question resamples for the confidence intervals.")
    batch_questions: int = Field(16, ge=1, description="Questions per strategy call.")
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> SearchEvalConfig:
        check_levels(self.levels)
        if self.pool < self.max_budget and any(s.parallel for s in self.strategies):
            raise ValueError(f"pool ({self.pool}) must be at least max_budget ({self.max_budget})")
        labels = [s.label for s in self.strategies]
        if len(set(labels)) != len(labels):
            raise ValueError(f"strategies are listed twice: {labels}")
        return self

    def budgets(self) -> list[int]:
        """1, f, f^2, ... up to ``max_budget``."""
        return [self.budget_factor**i for i in range(int(math.log(self.max_budget, self.budget_factor) + 1e-9) + 1)]


@dataclass(frozen=True)
class BudgetPoint:
    """One strategy at one budget on one level (or ``level`` 0: all levels together)."""

    strategy: str
    budget: int
    level: int
    questions: int
    accuracy: float
    low: float
    high: float
    generated_tokens: float
    flops: float


@dataclass(frozen=True)
class Outcome:
    """One question's result under one strategy and budget: whether it was right (or the expected
    rate over resamples), and the compute per question."""

    level: int
    correct: float
    generated_tokens: float
    flops: float


def evaluate_budgets(
    generator: Generator,
    scorer: StepScorer,
    task: Task,
    problems: Sequence[Problem],
    settings: SearchSettings,
    config: SearchEvalConfig,
) -> tuple[list[BudgetPoint], dict[str, str]]:
    """Every configured strategy at every budget on ``problems``; returns the points and, per
    strategy and budget that cannot run, why (e.g. a beam width larger than the budget)."""
    outcomes: dict[tuple[str, int], list[Outcome]] = {}
    skipped: dict[str, str] = {}
    parallel = [s for s in config.strategies if s.parallel]
    if parallel:
        outcomes.update(_parallel(generator, scorer, problems, settings, config, parallel))
    for strategy in config.strategies:
        if strategy.parallel:
            continue
        for budget in config.budgets():
            reason = strategy.unusable(budget)
            if reason is not None:
                skipped[f"{strategy.label}@{budget}"] = reason
                continue
            outcomes[strategy.label, budget] = _search(generator, scorer, problems, settings, config, strategy, budget)
    return budget_points(outcomes, config.bootstrap, config.seed), skipped


def _parallel(generator, scorer, problems, settings, config, strategies) -> dict[tuple[str, int], list[Outcome]]:
    needs_scores = any(s.name != "majority" for s in strategies)
    fused = fused_verifier(scorer, generator, settings) if needs_scores else None
    pools: list[tuple[list[str | None], list[float], dict[str, bool], Compute]] = []
    for batch, output in sample_in_batches(
        generator,
        problems,
        settings.prompt,
        replace(settings.sampling, logprobs=fused is not None),
        config.pool,
        config.seed,
        config.batch_questions,
        f"pool of {config.pool}",
    ):
        samples = [c for row in output.completions for c in row]
        ledgers = [Ledger() for _ in samples]  # one per sample: the verifier's cost of each apart
        scores: list[tuple[float, ...]] = [() for _ in samples]
        if needs_scores:
            questions = [batch[i // config.pool].question for i in range(len(samples))]
            scores = score_samples(scorer, fused, questions, samples, list(range(len(samples))), ledgers)
        for q, problem in enumerate(batch):
            rows = range(q * config.pool, (q + 1) * config.pool)
            # One merge of equal answers per question, not one per resampled subset.
            answers = group_answers([answer_of(samples[i].text) for i in rows])
            values = [aggregate_steps(scores[i], settings.aggregation) if scores[i] else 0.0 for i in rows]
            right = {a: answers_match(a, problem.answer) for a in dict.fromkeys(answers) if a is not None}
            verifier_usage = sum((ledgers[i].verifier for i in rows), Usage())
            pools.append((answers, values, right, Compute(output.usages[q], verifier_usage, config.pool)))
    outcomes: dict[tuple[str, int], list[Outcome]] = {}
    for strategy in strategies:
        how = strategy.parallel
        for budget in config.budgets():
            rows = []
            for index, (problem, (answers, values, right, compute)) in enumerate(zip(problems, pools)):
                rng = np.random.default_rng(derive_seed(config.seed, index, budget) & 0xFFFFFFFF)
                wins = 0
                for _ in range(config.resamples):
                    picked = rng.choice(len(answers), size=budget, replace=False)
                    chosen = select_answer(how, [answers[i] for i in picked], [values[i] for i in picked])
                    wins += chosen is not None and right[chosen]
                rows.append(
                    Outcome(
                        problem.level,
                        wins / config.resamples,
                        compute.proposer.generated_tokens * budget / config.pool,
                        _subset_flops(compute, budget / config.pool, how != "majority"),
                    )
                )
            outcomes[strategy.label, budget] = rows
    return outcomes


def _subset_flops(pool: Compute, share: float, verified: bool) -> float:
    """FLOPs of N of a question's pooled samples (``share`` = N / pool size): the prompt once, as
    when N samples are drawn for the question, and the share of the samples' own tokens and (for a
    verifier-based selection) of their verifier cost."""
    prompt = pool.proposer.flops * pool.proposer.prompt_tokens / max(pool.proposer.tokens, 1)
    own = pool.proposer.flops - prompt + (pool.verifier.flops if verified else 0)
    return prompt + own * share


def _search(generator, scorer, problems, settings, config, strategy, budget) -> list[Outcome]:
    runner = strategy.build(budget)
    rows = []
    with tqdm(total=len(problems), desc=f"{strategy.label} N={budget}", unit="problem") as bar:
        for start in range(0, len(problems), config.batch_questions):
            batch = problems[start : start + config.batch_questions]
            seeds = [derive_seed(config.seed, start + i, budget) for i in range(len(batch))]
            results = runner.run([p.question for p in batch], generator, scorer, budget, settings, seeds)
            for problem, result in zip(batch, results, strict=True):
                right = result.answer is not None and answers_match(result.answer, problem.answer)
                compute = result.compute
                rows.append(Outcome(problem.level, float(right), compute.proposer.generated_tokens, compute.flops))
            bar.update(len(batch))
    return rows


def budget_points(outcomes: dict[tuple[str, int], list[Outcome]], bootstrap: int, seed: int) -> list[BudgetPoint]:
    """Accuracy with a 95% bootstrap interval over questions (``bootstrap`` resamples) and mean
    compute, per (strategy label, budget) and level, plus level 0 for all levels together."""
    points = []
    for (label, budget), rows in outcomes.items():
        groups: dict[int, list[Outcome]] = defaultdict(list)
        for row in rows:
            groups[row.level].append(row)
        groups[0] = list(rows)
        for level in sorted(groups):
            chosen = groups[level]
            correct = np.array([r.correct for r in chosen])
            rng = np.random.default_rng(derive_seed(seed, budget, level, len(label)) & 0xFFFFFFFF)
            means = correct[rng.integers(0, len(correct), size=(bootstrap, len(correct)))].mean(axis=1)
            points.append(
                BudgetPoint(
                    strategy=label,
                    budget=budget,
                    level=level,
                    questions=len(chosen),
                    accuracy=float(correct.mean()),
                    low=float(np.percentile(means, 2.5)),
                    high=float(np.percentile(means, 97.5)),
                    generated_tokens=float(np.mean([r.generated_tokens for r in chosen])),
                    flops=float(np.mean([r.flops for r in chosen])),
                )
            )
    return points


def _level_name(level: int) -> str:
    return "all levels" if level == 0 else f"level {level}"


def format_budget_table(points: Sequence[BudgetPoint]) -> str:
    """Markdown: accuracy [95% interval] per strategy and budget, one table per level, then the
    mean generated tokens and FLOPs per question over all levels."""
    budgets = sorted({p.budget for p in points})
    strategies = list(dict.fromkeys(p.strategy for p in points))
    at = {(p.strategy, p.budget, p.level): p for p in points}
    header = "| strategy | " + " | ".join(f"N={n}" for n in budgets) + " |"
    rule = "| --- |" + " ---: |" * len(budgets)
    blocks = []
    for level in sorted({p.level for p in points}):
        lines = [f"**Accuracy, {_level_name(level)}** (95% bootstrap interval)", "", header, rule]
        for name in strategies:
            cells = []
            for n in budgets:
                p = at.get((name, n, level))
                cells.append("-" if p is None else f"{p.accuracy:.3f} [{p.low:.2f}, {p.high:.2f}]")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    lines = ["**Cost per question, all levels**: generated tokens / FLOPs", "", header, rule]
    for name in strategies:
        cells = []
        for n in budgets:
            p = at.get((name, n, 0))
            cells.append("-" if p is None else f"{p.generated_tokens:,.0f} / {p.flops:.2e}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def plot_budgets(points: Sequence[BudgetPoint], path: str | Path) -> None:
    """Accuracy against budget (log2 axis), one panel per level and one for all levels, one line
    per strategy with its 95% band; written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted({p.level for p in points}, key=lambda level: (level == 0, level))
    strategies = list(dict.fromkeys(p.strategy for p in points))
    columns = min(3, len(levels))
    rows = math.ceil(len(levels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.0 * rows), sharey=True, squeeze=False)
    for axis in axes.flat[len(levels) :]:
        axis.set_visible(False)
    for axis, level in zip(axes.flat, levels):
        for name in strategies:
            mine = sorted((p for p in points if p.strategy == name and p.level == level), key=lambda p: p.budget)
            if not mine:
                continue
            x = [p.budget for p in mine]
            (line,) = axis.plot(x, [p.accuracy for p in mine], marker="o", markersize=3, label=name)
            axis.fill_between(x, [p.low for p in mine], [p.high for p in mine], color=line.get_color(), alpha=0.12)
        axis.set_xscale("log", base=2)
        axis.set_title(_level_name(level))
        axis.set_xlabel("budget N (generations)")
        axis.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("accuracy")
    axes.flat[len(levels) - 1].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    save_figure(figure, path)


def points_to_json(points: Sequence[BudgetPoint]) -> list[dict]:
    return [asdict(p) for p in points]
