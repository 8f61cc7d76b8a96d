"""Revision training data, the paper's recipe.

For each training problem, sample ``samples_per_problem`` (64) solutions from the proposer and grade
them. Each correct solution becomes one example: its target is that correct solution, and its
context holds 0 to ``max_attempts`` (4) distinct incorrect solutions of the same problem, the number
drawn uniformly per example and the attempts chosen as the incorrect solutions closest to the target
by character edit distance (Levenshtein, from rapidfuzz), the closest placed last, as the most recent
attempt. An incorrect text sampled several times counts once: a context of four copies of one
wrong guess shows less than a context of four wrong guesses. Problems without a correct sample
give no example. The prompt is built by ``prompts.RevisionPromptConfig`` around the proposer's
prompt. The result is a ``datasets`` dataset in TRL's prompt-completion layout (``prompt``,
``completion``) plus ``question`` and ``attempt_texts`` (to rebuild the prompt with fewer
attempts, see ``trainers.revision.fit_to_length``), ``problem_id``, ``level`` and ``attempts``.

**Duplicates.** Where a problem's correct solutions coincide (the embedded task has one correct
solution per problem), the recipe writes the same example once per correct sample: up to 64 copies
with the same attempts. ``dedupe`` keeps each (prompt, completion) pair once. On the embedded task
the copies made 55,265 examples of 13,093 distinct ones, and a revision model trained on the
copies memorised its few problems and lost the proposer's skill; on data whose correct solutions
differ in wording, as MATH samples do, it changes little.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from datasets import Dataset
from pydantic import Field
from rapidfuzz.distance import Levenshtein

from ttc_runtime.config import StrictModel
from ttc_runtime.generation.base import Generator, SamplingParams
from ttc_runtime.generation.batches import sample_in_batches
from ttc_runtime.generation.sampling import derive_seed
from ttc_runtime.prompts import PromptConfig, RevisionPromptConfig
from ttc_runtime.tasks import Problem, Task


class RevisionDataConfig(StrictModel):
    """How revision examples are drawn."""

    problems_per_level: int = Field(
        100,
        ge=1,
        description="Training problems per level. On the embedded task a problem gives at most five distinct "
        "examples once copies are dropped (one correct solution, 0-4 attempts), so configs/embedded-full.yaml "
        "samples 1,500 per level; real data would use every training problem.",
    )
    samples_per_problem: int = Field(64, ge=1, description="Solutions sampled per training problem (the paper's 64).")
    max_attempts: int = Field(4, ge=0, description="Most incorrect attempts in an example's context.")
    dedupe: bool = Field(True, description="Keep each (prompt, completion) pair once (see the module docstring).")
    batch_prompts: int = Field(16, ge=1, description="Problems per sampling call.")
    seed: int = 0


def closest_incorrect(target: str, incorrect: Sequence[str], count: int) -> list[str]:
    """The ``count`` incorrect solutions closest to ``target`` by character edit distance, farthest
    first and closest last; equal distances keep the order of ``incorrect``."""
    ranked = sorted(range(len(incorrect)), key=lambda i: (Levenshtein.distance(target, incorrect[i]), i))
    return [incorrect[i] for i in reversed(ranked[:count])]


def revision_examples(
    problem: Problem,
    solutions: Sequence[str],
    correct: Sequence[bool],
    prompt: PromptConfig,
    revision: RevisionPromptConfig,
    max_attempts: int,
    rng: random.Random,
) -> list[dict[str, object]]:
    """One example per correct solution of ``problem`` (see the module docstring)."""
    if len(solutions) != len(correct):
        raise ValueError(f"got {len(correct)} grades for {len(solutions)} solutions")
    wrong = list(dict.fromkeys(s for s, ok in zip(solutions, correct) if not ok))
    examples = []
    for target in (s for s, ok in zip(solutions, correct) if ok):
        count = min(rng.randint(0, max_attempts), len(wrong))
        # The prompt keeps the last ``revision.max_attempts`` of them (the closest), so the example
        # records those: ``attempts`` counts what the revision model is shown.
        attempts = closest_incorrect(target, wrong, min(count, revision.max_attempts))
        examples.append(
            {
                "prompt": revision.format(prompt, problem.question, attempts),
                "completion": target,
                "question": problem.question,
                "attempt_texts": attempts,
                "problem_id": problem.id,
                "level": problem.level,
                "attempts": len(attempts),
            }
        )
    return examples


def distinct_examples(rows: Sequence[dict[str, object]]) -> list[dict[str, object]]:
    """``rows`` with each (prompt, completion) pair kept once, first occurrence first."""
    seen: set[tuple[object, object]] = set()
    kept = []
    for row in rows:
        key = (row["prompt"], row["completion"])
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


def build_revision_data(
    generator: Generator,
    task: Task,
    problems: Sequence[Problem],
    prompt: PromptConfig,
    revision: RevisionPromptConfig,
    params: SamplingParams,
    config: RevisionDataConfig,
) -> Dataset:
    """Sample, grade and pair, then drop repeated examples when ``config.dedupe``; each problem's
    draws are seeded from ``(seed, problem index)``, so the data do not depend on the batching."""
    rows: list[dict[str, object]] = []
    index = 0
    for batch, output in sample_in_batches(
        generator,
        problems,
        prompt,
        params,
        config.samples_per_problem,
        config.seed,
        config.batch_prompts,
        "revision data",
    ):
        for problem, completions in zip(batch, output.completions, strict=True):
            texts = [c.text for c in completions]
            grades = [task.is_correct(text, problem) for text in texts]
            rng = random.Random(derive_seed(config.seed, index, 1))
            rows.extend(revision_examples(problem, texts, grades, prompt, revision, config.max_attempts, rng))
            index += 1
    if config.dedupe:
        rows = distinct_examples(rows)
    columns = ("prompt", "completion", "question", "attempt_texts", "problem_id", "level", "attempts")
    return Dataset.from_dict({c: [row[c] for row in rows] for c in columns})
