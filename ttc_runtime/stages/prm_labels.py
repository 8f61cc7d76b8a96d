"""``prm_labels``: Monte Carlo step labels on training problems, the PRM's training data (not
needed when a PRM or a stepwise dataset is given, or when the verifier reads the proposer's
margins). Labelling resumes shard by shard after an interruption."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from datasets import Dataset

from ..compute import Usage
from ..console import say
from ..experiment_config import ExperimentConfig
from ..files import write_text_atomic
from ..processes import local_processes, run_in_processes
from ..tasks import Problem, per_level
from ..trainers.prm_labels import label_steps
from .base import RunContext, Stage, fingerprint


def labels_key(ctx: RunContext, split: str = "train") -> str:
    """What MC labels of ``split``'s problems depend on: the proposer and how it samples, not the PRM."""
    config = ctx.config
    return fingerprint(
        ctx.data_key(split),
        config.proposer.prompt,
        ctx.sampling_key(),
        config.prm_labels,
        ctx.identity(ctx.layout.proposer_dir()),
    )


def _label(
    ctx: RunContext, problems: list[Problem], out_dir: Path, share: tuple[int, int] = (0, 1)
) -> tuple[Dataset | None, Usage]:
    config = ctx.config
    return label_steps(
        ctx.generator(),
        ctx.task,
        problems,
        config.proposer.prompt,
        config.sampling.params(),
        config.prm_labels,
        out_dir,
        share,
    )


def _label_share(config: ExperimentConfig, stages: tuple[Stage, ...], problems: list[Problem], out_dir: Path) -> None:
    """One local process's share of the labels (``label_into`` with ``processes``)."""
    _label(RunContext(config, stages), problems, out_dir, (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])))


def label_into(
    ctx: RunContext, problems: list[Problem], out_dir: Path, key: str, processes: int = 1
) -> dict[str, object]:
    """Label ``problems`` into ``out_dir``, resuming its shards when they were made with ``key``
    and starting afresh when they were made from other inputs; with ``processes``, that many local
    processes label the shards (every ``processes``-th each) and this one reads them. The record's
    usage is that of the shards labelled in this call."""
    key_file = out_dir / "stage-key"
    if out_dir.exists() and (not key_file.is_file() or key_file.read_text() != key):
        say(f"  {out_dir} holds labels from other inputs; relabelling")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(key_file, key)
    started = time.perf_counter()
    before = {path.name for path in out_dir.glob("shard-*.usage.json")}
    if processes > 1:
        say(f"  labelled by {processes} processes")
        run_in_processes(_label_share, (ctx.config, ctx.stages, problems, out_dir), processes)
    dataset, _ = _label(ctx, problems, out_dir)
    usage = Usage()
    for path in out_dir.glob("shard-*.usage.json"):
        if path.name not in before:
            usage = usage + Usage(**json.loads(path.read_text()))
    return {
        "problems": len(problems),
        "solutions": len(dataset),
        "steps": sum(len(row) for row in dataset["completions"]),
        "seconds": time.perf_counter() - started,
        "generated_tokens": usage.generated_tokens,
        "flops": usage.flops,
    }


def labelling(ctx: RunContext) -> bool:
    """Whether this run trains its PRM on MC labels it makes itself."""
    config = ctx.config
    return config.verifier.kind != "proposer_margin" and config.prm.model is None and config.prm.dataset is None


class PrmLabels(Stage):
    name = "prm_labels"
    record = "prm_labels/summary.json"

    def check(self, ctx: RunContext) -> None:
        if labelling(ctx) and not ctx.task.problems("train"):
            raise ValueError(
                "prm_labels: the task has no training problems to label; give prm.model (a trained PRM), "
                "prm.dataset (stepwise data to train one) or training data, or stop earlier with --to"
            )

    def not_needed(self, ctx: RunContext) -> str | None:
        prm = ctx.config.prm
        if ctx.config.verifier.kind == "proposer_margin":
            return "not needed: the verifier reads the proposer's margins"
        if prm.model is not None or prm.dataset is not None:
            return f"not needed: the PRM {'is given' if prm.model else 'trains on ' + str(prm.dataset)}"
        return None

    def key(self, ctx: RunContext) -> str:
        return labels_key(ctx)

    def run(self, ctx: RunContext, force: bool) -> dict[str, object]:
        out_dir = ctx.run_dir / "prm_labels"
        if force:
            shutil.rmtree(out_dir, ignore_errors=True)
        settings = ctx.config.prm_labels
        problems = per_level(ctx.task.problems("train"), settings.problems_per_level, distinct=True)
        say(
            f"  {len(problems)} problems x {settings.samples_per_problem} solutions, "
            f"K = {settings.rollouts} rollouts per step"
        )
        return label_into(ctx, problems, out_dir, labels_key(ctx), local_processes(ctx.config.processes))

    def describe(self, record: dict) -> str:
        return f"{record['steps']} steps of {record['solutions']} solutions labelled"
