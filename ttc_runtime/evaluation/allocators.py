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

**Frontier, matching and efficiency**: ``evaluation.efficiency``; the tables and plots:
``evaluation.allocator_tables``.

**Views.** All questions, and each oracle difficulty bin. Accuracy intervals are 95% bootstrap
intervals over questions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import Field

from ttc_runtime.config import StrictModel
from ttc_runtime.env.actions import ActionSpace
from ttc_runtime.evaluation.difficulty import Difficulty, difficulty
from ttc_runtime.evaluation.efficiency import (
    UNITS,
    Difference,
    Efficiency,
    Interval,
    bootstrap_weights,
    on_frontier,
    paired_differences,
    paired_efficiency,
)
from ttc_runtime.generation.sampling import derive_seed
from ttc_runtime.outcomes import (
    ArmOutcomes,
    PerQuestion,
    QuestionSamples,
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
    fit_outcomes,
    fit_supervised,
    lambda_sweep,
    reinforce_sweep,
    scale_of,
    train_policy,
)

BEST_OF_N = "best-of-N weighted"
ORACLE_BINS = "compute-optimal (oracle bins)"
PREDICTED_BINS = "compute-optimal (predicted bins)"
CHARGED = ", estimation charged"
FEATURE_TABLE = "feature table (level), fixed budget"
FIXED_FITTED = "best fixed strategy, fitted"
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
class CurvePoint:
    """Best-of-N weighted at N, over all questions, with its accuracy's 95% interval."""

    n: int
    accuracy: float
    low: float
    high: float
    generations: float
    flops: float


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
    lambdas: Sequence[float],
) -> list[PerQuestion]:
    """REINFORCE's adaptive allocator over every arm of the pool: per split, one policy trained on
    its training rows at each price of ``lambdas`` (``reinforce_sweep``), its answered rows answered
    by each; the frontier of the sweep (``sweep_points``). Feature FLOPs charged."""
    space = ActionSpace.from_arms(outcomes.arms, adaptive=True)
    scale = scale_of(outcomes, config.unit)
    parts: list[list] = [[] for _ in lambdas]
    for train, held in splits.parts:
        for k, (_, policy) in enumerate(reinforce_sweep(features, outcomes, train, space, config, scale, lambdas)):
            arms = policy.greedy_arms(features[held], None)
            parts[k].append((held, outcome_of(outcomes, name, 0, held, arms, feature_flops)))
    return sweep_points([merge_folds(p, splits.tested) for p in parts])


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
    ``names[0]``, at every budget of the fixed mode; named ``names[1]``, adaptive over every arm of
    the pool (those of the oracle frontier), its frontier over ``lambdas`` priced in each unit,
    with arm costs the mean compute of the split's training rows over ``scales``. Feature FLOPs
    charged."""
    fixed_space = ActionSpace.from_arms(outcomes.within_budget(), adaptive=False)
    adaptive_space = ActionSpace.from_arms(outcomes.arms, adaptive=True)
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
            costs = outcomes.compute(unit)[np.ix_(train, columns)].mean(axis=0) / scales[unit]
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
    sampled = QuestionSamples.of(samples_frame)
    n = 1
    while n <= config.samples:
        draws = 1 if n == config.samples else max(1, min(config.resamples, config.resamples * 64 // n))
        correct, flops = parallel_outcome(sampled, "weighted", n, draws, config.seed, params)
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


@dataclass(frozen=True)
class AllocatorReport:
    """Everything an allocator evaluation produces: accuracy and compute per allocator, point and
    view; best-of-N weighted's curve; the efficiencies at matched accuracy; the fitted tables (for
    reading); which allocators are fixed strategies and which adaptive (their points a frontier);
    the price sweep with its scale per unit; and the fixed-budget allocators' paired differences
    from the best fixed strategy within each budget: the best on the evaluation questions
    (``differences``: chosen in hindsight, so the luckiest of arms that do the same in expectation)
    and the best on the questions fitted allocators learn from (``fitted_differences``: the fixed
    strategy a user would pick on their own validation questions); per level and budget, what the
    level's own best arm gains over the best single fixed arm (``level_gains``)."""

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
    differences: list[Difference]
    fitted_differences: list[Difference]
    level_gains: list[LevelGain]
    bin_differences: list[Difference] = field(default_factory=list)


