"""``pool``: the rollout pool, every arm of the grid and K scored samples per question, in Parquet
shards under ``pool/`` (``ttc_runtime.pool.RolloutPool``); with ``train_pool``, a second pool on
other questions under ``train_pool/`` for the fitted allocators to learn from. Collection resumes
shard by shard, so the stage runs every time: to resume, or to confirm the pools are complete."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from ..compute import ACCOUNTING
from ..config import ConfigError
from ..console import say
from ..experiment_config import ExperimentConfig
from ..pool import PoolConfig, PoolInputs, PoolMismatch, RolloutPool, Workers
from ..processes import local_processes, run_in_processes
from ..tasks import per_level
from .base import RunContext, Stage, fingerprint


def pools(ctx: RunContext) -> list[tuple[str, Path, PoolConfig]]:
    """The pools the stage collects: the evaluation pool, then the training pool if any."""
    config, layout = ctx.config, ctx.layout
    found = [("pool", layout.pool_dir(), config.pool)]
    if config.train_pool.enabled:
        found.append(("train_pool", layout.train_pool_dir(), config.train_pool.pool_config(config.pool)))
    return found


def pools_key(ctx: RunContext) -> str:
    """The pools' hashes, for the fingerprints of the stages that read them."""
    return "+".join(RolloutPool(directory).manifest()["hash"] for _, directory, _ in pools(ctx))


def train_pool(ctx: RunContext) -> RolloutPool | None:
    return RolloutPool(ctx.layout.train_pool_dir()) if ctx.config.train_pool.enabled else None


def _needs_reviser(ctx: RunContext) -> bool:
    return any(s.name == "revisions" for s in ctx.config.pool.grid)


def pool_inputs(ctx: RunContext, split: str) -> PoolInputs:
    """What a pool of ``split``'s questions depends on besides its config, the compute accounting
    rule included (its FLOPs columns are only comparable under one rule)."""
    config, layout = ctx.config, ctx.layout
    return PoolInputs(
        proposer=ctx.identity(layout.proposer_dir()),
        verifier=ctx.identity(layout.verifier_dir()),
        reviser=ctx.identity(layout.revision_dir()) if _needs_reviser(ctx) else "",
        settings=fingerprint(
            ctx.data_key(split),
            config.proposer.prompt,
            ctx.sampling_key(),
            config.verifier,
            config.revision.prompt,
            ACCOUNTING,
        ),
    )


def collect_pools(ctx: RunContext, workers: Workers = Workers()) -> dict[str, object]:
    """Collect the rollout pool (and the training pool, when configured), or resume them; with
    ``workers`` from a launcher, this process's share of them (``ttc pool``: the models of the
    earlier stages must exist)."""
    layout = ctx.layout
    _check_models(ctx)
    summary: dict[str, object] = {}
    pending = []
    for name, directory, pool_config in pools(ctx):
        pool = RolloutPool(directory)
        if _holds(ctx, pool, pool_config):
            summary[name] = {"units_done": 0, "questions": len(pool.manifest()["questions"])}
        else:
            pending.append((name, pool, pool_config))
    if not pending:
        return summary
    reviser = ctx.load_generator(layout.revision_dir()) if _needs_reviser(ctx) else None
    generator, scorer, settings = ctx.generator(), ctx.scorer(), ctx.search_settings(reviser)
    for name, pool, pool_config in pending:
        problems = per_level(
            [p for p in ctx.task.problems(pool_config.split) if p.level in pool_config.levels],
            pool_config.problems_per_level,
            distinct=True,
        )
        run = len(pool_config.run_arms())
        chains = "".join(
            f", {pool_config.runs_of(arm)} chains of {arm.strategy.label}" for arm in pool_config.chain_arms()
        )
        say(
            f"  {name}: {len(problems)} {pool_config.split} problems: {pool_config.samples} samples each{chains} and "
            f"{run} arms run ({len(pool_config.arms()) - run} more drawn from the samples and chains)"
        )
        started = time.perf_counter()
        counts = pool.collect(
            pool_config, pool_inputs(ctx, pool_config.split), problems, generator, scorer, settings, workers
        )
        summary[name] = {**counts, "questions": len(problems), "seconds": time.perf_counter() - started}
    return summary


def _check_models(ctx: RunContext) -> None:
    """A ``ConfigError`` when a model the pools need is not trained yet."""
    layout = ctx.layout
    models = [layout.proposer_dir(), layout.verifier_dir()] + ([layout.revision_dir()] if _needs_reviser(ctx) else [])
    for model in models:
        if not (model / "config.json").is_file():
            raise ConfigError(f"{model} holds no model yet: run `ttc run CONFIG --to revision` first")


def _holds(ctx: RunContext, pool: RolloutPool, config: PoolConfig) -> bool:
    """Whether ``pool`` is collected whole; ``PoolMismatch`` when the directory holds another pool."""
    try:
        return pool.holds(config, pool_inputs(ctx, config.split))
    except PoolMismatch as error:
        raise PoolMismatch(f"{error}, or run again with --from pool to rebuild it") from None


def pools_complete(ctx: RunContext) -> bool:
    """Whether every pool of the run is collected whole."""
    _check_models(ctx)
    return all(_holds(ctx, RolloutPool(directory), config) for _, directory, config in pools(ctx))


def _collect_share(config: ExperimentConfig, stages: tuple[Stage, ...]) -> None:
    """One local process's share of the pools (``Pool.run`` with ``processes``)."""
    collect_pools(RunContext(config, stages), Workers.from_env())


class Pool(Stage):
    name = "pool"
    record = None

    def check(self, ctx: RunContext) -> None:
        split = ctx.config.train_pool.split
        if ctx.config.train_pool.enabled and not ctx.task.problems(split):
            raise ValueError(
                f"train_pool.split: the task has no {split} problems; set train_pool.problems_per_level: 0"
            )

    def run(self, ctx: RunContext, force: bool) -> dict[str, object]:
        if force:
            for _, directory, _ in pools(ctx):
                shutil.rmtree(directory, ignore_errors=True)
        processes = local_processes(ctx.config.processes)
        if processes == 1 or pools_complete(ctx):
            return collect_pools(ctx)
        directories = {name: directory for name, directory, _ in pools(ctx)}
        before = {name: RolloutPool(directory).shard_count() for name, directory in directories.items()}
        say(f"  collected by {processes} processes")
        run_in_processes(_collect_share, (ctx.config, ctx.stages), processes)
        summary = collect_pools(ctx)
        for name, counts in summary.items():
            counts["units_done"] = RolloutPool(directories[name]).shard_count() - before[name]
        return summary

    def describe(self, record: dict) -> str:
        parts = []
        for name, counts in record.items():
            written = counts.get("units_done", 0)
            state = f"{written} shards written" if written else "up to date"
            parts.append(f"{name}: {state} ({counts['questions']} questions)")
        return "; ".join(parts)
