"""``revision``: fine-tune the proposer into the revision model with TRL, or take a given one."""

from __future__ import annotations

from pathlib import Path

from ..console import say
from ..trainers.revision import train_revision
from .base import RunContext, Stage, check_training, fingerprint, trained_line
from .revision_data import revision_data_key


class Revision(Stage):
    name = "revision"
    record = "revision/ttc_stage.json"
    trains = True
    tracked = True

    def check(self, ctx: RunContext) -> None:
        check_training(self, ctx, "revision", ctx.config.revision.training)

    def not_needed(self, ctx: RunContext) -> str | None:
        model = ctx.config.revision.model
        return None if model is None else f"using the revision model at {model} (no training)"

    def needs(self, ctx: RunContext) -> dict[Path, str]:
        return {
            ctx.layout.proposer_dir() / "config.json": "proposer",
            ctx.run_dir / "revision_data" / "dataset": "revision_data",
        }

    def key(self, ctx: RunContext) -> str:
        revision = ctx.config.revision
        return fingerprint(revision, revision_data_key(ctx), *ctx.training_files(revision.training))

    def run(self, ctx: RunContext, force: bool) -> dict[str, object]:
        from datasets import load_from_disk

        settings = ctx.config.revision
        dataset = load_from_disk(str(ctx.run_dir / "revision_data" / "dataset"))
        say(f"  fine-tuning the proposer on {len(dataset)} examples for {settings.training.max_steps} steps")
        layout = ctx.layout
        result, fitted = train_revision(
            settings, dataset, layout.proposer_dir(), layout.revision_dir(), ctx.config.proposer.prompt
        )
        return {
            "model": str(result.output_dir),
            "trained": True,
            "examples": len(fitted.dataset),
            "attempts_dropped_to_fit": fitted.attempts_dropped,
            "examples_dropped_to_fit": fitted.examples_dropped,
            **result.summary(),
        }

    def describe(self, record: dict) -> str:
        return (
            f"{trained_line(record)}; "
            f"{record['attempts_dropped_to_fit']} attempts and {record['examples_dropped_to_fit']} examples "
            "dropped to fit the context"
        )
