"""Sampled pass@1 of a proposer, by difficulty level."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm

from .compute import Usage
from .generation.base import Generator, SamplingParams
from .generation.sampling import derive_seed
from .prompts import PromptConfig
from .tasks import LEVELS, Problem, Task


@dataclass(frozen=True)
class LevelAccuracy:
    """Sampled pass@1 of one level: the mean over problems of the fraction of correct samples."""

    level: int
    problems: int
    samples: int
    pass_at_1: float


def per_level(problems: Sequence[Problem], limit: int) -> list[Problem]:
    """The first ``limit`` problems of each level, in order."""
    taken: dict[int, int] = defaultdict(int)
    chosen = []
    for problem in problems:
        if taken[problem.level] < limit:
            taken[problem.level] += 1
            chosen.append(problem)
    return chosen


def pass_at_1_by_level(
    generator: Generator,
    task: Task,
    problems: Sequence[Problem],
    prompt: PromptConfig,
    params: SamplingParams,
    samples_per_problem: int = 1,
    seed: int = 0,
    batch_prompts: int = 256,
) -> tuple[list[LevelAccuracy], Usage]:
    """Sample ``samples_per_problem`` full solutions per problem and grade them, level by level.

    Problems are processed ``batch_prompts`` at a time with a progress bar; each problem's seed is
    derived from ``seed`` and its position, so results do not depend on the batching.
    """
    correct: dict[int, list[float]] = defaultdict(list)
    usage = Usage()
    with tqdm(total=len(problems), desc="pass@1", unit="problem") as bar:
        for start in range(0, len(problems), batch_prompts):
            batch = problems[start : start + batch_prompts]
            output = generator.generate(
                [prompt.format(p.question) for p in batch],
                n=samples_per_problem,
                params=params,
                seed=[derive_seed(seed, start + i) for i in range(len(batch))],
            )
            usage = usage + output.usage
            for problem, completions in zip(batch, output.completions, strict=True):
                hits = sum(task.is_correct(c.text, problem) for c in completions)
                correct[problem.level].append(hits / len(completions))
            bar.update(len(batch))
    results = [
        LevelAccuracy(
            level,
            len(correct[level]),
            len(correct[level]) * samples_per_problem,
            sum(correct[level]) / len(correct[level]),
        )
        for level in LEVELS
        if correct[level]
    ]
    return results, usage
