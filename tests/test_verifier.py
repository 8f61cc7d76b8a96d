"""The verifier: best-of-N and majority against pass@1 and coverage, step AUROC, and its compute."""

import pytest

from ttc_runtime.compute import Usage
from ttc_runtime.evaluation.verifier import auroc, evaluate_verifier
from ttc_runtime.generation.base import Completion, GenerationOutput, SamplingParams
from ttc_runtime.prompts import PromptConfig
from ttc_runtime.scoring import ScoreOutput
from ttc_runtime.tasks import STEP_SEPARATOR, SyntheticTask, SyntheticTaskConfig, split_steps


class FourSamples:
    """Sample 0 is the reference solution; samples 1-2 end in -1 and sample 3 in -2, each with a
    wrong first step, so every one of their steps is off the correct path."""

    flop_params = 10

    def __init__(self, task):
        self.by_prompt = {PromptConfig().format(p.question): p for p in task.problems("test")}

    def generate(self, prompts, n=1, params=SamplingParams(), seed=0):
        assert n == 4
        rows = []
        for prompt in prompts:
            steps = split_steps(self.by_prompt[prompt].solution)
            wrong = ["999" + steps[0], *steps[1:-1]]
            texts = [STEP_SEPARATOR.join(s) for s in (steps, [*wrong, "\\boxed{-1}"], [*wrong, "\\boxed{-1}"])]
            texts.append(STEP_SEPARATOR.join([*wrong, "\\boxed{-2}"]))
            rows.append([Completion(text, 3, "eos") for text in texts])
        return GenerationOutput(rows, [Usage.inference(self.flop_params, 1, 12)] * len(prompts))


class ScoreByAnswer:
    """Reference steps 0.9; steps of answer -1 0.4; answer -2 0.95 on every step but the last (0.85)."""

    flop_params = 5

    def score(self, questions, solutions):
        scores = []
        for steps in solutions:
            if steps[-1] == "\\boxed{-1}":
                scores.append([0.4] * len(steps))
            elif steps[-1] == "\\boxed{-2}":
                scores.append([0.95] * (len(steps) - 1) + [0.85])
            else:
                scores.append([0.9] * len(steps))
        return ScoreOutput(scores, [Usage.inference(self.flop_params, 7)] * len(solutions))


def test_verifier_evaluation_on_hand_computed_candidates():
    task = SyntheticTask(SyntheticTaskConfig(train_per_level=10, validation_per_level=2, test_per_level=6))
    problems = [p for p in task.problems("test") if p.level == 3][:3]
    levels, compute = evaluate_verifier(
        FourSamples(task), ScoreByAnswer(), task, problems, PromptConfig(), SamplingParams(), n=4, batch_prompts=2
    )
    (level,) = levels
    assert (level.level, level.problems, level.n) == (3, 3, 4)
    assert level.pass_at_1 == 0.25 and level.coverage == 1.0
    assert level.majority == 0.0  # -1 has two votes
    assert level.best_of_n_naive == 1.0  # 0.9 beats 0.85 and 0.4 at the last step
    assert level.best_of_n_weighted == 1.0  # 0.9 against 0.4 + 0.4 and 0.85
    # Positives score 0.9; negatives 0.4 (two solutions), 0.85 (one last step) or 0.95: the share
    # of negatives below 0.9 is the AUROC.
    total = sum(len(split_steps(p.solution)) for p in problems)
    assert level.steps == 4 * total
    assert level.step_auroc == pytest.approx((2 * total + len(problems)) / (3 * total))
    assert compute.generations == 12
    assert compute.proposer.generated_tokens == 36 and compute.verifier.prompt_tokens == 7 * 12
    assert compute.verifier.flops == 2 * 5 * 7 * 12


def test_auroc_of_one_class_is_undefined():
    assert auroc([True, True], [0.1, 0.9]) is None
    assert auroc([False, True], [0.1, 0.9]) == 1.0
