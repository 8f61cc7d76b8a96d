"""``report``: ``report.md``, every reporting stage's tables and plots in one document readable on
its own (paths relative to the run directory), in pipeline order; stages not run yet are named as
missing."""

from __future__ import annotations

import json

from ..files import write_text_atomic
from .base import RunContext, Stage, fingerprint, read_json


def report_text(ctx: RunContext) -> str:
    run = ctx.run_dir
    lines = [
        f"# Test-time compute report: {run}",
        "",
        f"What `ttc run` measured in `{run}`: each section is one stage's tables and plot, taken from the "
        "JSON, Markdown and PNG files beside this report.",
        "",
    ]
    for stage in ctx.stages:
        if not stage.reported(ctx):
            continue
        lines += [f"## {stage.title}", ""]
        if not (run / stage.record).is_file():
            lines += [f"Not run yet (stage `{stage.name}`).", ""]
            continue
        lines += [stage.report_body(ctx).rstrip(), ""]
        lines += [f"![{p}]({p})" for p in stage.plots if (run / p).is_file()]
        lines += [""]
    return "\n".join(lines)


class Report(Stage):
    name = "report"
    record = "report.json"
    outputs = ("report.md",)

    def key(self, ctx: RunContext) -> str:
        sources = {
            stage.name: read_json(ctx.run_dir / stage.record).get("fingerprint")
            for stage in ctx.stages
            if stage.title is not None
        }
        return fingerprint(json.dumps(sources, sort_keys=True))

    def run(self, ctx: RunContext, force: bool) -> dict[str, object]:
        out = ctx.run_dir / "report.md"
        write_text_atomic(out, report_text(ctx))
        return {"report": str(out)}

    def describe(self, record: dict) -> str:
        return f"in {record['report']}"
