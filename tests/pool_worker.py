"""Collect a small rollout pool with a tiny model (the test kills and restarts this process).

Usage: python tests/pool_worker.py MODEL_DIR POOL_DIR; under torchrun, the processes share the work.
"""

from __future__ import annotations

import sys

from ttc_runtime.generation.base import SamplingParams
from ttc_runtime.generation.hf import TransformersGenerator
from ttc_runtime.pool import PoolConfig, PoolInputs, RolloutPool, Workers
from ttc_runtime.scoring import ProposerMarginScorer
from ttc_runtime.strategies import SearchSettings, StrategyConfig
from ttc_runtime.tasks import SyntheticTask

CONFIG = PoolConfig(
    levels=[1, 3],
    problems_per_level=3,
    budgets=[2, 4],
    grid=[
        StrategyConfig(name="best_of_n_weighted"),
        StrategyConfig(name="beam_search", beam_width=2, max_rounds=3),
        StrategyConfig(name="revisions", chain_length=2),
    ],
    samples=8,
    resamples=5,
    runs=3,
    runs_at_largest=2,
    questions_per_shard=1,
)
INPUTS = PoolInputs(proposer="tiny", verifier="tiny-margin", reviser="tiny", settings="test")


def problems():
    task = SyntheticTask()
    chosen = [p for p in task.problems(CONFIG.split) if p.level in CONFIG.levels]
    return [p for level in CONFIG.levels for p in [q for q in chosen if q.level == level][: CONFIG.problems_per_level]]


def settings(generator: TransformersGenerator) -> SearchSettings:
    """The search settings of the pool (the generator revises too)."""
    return SearchSettings(sampling=SamplingParams(temperature=1.0, max_new_tokens=12), reviser=generator)


def main(model_dir: str, pool_dir: str) -> None:
    generator = TransformersGenerator.from_pretrained(model_dir)
    RolloutPool(pool_dir).collect(
        CONFIG,
        INPUTS,
        problems(),
        generator,
        ProposerMarginScorer.from_pretrained(model_dir),
        settings(generator),
        Workers.from_env(),
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
