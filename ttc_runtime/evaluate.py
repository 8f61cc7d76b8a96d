"""Held-out evaluation by difficulty level: sampled pass@1 of a proposer, and what a verifier adds
(best-of-N selection and step-level AUROC)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from .compute import Compute, Usage
from .generation.base import GenerationOutput, Generator, SamplingParams
from .generation.sampling import derive_seed
from .prompts import PromptConfig
from .scoring import StepScorer
from .selection import Aggregation, aggregate_steps, best_of_n_naive, best_of_n_weighted, majority_vote
from .tasks import LEVELS, Problem, Task, answers_match, normalize_answer, split_steps


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


def sample_in_batches(
    generator: Generator,
    problems: Sequence[Problem],
    prompt: PromptConfig,
    params: SamplingParams,
    n: int,
    seed: int,
    batch_prompts: int,
    desc: str,
) -> Iterator[tuple[Sequence[Problem], GenerationOutput]]:
    """``n`` full solutions per problem, ``batch_prompts`` problems per call, with a progress bar.

    Each problem's seed is derived from ``seed`` and its position in ``problems``, so the samples do
    not depend on the batching.
    """
    with tqdm(total=len(problems), desc=desc, unit="problem") as bar:
        for start in range(0, len(problems), batch_prompts):
            batch = problems[start : start + batch_prompts]
            yield (
                batch,
                generator.generate(
                    [prompt.format(p.question) for p in batch],
                    n=n,
                    params=params,
                    seed=[derive_seed(seed, start + i) for i in range(len(batch))],
                ),
            )
            bar.update(len(batch))


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


@dataclass(frozen=True)
class VerifierLevel:
    """How well a verifier picks answers among N samples, and ranks steps, on one level.

    Accuracies are fractions of problems: ``pass_at_1`` the mean share of correct samples,
    ``coverage`` any sample correct (the ceiling of any selector), ``majority`` majority voting,
    ``best_of_n_weighted`` and ``best_of_n_naive`` the PRM selectors. ``step_auroc`` compares the
    PRM's step scores with the task's exact step correctness (None when the task has no exact check
    or a level has only one class).
    """

    level: int
    problems: int
    n: int
    pass_at_1: float
    coverage: float
    majority: float
    best_of_n_weighted: float
    best_of_n_naive: float
    steps: int
    step_auroc: float | None


def auroc(truths: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve of ``scores`` ranking ``truths``; None when only one class occurs."""
    if len(set(truths)) < 2:
        return None
    return float(roc_auc_score(truths, scores))


def evaluate_verifier(
    generator: Generator,
    scorer: StepScorer,
    task: Task,
    problems: Sequence[Problem],
    prompt: PromptConfig,
    params: SamplingParams,
    n: int,
    aggregation: Aggregation = "last",
    seed: int = 0,
    batch_prompts: int = 64,
) -> tuple[list[VerifierLevel], Compute]:
    """Sample ``n`` solutions per problem, score them, and compare the selectors level by level."""
    rows: dict[int, list[dict[str, float]]] = defaultdict(list)
    step_pairs: dict[int, list[tuple[bool, float]]] = defaultdict(list)
    compute = Compute()
    for batch, output in sample_in_batches(generator, problems, prompt, params, n, seed, batch_prompts, f"best-of-{n}"):
        steps = [split_steps(c.text) for completions in output.completions for c in completions]
        scored = scorer.score([p.question for p in batch for _ in range(n)], steps)
        compute = compute + Compute(output.usage, scored.usage, len(steps))
        for i, (problem, completions) in enumerate(zip(batch, output.completions, strict=True)):
            step_lists = steps[i * n : (i + 1) * n]
            step_scores = scored.step_scores[i * n : (i + 1) * n]
            answers = [normalize_answer(task.extract_answer(c.text)) for c in completions]
            correct = [task.is_correct(c.text, problem) for c in completions]
            values = [aggregate_steps(s, aggregation) if s else 0.0 for s in step_scores]

            def right(answer: str | None) -> float:
                return float(answer is not None and answers_match(answer, problem.answer))

            rows[problem.level].append(
                {
                    "pass_at_1": sum(correct) / n,
                    "coverage": float(any(correct)),
                    "majority": right(majority_vote(answers)),
                    "best_of_n_weighted": right(best_of_n_weighted(answers, values)),
                    "best_of_n_naive": right(best_of_n_naive(answers, values)),
                }
            )
            for solution, scores in zip(step_lists, step_scores):
                truth = task.step_correctness(problem, solution)
                if truth is not None:
                    step_pairs[problem.level].extend(zip(truth, scores))
    levels = []
    for level in LEVELS:
        if not rows[level]:
            continue
        pairs = step_pairs[level]

        def mean(key: str, level: int = level) -> float:
            return sum(r[key] for r in rows[level]) / len(rows[level])

        levels.append(
            VerifierLevel(
                level=level,
                problems=len(rows[level]),
                n=n,
                pass_at_1=mean("pass_at_1"),
                coverage=mean("coverage"),
                majority=mean("majority"),
                best_of_n_weighted=mean("best_of_n_weighted"),
                best_of_n_naive=mean("best_of_n_naive"),
                steps=len(pairs),
                step_auroc=auroc([t for t, _ in pairs], [s for _, s in pairs]) if pairs else None,
            )
        )
    return levels, compute
