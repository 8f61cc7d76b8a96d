"""Efficiency at matched accuracy: an allocator's frontier against best-of-N weighted's curve,
with a paired bootstrap over questions (``evaluation.allocators`` runs the allocators).

**Frontier and matching.** An allocator's frontier is its points (mean compute, accuracy) kept
where accuracy rises with compute (each point more accurate than every cheaper one), joined
linearly in log compute. The compute to reach accuracy ``a`` is where the frontier first reaches
``a``; it is *out of range* when ``a`` is above the frontier's best accuracy or below its cheapest
point's (an allocator that cannot spend less says nothing about that accuracy).

**Efficiency.** The targets are best-of-N weighted's accuracy at N = 2, 4, 8 and 16 (those the pool's
K reaches); best-of-N's curve is resampled from the pool's samples at N = 1, 2, 4, ... K, keeping
per-question expected correctness. At a target, the ratio is best-of-N's compute to reach it over
the allocator's, the compute saving 1 - 1 / ratio, and the share of the oracle's saving the
allocator's saving over the oracle frontier's at the same target, and the gap to the bar (the
allocator's saving minus the adaptive feature table's at the same target). A paired bootstrap over questions
draws the same question indices for the curve, the target (best-of-N's accuracy at N in that
resample) and every allocator; each quantity is reported as the median and 90% interval of the
resamples in range, with the count of resamples out of range. Computed in FLOPs and in generations.

**Fixed budgets.** At each budget N, an allocator's accuracy minus the best fixed strategy's that
spends at most N generations (the best on all questions), with the median and 90% interval of the
paired bootstrap of the same questions (``paired_differences``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ttc_runtime.outcomes import PerQuestion

UNITS = ("generations", "flops")
TARGET_NS = (2, 4, 8, 16)
TIE = 1e-9
"""Accuracies (shares of questions) closer than this are one accuracy (``compute_to_reach``)."""


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
    range where the oracle saves nothing) and ``bar_gap`` (its saving minus the bar's, the feature
    table's, at the same target; out of range where either is)."""

    allocator: str
    unit: str
    n: int
    target: float
    ratio: Interval
    saving: Interval
    oracle_share: Interval
    bar_gap: Interval


def bootstrap_weights(count: int, resamples: int, seed: int) -> np.ndarray:
    """``(1 + resamples, count)`` weights whose product with per-question values gives their mean on
    all questions (row 0), then on each resample of the questions drawn with replacement: the one
    draw that pairs every quantity resampled with it."""
    rng = np.random.default_rng(seed & 0xFFFFFFFF)
    draws = rng.multinomial(count, np.full(count, 1.0 / count), size=resamples)
    return np.vstack([np.ones(count), draws]) / count


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
    the last accuracy or below the first). Accuracies within ``TIE`` of each other are equal: the
    same questions' mean, summed in another order, differs in its last bits."""
    if not ys or target < ys[0] - TIE or target > ys[-1] + TIE:
        return None
    target = min(max(target, ys[0]), ys[-1])
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


def _gap(saving: float | None, bar: float | None) -> float | None:
    return None if saving is None or bar is None else saving - bar


def paired_efficiency(
    curve: Sequence[PerQuestion],
    frontiers: dict[str, Sequence[PerQuestion]],
    oracle: str | None,
    resamples: int,
    seed: int,
    ns: Sequence[int] = TARGET_NS,
    bar: str | None = None,
) -> list[Efficiency]:
    """Every frontier's efficiency against best-of-N weighted's ``curve`` (one result per N, its
    budget N) at best-of-N's accuracy at each N of ``ns`` the curve has, in both units, with the
    paired bootstrap of the module docstring (``resamples`` draws of the questions, ``seed``).
    ``oracle`` names the frontier whose saving the shares divide by (none: no shares), ``bar``
    the one whose saving the gaps subtract (none: no gaps)."""
    count = len(curve[0].correct)
    weights = bootstrap_weights(count, resamples, seed)
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
    gaps = {key: [] for key in ratios}
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
                floor = _saving(ratio[bar]) if bar in ratio else None
                for name in frontiers:
                    ratios[name, unit, n].append(ratio[name])
                    shares[name, unit, n].append(_share(_saving(ratio[name]), best))
                    gaps[name, unit, n].append(_gap(_saving(ratio[name]), floor))
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
            Interval.of(gaps[name, unit, n]),
        )
        for (name, unit, n), values in ratios.items()
    ]


@dataclass(frozen=True)
class Difference:
    """One fixed-budget allocator at ``budget``: its accuracy minus ``reference``'s (the best fixed
    strategy within the budget), on all questions, with the paired bootstrap's 90% interval."""

    allocator: str
    budget: int
    reference: str
    difference: Interval


def paired_differences(
    results: Sequence[PerQuestion], references: dict[int, PerQuestion], resamples: int, seed: int
) -> list[Difference]:
    """Each result at a budget of ``references`` against the reference at that budget, the
    questions resampled together (``resamples`` draws, ``seed``)."""
    if not references:
        return []
    count = len(next(iter(references.values())).correct)
    weights = bootstrap_weights(count, resamples, seed)
    out = []
    for result in results:
        reference = references.get(result.budget)
        if reference is None or result.allocator == reference.allocator:
            continue
        values = weights @ (result.correct - reference.correct)
        out.append(Difference(result.allocator, result.budget, reference.allocator, Interval.of(values.tolist())))
    return out
