"""``baselines``: difficulty bins, the baseline allocators (fixed strategies, compute-optimal by bin,
the feature table by level, the oracles) and their compute saving against best-of-N weighted at
matched accuracy with paired bootstrap intervals, on the rollout pool (``baselines.md``;
``baselines.png``, one panel in generations and one in FLOPs; and JSON)."""

from __future__ import annotations

import time

from ..evaluation.allocator_tables import format_report, plot_report, report_to_json
from ..evaluation.allocators import evaluate_allocators
from ..files import write_text_atomic
from ..pool import RolloutPool
from .base import RunContext, Stage, fingerprint
from .pool import pools_key, train_pool


class Baselines(Stage):
    name = "baselines"
    record = "baselines.json"
    outputs = ("baselines.md",)
    tracked = True
    title = "Compute-optimal baselines and the best strategy per difficulty bin"
    plots = ("baselines.png",)

    def key(self, ctx: RunContext) -> str:
        return fingerprint(ctx.config.baselines, pools_key(ctx))

    def run(self, ctx: RunContext, force: bool) -> dict[str, object]:
        started = time.perf_counter()
        report = evaluate_allocators(RolloutPool(ctx.layout.pool_dir()), ctx.config.baselines, train_pool(ctx))
        plot_report(report, ctx.run_dir / "baselines.png")
        write_text_atomic(ctx.run_dir / "baselines.md", format_report(report))
        return {"seconds": time.perf_counter() - started, **report_to_json(report)}

    def describe(self, record: dict) -> str:
        return f"{record['protocol']}; tables in baselines.md"
