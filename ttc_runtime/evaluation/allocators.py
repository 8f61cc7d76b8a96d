"""Allocators against each other on a rollout pool: accuracy against mean compute, by difficulty
bin, and the compute they save against best-of-N weighted at matched accuracy, with paired
bootstrap intervals.

**Protocol.** Every allocator picks one arm per question; a question's outcome is that arm's
expected correctness (the mean over runs or resamples) and its mean compute. Fixed-budget
allocators answer at each budget N of the pool; adaptive ones pick the budget too and give one
point per price of compute ``lam`` (or per calibrated target), their points forming a frontier.
Allocators fitted on the pool (compute-optimal by bin, the feature table by level) are
cross-validated as in the paper: the questions are split into ``folds`` random folds, and each fold
is answered by the allocator fitted on the others. With a training pool (``TrainPoolConfig``: other
questions, the same grid), they are fitted on its questions instead and answer every evaluation
question; a training question that is also an evaluation question is left out of training
(``Splits``). An allocator whose difficulty estimate costs K samples is shown twice, without and
with that cost added to each question's compute (``charged``).

**Allocators.** Each fixed strategy of the grid; compute-optimal by oracle and by predicted
difficulty bins; the feature table (``FeatureTable``: the best arm per level and budget) and its
adaptive form (``PricedFeatureTable``); the per-question oracle at each budget and the
expected-rate oracle frontier (``PricedOracle``, the ceiling); the learned allocators added by the
``allocator`` stage. The priced allocators are swept over ``lambda_sweep()`` in both compute units:
``lam`` is in accuracy per ``scale`` of compute, ``scale`` the largest budget in generations, or
best-of-N weighted's mean FLOPs there (``scale_of``); the distinct results make the frontier.

**Frontier and matching.** An allocator's frontier is its points (mean compute, accuracy) kept
where accuracy rises with compute (each point more accurate than every cheaper one), joined
linearly in log compute. The compute to reach accuracy ``a`` is where the frontier first reaches
``a``; it is *out of range* when ``a`` is above the frontier's best accuracy or below its cheapest
point's (an allocator that cannot spend less says nothing about that accuracy).

**Efficiency.** The targets are best-of-N weighted's accuracy at N = 2, 4, 8 and 16 (those the pool's
K reaches); best-of-N's curve is resampled from the pool's samples at N = 1, 2, 4, ... K, keeping
per-question expected correctness. At a target, the ratio is best-of-N's compute to reach it over
the allocator's, the compute saving 1 - 1 / ratio, and the share of the oracle's saving the
allocator's saving over the oracle frontier's at the same target. A paired bootstrap over questions
draws the same question indices for the curve, the target (best-of-N's accuracy at N in that
resample) and every allocator; each quantity is reported as the median and 90% interval of the
resamples in range, with the count of resamples out of range. Computed in FLOPs and in generations.

**Views.** All questions, and each oracle difficulty bin. Accuracy intervals are 95% bootstrap
intervals over questions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
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
from ttc_runtime.policies.allocators import (
    Allocator,
    BinAllocator,
    FeatureTable,
    FixedAllocator,
    PerQuestionOracle,
    PricedFeatureTable,
    PricedOracle,
)
from ttc_runtime.pool import PoolConfig, RolloutPool
from ttc_runtime.trainers.allocator import (
    AllocatorTrainConfig,
    calibrate_lambda,
    fit_outcomes,
    fit_supervised,
    scale_of,
    train_policy,
)

UNITS = ("generations", "flops")
TARGET_NS = (2, 4, 8, 16)
BEST_OF_N = "best-of-N weighted"
ORACLE_BINS = "compute-optimal (oracle bins)"
PREDICTED_BINS = "compute-optimal (predicted bins)"
CHARGED = ", estimation charged"
FEATURE_TABLE = "feature table (level), fixed budget"
FEATURE_ADAPTIVE = "feature table (level), adaptive budget"
ORACLE_FRONTIER = "expected-rate oracle, adaptive budget"


class BaselinesConfig(StrictModel):
    """The baseline allocators' evaluation (see the module docstring)."""

    bins: int = Field(5, ge=1, description="Difficulty bins (the paper's 5 quantiles).")
    folds: int = Field(2, ge=2, description="Cross-validation folds for allocators fitted on the pool (the paper's 2).")
    bootstrap: int = Field(1000, ge=10)
    seed: int = 0


