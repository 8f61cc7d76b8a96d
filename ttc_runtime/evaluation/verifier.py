"""The ``prm_eval`` stage's measurement: what a verifier adds on held-out problems, level by level
(best-of-N selection among N samples, step-level AUROC), and how its step scores agree with
Monte Carlo step labels."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator
from sklearn.metrics import roc_auc_score

from ttc_runtime.compute import Compute
from ttc_runtime.config import StrictModel
from ttc_runtime.generation.base import Generator, SamplingParams
from ttc_runtime.generation.batches import sample_in_batches
from ttc_runtime.prompts import PromptConfig
from ttc_runtime.scoring import StepScorer
from ttc_runtime.selection import Aggregation, aggregate_steps, best_of_n_naive, best_of_n_weighted, majority_vote
from ttc_runtime.tasks import LEVELS, Problem, Task, answers_match, check_levels, group_answers, split_steps


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
            answers = group_answers([task.extract_answer(c.text) for c in completions])
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


class PrmEvalConfig(StrictModel):
    """Held-out evaluation of the verifier: best-of-N selection and step-level AUROC."""

    split: Literal["validation", "test"] = "test"
    levels: list[int] = Field(list(LEVELS), min_length=1, description="Difficulty levels evaluated.")
    problems_per_level: int = Field(100, ge=1)
    n: int = Field(16, ge=1, description="Samples per problem that the selectors choose among.")
    label_problems_per_level: int = Field(
        50, ge=0, description="Held-out problems given MC labels, to compare the PRM with them (0: skip)."
    )
    seed: int = 0

    @model_validator(mode="after")
    def _known_levels(self) -> PrmEvalConfig:
        check_levels(self.levels)
        return self


MIDDLE_LEVELS = (3, 4)
"""The levels where the embedded proposer is neither always right nor always wrong (pass@1 between
0.2 and 0.7), so selection among samples has room to help; the PRM's acceptance figures average them."""


def middle_levels_summary(levels: list[VerifierLevel]) -> dict[str, float] | None:
    """Selector accuracies averaged over ``MIDDLE_LEVELS`` (None when none of them was evaluated)."""
    chosen = [level for level in levels if level.level in MIDDLE_LEVELS]
    if not chosen:
        return None
    keys = ("pass_at_1", "coverage", "majority", "best_of_n_weighted", "best_of_n_naive")
    return {key: sum(getattr(level, key) for level in chosen) / len(chosen) for key in keys}


def format_verifier_levels(levels: list[VerifierLevel]) -> str:
    """A table of the selectors and the step AUROC, level by level."""
    n = levels[0].n if levels else 0
    lines = [f"  level  problems  pass@1  majority@{n}  weighted@{n}  naive@{n}  any@{n}  step AUROC"]
    for a in levels:
        step = "-" if a.step_auroc is None else f"{a.step_auroc:.3f}"
        lines.append(
            f"  {a.level:>5}  {a.problems:>8}  {a.pass_at_1:>6.3f}  {a.majority:>{9 + len(str(n))}.3f}"
            f"  {a.best_of_n_weighted:>{9 + len(str(n))}.3f}  {a.best_of_n_naive:>{6 + len(str(n))}.3f}"
            f"  {a.coverage:>{4 + len(str(n))}.3f}  {step:>10}"
        )
    return "\n".join(lines)


def label_agreement(scorer: StepScorer, dataset, problems: int) -> dict[str, object]:
    """The verifier's step scores against MC labels of held-out solutions (``dataset``, stepwise
    with ``labels``, ``soft_labels`` and ``step_correct``), and the MC labels against exact step
    correctness (how good the training signal itself is), by level."""
    scores = scorer.score(dataset["prompt"], dataset["completions"]).step_scores
    result: dict[str, object] = {"problems": problems, "solutions": len(dataset)}
    by_level = {}
    columns = {name: dataset[name] for name in ("level", "labels", "soft_labels", "step_correct")}
    for level in sorted(set(columns["level"])):
        rows = [i for i, row_level in enumerate(columns["level"]) if row_level == level]
        prm = [x for i in rows for x in scores[i]]
        hard = [x for i in rows for x in columns["labels"][i]]
        soft = [x for i in rows for x in columns["soft_labels"][i]]
        exact = [x for i in rows for x in columns["step_correct"][i]]
        by_level[level] = {
            "steps": len(prm),
            "prm_auroc_vs_mc_hard": auroc(hard, prm),
            "prm_auroc_vs_mc_soft_half": auroc([x >= 0.5 for x in soft], prm),
            "mc_soft_auroc_vs_exact": auroc(exact, soft) if len(exact) == len(soft) else None,
        }
    result["levels"] = by_level
    return result


def format_label_agreement(mc: dict) -> str:
    """A table of the PRM against held-out MC labels, and of those labels against exact correctness."""

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = ["  level  steps  PRM vs MC hard  PRM vs MC soft>=0.5  MC soft vs exact"]
    for level, row in mc["levels"].items():
        lines.append(
            f"  {level:>5}  {row['steps']:>5}  {cell(row['prm_auroc_vs_mc_hard']):>14}"
            f"  {cell(row['prm_auroc_vs_mc_soft_half']):>19}  {cell(row['mc_soft_auroc_vs_exact']):>16}"
        )
    return "\n".join(lines)
