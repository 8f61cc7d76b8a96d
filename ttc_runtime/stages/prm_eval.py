"""``prm_eval``: what the verifier adds on held-out problems (best-of-N selection and step AUROC by
level), and how its step scores agree with MC labels of held-out solutions."""

from __future__ import annotations

import time

from ..evaluation.verifier import (
    VerifierLevel,
    evaluate_verifier,
    format_label_agreement,
    format_verifier_levels,
    label_agreement,
    middle_levels_summary,
)
from ..files import write_text_atomic
from ..tasks import per_level
from ..trainers.prm import load_stepwise
from .base import RunContext, Stage, fingerprint, read_json
from .prm_labels import label_into, labels_key


class PrmEval(Stage):
    name = "prm_eval"
    record = "prm_eval.json"
    tracked = True
    title = "Verifier: best-of-N selection and step AUROC"

    def key(self, ctx: RunContext) -> str:
        settings = ctx.config.prm_eval
        return ctx.verifier_key(settings.split, ctx.config.prm_labels, settings)

    def run(self, ctx: RunContext, force: bool) -> dict[str, object]:
        config, settings = ctx.config, ctx.config.prm_eval
        held_out = [p for p in ctx.task.problems(settings.split) if p.level in settings.levels]
        scorer = ctx.scorer()
        started = time.perf_counter()
        levels, compute = evaluate_verifier(
            ctx.generator(),
            scorer,
            ctx.task,
            per_level(held_out, settings.problems_per_level, distinct=True),
            config.proposer.prompt,
            config.sampling.params(),
            settings.n,
            config.verifier.aggregation,
            settings.seed,
        )
        record: dict[str, object] = {
            "split": settings.split,
            "aggregation": config.verifier.aggregation,
            "seconds": time.perf_counter() - started,
            "levels": [vars(level) for level in levels],
            "middle_levels": middle_levels_summary(levels),
            "compute": compute.to_dict(),
        }
        if settings.label_problems_per_level:
            # The labels depend on the proposer and the problems, not on the PRM: a new PRM reuses them.
            problems = per_level(held_out, settings.label_problems_per_level, distinct=True)
            out_dir = ctx.run_dir / "prm_eval_labels"
            label_into(
                ctx, problems, out_dir, fingerprint(labels_key(ctx, settings.split), ",".join(p.id for p in problems))
            )
            dataset = load_stepwise(out_dir / "dataset")
            record["mc_labels"] = label_agreement(scorer, dataset, len(problems))
        tables = format_verifier_levels(levels)
        if "mc_labels" in record:
            tables += "\n\n" + format_label_agreement(record["mc_labels"])
        write_text_atomic(ctx.run_dir / "prm_eval.md", "```\n" + tables + "\n```\n")
        return record

    def describe(self, record: dict) -> str:
        middle = record.get("middle_levels")
        if not middle:
            return "evaluated"
        return (
            f"levels 3-4: pass@1 {middle['pass_at_1']:.3f}, majority {middle['majority']:.3f}, "
            f"weighted best-of-N {middle['best_of_n_weighted']:.3f}"
        )

    def report_body(self, ctx: RunContext) -> str:
        levels = read_json(ctx.run_dir / self.record).get("levels", [])
        return "```\n" + format_verifier_levels([VerifierLevel(**row) for row in levels]) + "\n```"