@dataclass(frozen=True)
class AllocatorPoint:
    """One allocator at one budget (adaptive: one frontier point, numbered from the cheapest) in one
    view (0: all questions; b: oracle bin b)."""

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
class Interval:
    """A bootstrapped quantity: ``value`` on all questions, then the ``median`` and 90% interval
    (``low``, ``high``) of the resamples in range, of which ``out_of_range`` of ``resamples`` were
    not. ``None`` where there is nothing in range (``value``: out of range on all questions)."""

    value: float | None
    median: float | None
    low: float | None
    high: float | None
    out_of_range: int
    resamples: int

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Interval:
        """From the value on all questions followed by one value per resample."""
        kept = np.array([v for v in values[1:] if v is not None], dtype=float)
        out = len(values) - 1 - len(kept)
        if not len(kept):
            return cls(values[0], None, None, None, out, len(values) - 1)
        low, median, high = np.percentile(kept, [5, 50, 95]).tolist()
        return cls(values[0], median, low, high, out, len(values) - 1)


@dataclass(frozen=True)
class Efficiency:
    """One allocator against best-of-N weighted at the accuracy best-of-N weighted reaches with
    ``n`` samples (``target``, on all questions), compute in ``unit`` (generations or flops):
    ``ratio`` (best-of-N's compute to reach the target over the allocator's), ``saving``
    (1 - 1 / ratio: the share of best-of-N's compute the allocator does without) and
    ``oracle_share`` (the allocator's saving over the oracle frontier's at the same target; out of
    range where the oracle saves nothing)."""

    allocator: str
    unit: str
    n: int
    target: float
    ratio: Interval
    saving: Interval
    oracle_share: Interval


@dataclass(frozen=True)
class CurvePoint:
    """Best-of-N weighted at N, over all questions, with its accuracy's 95% interval."""

    n: int
    accuracy: float
    low: float
    high: float
    generations: float
    flops: float


def lambda_sweep(low: float = 1e-3, high: float = 1e3, per_decade: int = 4) -> list[float]:
    """The prices of compute the priced allocators are swept over: 0 (the most accurate arm, the
    cheaper on ties), then ``per_decade`` geometric steps a decade from ``low`` to ``high``, in
    accuracy per ``scale`` of compute (see the module docstring). At ``high`` every arm costlier than
    the cheapest by a 1/1000th of the scale must add a whole correct answer: every question gets
    its cheapest arm, so the frontier runs from the cheapest arms to the most accurate."""
    count = round(math.log10(high / low) * per_decade) + 1
    return [0.0, *np.geomspace(low, high, count).tolist()]


def run_allocator(allocator: Allocator, outcomes: ArmOutcomes, budget: int) -> PerQuestion:
    """Every pool question answered by ``allocator`` at ``budget``."""
    rows = np.arange(len(outcomes.questions))
    return outcome_of(outcomes, allocator.name, budget, rows, allocator.choose(outcomes.questions, budget))


def cross_validate(
    name: str, outcomes: ArmOutcomes, budget: int, splits: Splits, fit: Callable[[np.ndarray], Allocator]
) -> PerQuestion:
    """The rows of each split answered at ``budget`` by ``fit(training rows)``."""
    parts = []
    for train, held in splits.parts:
        arms = fit(train).choose([outcomes.questions[i] for i in held], budget)
        parts.append((held, outcome_of(outcomes, name, budget, held, arms)))
    return merge_folds(parts, splits.tested)


def cross_validated(name: str, outcomes: ArmOutcomes, bins: np.ndarray, budget: int, splits: Splits) -> PerQuestion:
    """Compute-optimal by ``bins``: the rows of each split answered by the allocator fitted on its
    training rows."""
    return cross_validate(name, outcomes, budget, splits, lambda train: BinAllocator.fit(name, outcomes, bins, train))


