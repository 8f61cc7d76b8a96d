"""Allocators against each other on a rollout pool: accuracy against mean compute, by difficulty
bin, and the efficiency ratio against best-of-N weighted.

**Protocol.** Every allocator picks one arm per question at each budget of the pool; a question's
outcome is that arm's stored outcome (its expected correctness for resampled parallel arms) and
its compute. Allocators fitted on the pool (compute-optimal by bin) are cross-validated as in the
paper: the questions are split into ``folds`` random folds, and each fold is answered by the
allocator fitted on the others. With a training pool (``TrainPoolConfig``: other questions, the same
grid), they are fitted on its questions instead and answer every evaluation question; a training
question that is also an evaluation question is left out of training (``Splits``). An allocator
whose difficulty estimate costs K samples is shown twice, without and with that cost added to each
question's compute (``charged``).

**Views.** All questions, and each oracle difficulty bin. Accuracy intervals are 95% bootstrap
intervals over questions.

**Efficiency ratio.** Best-of-N weighted's curve is resampled from the pool's samples at N = 1, 2,
4, ... up to K. For an allocator reaching accuracy ``a`` at mean compute ``c``, the ratio is
``c* / c`` where ``c*`` is the compute at which the curve first reaches ``a`` (linear in log
compute between the two bracketing points). When the curve never reaches ``a``, ``c*`` is unknown
beyond the largest N and the ratio is a lower bound (``>``); when the curve is already there at
N = 1, an upper bound (``<``). Computed in FLOPs and in generations.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from ttc_runtime.config import StrictModel
from ttc_runtime.env.actions import ActionSpace
from ttc_runtime.evaluation.difficulty import Difficulty, difficulty
from ttc_runtime.files import save_figure
from ttc_runtime.generation.sampling import derive_seed
from ttc_runtime.outcomes import (
    ArmOutcomes,
    PerQuestion,
    Splits,
    arm_outcomes,
    charged,
    merge_folds,
    outcome_of,
    parallel_outcome,
    with_training_pool,
)
from ttc_runtime.policies.allocators import Allocator, BinAllocator, FixedAllocator, PerQuestionOracle
from ttc_runtime.pool import PoolConfig, RolloutPool
from ttc_runtime.trainers.allocator import (
    AllocatorTrainConfig,
    calibrate_lambda,
    fit_supervised,
    scale_of,
    train_policy,
)


class BaselinesConfig(StrictModel):
    """The baseline allocators' evaluation (see the module docstring)."""

    bins: int = Field(5, ge=1, description="Difficulty bins (the paper's 5 quantiles).")
    folds: int = Field(2, ge=2, description="Cross-validation folds for allocators fitted on the pool (the paper's 2).")
    bootstrap: int = Field(1000, ge=10)
    seed: int = 0


@dataclass(frozen=True)
class AllocatorPoint:
    """One allocator at one budget in one view (0: all questions; b: oracle bin b)."""

    allocator: str
    budget: int
    view: int
    questions: int
    accuracy: float
    low: float
    high: float
    generations: float
    flops: float


@dataclass(frozen=True)
class Efficiency:
    """The efficiency ratio of one allocator at one budget, in FLOPs and in generations;
    ``bound`` is "=" (exact), ">" (lower bound) or "<" (upper bound)."""

    allocator: str
    budget: int
    accuracy: float
    flops_ratio: float
    flops_bound: str
    generations_ratio: float
    generations_bound: str


@dataclass(frozen=True)
class CurvePoint:
    """Best-of-N weighted at N, over all questions."""

    n: int
    accuracy: float
    generations: float
    flops: float


def run_allocator(allocator: Allocator, outcomes: ArmOutcomes, budget: int) -> PerQuestion:
    """Every pool question answered by ``allocator`` at ``budget``."""
    rows = np.arange(len(outcomes.questions))
    return outcome_of(outcomes, allocator.name, budget, rows, allocator.choose(outcomes.questions, budget))


def cross_validated(name: str, outcomes: ArmOutcomes, bins: np.ndarray, budget: int, splits: Splits) -> PerQuestion:
    """Compute-optimal by ``bins``: the rows of each split answered by the allocator fitted on its
    training rows."""
    parts = []
    for train, held in splits.parts:
        fitted = BinAllocator.fit(name, outcomes, bins, train)
        arms = fitted.choose([outcomes.questions[i] for i in held], budget)
        parts.append((held, outcome_of(outcomes, name, budget, held, arms)))
    return merge_folds(parts, splits.tested)


