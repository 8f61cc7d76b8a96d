"""The ``proposer_eval`` stage's measurement: sampled pass@1 of a proposer by difficulty level on
held-out problems."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from ttc_runtime.compute import Usage
from ttc_runtime.config import StrictModel
from ttc_runtime.generation.base import Generator, SamplingParams
from ttc_runtime.generation.batches import sample_in_batches
from ttc_runtime.prompts import PromptConfig
from ttc_runtime.tasks import LEVELS, Problem, Task


@dataclass(frozen=True)
class LevelAccuracy:
    """Sampled pass@1 of one level: the mean over problems of the fraction of correct samples."""

    level: int
    problems: int
    samples: int
    pass_at_1: float


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
    """Sample ``samples_per_problem`` full solutions per problem and grade them, level by level."""
    correct: dict[int, list[float]] = defaultdict(list)
    usage = Usage()
    batches = sample_in_batches(generator, problems, prompt, params, samples_per_problem, seed, batch_prompts, "pass@1")
    for batch, output in batches:
        usage = usage + output.usage
        for problem, completions in zip(batch, output.completions, strict=True):
            hits = sum(task.is_correct(c.text, problem) for c in completions)
            correct[problem.level].append(hits / len(completions))
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


class ProposerEvalConfig(StrictModel):
    """Held-out evaluation of the proposer."""

    split: Literal["validation", "test"] = "test"
    problems_per_level: int = Field(200, ge=1)
    samples_per_problem: int = Field(1, ge=1)
    seed: int = 0


def format_levels(levels: list[LevelAccuracy]) -> str:
    """A small table: level, problems, samples, pass@1."""
    lines = ["  level  problems  samples  pass@1"]
    lines += [f"  {a.level:>5}  {a.problems:>8}  {a.samples:>7}  {a.pass_at_1:>6.3f}" for a in levels]
    return "\n".join(lines)
