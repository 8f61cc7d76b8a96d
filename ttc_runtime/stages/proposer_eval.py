"""``proposer_eval``: the proposer's sampled pass@1 by level on held-out problems."""

from __future__ import annotations

import time

from ..evaluation.levels import LevelAccuracy, format_levels, pass_at_1_by_level
from ..tasks import per_level
from .base import RunContext, Stage, fingerprint, read_json


class ProposerEval(Stage):
    name = "proposer_eval"
    record = "proposer_eval.json"
    tracked = True
    title = "Proposer: sampled pass@1 by level"

    def key(self, ctx: RunContext) -> str:
        config = ctx.config
        return fingerprint(
            ctx.data_key(config.proposer_eval.split),
            config.proposer,
            ctx.sampling_key(),
            config.proposer_eval,
            ctx.identity(ctx.layout.proposer_dir()),
        )

    def run(self, ctx: RunContext, force: bool) -> dict[str, object]:
        config, settings = ctx.config, ctx.config.proposer_eval
        problems = per_level(ctx.task.problems(settings.split), settings.problems_per_level, distinct=True)
        started = time.perf_counter()
        levels, usage = pass_at_1_by_level(
            ctx.generator(),
            ctx.task,
            problems,
            config.proposer.prompt,
            config.sampling.params(),
            samples_per_problem=settings.samples_per_problem,
            seed=settings.seed,
        )
        temperature = config.sampling.temperature
        return {
            "temperature": temperature,
            "design": {str(row.level): ctx.task.design_pass_at_1(row.level, temperature) for row in levels},
            "split": settings.split,
            "seconds": time.perf_counter() - started,
            "levels": [vars(level) for level in levels],
            "generated_tokens": usage.generated_tokens,
            "flops": usage.flops,
        }

    def describe(self, record: dict) -> str:
        rates = " ".join(f"{row['pass_at_1']:.2f}" for row in record["levels"])
        return f"pass@1 by level {rates}"

    def report_body(self, ctx: RunContext) -> str:
        record = read_json(ctx.run_dir / self.record)
        body = "```\n" + format_levels([LevelAccuracy(**row) for row in record.get("levels", [])]) + "\n```"
        design = {level: rate for level, rate in record.get("design", {}).items() if rate is not None}
        if design:
            rates = ", ".join(f"level {level} {rate:.2f}" for level, rate in design.items())
            body += f"\n\nDesign pass@1 at temperature {record['temperature']} (the task's arithmetic): {rates}."
        return body