def cross_validated_fixed(
    name: str,
    features: np.ndarray,
    feature_flops: np.ndarray,
    outcomes: ArmOutcomes,
    splits: Splits,
    config: AllocatorTrainConfig,
    supervised: bool = False,
) -> list[PerQuestion]:
    """The fixed-budget allocator (RL, or the supervised ablation) at every budget, the answered
    rows of each split answered by the policy trained on its training rows; feature FLOPs charged."""
    space = ActionSpace.from_arms(outcomes.within_budget(), adaptive=False)
    parts: dict[int, list] = {n: [] for n in space.budgets}
    for train, held in splits.parts:
        if supervised:
            policy = fit_supervised(features, outcomes, train, space, config)
        else:
            policy, _ = train_policy(features, outcomes, train, space, config, 0.0, 1.0)
        for budget in space.budgets:
            arms = policy.greedy_arms(features[held], budget)
            parts[budget].append((held, outcome_of(outcomes, name, budget, held, arms, feature_flops)))
    return [merge_folds(parts[n], splits.tested) for n in space.budgets]


def cross_validated_adaptive(
    name: str,
    features: np.ndarray,
    feature_flops: np.ndarray,
    outcomes: ArmOutcomes,
    splits: Splits,
    config: AllocatorTrainConfig,
    targets: list[float],
) -> list[PerQuestion]:
    """The adaptive allocator at each target mean compute (``config.unit``): per split, ``lam``
    calibrated on its training rows, then its answered rows answered. Reported under the target as
    its budget label; its real spend is in the compute columns."""
    space = ActionSpace.from_arms(outcomes.arms, adaptive=True)
    scale = scale_of(outcomes, config.unit)
    results = []
    for target in targets:
        parts = []
        for train, held in splits.parts:
            _, policy = calibrate_lambda(features, outcomes, train, space, config, scale, target)
            arms = policy.greedy_arms(features[held], None)
            parts.append((held, outcome_of(outcomes, name, int(target), held, arms, feature_flops)))
        results.append(merge_folds(parts, splits.tested))
    return results


def _bootstrap(values: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed & 0xFFFFFFFF)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def points(results: Sequence[PerQuestion], views: np.ndarray, bootstrap: int, seed: int) -> list[AllocatorPoint]:
    """Accuracy with its interval and mean compute, per result and view (0 = all questions)."""
    out = []
    for index, result in enumerate(results):
        for view in [0, *sorted(set(views.tolist()))]:
            rows = np.arange(len(views)) if view == 0 else np.flatnonzero(views == view)
            low, high = _bootstrap(result.correct[rows], bootstrap, derive_seed(seed, index, result.budget, view))
            out.append(
                AllocatorPoint(
                    result.allocator,
                    result.budget,
                    view,
                    len(rows),
                    float(result.correct[rows].mean()),
                    low,
                    high,
                    float(result.generations[rows].mean()),
                    float(result.flops[rows].mean()),
                )
            )
    return out


