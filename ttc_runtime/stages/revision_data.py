"""``revision_data``: the revision model's training data, sampled from the proposer and paired by
edit distance (``trainers.revision_data``); not needed when a revision model is given."""

from __future__ import annotations

import shutil
import time

from ..console import say
from ..tasks import per_level
from ..trainers.revision_data import build_revision_data
from .base import RunContext, Stage, fingerprint


def revision_data_key(ctx: RunContext) -> str:
    config = ctx.config
    return fingerprint(
        ctx.data_key("train"),
        ctx.sampling_key(),
        config.proposer.prompt,
        config.revision.prompt,
        config.revision_data,
        ctx.identity(ctx.layout.proposer_dir()),
    )


class RevisionData(Stage):
    name = "revision_data"
    record = "revision_data/summary.json"

    def not_needed(self, ctx: RunContext) -> str | None:
        model = ctx.config.revision.model
        return None if model is None else f"not needed: the revision model is given ({model})"

    def key(self, ctx: RunContext) -> str:
        return revision_data_key(ctx)

    def run(self, ctx: RunContext, force: bool) -> dict[str, object]:
        config, settings = ctx.config, ctx.config.revision_data
        problems = per_level(ctx.task.problems("train"), settings.problems_per_level, distinct=True)
        say(f"  {len(problems)} problems x {settings.samples_per_problem} samples")
        started = time.perf_counter()
        dataset = build_revision_data(
            ctx.generator(),
            ctx.task,
            problems,
            config.proposer.prompt,
            config.revision.prompt,
            config.sampling.params(),
            settings,
        )
        if len(dataset) == 0:
            raise ValueError(
                f"revision_data: none of the {settings.samples_per_problem} samples of any of {len(problems)} "
                "training problems is correct, so there is no revision example; train the proposer longer, "
                "sample more (revision_data.samples_per_problem) or give revision.model"
            )
        out_dir = ctx.run_dir / "revision_data"
        shutil.rmtree(out_dir, ignore_errors=True)
        dataset.save_to_disk(str(out_dir / "dataset"))
        attempts = dataset["attempts"]
        return {
            "problems": len(problems),
            "examples": len(dataset),
            "examples_by_attempts": {str(n): attempts.count(n) for n in range(settings.max_attempts + 1)},
            "seconds": time.perf_counter() - started,
        }

    def describe(self, record: dict) -> str:
        return (
            f"{record['examples']} examples from {record['problems']} problems "
            f"(by attempts in context: {record['examples_by_attempts']})"
        )
