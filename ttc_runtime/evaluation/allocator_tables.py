"""The allocator evaluation's tables, JSON and plots: markdown for ``baselines.md`` and
``allocator.md``, the two-panel accuracy-against-compute figure, and the heat map of what an
allocator chose per difficulty bin."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ttc_runtime.evaluation.allocators import (
    BEST_OF_N,
    FEATURE_ADAPTIVE,
    FEATURE_TABLE,
    ORACLE_BINS,
    ORACLE_FRONTIER,
    AllocatorPoint,
    AllocatorReport,
)
from ttc_runtime.evaluation.efficiency import UNITS, Interval, on_frontier
from ttc_runtime.files import save_figure


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


def _signed(interval: Interval) -> str:
    """A difference on all questions with its median and 90% interval."""
    return f"{interval.value:+.3f} ({interval.median:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}])"


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
            (
                (
                    f"**Saving minus the feature table's ({label})**, at the same accuracy from the same resamples: "
                    "median [90% interval] in points of saving (positive: the allocator saves more than the bar)"
                ),
                "bar_gap",
            ),
        ):
            lines += ["", title, "", header, rule]
            lines += [
                f"| {name} | " + " | ".join(_cell(getattr(mine[name, n], field), True) for n, _ in targets) + " |"
                for name in names
            ]
    for differences, reference in (
        (report.differences, "the best fixed strategy within it, chosen on the evaluation questions (hindsight)"),
        (
            report.fitted_differences,
            "the best fixed strategy within it, chosen on the questions fitted allocators learn from",
        ),
    ):
        lines += _differences(differences, reference)
    for name in dict.fromkeys(d.reference for d in report.bin_differences):
        lines += _differences([d for d in report.bin_differences if d.reference == name], name)
    if report.level_gains:
        lines += [
            "",
            "**Each level's best arm against the best single fixed arm** within the budget (both chosen on these "
            "questions): accuracy on the level's questions, and the gain with its 90% paired interval",
            "",
            "| N | level | level's best arm | accuracy | best single fixed arm | its accuracy | gain |",
            "| ---: | ---: | --- | ---: | --- | ---: | ---: |",
        ]
        lines += [
            f"| {g.budget} | {g.level} | {g.best} | {g.accuracy:.3f} | {g.reference} | {g.reference_accuracy:.3f} | "
            f"{_signed(g.gain)} |"
            for g in report.level_gains
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


def _differences(differences: Sequence, reference: str) -> list[str]:
    """The fixed-budget differences from ``reference``, one row per allocator, one column per N."""
    if not differences:
        return []
    budgets = sorted({d.budget for d in differences})
    mine = {(d.allocator, d.budget): d for d in differences}
    per_budget = {n: next(d.reference for d in differences if d.budget == n) for n in budgets}
    if len(set(per_budget.values())) == 1:
        said = ""
    else:
        said = "; the reference at each N: " + ", ".join(f"N = {n} {name}" for n, name in per_budget.items())
    lines = [
        "",
        f"**Fixed budget against {reference}**: accuracy difference on all questions (median [90% paired "
        f"interval]){said}",
        "",
        "| allocator | " + " | ".join(f"N = {n}" for n in budgets) + " |",
        "| --- |" + " ---: |" * len(budgets),
    ]
    for name in dict.fromkeys(d.allocator for d in differences):
        cells = [mine.get((name, n)) for n in budgets]
        lines.append(f"| {name} | " + " | ".join("-" if d is None else _signed(d.difference) for d in cells) + " |")
    return lines


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
        "differences": [asdict(d) for d in report.differences],
        "fitted_differences": [asdict(d) for d in report.fitted_differences],
        "bin_differences": [asdict(d) for d in report.bin_differences],
        "level_gains": [asdict(g) for g in report.level_gains],
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
    """Per bin (a difficulty bin, or a level), the share of questions given each strategy
    configuration (label)."""
    shares: dict[int, dict[str, float]] = {}
    for b in sorted(set(bins.tolist())):
        mine = [arm.strategy.label for arm, own in zip(arms, bins) if own == b]
        shares[b] = {label: mine.count(label) / len(mine) for label in sorted(set(mine))}
    return shares


def plot_choices(choices: dict[int, dict[int, dict[str, float]]], path: str | Path, rows: str = "bin") -> None:
    """Heat maps of what an allocator chose: one panel per budget, rows the difficulty bins (or
    what ``rows`` names, e.g. levels), columns the strategy configurations, cells the share of
    the row's questions."""
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
        axis.set_yticks(range(len(bins)), [f"{rows} {b}" for b in bins], fontsize=7)
        axis.set_title(f"N = {budget}", fontsize=9)
    figure.tight_layout()
    save_figure(figure, path)
