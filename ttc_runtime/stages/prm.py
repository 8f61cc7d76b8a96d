"""``prm``: train the process reward model on the MC labels or a given stepwise dataset, or take a
given PRM."""

from __future__ import annotations

from pathlib import Path

from ..console import say
from ..scoring import check_verifier
from ..trainers.prm import load_stepwise, train_prm
from .base import RunContext, Stage, check_training, fingerprint, trained_line
from .prm_labels import labels_key


def training_data(ctx: RunContext) -> Path:
    """The stepwise dataset the PRM trains on: the given one, or this run's MC labels."""
    return Path(ctx.config.prm.dataset or ctx.run_dir / "prm_labels" / "dataset")


class Prm(Stage):
    name = "prm"
    record = "prm/ttc_stage.json"
    trains = True
    tracked = True

    def check(self, ctx: RunContext) -> None:
        config = ctx.config
        if config.prm.model is not None and config.verifier.kind != "proposer_margin":
            check_verifier(config.verifier, config.prm.model)
        if config.prm.dataset is not None:
            load_stepwise(config.prm.dataset)
        check_training(self, ctx, "prm", config.prm.training)

    def not_needed(self, ctx: RunContext) -> str | None:
        if ctx.config.verifier.kind == "proposer_margin":
            return "not needed: the verifier reads the proposer's margins"
        if ctx.config.prm.model is not None:
            return f"using the PRM at {ctx.config.prm.model} (no training)"
        return None

    def needs(self, ctx: RunContext) -> dict[Path, str]:
        return {ctx.layout.proposer_dir() / "config.json": "proposer", training_data(ctx): "prm_labels"}

    def key(self, ctx: RunContext) -> str:
        prm = ctx.config.prm
        source = f"dataset:{ctx.content(prm.dataset)}" if prm.dataset else f"labels:{labels_key(ctx)}"
        return fingerprint(
            prm,
            ctx.config.proposer.prompt,
            source,
            ctx.identity(ctx.layout.proposer_dir()),
            *ctx.training_files(prm.training),
        )

    def run(self, ctx: RunContext, force: bool) -> dict[str, object]:
        prm = ctx.config.prm
        dataset = load_stepwise(training_data(ctx))
        kind = "margin head, proposer frozen" if prm.reads == "margins" else f"hidden states, {prm.init} init"
        say(f"  training ({kind}, {prm.targets} labels) on {len(dataset)} solutions for {prm.training.max_steps} steps")
        layout = ctx.layout
        result, fitted = train_prm(prm, dataset, layout.proposer_dir(), layout.prm_dir(), ctx.config.proposer.prompt)
        return {
            "model": str(result.output_dir),
            "trained": True,
            "solutions": len(fitted.features),
            "solutions_cut_to_fit": fitted.rows_cut,
            "solutions_dropped_to_fit": fitted.rows_dropped,
            **result.summary(),
        }

    def describe(self, record: dict) -> str:
        """The trained model's line and the solutions cut or dropped to fit ``training.max_length``
        (none in a record written before the PRM trainer applied it)."""
        cut, dropped = record.get("solutions_cut_to_fit", 0), record.get("solutions_dropped_to_fit", 0)
        return (
            f"{trained_line(record)}; {cut} solutions cut to their first steps and {dropped} dropped to fit the context"
        )
