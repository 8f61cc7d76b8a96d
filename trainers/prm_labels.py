"""Monte Carlo step labels for PRM training (Math-Shepherd, as the paper does).

For each training problem, sample solutions from the proposer; for every step prefix of each
solution, roll out K completions from it and label the step with the fraction of rollouts that
reach the gold answer (soft label) and with whether any does (hard label). A prefix whose last
step already holds the boxed answer is labelled by grading it, without rollouts.

Work is split into shards of problems. Each shard is written to ``shard-NNNNN.jsonl`` through a
temporary file and an atomic rename, so a labelling run that is interrupted continues with the
first missing shard and loses nothing. Every random draw is seeded from ``(seed, problem index,
sample, step)``, so shard boundaries and restarts do not change the labels.

The output is a ``datasets`` dataset in TRL's stepwise-supervision layout (``prompt``: the raw
question, ``completions``: the steps, ``labels``: hard labels) plus ``soft_labels``,
``step_correct`` (the synthetic task's exact check, for diagnostics only; empty where the task
cannot tell), ``problem_id`` and ``level``. It is also saved with ``save_to_disk`` under
``dataset/`` so that it loads like any other stepwise dataset.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset
from pydantic import Field
from tqdm.auto import tqdm

from ttc_runtime.compute import Usage
from ttc_runtime.config import StrictModel
from ttc_runtime.console import library_bars_hidden
from ttc_runtime.files import write_text_atomic
from ttc_runtime.generation.base import Generator, SamplingParams
from ttc_runtime.generation.sampling import derive_seed
from ttc_runtime.prompts import PromptConfig
from ttc_runtime.tasks import STEP_SEPARATOR, Problem, Task, extract_boxed, split_steps


class LabelConfig(StrictModel):
    """How many solutions and rollouts the labels are estimated from."""

    problems_per_level: int = Field(200, ge=1, description="Training problems labelled per difficulty level.")
    samples_per_problem: int = Field(4, ge=1, description="Solutions sampled per training problem.")
    rollouts: int = Field(8, ge=1, description="K: completions rolled out from every step prefix.")
    shard_size: int = Field(50, ge=1, description="Problems per shard, the unit of resumption.")
    seed: int = 0


def _rows_for_shard(
    generator: Generator,
    task: Task,
    problems: Sequence[tuple[int, Problem]],
    prompt: PromptConfig,
    params: SamplingParams,
    config: LabelConfig,
) -> tuple[list[dict], Usage]:
    """Label every step of every sampled solution of ``problems`` (pairs of global index, problem)."""
    solutions = generator.generate(
        [prompt.format(p.question) for _, p in problems],
        n=config.samples_per_problem,
        params=params,
        seed=[derive_seed(config.seed, index) for index, _ in problems],
    )
    usage = solutions.usage
    # One rollout request per step prefix that has no answer yet; the others are graded directly.
    requests: list[tuple[int, int, int]] = []  # (row, step, problem position)
    rows = []
    for position, ((index, problem), completions) in enumerate(zip(problems, solutions.completions)):
        for sample, completion in enumerate(completions):
            steps = split_steps(completion.text)
            if not steps:
                continue
            row = {
                "prompt": problem.question,
                "completions": steps,
                "soft_labels": [0.0] * len(steps),
                "step_correct": task.step_correctness(problem, steps) or [],
                "problem_id": problem.id,
                "level": problem.level,
                "_index": index,
                "_sample": sample,
            }
            for step in range(len(steps)):
                prefix_text = STEP_SEPARATOR.join(steps[: step + 1])
                if extract_boxed(steps[step]) is not None:
                    row["soft_labels"][step] = float(task.is_correct(prefix_text, problem))
                else:
                    requests.append((len(rows), step, position))
            rows.append(row)
    if requests:
        prefixes = [
            prompt.with_steps(problems[pos][1].question, rows[r]["completions"][: step + 1])
            for r, step, pos in requests
        ]
        seeds = [derive_seed(config.seed, rows[r]["_index"], rows[r]["_sample"], step + 1) for r, step, _ in requests]
        rollouts = generator.generate(prefixes, n=config.rollouts, params=params, seed=seeds)
        usage = usage + rollouts.usage
        for (r, step, pos), completions in zip(requests, rollouts.completions):
            problem = problems[pos][1]
            done = STEP_SEPARATOR.join(rows[r]["completions"][: step + 1])
            hits = sum(task.is_correct(done + STEP_SEPARATOR + c.text, problem) for c in completions)
            rows[r]["soft_labels"][step] = hits / len(completions)
    for row in rows:
        row["labels"] = [soft > 0 for soft in row["soft_labels"]]
        del row["_index"], row["_sample"]
    return rows, usage


def label_steps(
    generator: Generator,
    task: Task,
    problems: Sequence[Problem],
    prompt: PromptConfig,
    params: SamplingParams,
    config: LabelConfig,
    out_dir: str | Path,
    share: tuple[int, int] = (0, 1),
) -> tuple[Dataset | None, Usage]:
    """Label ``problems`` into ``out_dir`` (resuming from any shards already there).

    Returns the whole dataset and the proposer usage of the shards computed in this call (shards
    found on disk cost nothing now; their usage is in ``shard-NNNNN.usage.json``). With ``share``
    = (i, n), one of n processes labelling together, it computes only every n-th shard from the
    i-th and returns no dataset: a later call with every shard on disk reads them.
    """
    rank, processes = share
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Shards are only valid for the settings that made them: refuse to mix.
    manifest = {
        "config": config.model_dump(),
        "params": vars(params),
        "prompt": prompt.template,
        "problems": [p.id for p in problems],
    }
    manifest_path = out_dir / "labels.json"
    if manifest_path.is_file() and json.loads(manifest_path.read_text()) != manifest:
        raise ValueError(f"{out_dir} holds labels made with other settings or problems; remove it or use another")
    if rank == 0:
        write_text_atomic(manifest_path, json.dumps(manifest))
    indexed = list(enumerate(problems))
    shards = [indexed[i : i + config.shard_size] for i in range(0, len(indexed), config.shard_size)]
    usage = Usage()
    mine = [(number, shard) for number, shard in enumerate(shards) if number % processes == rank]
    label = "PRM labels" if processes == 1 else f"PRM labels, rank {rank}/{processes}"
    with tqdm(total=sum(len(shard) for _, shard in mine), desc=label, unit="problem", position=rank) as bar:
        for number, shard in mine:
            path = out_dir / f"shard-{number:05d}.jsonl"
            if not path.is_file():
                rows, shard_usage = _rows_for_shard(generator, task, shard, prompt, params, config)
                write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))
                write_text_atomic(path.with_suffix(".usage.json"), json.dumps(vars(shard_usage)))
                usage = usage + shard_usage
            bar.update(len(shard))
    if processes > 1:
        return None, usage
    records = []
    for number in range(len(shards)):
        with (out_dir / f"shard-{number:05d}.jsonl").open() as handle:
            records.extend(json.loads(line) for line in handle)
    dataset = Dataset.from_list(records)
    saved = out_dir / "dataset"
    if not saved.is_dir():
        staging = out_dir / "dataset.partial"
        shutil.rmtree(staging, ignore_errors=True)
        with library_bars_hidden():
            dataset.save_to_disk(str(staging))
        staging.rename(saved)
    return dataset, usage
