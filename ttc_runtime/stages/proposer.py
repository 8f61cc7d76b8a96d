"""``proposer``: train the proposer on the task's training split, or take a given model."""

from __future__ import annotations

from pathlib import Path

from ..console import say
from ..trainers.proposer import ProposerConfig, train_proposer
from .base import RunContext, Stage, check_training, fingerprint, trained_line


def train_language_model(ctx: RunContext, settings: ProposerConfig, directory: Path) -> dict[str, object]:
    """Train a model as ``settings`` says on the task's training split into ``directory`` (the
    proposer, and the larger model of the FLOPs-matched comparison); returns its record."""
    problems = ctx.task.problems("train")
    say(f"  training {directory} on {len(problems)} problems for {settings.training.max_steps} steps")
    result = train_proposer(settings, problems, directory)
    return {"model": str(result.output_dir), "trained": True, **result.summary()}


class Proposer(Stage):
    name = "proposer"
    record = "proposer/ttc_stage.json"
    trains = True
    tracked = True

    def check(self, ctx: RunContext) -> None:
        check_training(self, ctx, "proposer", ctx.config.proposer.training)

    def not_needed(self, ctx: RunContext) -> str | None:
        model = ctx.config.proposer.model
        return None if model is None else f"using the proposer at {model} (no training)"

    def key(self, ctx: RunContext) -> str:
        proposer = ctx.config.proposer
        return fingerprint(ctx.data_key("train"), proposer, *ctx.training_files(proposer.training))

    def run(self, ctx: RunContext, force: bool) -> dict[str, object]:
        return train_language_model(ctx, ctx.config.proposer, ctx.layout.proposer_dir())

    def describe(self, record: dict) -> str:
        return trained_line(record)
