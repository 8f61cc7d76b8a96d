"""The Monte Carlo labeller on a scripted generator whose rollouts are known."""

import pytest
from ttc_runtime.trainers.prm import load_stepwise
from ttc_runtime.trainers.prm_labels import LabelConfig, label_steps

from ttc_runtime.compute import Usage
from ttc_runtime.generation.base import Completion, GenerationOutput, SamplingParams
from ttc_runtime.prompts import PromptConfig
from ttc_runtime.tasks import STEP_SEPARATOR, SyntheticTask, SyntheticTaskConfig, split_steps

PROMPT = PromptConfig()
K = 4


class ScriptedGenerator:
    """Sample 0 of a problem is its reference solution, sample 1 starts with a wrong step.

    A rollout from a prefix still on the reference path reaches the gold answer in 3 of its K
    completions (the first three); from a prefix off the path, in none.
    """

    flop_params = 1

    def __init__(self, problems, fail_after=None):
        self.by_prompt = {PROMPT.format(p.question): p for p in problems}
        self.calls = 0
        self.fail_after = fail_after

    def _problem_and_steps(self, text):
        for head, problem in self.by_prompt.items():
            if text.startswith(head):
                return problem, split_steps(text[len(head) :])
        raise AssertionError(f"unknown prompt {text!r}")

    def generate(self, prompts, n=1, params=SamplingParams(), seed=0):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        rows = []
        for text in prompts:
            problem, done = self._problem_and_steps(text)
            reference = split_steps(problem.solution)
            if not done:
                wrong = ["999" + reference[0], *reference[1:-1], "\\boxed{-1}"]
                rows.append([Completion(STEP_SEPARATOR.join(s), 1, "eos") for s in (reference, wrong)][:n])
                continue
            on_path = done == reference[: len(done)]
            rest = STEP_SEPARATOR.join(reference[len(done) :])
            rows.append([Completion(rest if on_path and j < 3 else "\\boxed{-1}", 1, "eos") for j in range(n)])
        return GenerationOutput(rows, [Usage.inference(1, 1, n)] * len(prompts))


@pytest.fixture(scope="module")
def problems():
    task = SyntheticTask(SyntheticTaskConfig(train_per_level=4, validation_per_level=1, test_per_level=1))
    return task, [p for p in task.problems("train") if p.level >= 3][:5]


def test_soft_and_hard_labels_match_the_script(problems, tmp_path):
    task, chosen = problems
    config = LabelConfig(samples_per_problem=2, rollouts=K, shard_size=2)
    data, usage = label_steps(ScriptedGenerator(chosen), task, chosen, PROMPT, SamplingParams(), config, tmp_path)
    assert len(data) == 2 * len(chosen)
    assert set(data.column_names) >= {"prompt", "completions", "labels", "soft_labels", "step_correct"}
    for row in data:
        steps = row["completions"]
        if row["step_correct"][0]:  # the reference solution
            assert row["soft_labels"] == [0.75] * (len(steps) - 1) + [1.0]
            assert row["labels"] == [True] * len(steps)
        else:  # wrong from the first step on
            assert row["soft_labels"] == [0.0] * len(steps)
            assert row["labels"] == [False] * len(steps)
            assert row["step_correct"] == [False] * len(steps)
    assert usage.generated_tokens > 0
    assert data["prompt"] == [p.question for p in chosen for _ in range(2)]
    assert load_stepwise(tmp_path / "dataset").to_list() == data.to_list()


def test_interrupted_run_resumes_to_the_same_labels(problems, tmp_path):
    task, chosen = problems
    config = LabelConfig(samples_per_problem=2, rollouts=K, shard_size=2)
    whole, _ = label_steps(ScriptedGenerator(chosen), task, chosen, PROMPT, SamplingParams(), config, tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        label_steps(
            ScriptedGenerator(chosen, fail_after=3), task, chosen, PROMPT, SamplingParams(), config, tmp_path / "b"
        )
    assert sorted(p.name for p in (tmp_path / "b").glob("shard-*.jsonl")) == ["shard-00000.jsonl"]
    assert not list((tmp_path / "b").glob("*.tmp"))
    resumed_generator = ScriptedGenerator(chosen)
    resumed, _ = label_steps(resumed_generator, task, chosen, PROMPT, SamplingParams(), config, tmp_path / "b")
    assert resumed_generator.calls == 4  # two shards left, two calls each
    assert resumed.to_list() == whole.to_list()


def test_other_settings_do_not_mix_with_existing_shards(problems, tmp_path):
    task, chosen = problems
    label_steps(ScriptedGenerator(chosen), task, chosen, PROMPT, SamplingParams(), LabelConfig(rollouts=K), tmp_path)
    with pytest.raises(ValueError, match="other settings"):
        label_steps(
            ScriptedGenerator(chosen), task, chosen, PROMPT, SamplingParams(), LabelConfig(rollouts=2), tmp_path
        )
