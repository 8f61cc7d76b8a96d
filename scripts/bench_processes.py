"""Throughput of the rollout pool's work in one process with every core as torch threads against
several processes side by side, each with its share of the cores: the measurement behind
``processes`` in the experiment config.

    python scripts/bench_processes.py configs/embedded.yaml [--questions 8] [--processes 2]

The run's models must be trained (``ttc run CONFIG --to revision``). For each kind of work (the K
scored samples of ``pool.samples``; beam search M = 4 at N = 8, its ``runs_of`` runs) it times
QUESTIONS test questions in this process, then PROCESSES processes at once, each doing the same
QUESTIONS questions, and prints questions per second of both and their ratio. Model loading is
left out of every time; the first call of each kind warms up and is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ttc_runtime.experiment_config import ExperimentConfig, load_experiment
from ttc_runtime.pool import Workers, arm_rows, sample_rows
from ttc_runtime.processes import cores, run_in_processes
from ttc_runtime.stages.base import RunContext
from ttc_runtime.tasks import per_level

KINDS = ("samples", "beam_search(M=4)@8")


def timed_work(
    config: ExperimentConfig, questions: int, barrier: Callable[[], None] = lambda: None
) -> dict[str, float]:
    """Seconds each kind of work takes on ``questions`` test questions (one per level in turn);
    ``barrier`` before each call, so that processes side by side work at the same time."""
    ctx = RunContext(config)
    reviser = ctx.load_generator(ctx.layout.revision_dir())
    generator, scorer, settings = ctx.generator(), ctx.scorer(), ctx.search_settings(reviser)
    pool = config.pool
    levels = per_level(ctx.task.problems("test"), questions, distinct=True)
    batch = [levels[i * len(levels) // questions] for i in range(questions)]
    arms = {arm.label: arm for arm in pool.run_arms()}
    seconds = {}
    for kind in KINDS:
        for timed in (False, True):
            barrier()
            started = time.perf_counter()
            if kind == "samples":
                sample_rows(batch, 0, generator, scorer, settings, pool)
            else:
                arm_rows(batch, 0, arms[kind], generator, scorer, settings, pool)
            if timed:
                seconds[kind] = time.perf_counter() - started
    return seconds


def _one_of_several(config: ExperimentConfig, questions: int, out_dir: str) -> None:
    seconds = timed_work(config, questions, Workers.from_env().barrier)
    Path(out_dir, os.environ["RANK"]).write_text(json.dumps(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    config = load_experiment(args.config)
    torch.set_num_threads(cores())
    alone = timed_work(config, args.questions)
    with tempfile.TemporaryDirectory() as out_dir:
        run_in_processes(_one_of_several, (config, args.questions, out_dir), args.processes)
        shared = [json.loads(path.read_text()) for path in Path(out_dir).iterdir()]
    print(
        f"{args.questions} questions; one process of {cores()} threads against {args.processes} processes side by side"
    )
    print("| work | one process, questions/s | processes together, questions/s | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for kind in KINDS:
        one = args.questions / alone[kind]
        together = args.processes * args.questions / max(result[kind] for result in shared)
        print(f"| {kind} | {one:.2f} | {together:.2f} | {together / one:.2f}x |")


if __name__ == "__main__":
    main()