def sweep_points(results: Sequence[PerQuestion]) -> list[PerQuestion]:
    """The distinct results of a sweep that lie on its frontier in generations or in FLOPs (see the
    module docstring), cheapest first (by mean FLOPs, then mean generations), each labelled with its
    point number 1, 2, ... as its budget: one adaptive allocator's frontier."""
    distinct: list[PerQuestion] = []
    for result in results:
        if not any(
            np.array_equal(result.correct, seen.correct)
            and np.array_equal(result.generations, seen.generations)
            and np.array_equal(result.flops, seen.flops)
            for seen in distinct
        ):
            distinct.append(result)
    accuracy = [float(r.correct.mean()) for r in distinct]
    kept = set()
    for unit in UNITS:
        kept |= set(on_frontier([float(getattr(r, unit).mean()) for r in distinct], accuracy))
    chosen = sorted((distinct[k] for k in kept), key=lambda r: (float(r.flops.mean()), float(r.generations.mean())))
    return [PerQuestion(r.allocator, k, r.correct, r.generations, r.flops) for k, r in enumerate(chosen, 1)]


def oracle_frontier(outcomes: ArmOutcomes, lambdas: Sequence[float]) -> list[PerQuestion]:
    """The expected-rate oracle (``PricedOracle``) at every ``lam`` of ``lambdas``, priced in each
    unit with ``scale_of(outcomes, unit)``: the ceiling of the adaptive allocators."""
    rows = np.arange(len(outcomes.questions))
    results = []
    for unit in UNITS:
        scale = scale_of(outcomes, unit)
        for lam in lambdas:
            arms = PricedOracle(outcomes, lam, unit, scale).choose(outcomes.questions)
            results.append(outcome_of(outcomes, ORACLE_FRONTIER, 0, rows, arms))
    return sweep_points(results)


def feature_table_frontier(
    table: ArmOutcomes, splits: Splits, lambdas: Sequence[float], scales: dict[str, float]
) -> list[PerQuestion]:
    """The adaptive feature table (``PricedFeatureTable``) at every ``lam`` of ``lambdas`` in each
    unit (its scale in ``scales``), cross-validated over ``splits``."""
    results = []
    for unit in UNITS:
        for lam in lambdas:

            def fit(train: np.ndarray, lam: float = lam, unit: str = unit) -> Allocator:
                return PricedFeatureTable.fit(FEATURE_ADAPTIVE, table, train, lam, unit, scales[unit])

            results.append(cross_validate(FEATURE_ADAPTIVE, table, 0, splits, fit))
    return sweep_points(results)


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


def cross_validated_outcomes(
    names: tuple[str, str],
    features: np.ndarray,
    feature_flops: np.ndarray,
    outcomes: ArmOutcomes,
    splits: Splits,
    config: AllocatorTrainConfig,
    lambdas: Sequence[float],
    scales: dict[str, float],
) -> tuple[list[PerQuestion], list[PerQuestion]]:
    """The outcome policy (``fit_outcomes``), fitted once per split on its training rows: named
    ``names[0]``, at every budget of the fixed mode; named ``names[1]``, adaptive over the arms
    within their budget (those of the oracle frontier), its frontier over ``lambdas`` priced in
    each unit, with arm costs the mean compute of the split's training rows over ``scales``.
    Feature FLOPs charged."""
    fixed_space = ActionSpace.from_arms(outcomes.within_budget(), adaptive=False)
    adaptive_space = ActionSpace.from_arms(outcomes.within_budget(), adaptive=True)
    fixed_parts: dict[int, list] = {n: [] for n in fixed_space.budgets}
    swept: dict[tuple[str, float], list] = {(unit, lam): [] for unit in UNITS for lam in lambdas}
    for train, held in splits.parts:
        fixed = fit_outcomes(features, outcomes, train, fixed_space, config, scales[config.unit])
        predicted = fixed.predict(features[held])
        for budget in fixed_space.budgets:
            arms = [fixed.arms[c] for c in fixed.choose_columns(predicted, budget)]
            fixed_parts[budget].append((held, outcome_of(outcomes, names[0], budget, held, arms, feature_flops)))
        adaptive = fit_outcomes(features, outcomes, train, adaptive_space, config, scales[config.unit])
        predicted = adaptive.predict(features[held])
        columns = [outcomes.column(arm) for arm in adaptive.arms]
        for unit in UNITS:
            table = outcomes.generations if unit == "generations" else outcomes.flops
            costs = table[np.ix_(train, columns)].mean(axis=0) / scales[unit]
            for lam in lambdas:
                arms = [adaptive.arms[c] for c in adaptive.choose_columns(predicted, None, lam, costs)]
                swept[unit, lam].append((held, outcome_of(outcomes, names[1], 0, held, arms, feature_flops)))
    fixed_results = [merge_folds(fixed_parts[n], splits.tested) for n in fixed_space.budgets]
    return fixed_results, sweep_points([merge_folds(parts, splits.tested) for parts in swept.values()])


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