def best_of_n_curve(samples_frame: pd.DataFrame, config: PoolConfig, params: int) -> list[CurvePoint]:
    """Best-of-N weighted at N = 1, 2, 4, ... up to K, from the pool's samples. Draws per question
    fall as N grows (``resamples x 64 / N``, at least 1; one at N = K, where every draw is the same
    set): subsets of large N overlap so much that more draws add little."""
    curve = []
    n = 1
    while n <= config.samples:
        draws = 1 if n == config.samples else max(1, min(config.resamples, config.resamples * 64 // n))
        correct, flops = parallel_outcome(samples_frame, "weighted", n, draws, config.seed, params)
        curve.append(CurvePoint(n, float(correct.mean()), float(n), float(flops.mean())))
        n *= 2
    return curve


def efficiency_ratio(curve_compute: Sequence[float], curve_accuracy: Sequence[float], accuracy: float, compute: float):
    """``(c* / compute, bound)`` as in the module docstring."""
    if accuracy <= curve_accuracy[0]:
        return curve_compute[0] / compute, "<"
    for k in range(1, len(curve_accuracy)):
        if curve_accuracy[k] >= accuracy:
            a0, a1 = curve_accuracy[k - 1], curve_accuracy[k]
            x0, x1 = math.log(curve_compute[k - 1]), math.log(curve_compute[k])
            share = (accuracy - a0) / (a1 - a0) if a1 > a0 else 1.0
            return math.exp(x0 + share * (x1 - x0)) / compute, "="
    return curve_compute[-1] / compute, ">"


@dataclass(frozen=True)
class AllocatorReport:
    """Everything the baselines evaluation produces."""

    points: list[AllocatorPoint]
    curve: list[CurvePoint]
    efficiency: list[Efficiency]
    bin_table: dict[str, dict[int, dict[int, str]]]
    difficulty: Difficulty
    budgets: list[int]
    protocol: str


ORACLE_BINS = "compute-optimal (oracle bins)"
PREDICTED_BINS = "compute-optimal (predicted bins)"
CHARGED = ", estimation charged"


@dataclass(frozen=True)
class Protocol:
    """What every allocator of one evaluation is run on: the evaluation pool's outcome table
    (``outcomes``), the table fitted allocators learn from (``table``: the same, or with the
    training pool's rows after it), the splits between them, and the difficulty bins of the rows of
    ``table``."""

    outcomes: ArmOutcomes
    table: ArmOutcomes
    splits: Splits
    estimate: Difficulty
    oracle_bins: np.ndarray
    predicted_bins: np.ndarray
    pool_config: PoolConfig
    samples: pd.DataFrame
    params: int

    @property
    def budgets(self) -> list[int]:
        return sorted({arm.budget for arm in self.outcomes.arms})

    @classmethod
    def of(cls, pool: RolloutPool, config: BaselinesConfig, train_pool: RolloutPool | None = None) -> Protocol:
        """The protocol on ``pool``: fitted allocators learn from ``train_pool`` when given, else
        from the other cross-validation folds."""
        manifest = pool.manifest()
        params = int(manifest["proposer_params"])
        outcomes = arm_outcomes(pool)
        samples = pool.samples()
        estimate = difficulty(samples, params, config.bins)
        if train_pool is None:
            table = outcomes
            splits = Splits.folds(len(outcomes.questions), config.folds, config.seed)
            oracle_bins, predicted_bins = estimate.oracle_bins, estimate.predicted_bins
        else:
            table, kept = with_training_pool(outcomes, arm_outcomes(train_pool))
            trained = difficulty(train_pool.samples(), int(train_pool.manifest()["proposer_params"]), config.bins)
            split = train_pool.manifest()["config"]["split"]
            splits = Splits.training_pool(len(outcomes.questions), len(kept), split)
            oracle_bins = np.concatenate([estimate.oracle_bins, trained.oracle_bins[kept]])
            predicted_bins = np.concatenate([estimate.predicted_bins, trained.predicted_bins[kept]])
        pool_config = PoolConfig.model_validate_json(json.dumps(manifest["config"]))
        return cls(outcomes, table, splits, estimate, oracle_bins, predicted_bins, pool_config, samples, params)


def baseline_results(protocol: Protocol) -> list[PerQuestion]:
    """Every baseline allocator at every budget: each fixed strategy of the grid that can run at
    it, compute-optimal by oracle and by predicted bins (without and with the estimate charged),
    and the per-question oracle."""
    outcomes, estimate = protocol.outcomes, protocol.estimate
    oracle = PerQuestionOracle(outcomes)
    results: list[PerQuestion] = []
    for budget in protocol.budgets:
        for strategy in protocol.pool_config.grid:
            if strategy.unusable(budget) is None:
                results.append(run_allocator(FixedAllocator(strategy), outcomes, budget))
        by_oracle = cross_validated(ORACLE_BINS, protocol.table, protocol.oracle_bins, budget, protocol.splits)
        by_predicted = cross_validated(PREDICTED_BINS, protocol.table, protocol.predicted_bins, budget, protocol.splits)
        results += [
            by_oracle,
            charged(by_oracle, ORACLE_BINS + CHARGED, estimate.oracle_flops, estimate.samples),
            by_predicted,
            charged(by_predicted, PREDICTED_BINS + CHARGED, estimate.predicted_flops, estimate.samples),
            run_allocator(oracle, outcomes, budget),
        ]
    return results


def allocator_report(protocol: Protocol, results: Sequence[PerQuestion], config: BaselinesConfig) -> AllocatorReport:
    """``results`` (in order: a result's place seeds its bootstrap) against best-of-N weighted's
    curve, with intervals per view and the bins' strategy tables."""
    curve = best_of_n_curve(protocol.samples, protocol.pool_config, protocol.params)
    efficiency = []
    for result in results:
        accuracy = float(result.correct.mean())
        flops_ratio, flops_bound = efficiency_ratio(
            [p.flops for p in curve], [p.accuracy for p in curve], accuracy, float(result.flops.mean())
        )
        generations_ratio, generations_bound = efficiency_ratio(
            [p.generations for p in curve], [p.accuracy for p in curve], accuracy, float(result.generations.mean())
        )
        efficiency.append(
            Efficiency(
                result.allocator,
                result.budget,
                accuracy,
                flops_ratio,
                flops_bound,
                generations_ratio,
                generations_bound,
            )
        )
    bin_table = {}
    for name, bins in ((ORACLE_BINS, protocol.oracle_bins), (PREDICTED_BINS, protocol.predicted_bins)):
        fitted = BinAllocator.fit(name, protocol.table, bins, protocol.splits.fit_rows)
        bin_table[name] = {
            b: {n: fitted.table[b, n].strategy.label for n in protocol.budgets} for b in sorted(set(bins.tolist()))
        }
    return AllocatorReport(
        points(results, protocol.estimate.oracle_bins, config.bootstrap, config.seed),
        curve,
        efficiency,
        bin_table,
        protocol.estimate,
        protocol.budgets,
        protocol.splits.description,
    )


def evaluate_allocators(
    pool: RolloutPool, config: BaselinesConfig, train_pool: RolloutPool | None = None
) -> AllocatorReport:
    """The baseline allocators on ``pool`` (see the module docstring)."""
    protocol = Protocol.of(pool, config, train_pool)
    return allocator_report(protocol, baseline_results(protocol), config)


def _view_name(view: int) -> str:
    return "all questions" if view == 0 else f"oracle bin {view}"


def _ratio(value: float, bound: str) -> str:
    return f"{'' if bound == '=' else bound}{value:.2f}"


def format_report(report: AllocatorReport) -> str:
    """Markdown: the overall table with efficiency ratios, accuracy by bin, and the compute-optimal
    arm per bin (fitted on every question it learns from, for reading; the evaluation answers each
    question with an allocator fitted without it)."""
    at = {(p.allocator, p.budget, p.view): p for p in report.points}
    ratio = {(e.allocator, e.budget): e for e in report.efficiency}
    names = list(dict.fromkeys(p.allocator for p in report.points))
    lines = [
        f"Fitted allocators: {report.protocol}.",
        "",
        "**All questions**: accuracy [95% interval], mean compute per question, efficiency ratio against "
        "best-of-N weighted (its compute to reach the same accuracy over this compute)",
        "",
        "| allocator | N | accuracy | generations | FLOPs | efficiency (FLOPs) | efficiency (generations) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for budget in sorted({p.budget for p in report.points}):
        for name in names:
            p, e = at.get((name, budget, 0)), ratio.get((name, budget))
            if p is None:
                continue
            lines.append(
                f"| {name} | {budget} | {p.accuracy:.3f} [{p.low:.2f}, {p.high:.2f}] | {p.generations:,.0f} | "
                f"{p.flops:.2e} | {_ratio(e.flops_ratio, e.flops_bound)} | "
                f"{_ratio(e.generations_ratio, e.generations_bound)} |"
            )
    views = sorted({p.view for p in report.points if p.view})
    lines += [
        "",
        f"**Accuracy by oracle difficulty bin** (1 easiest) at N = {max(report.budgets)}",
        "",
        "| allocator | " + " | ".join(f"bin {v}" for v in views) + " |",
        "| --- |" + " ---: |" * len(views),
    ]
    for name in names:
        cells = [at.get((name, max(report.budgets), v)) for v in views]
        if all(c is None for c in cells):
            continue
        lines.append(f"| {name} | " + " | ".join("-" if c is None else f"{c.accuracy:.3f}" for c in cells) + " |")
    lines += [
        "",
        "**Best-of-N weighted curve** (the efficiency ratio's reference)",
        "",
        "| N | accuracy | FLOPs |",
        "| ---: | ---: | ---: |",
    ]
    lines += [f"| {c.n} | {c.accuracy:.3f} | {c.flops:.2e} |" for c in report.curve]
    for name, table in report.bin_table.items():
        lines += ["", f"**{name}: arm per bin** (fitted on every question it learns from)", ""]
        lines += ["| bin | " + " | ".join(f"N={n}" for n in report.budgets) + " |"]
        lines += ["| ---: |" + " --- |" * len(report.budgets)]
        lines += [f"| {b} | " + " | ".join(row[n] for n in report.budgets) + " |" for b, row in table.items()]
    return "\n".join(lines) + "\n"


def plot_report(report: AllocatorReport, path: str | Path, unit: str = "flops") -> None:
    """Accuracy against mean compute (``unit``: flops or generations, log axis), one panel per
    view with its own accuracy range, one line per allocator across budgets, best-of-N weighted's
    curve dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    views = sorted({p.view for p in report.points}, key=lambda v: (v != 0, v))
    names = list(dict.fromkeys(p.allocator for p in report.points))
    columns = min(3, len(views))
    rows = math.ceil(len(views) / columns)
    legend_rows = math.ceil((len(names) + 1) / 3)
    legend_inches = 0.17 * legend_rows + 0.15
    height = 3.6 * rows + legend_inches
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, height), squeeze=False)
    palette = plt.get_cmap("tab20").colors
    colors = {name: palette[i % len(palette)] for i, name in enumerate(names)}
    for axis in axes.flat[len(views) :]:
        axis.set_visible(False)
    for axis, view in zip(axes.flat, views):
        for name in names:
            mine = sorted((p for p in report.points if p.allocator == name and p.view == view), key=lambda p: p.budget)
            if not mine:
                continue
            x = [getattr(p, unit) for p in mine]
            axis.plot(x, [p.accuracy for p in mine], marker="o", markersize=3, label=name, color=colors[name])
            axis.fill_between(x, [p.low for p in mine], [p.high for p in mine], color=colors[name], alpha=0.08)
        if view == 0:
            axis.plot(
                [getattr(c, unit) for c in report.curve],
                [c.accuracy for c in report.curve],
                "k--",
                linewidth=1,
                label="best-of-N weighted, N = 1 ... K",
            )
        axis.set_xscale("log")
        axis.set_title(_view_name(view))
        axis.set_xlabel("mean FLOPs per question" if unit == "flops" else "mean generations per question")
        axis.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("accuracy")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    figure.tight_layout(rect=(0, legend_inches / height, 1, 1))
    save_figure(figure, path)


def report_to_json(report: AllocatorReport) -> dict:
    return {
        "protocol": report.protocol,
        "points": [asdict(p) for p in report.points],
        "curve": [asdict(c) for c in report.curve],
        "efficiency": [asdict(e) for e in report.efficiency],
        "bin_table": report.bin_table,
        "bin_sizes": {
            "oracle": np.bincount(report.difficulty.oracle_bins).tolist()[1:],
            "predicted": np.bincount(report.difficulty.predicted_bins).tolist()[1:],
        },
        "estimation_flops_mean": {
            "oracle": float(report.difficulty.oracle_flops.mean()),
            "predicted": float(report.difficulty.predicted_flops.mean()),
        },
        "samples": report.difficulty.samples,
    }


def choice_shares(arms: Sequence, bins: np.ndarray) -> dict[int, dict[str, float]]:
    """Per difficulty bin, the share of questions given each strategy configuration (label)."""
    shares: dict[int, dict[str, float]] = {}
    for b in sorted(set(bins.tolist())):
        mine = [arm.strategy.label for arm, own in zip(arms, bins) if own == b]
        shares[b] = {label: mine.count(label) / len(mine) for label in sorted(set(mine))}
    return shares


def plot_choices(choices: dict[int, dict[int, dict[str, float]]], path: str | Path) -> None:
    """Heat maps of what an allocator chose: one panel per budget, rows the difficulty bins,
    columns the strategy configurations, cells the share of the bin's questions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = sorted(choices)
    labels = sorted({label for by_bin in choices.values() for shares in by_bin.values() for label in shares})
    bins = sorted({b for by_bin in choices.values() for b in by_bin})
    figure, axes = plt.subplots(1, len(budgets), figsize=(1.0 + 0.9 * len(labels) * len(budgets), 3.2), squeeze=False)
    for axis, budget in zip(axes[0], budgets):
        grid = np.array([[choices[budget].get(b, {}).get(label, 0.0) for label in labels] for b in bins])
        axis.imshow(grid, vmin=0, vmax=1, cmap="Blues", aspect="auto")
        for (row, column), value in np.ndenumerate(grid):
            if value:
                axis.text(
                    column,
                    row,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if value > 0.6 else "black",
                )
        axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        axis.set_yticks(range(len(bins)), [f"bin {b}" for b in bins], fontsize=7)
        axis.set_title(f"N = {budget}", fontsize=9)
    figure.tight_layout()
    save_figure(figure, path)