@dataclass(frozen=True)
class LevelGain:
    """What a level's own best arm at ``budget`` gains on that level over the best single fixed
    arm (``reference``, the most accurate within the budget on all questions): the world's room
    for an allocator that sees the level. Both are chosen on the evaluation questions; the gain's
    interval is the paired bootstrap's over the level's questions."""

    level: int
    budget: int
    best: str
    accuracy: float
    reference: str
    reference_accuracy: float
    gain: Interval


def level_gains(outcomes: ArmOutcomes, resamples: int, seed: int) -> list[LevelGain]:
    """Per budget and level: the level's best arm within the budget against the best single fixed
    arm within the budget (``LevelGain``)."""
    allowed = set(outcomes.within_budget())
    levels = np.asarray(outcomes.levels, dtype=int)
    gains = []
    for budget in sorted({arm.budget for arm in outcomes.arms}):
        columns = [a for a, arm in enumerate(outcomes.arms) if arm.budget == budget and arm in allowed]
        if not columns:
            continue
        reference = max(columns, key=lambda a: outcomes.correct[:, a].mean())
        for level in sorted(set(levels.tolist())):
            rows = np.flatnonzero(levels == level)
            best = max(columns, key=lambda a: outcomes.correct[rows, a].mean())
            weights = bootstrap_weights(len(rows), resamples, derive_seed(seed, budget, level))
            values = weights @ (outcomes.correct[rows, best] - outcomes.correct[rows, reference])
            gains.append(
                LevelGain(
                    level,
                    budget,
                    outcomes.arms[best].strategy.label,
                    float(outcomes.correct[rows, best].mean()),
                    outcomes.arms[reference].strategy.label,
                    float(outcomes.correct[rows, reference].mean()),
                    Interval.of(values.tolist()),
                )
            )
    return gains


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
        one_bin = np.ones(len(table.questions), dtype=int)
        by_fixed = cross_validate(
            FIXED_FITTED, table, budget, splits, lambda train: BinAllocator.fit(FIXED_FITTED, table, one_bin, train)
        )
        results += [
            by_oracle,
            charged(by_oracle, ORACLE_BINS + CHARGED, estimate.oracle_flops, estimate.samples),
            by_predicted,
            charged(by_predicted, PREDICTED_BINS + CHARGED, estimate.predicted_flops, estimate.samples),
            by_level,
            by_fixed,
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
    bar = FEATURE_ADAPTIVE if FEATURE_ADAPTIVE in frontiers else None
    efficiency = paired_efficiency(curve, frontiers, oracle, config.bootstrap, derive_seed(config.seed, 1), bar=bar)
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
    strategies = {s.label for s in protocol.pool_config.grid}
    references: dict[int, PerQuestion] = {}
    for result in results:
        if result.allocator in strategies and float(result.generations.max()) <= result.budget:
            best = references.get(result.budget)
            if best is None or result.correct.mean() > best.correct.mean():
                references[result.budget] = result
    budgeted = [r for r in results if r.allocator not in adaptive_names and r.allocator not in strategies]
    differences = paired_differences(budgeted, references, config.bootstrap, derive_seed(config.seed, 2))
    fitted = {r.budget: r for r in results if r.allocator == FIXED_FITTED}
    fitted_differences = paired_differences(
        [r for r in budgeted if r.allocator != FIXED_FITTED], fitted, config.bootstrap, derive_seed(config.seed, 3)
    )
    bin_differences = []
    others = [r for r in budgeted if not r.allocator.startswith(("compute-optimal", "per-question"))]
    for offset, name in enumerate((ORACLE_BINS, PREDICTED_BINS)):
        by_bins = {r.budget: r for r in results if r.allocator == name}
        bin_differences += paired_differences(others, by_bins, config.bootstrap, derive_seed(config.seed, 5 + offset))
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
        differences,
        fitted_differences,
        level_gains(protocol.outcomes, config.bootstrap, derive_seed(config.seed, 4)),
        bin_differences,
    )


def evaluate_allocators(
    pool: RolloutPool, config: BaselinesConfig, train_pool: RolloutPool | None = None
) -> AllocatorReport:
    """The baseline allocators on ``pool`` (see the module docstring)."""
    protocol = Protocol.of(pool, config, train_pool)
    return allocator_report(protocol, baseline_results(protocol), config)