def best_of_n_outcomes(samples_frame: pd.DataFrame, config: PoolConfig, params: int) -> list[PerQuestion]:
    """Best-of-N weighted at N = 1, 2, 4, ... up to K, per question (expected correctness, mean
    FLOPs), from the pool's samples; each result's budget is its N. Draws per question fall as N
    grows (``resamples x 64 / N``, at least 1; one at N = K, where every draw is the same set):
    subsets of large N overlap so much that more draws add little."""
    curve = []
    n = 1
    while n <= config.samples:
        draws = 1 if n == config.samples else max(1, min(config.resamples, config.resamples * 64 // n))
        correct, flops = parallel_outcome(samples_frame, "weighted", n, draws, config.seed, params)
        curve.append(PerQuestion(BEST_OF_N, n, correct, np.full(len(correct), float(n)), flops))
        n *= 2
    return curve


def curve_points(curve: Sequence[PerQuestion], bootstrap: int, seed: int) -> list[CurvePoint]:
    """The curve's means over all questions, each accuracy with its 95% bootstrap interval."""
    out = []
    for result in curve:
        low, high = _bootstrap(result.correct, bootstrap, derive_seed(seed, result.budget))
        accuracy = float(result.correct.mean())
        out.append(
            CurvePoint(result.budget, accuracy, low, high, float(result.generations.mean()), float(result.flops.mean()))
        )
    return out


def best_of_n_curve(
    samples_frame: pd.DataFrame, config: PoolConfig, params: int, bootstrap: int = 1000, seed: int = 0
) -> list[CurvePoint]:
    """Best-of-N weighted at N = 1, 2, 4, ... up to K over all questions (``best_of_n_outcomes``)."""
    return curve_points(best_of_n_outcomes(samples_frame, config, params), bootstrap, seed)


def on_frontier(compute: Sequence[float], accuracy: Sequence[float]) -> list[int]:
    """The indices of the points on the frontier (see the module docstring), cheapest first: each
    more accurate than every cheaper point (of equal compute, the most accurate counts)."""
    kept: list[int] = []
    for k in sorted(range(len(compute)), key=lambda k: (compute[k], -accuracy[k])):
        if not kept or accuracy[k] > accuracy[kept[-1]]:
            kept.append(k)
    return kept


def frontier(compute: Sequence[float], accuracy: Sequence[float]) -> tuple[list[float], list[float]]:
    """The frontier's compute and accuracy (``on_frontier``), cheapest first."""
    kept = on_frontier(compute, accuracy)
    return [float(compute[k]) for k in kept], [float(accuracy[k]) for k in kept]


def compute_to_reach(xs: Sequence[float], ys: Sequence[float], target: float) -> float | None:
    """The compute at which the frontier ``xs``, ``ys`` (from ``frontier``) first reaches accuracy
    ``target``, linear in log compute between points; ``None`` when out of range (``target`` above
    the last accuracy or below the first)."""
    if not ys or target < ys[0] or target > ys[-1]:
        return None
    k = next(k for k, y in enumerate(ys) if y >= target)
    if k == 0:
        return xs[0]
    share = (target - ys[k - 1]) / (ys[k] - ys[k - 1])
    return math.exp(math.log(xs[k - 1]) + share * (math.log(xs[k]) - math.log(xs[k - 1])))


def efficiency_ratio(
    curve_compute: Sequence[float],
    curve_accuracy: Sequence[float],
    compute: Sequence[float],
    accuracy: Sequence[float],
    target: float,
) -> float | None:
    """Best-of-N's compute to reach ``target`` on its curve over the allocator's on its points
    (``compute``, ``accuracy``); ``None`` when either is out of range."""
    reference = compute_to_reach(*frontier(curve_compute, curve_accuracy), target)
    reached = compute_to_reach(*frontier(compute, accuracy), target)
    return None if reference is None or reached is None else reference / reached


def _saving(ratio: float | None) -> float | None:
    return None if ratio is None else 1.0 - 1.0 / ratio


def _share(saving: float | None, oracle: float | None) -> float | None:
    return None if saving is None or oracle is None or oracle <= 0 else saving / oracle


def paired_efficiency(
    curve: Sequence[PerQuestion],
    frontiers: dict[str, Sequence[PerQuestion]],
    oracle: str | None,
    resamples: int,
    seed: int,
    ns: Sequence[int] = TARGET_NS,
) -> list[Efficiency]:
    """Every frontier's efficiency against best-of-N weighted's ``curve`` (one result per N, its
    budget N) at best-of-N's accuracy at each N of ``ns`` the curve has, in both units, with the
    paired bootstrap of the module docstring (``resamples`` draws of the questions, ``seed``).
    ``oracle`` names the frontier whose saving the shares divide by (none: no shares)."""
    count = len(curve[0].correct)
    rng = np.random.default_rng(seed & 0xFFFFFFFF)
    draws = rng.multinomial(count, np.full(count, 1.0 / count), size=resamples)
    weights = np.vstack([np.ones(count), draws]) / count
    results = [*curve, *(r for rows in frontiers.values() for r in rows)]
    means = {f: weights @ np.column_stack([getattr(r, f) for r in results]) for f in ("correct", *UNITS)}
    spans, start = {}, len(curve)
    for name, rows in frontiers.items():
        spans[name] = slice(start, start + len(rows))
        start += len(rows)
    targets = [(k, r.budget) for k, r in enumerate(curve) if r.budget in ns]
    ratios: dict[tuple[str, str, int], list[float | None]] = {
        (name, unit, n): [] for name in frontiers for unit in UNITS for _, n in targets
    }
    shares = {key: [] for key in ratios}
    for unit in UNITS:
        for accuracy, compute in zip(means["correct"], means[unit]):
            reference = frontier(compute[: len(curve)], accuracy[: len(curve)])
            mine = {name: frontier(compute[span], accuracy[span]) for name, span in spans.items()}
            for k, n in targets:
                cost = compute_to_reach(*reference, accuracy[k])
                reached = {name: compute_to_reach(*points, accuracy[k]) for name, points in mine.items()}
                ratio = {
                    name: None if cost is None or spent is None else cost / spent for name, spent in reached.items()
                }
                best = _saving(ratio[oracle]) if oracle in ratio else None
                for name in frontiers:
                    ratios[name, unit, n].append(ratio[name])
                    shares[name, unit, n].append(_share(_saving(ratio[name]), best))
    level = {n: float(means["correct"][0, k]) for k, n in targets}
    return [
        Efficiency(
            name,
            unit,
            n,
            level[n],
            Interval.of(values),
            Interval.of([_saving(r) for r in values]),
            Interval.of(shares[name, unit, n]),
        )
        for (name, unit, n), values in ratios.items()
    ]


@dataclass(frozen=True)
class AllocatorReport:
    """Everything an allocator evaluation produces: accuracy and compute per allocator, point and
    view; best-of-N weighted's curve; the efficiencies at matched accuracy; the fitted tables (for
    reading); which allocators are fixed strategies and which adaptive (their points a frontier);
    and the price sweep with its scale per unit."""

    points: list[AllocatorPoint]
    curve: list[CurvePoint]
    efficiency: list[Efficiency]
    bin_table: dict[str, dict[int, dict[int, str]]]
    difficulty: Difficulty
    budgets: list[int]
    protocol: str
    fixed: list[str]
    adaptive: list[str]
    lambdas: list[float]
    scales: dict[str, float]


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

    @property
    def scales(self) -> dict[str, float]:
        """The scale of ``lam`` per compute unit, from the evaluation pool (``scale_of``)."""
        return {unit: scale_of(self.outcomes, unit) for unit in UNITS}

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


def baseline_results(protocol: Protocol, lambdas: Sequence[float] | None = None) -> list[PerQuestion]:
    """Every baseline allocator: at every budget, each fixed strategy of the grid that can run at
    it, compute-optimal by oracle and by predicted bins (without and with the estimate charged),
    the feature table and the per-question oracle; then the adaptive feature table and the
    expected-rate oracle frontier over ``lambdas`` (``lambda_sweep()`` by default)."""
    outcomes, estimate, table, splits = protocol.outcomes, protocol.estimate, protocol.table, protocol.splits
    lambdas = lambda_sweep() if lambdas is None else lambdas
    oracle = PerQuestionOracle(outcomes)
    results: list[PerQuestion] = []
    for budget in protocol.budgets:
        for strategy in protocol.pool_config.grid:
            if strategy.unusable(budget) is None:
                results.append(run_allocator(FixedAllocator(strategy), outcomes, budget))
        by_oracle = cross_validated(ORACLE_BINS, table, protocol.oracle_bins, budget, splits)
        by_predicted = cross_validated(PREDICTED_BINS, table, protocol.predicted_bins, budget, splits)
        by_level = cross_validate(
            FEATURE_TABLE, table, budget, splits, lambda train: FeatureTable.fit_levels(FEATURE_TABLE, table, train)
        )
        results += [
            by_oracle,
            charged(by_oracle, ORACLE_BINS + CHARGED, estimate.oracle_flops, estimate.samples),
            by_predicted,
            charged(by_predicted, PREDICTED_BINS + CHARGED, estimate.predicted_flops, estimate.samples),
            by_level,
            run_allocator(oracle, outcomes, budget),
        ]
    results += feature_table_frontier(table, splits, lambdas, protocol.scales)
    results += oracle_frontier(outcomes, lambdas)
    return results


def allocator_report(
    protocol: Protocol,
    results: Sequence[PerQuestion],
    config: BaselinesConfig,
    adaptive: Sequence[str] = (),
    lambdas: Sequence[float] | None = None,
) -> AllocatorReport:
    """``results`` (in order: a result's place seeds its bootstrap) against best-of-N weighted's
    curve, with intervals per view, the efficiencies at matched accuracy and the fitted tables.
    ``adaptive`` names the allocators beyond the baselines whose points form a frontier rather than
    one point per budget; ``lambdas`` is the sweep ``results`` were priced with (for the record)."""
    curve = best_of_n_outcomes(protocol.samples, protocol.pool_config, protocol.params)
    frontiers: dict[str, list[PerQuestion]] = {}
    for result in results:
        frontiers.setdefault(result.allocator, []).append(result)
    oracle = ORACLE_FRONTIER if ORACLE_FRONTIER in frontiers else None
    efficiency = paired_efficiency(curve, frontiers, oracle, config.bootstrap, derive_seed(config.seed, 1))
    bin_table = {}
    for name, bins in ((ORACLE_BINS, protocol.oracle_bins), (PREDICTED_BINS, protocol.predicted_bins)):
        fitted = BinAllocator.fit(name, protocol.table, bins, protocol.splits.fit_rows)
        bin_table[name] = {
            b: {n: fitted.table[b, n].strategy.label for n in protocol.budgets} for b in sorted(set(bins.tolist()))
        }
    levels = FeatureTable.fit_levels(FEATURE_TABLE, protocol.table, protocol.splits.fit_rows)
    bin_table[FEATURE_TABLE] = {
        b: {n: levels.table[b, n].strategy.label for n in protocol.budgets}
        for b in sorted(set(protocol.table.levels.tolist()))
    }
    adaptive_names = {FEATURE_ADAPTIVE, ORACLE_FRONTIER, *adaptive}
    return AllocatorReport(
        points(results, protocol.estimate.oracle_bins, config.bootstrap, config.seed),
        curve_points(curve, config.bootstrap, config.seed),
        efficiency,
        bin_table,
        protocol.estimate,
        protocol.budgets,
        protocol.splits.description,
        [s.label for s in protocol.pool_config.grid if s.label in frontiers],
        [name for name in frontiers if name in adaptive_names],
        list(lambda_sweep() if lambdas is None else lambdas),
        protocol.scales,
    )


def evaluate_allocators(
    pool: RolloutPool, config: BaselinesConfig, train_pool: RolloutPool | None = None
) -> AllocatorReport:
    """The baseline allocators on ``pool`` (see the module docstring)."""
    protocol = Protocol.of(pool, config, train_pool)
    return allocator_report(protocol, baseline_results(protocol), config)


def _cell(interval: Interval, percent: bool = False) -> str:
    """An interval as "median [low, high]", with the resamples out of range; "out of range" when
    it is on all questions."""
    if interval.value is None:
        return "out of range"
    if interval.median is None:
        return "every resample out of range"

    def number(value: float) -> str:
        return f"{100 * value:.0f}%" if percent else f"{value:.2f}"

    text = f"{number(interval.median)} [{number(interval.low)}, {number(interval.high)}]"
    return text + (f" ({interval.out_of_range} out)" if interval.out_of_range else "")


def best_fixed(report: AllocatorReport) -> str | None:
    """The fixed strategy with the highest mean accuracy over the budgets it runs at."""
    means = {
        name: np.mean([p.accuracy for p in report.points if p.allocator == name and p.view == 0])
        for name in report.fixed
    }
    return max(means, key=means.get) if means else None


def format_report(report: AllocatorReport) -> str:
    """Markdown: accuracy and compute per budget (fixed-budget allocators) and per frontier point
    (adaptive ones), the efficiencies at matched accuracy with their intervals, accuracy by bin,
    best-of-N weighted's curve, and the fitted tables (fitted on every question they learn from,
    for reading; the evaluation answers each question with a table fitted without it)."""
    at = {(p.allocator, p.budget, p.view): p for p in report.points}
    names = list(dict.fromkeys(p.allocator for p in report.points))
    budgeted = [name for name in names if name not in report.adaptive]
    lines = [
        f"Fitted allocators: {report.protocol}.",
        "",
        "**All questions, fixed budget**: accuracy [95% interval] and mean compute per question",
        "",
        "| allocator | N | accuracy | generations | FLOPs |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]

    def row(p: AllocatorPoint, label: int) -> str:
        return (
            f"| {p.allocator} | {label} | {p.accuracy:.3f} [{p.low:.2f}, {p.high:.2f}] | {p.generations:,.1f} | "
            f"{p.flops:.2e} |"
        )

    for budget in sorted({p.budget for p in report.points if p.allocator in budgeted}):
        lines += [row(at[name, budget, 0], budget) for name in budgeted if (name, budget, 0) in at]
    lines += [
        "",
        (
            "**All questions, adaptive budget**: the distinct points of each frontier, cheapest first (the "
            f"priced baselines at lam = 0 and {len(report.lambdas) - 1} geometric steps from "
            f"{report.lambdas[1]:g} to {report.lambdas[-1]:g}, in accuracy per scale of compute, priced in "
            "each unit; the learned allocator at its targets)"
        ),
        "",
        "| allocator | point | accuracy | generations | FLOPs |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in report.adaptive:
        mine = sorted((p for p in report.points if p.allocator == name and p.view == 0), key=lambda p: p.flops)
        lines += [row(p, p.budget) for p in mine]
    targets = sorted({(e.n, e.target) for e in report.efficiency})
    for unit, label in (("flops", "FLOPs"), ("generations", "generations")):
        mine = {(e.allocator, e.n): e for e in report.efficiency if e.unit == unit}
        header = "| allocator | " + " | ".join(f"N = {n}: {target:.3f}" for n, target in targets) + " |"
        rule = "| --- |" + " ---: |" * len(targets)
        lines += [
            "",
            (
                f"**Matched-accuracy efficiency ({label})** against best-of-N weighted: at best-of-N's accuracy "
                "with N samples (the column), its compute to get there over the allocator's along its frontier; "
                "median [90% interval] over paired bootstrap resamples of the questions, with the resamples out "
                "of range"
            ),
            "",
            header,
            rule,
        ]
        lines += [f"| {name} | " + " | ".join(_cell(mine[name, n].ratio) for n, _ in targets) + " |" for name in names]
        for title, field in (
            (f"**Compute saving ({label})**, 1 - 1 / efficiency: median [90% interval]", "saving"),
            (
                (
                    f"**Share of the oracle's saving ({label})**: the allocator's saving over the expected-rate "
                    "oracle frontier's at the same accuracy, from the same resamples: median [90% interval]"
                ),
                "oracle_share",
            ),
        ):
            lines += ["", title, "", header, rule]
            lines += [
                f"| {name} | " + " | ".join(_cell(getattr(mine[name, n], field), True) for n, _ in targets) + " |"
                for name in names
            ]
    views = sorted({p.view for p in report.points if p.view})
    lines += [
        "",
        f"**Accuracy by oracle difficulty bin** (1 easiest) at N = {max(report.budgets)}",
        "",
        "| allocator | " + " | ".join(f"bin {v}" for v in views) + " |",
        "| --- |" + " ---: |" * len(views),
    ]
    for name in budgeted:
        cells = [at.get((name, max(report.budgets), v)) for v in views]
        if all(c is None for c in cells):
            continue
        lines.append(f"| {name} | " + " | ".join("-" if c is None else f"{c.accuracy:.3f}" for c in cells) + " |")
    lines += [
        "",
        "**Best-of-N weighted curve** (the efficiency's reference)",
        "",
        "| N | accuracy | FLOPs |",
        "| ---: | ---: | ---: |",
    ]
    lines += [f"| {c.n} | {c.accuracy:.3f} [{c.low:.2f}, {c.high:.2f}] | {c.flops:.2e} |" for c in report.curve]
    for name, table in report.bin_table.items():
        kind = "level" if name == FEATURE_TABLE else "bin"
        lines += ["", f"**{name}: arm per {kind}** (fitted on every question it learns from)", ""]
        lines += [f"| {kind} | " + " | ".join(f"N={n}" for n in report.budgets) + " |"]
        lines += ["| ---: |" + " --- |" * len(report.budgets)]
        lines += [f"| {b} | " + " | ".join(row[n] for n in report.budgets) + " |" for b, row in table.items()]
    return "\n".join(lines) + "\n"


def plot_report(report: AllocatorReport, path: str | Path, learned: Sequence[str] = ()) -> None:
    """Accuracy against mean compute over all questions, one panel in generations and one in FLOPs
    (log axes): best-of-N weighted's curve, the best fixed strategy, compute-optimal by oracle bins,
    the adaptive feature table, the ``learned`` allocators and the expected-rate oracle frontier,
    each with its 95% bootstrap band. Adaptive allocators are drawn along their frontier in each
    panel's unit; the rest go in the tables."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = {p.allocator for p in report.points}
    fixed = best_fixed(report)
    series = [name for name in (fixed, ORACLE_BINS, FEATURE_ADAPTIVE, *learned, ORACLE_FRONTIER) if name in present]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    palette = plt.get_cmap("tab10").colors
    for axis, unit in zip(axes, UNITS):
        x = [getattr(c, unit) for c in report.curve]
        axis.plot(x, [c.accuracy for c in report.curve], "k--", linewidth=1, label=f"{BEST_OF_N}, N = 1 ... K")
        axis.fill_between(x, [c.low for c in report.curve], [c.high for c in report.curve], color="k", alpha=0.06)
        for index, name in enumerate(series):
            mine = sorted((p for p in report.points if p.allocator == name and p.view == 0), key=lambda p: p.budget)
            if name in report.adaptive:
                mine = [mine[k] for k in on_frontier([getattr(p, unit) for p in mine], [p.accuracy for p in mine])]
            x = [getattr(p, unit) for p in mine]
            color = palette[index % len(palette)]
            label = f"best fixed strategy: {name}" if name == fixed else name
            axis.plot(x, [p.accuracy for p in mine], marker="o", markersize=3, label=label, color=color)
            axis.fill_between(x, [p.low for p in mine], [p.high for p in mine], color=color, alpha=0.1)
        axis.set_xscale("log")
        axis.set_xlabel("mean FLOPs per question" if unit == "flops" else "mean generations per question")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (all questions)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.14, 1, 1))
    save_figure(figure, path)


def report_to_json(report: AllocatorReport) -> dict:
    return {
        "protocol": report.protocol,
        "points": [asdict(p) for p in report.points],
        "curve": [asdict(c) for c in report.curve],
        "efficiency": [asdict(e) for e in report.efficiency],
        "fixed": report.fixed,
        "adaptive": report.adaptive,
        "lambda_sweep": {
            "lambdas": report.lambdas,
            "units": "accuracy per scale of compute, in each compute unit",
            "scales": report.scales,
        },
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
