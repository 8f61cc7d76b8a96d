"""``search_eval``: every strategy's accuracy against budget by level on held-out problems, with
its cost (``search_eval.md``, ``search_eval.png`` and JSON)."""

from __future__ import annotations

import time

from ..compute import ACCOUNTING
from ..console import say
from ..evaluation.search import evaluate_budgets, format_budget_table, plot_budgets, points_to_json
from ..files import write_text_atomic
from ..tasks import per_level
from .base import RunContext, Stage


class SearchEval(Stage):
    name = "search_eval"
    record = "search_eval.json"
    outputs = ("search_eval.md",)
    tracked = True
    title = "Strategies: accuracy against budget"
    plots = ("search_eval.png",)

    def key(self, ctx: RunContext) -> str:
        settings = ctx.config.search_eval
        return ctx.verifier_key(settings.split, settings, ACCOUNTING)

    def run(self, ctx: RunContext, force: bool) -> dict[str, object]:
        settings = ctx.config.search_eval
        held_out = [p for p in ctx.task.problems(settings.split) if p.level in settings.levels]
        problems = per_level(held_out, settings.problems_per_level, distinct=True)
        say(f"  {len(problems)} problems, budgets {settings.budgets()}, {len(settings.strategies)} strategies")
        started = time.perf_counter()
        points, skipped = evaluate_budgets(
            ctx.generator(), ctx.scorer(), ctx.task, problems, ctx.search_settings(), settings
        )
        plot_budgets(points, ctx.run_dir / "search_eval.png")
        write_text_atomic(ctx.run_dir / "search_eval.md", format_budget_table(points))
        for name, reason in skipped.items():
            say(f"  skipped {name}: {reason}")
        return {
            "split": settings.split,
            "seconds": time.perf_counter() - started,
            "points": points_to_json(points),
            "skipped": skipped,
        }

    def describe(self, record: dict) -> str:
        return f"{len(record['points'])} points of accuracy against budget in search_eval.md"
