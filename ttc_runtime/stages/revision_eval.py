"""``revision_eval``: one revision of incorrect and correct attempts, and accuracy against budget for
every parallel-to-sequential split (``revision_eval.md``, ``revision_eval.png`` and JSON)."""

from __future__ import annotations

import time
from dataclasses import asdict

from ..compute import ACCOUNTING
from ..console import say
from ..evaluation.revisions import (
    best_lengths,
    format_best_lengths,
    format_length_gains,
    format_one_revision,
    format_positions,
    one_revision,
    revision_ratios,
)
from ..evaluation.search import format_budget_table, plot_budgets, points_to_json
from ..files import write_text_atomic
from ..tasks import per_level
from .base import RunContext, Stage


class RevisionEval(Stage):
    name = "revision_eval"
    record = "revision_eval.json"
    outputs = ("revision_eval.md",)
    tracked = True
    title = "Revisions: one revision, and the parallel-to-sequential ratio"
    plots = ("revision_eval.png",)

    def key(self, ctx: RunContext) -> str:
        config = ctx.config
        settings = config.revision_eval
        return ctx.verifier_key(
            settings.split, config.revision.prompt, settings, ctx.identity(ctx.layout.revision_dir()), ACCOUNTING
        )

    def run(self, ctx: RunContext, force: bool) -> dict[str, object]:
        settings = ctx.config.revision_eval
        held_out = [p for p in ctx.task.problems(settings.split) if p.level in settings.levels]
        generator, scorer = ctx.generator(), ctx.scorer()
        search = ctx.search_settings(ctx.load_generator(ctx.layout.revision_dir()))
        started = time.perf_counter()
        single = one_revision(
            generator,
            search.reviser,
            scorer,
            ctx.task,
            per_level(held_out, settings.problems_per_level, distinct=True),
            search,
            settings,
        )
        problems = per_level(held_out, settings.ratio_problems_per_level, distinct=True)
        say(f"  {len(problems)} problems, chain lengths {settings.lengths()} at N = {max(settings.budgets)}")
        sweep = revision_ratios(generator, scorer, ctx.task, problems, search, settings)
        points, best = sweep.points, best_lengths(sweep.points)
        plot_budgets([p for p in points if "majority" not in p.strategy], ctx.run_dir / "revision_eval.png")
        report = (
            "**One revision**\n\n"
            + format_one_revision(single)
            + "\n**Parallel against sequential**: N/L chains of L attempts\n\n"
            + format_budget_table(points)
            + "\n**Best chain length L** (weighted across chains)\n\n"
            + format_best_lengths(best)
            + "\n**Each level's best chain length against the best over all levels** and against all-parallel "
            "chains (L = 1): accuracy on the level's questions, and the paired differences with their 90% intervals\n\n"
            + format_length_gains(sweep.gains)
            + f"\n**Attempts by place in a chain** (chains of L = {max(settings.budgets)}: share of problems whose "
            "k-th attempt is right)\n\n"
            + format_positions(sweep.positions)
        )
        write_text_atomic(ctx.run_dir / "revision_eval.md", report)
        return {
            "split": settings.split,
            "seconds": time.perf_counter() - started,
            "one_revision": [vars(level) for level in single],
            "points": points_to_json(points),
            "best_lengths": best,
            "length_gains": [asdict(gain) for gain in sweep.gains],
            "attempts_right_by_place": sweep.positions,
        }

    def describe(self, record: dict) -> str:
        return (
            f"one revision on {len(record['one_revision'])} levels, {len(record['points'])} points in revision_eval.md"
        )
