"""``counterpart`` (when ``counterpart.enabled``): the FLOPs-matched comparison, a model about 14x the
proposer trained on the same data (``counterpart/``) against the proposer with test-time compute,
by difficulty bin (``counterpart.md``, ``counterpart.png`` and JSON)."""

from __future__ import annotations

import json
import time

import numpy as np

from ..config import ConfigError
from ..console import first_process, say
from ..evaluation.counterpart import compare, format_matched, plot_matched
from ..evaluation.difficulty import difficulty
from ..files import write_text_atomic
from ..pool import RolloutPool
from ..tasks import answers_match, extract_boxed
from ..trainers.proposer import ProposerConfig
from .base import RunContext, Stage, fingerprint, read_json
from .proposer import train_language_model


def larger_model_settings(ctx: RunContext) -> ProposerConfig:
    """The proposer's training recipe for the larger model: its architecture, checkpoints every
    ``save_steps``, and the proposer's learning rate scaled down by width unless one is given."""
    config, settings = ctx.config, ctx.config.counterpart
    rate = settings.learning_rate or (
        config.proposer.training.learning_rate
        * config.proposer.architecture.hidden_size
        / settings.architecture.hidden_size
    )
    training = config.proposer.training.model_copy(update={"save_steps": settings.save_steps, "learning_rate": rate})
    return config.proposer.model_copy(update={"architecture": settings.architecture, "training": training})


def train_larger_model(ctx: RunContext) -> None:
    """Train the larger model unless one trained from the same inputs is there. Never forced:
    ``--from`` does not retrain it (it costs about 14x the proposer); delete it to retrain."""
    settings = larger_model_settings(ctx)
    directory = ctx.layout.counterpart_dir()
    marker = directory / "ttc_stage.json"
    key = fingerprint(ctx.data_key("train"), settings, *ctx.training_files(settings.training))
    if read_json(marker).get("fingerprint") == key:
        return
    record = {"fingerprint": key, **train_language_model(ctx, settings, directory)}
    if first_process():
        write_text_atomic(marker, json.dumps(record, indent=2) + "\n")


class Counterpart(Stage):
    name = "counterpart"
    record = "counterpart.json"
    outputs = ("counterpart.md",)
    tracked = True
    title = "FLOPs-matched: test-time compute against a larger model"
    plots = ("counterpart.png",)

    def check(self, ctx: RunContext) -> None:
        config = ctx.config
        if config.counterpart.enabled and config.proposer.model is not None and config.counterpart.model is None:
            raise ConfigError("counterpart.model: give the larger model, since the proposer is not trained here")

    def not_needed(self, ctx: RunContext) -> str | None:
        if not ctx.config.counterpart.enabled:
            return "skipped: counterpart.enabled is false (it trains a model about 14x the proposer)"
        return None

    def reported(self, ctx: RunContext) -> bool:
        return ctx.config.counterpart.enabled

    def prepare(self, ctx: RunContext) -> None:
        if ctx.config.counterpart.model is None:
            train_larger_model(ctx)

    def key(self, ctx: RunContext) -> str:
        config = ctx.config
        return fingerprint(
            config.counterpart,
            ctx.sampling_key(),
            config.baselines,
            RolloutPool(ctx.layout.pool_dir()).manifest()["hash"],
            ctx.identity(ctx.layout.counterpart_dir()),
            ctx.identity(ctx.layout.proposer_dir()),
        )

    def run(self, ctx: RunContext, force: bool) -> dict[str, object]:
        config, settings = ctx.config, ctx.config.counterpart
        started = time.perf_counter()
        pool = RolloutPool(ctx.layout.pool_dir())
        questions = pool.questions()
        larger = ctx.load_generator(ctx.layout.counterpart_dir())
        prompts = [config.proposer.prompt.format(q) for q in questions["question"]]
        say(f"  sampling the larger model: {len(prompts)} pool questions x {settings.samples}")
        output = larger.generate(prompts, n=settings.samples, params=config.sampling.params(), seed=settings.samples)
        large_pass = np.array(
            [
                np.mean([answers_match(extract_boxed(c.text), gold) for c in row])
                for row, gold in zip(output.completions, questions["answer"])
            ]
        )
        samples = pool.samples()
        small_params = int(pool.manifest()["proposer_params"])
        bins = difficulty(samples, small_params, config.baselines.bins).oracle_bins
        scale = larger.flop_params / small_params
        rows = compare(samples, small_params, large_pass, bins, scale, settings, config.pool.seed)
        plot_matched(rows, scale, ctx.run_dir / "counterpart.png")
        write_text_atomic(ctx.run_dir / "counterpart.md", format_matched(rows, scale, larger.flop_params, small_params))
        return {
            "seconds": time.perf_counter() - started,
            "scale": scale,
            "large_params": larger.flop_params,
            "small_params": small_params,
            "large_inference_flops": output.usage.flops,
            "rows": [vars(row) for row in rows],
        }

    def describe(self, record: dict) -> str:
        return f"the larger model is {record['scale']:.1f}x the proposer; tables in counterpart.md"
